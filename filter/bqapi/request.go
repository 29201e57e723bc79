package bqapi

import (
	"encoding/json"
	"errors"
	"strconv"
)

// Request bodies of jobs.query (QueryRequest) and jobs.insert (Job), with the fields the
// gateway reasons about. Fields not modelled here are forwarded untouched; the body is
// never re-encoded from these types.

// QueryRequest is the body of jobs.query.
type QueryRequest struct {
	Kind                 string               `json:"kind,omitempty"`
	Query                string               `json:"query"`
	UseLegacySQL         *bool                `json:"useLegacySql,omitempty"`
	DefaultDataset       *DatasetReference    `json:"defaultDataset,omitempty"`
	QueryParameters      []QueryParameter     `json:"queryParameters,omitempty"`
	ParameterMode        string               `json:"parameterMode,omitempty"`
	DryRun               bool                 `json:"dryRun,omitempty"`
	UseQueryCache        *bool                `json:"useQueryCache,omitempty"`
	MaxResults           *uint32              `json:"maxResults,omitempty"`
	TimeoutMs            *uint32              `json:"timeoutMs,omitempty"`
	MaximumBytesBilled   *Int64               `json:"maximumBytesBilled,omitempty"`
	Location             string               `json:"location,omitempty"`
	Labels               map[string]string    `json:"labels,omitempty"`
	CreateSession        bool                 `json:"createSession,omitempty"`
	ConnectionProperties []ConnectionProperty `json:"connectionProperties,omitempty"`
	RequestID            string               `json:"requestId,omitempty"`
	JobCreationMode      string               `json:"jobCreationMode,omitempty"`
	FormatOptions        *DataFormatOptions   `json:"formatOptions,omitempty"`
	JobTimeoutMs         *Int64               `json:"jobTimeoutMs,omitempty"`
}

// Job is the body of jobs.insert.
type Job struct {
	JobReference  *JobReference    `json:"jobReference,omitempty"`
	Configuration JobConfiguration `json:"configuration"`
}

// JobConfiguration is Job.configuration. Exactly one of Query, Load, Extract, Copy
// names the job kind; the non-query kinds are kept raw because the gateway only needs
// to know they are there.
type JobConfiguration struct {
	JobType      string                 `json:"jobType,omitempty"`
	Query        *JobConfigurationQuery `json:"query,omitempty"`
	Load         json.RawMessage        `json:"load,omitempty"`
	Extract      json.RawMessage        `json:"extract,omitempty"`
	Copy         json.RawMessage        `json:"copy,omitempty"`
	DryRun       bool                   `json:"dryRun,omitempty"`
	Labels       map[string]string      `json:"labels,omitempty"`
	JobTimeoutMs *Int64                 `json:"jobTimeoutMs,omitempty"`
}

// JobConfigurationQuery is Job.configuration.query.
type JobConfigurationQuery struct {
	Query                        string                     `json:"query"`
	UseLegacySQL                 *bool                      `json:"useLegacySql,omitempty"`
	DefaultDataset               *DatasetReference          `json:"defaultDataset,omitempty"`
	DestinationTable             *TableReference            `json:"destinationTable,omitempty"`
	WriteDisposition             string                     `json:"writeDisposition,omitempty"`
	CreateDisposition            string                     `json:"createDisposition,omitempty"`
	Priority                     string                     `json:"priority,omitempty"`
	QueryParameters              []QueryParameter           `json:"queryParameters,omitempty"`
	ParameterMode                string                     `json:"parameterMode,omitempty"`
	MaximumBytesBilled           *Int64                     `json:"maximumBytesBilled,omitempty"`
	UseQueryCache                *bool                      `json:"useQueryCache,omitempty"`
	AllowLargeResults            *bool                      `json:"allowLargeResults,omitempty"`
	FlattenResults               *bool                      `json:"flattenResults,omitempty"`
	CreateSession                bool                       `json:"createSession,omitempty"`
	ConnectionProperties         []ConnectionProperty       `json:"connectionProperties,omitempty"`
	TableDefinitions             map[string]json.RawMessage `json:"tableDefinitions,omitempty"`
	UserDefinedFunctionResources []json.RawMessage          `json:"userDefinedFunctionResources,omitempty"`
	SchemaUpdateOptions          []string                   `json:"schemaUpdateOptions,omitempty"`
	Continuous                   bool                       `json:"continuous,omitempty"`
}

// DatasetReference names a dataset.
type DatasetReference struct {
	ProjectID string `json:"projectId,omitempty"`
	DatasetID string `json:"datasetId"`
}

// TableReference names a table.
type TableReference struct {
	ProjectID string `json:"projectId,omitempty"`
	DatasetID string `json:"datasetId"`
	TableID   string `json:"tableId"`
}

// JobReference names a job.
type JobReference struct {
	ProjectID string `json:"projectId,omitempty"`
	JobID     string `json:"jobId,omitempty"`
	Location  string `json:"location,omitempty"`
}

// ConnectionProperty is one connectionProperties entry (session_id lives here).
type ConnectionProperty struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// DataFormatOptions is QueryRequest.formatOptions.
type DataFormatOptions struct {
	UseInt64Timestamp bool `json:"useInt64Timestamp,omitempty"`
	// TimestampOutputFormat (FLOAT64, INT64, ISO8601_STRING) changes how TIMESTAMP cells
	// are written, still as JSON rows.
	TimestampOutputFormat string `json:"timestampOutputFormat,omitempty"`
}

// knownFormatOptions are the result format options that keep results JSON rows the
// gateway can read. Anything else (a future Arrow or proto output option) is refused:
// the gateway must be able to read what it releases.
var knownFormatOptions = map[string]bool{"useInt64Timestamp": true, "timestampOutputFormat": true}

// timestampOutputFormats are the values of timestampOutputFormat BigQuery documents.
var timestampOutputFormats = map[string]bool{"": true, "TIMESTAMP_OUTPUT_FORMAT_UNSPECIFIED": true, "FLOAT64": true, "INT64": true, "ISO8601_STRING": true}

func checkFormat(key, value string) *Rejection {
	if !knownFormatOptions[key] {
		return Reject(ReasonUnsupportedFormat, "result format option formatOptions."+quoteKey(key)+" is not supported through the gateway; results must be JSON rows")
	}
	if key == "timestampOutputFormat" && !timestampOutputFormats[value] {
		return Reject(ReasonUnsupportedFormat, "formatOptions.timestampOutputFormat must be FLOAT64, INT64 or ISO8601_STRING")
	}
	return nil
}

// QueryParameter is one query parameter. Values are data: they belong in the approval
// fingerprint alongside the SQL.
type QueryParameter struct {
	Name           string               `json:"name,omitempty"`
	ParameterType  *QueryParameterType  `json:"parameterType,omitempty"`
	ParameterValue *QueryParameterValue `json:"parameterValue,omitempty"`
}

// QueryParameterType is a parameter's (possibly nested) type.
type QueryParameterType struct {
	Type             string                          `json:"type"`
	ArrayType        *QueryParameterType             `json:"arrayType,omitempty"`
	StructTypes      []QueryParameterTypeStructTypes `json:"structTypes,omitempty"`
	RangeElementType *QueryParameterType             `json:"rangeElementType,omitempty"`
}

// QueryParameterTypeStructTypes is one field of a STRUCT parameter type.
type QueryParameterTypeStructTypes struct {
	Name        string              `json:"name,omitempty"`
	Type        *QueryParameterType `json:"type"`
	Description string              `json:"description,omitempty"`
}

// QueryParameterValue is a parameter's (possibly nested) value. Value is nil for NULL.
type QueryParameterValue struct {
	Value        *string                        `json:"value,omitempty"`
	ArrayValues  []QueryParameterValue          `json:"arrayValues,omitempty"`
	StructValues map[string]QueryParameterValue `json:"structValues,omitempty"`
	RangeValue   *RangeValue                    `json:"rangeValue,omitempty"`
}

// RangeValue is the value of a RANGE parameter.
type RangeValue struct {
	Start *QueryParameterValue `json:"start,omitempty"`
	End   *QueryParameterValue `json:"end,omitempty"`
}

// Int64 is BigQuery's int64 on the wire: a JSON string by the REST spec, though the
// parser also takes a bare number, so both are accepted.
type Int64 int64

// UnmarshalJSON accepts "123" and 123.
func (n *Int64) UnmarshalJSON(b []byte) error {
	s := string(b)
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return errors.New("bqapi: int64 value " + strconv.Quote(s) + " is not an integer")
	}
	*n = Int64(v)
	return nil
}

// MarshalJSON writes the REST spelling, a string.
func (n Int64) MarshalJSON() ([]byte, error) {
	return []byte(`"` + strconv.FormatInt(int64(n), 10) + `"`), nil
}
