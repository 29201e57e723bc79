package bqapi

import (
	"bytes"
	"encoding/json"
	"sort"
	"strings"
)

// QuerySpec is what a jobs.query or jobs.insert (query job) request asks BigQuery to
// run, in one shape for both. It is the decoded request the later stages consume: the
// authorize callout sends it to the control plane, local rules read its job config.
type QuerySpec struct {
	// API is JobsQuery or JobsInsert.
	API API
	// SQL is the statement text exactly as sent (including any #legacySQL prefix).
	SQL string
	// UseLegacySQL is the field as sent; nil when absent.
	UseLegacySQL *bool
	// LegacySQL is the dialect BigQuery will use: absent useLegacySql means legacy at the
	// REST level, and a #legacySQL / #standardSQL prefix overrides it. Conflicts count as
	// legacy, so they fail closed where legacy SQL is denied.
	LegacySQL      bool
	DefaultDataset *DatasetReference
	Parameters     []QueryParameter
	ParameterMode  string
	DryRun         bool
	// Location from the body (jobs.query) or jobReference (jobs.insert).
	Location string
	// MaximumBytesBilled is nil when the agent set no ceiling.
	MaximumBytesBilled   *int64
	Labels               map[string]string
	CreateSession        bool
	ConnectionProperties []ConnectionProperty
	UseQueryCache        *bool
	// RequestID (jobs.query) and JobID (jobs.insert jobReference) are client-chosen ids.
	RequestID       string
	JobID           string
	JobCreationMode string
	// Job configuration summary (jobs.insert only).
	Destination       *TableReference
	WriteDisposition  string
	CreateDisposition string
	Priority          string
	// ExternalTables names the tableDefinitions entries (external tables), sorted.
	ExternalTables []string
	// UDFResources counts userDefinedFunctionResources entries.
	UDFResources int
	Continuous   bool

	// The decoded bodies, for stages that need a field not summarised above.
	// Exactly one is set.
	QueryRequest *QueryRequest
	Job          *Job
}

// SessionID is the session the query joins: the connectionProperties entry session_id
// (the last one, as BigQuery reads repeated keys; an empty value still counts as joining,
// so it is reported as "(empty)").
func (s *QuerySpec) SessionID() string {
	id, found := "", false
	for _, p := range s.ConnectionProperties {
		if p.Key == "session_id" {
			id, found = p.Value, true
		}
	}
	if found && id == "" {
		return "(empty)"
	}
	return id
}

// DecodeQueryRequest decodes and checks a jobs.query body (already inflated).
func DecodeQueryRequest(body []byte) (*QuerySpec, *Rejection) {
	var req QueryRequest
	if rej := decodeStrict(body, &req, queryRequestSchema, "the jobs.query body does not match QueryRequest: "); rej != nil {
		return nil, rej
	}
	if strings.TrimSpace(req.Query) == "" {
		return nil, Reject(ReasonMissingSQL, "the jobs.query body has no query")
	}
	if rej := checkFormatOptions(body); rej != nil {
		return nil, rej
	}
	spec := &QuerySpec{
		API:                  JobsQuery,
		SQL:                  req.Query,
		UseLegacySQL:         req.UseLegacySQL,
		DefaultDataset:       req.DefaultDataset,
		Parameters:           req.QueryParameters,
		ParameterMode:        req.ParameterMode,
		DryRun:               req.DryRun,
		Location:             req.Location,
		MaximumBytesBilled:   (*int64)(req.MaximumBytesBilled),
		Labels:               req.Labels,
		CreateSession:        req.CreateSession,
		ConnectionProperties: req.ConnectionProperties,
		UseQueryCache:        req.UseQueryCache,
		RequestID:            req.RequestID,
		JobCreationMode:      req.JobCreationMode,
		QueryRequest:         &req,
	}
	spec.LegacySQL = LegacyDialect(req.Query, req.UseLegacySQL)
	return spec, nil
}

// checkFormatOptions refuses a jobs.query formatOptions member the gateway does not know
// (see knownFormatOptions). It decodes the body a second time, only when it names
// formatOptions at all.
func checkFormatOptions(body []byte) *Rejection {
	if !bytes.Contains(body, []byte("formatOptions")) {
		return nil
	}
	var doc struct {
		FormatOptions map[string]json.RawMessage `json:"formatOptions"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return Reject(ReasonMalformedJSON, "formatOptions is not an object")
	}
	for k, v := range doc.FormatOptions {
		var s string
		_ = json.Unmarshal(v, &s)
		if rej := checkFormat(k, s); rej != nil {
			return rej
		}
	}
	return nil
}

// DecodeJobInsert decodes and checks a jobs.insert body (already inflated). Load,
// extract and copy jobs are refused here: the gateway only runs queries.
func DecodeJobInsert(body []byte) (*QuerySpec, *Rejection) {
	var job Job
	if rej := decodeStrict(body, &job, jobSchema, "the jobs.insert body does not match Job: "); rej != nil {
		return nil, rej
	}
	cfg := &job.Configuration
	switch {
	case cfg.Load != nil:
		return nil, Reject(ReasonLoadJob, "load jobs are not allowed through the gateway")
	case cfg.Extract != nil:
		return nil, Reject(ReasonExtractJob, "extract jobs are not allowed through the gateway")
	case cfg.Copy != nil:
		return nil, Reject(ReasonCopyJob, "copy jobs are not allowed through the gateway")
	case cfg.Query == nil:
		return nil, Reject(ReasonUnknownJobKind, "the job has no query configuration; only query jobs are allowed through the gateway")
	}
	q := cfg.Query
	if strings.TrimSpace(q.Query) == "" {
		return nil, Reject(ReasonMissingSQL, "the query job has no configuration.query.query")
	}
	if d := q.DestinationTable; d != nil {
		// "t$20250101" writes one partition of t: refused like a decorated path (the
		// policy's writeTables and deny lists name base tables).
		for _, f := range [...]struct{ name, id string }{{"projectId", d.ProjectID}, {"datasetId", d.DatasetID}, {"tableId", d.TableID}} {
			if Decorated(f.id) {
				return nil, DecoratorRejection("destinationTable."+f.name, f.id)
			}
		}
	}
	spec := &QuerySpec{
		API:                  JobsInsert,
		SQL:                  q.Query,
		UseLegacySQL:         q.UseLegacySQL,
		DefaultDataset:       q.DefaultDataset,
		Parameters:           q.QueryParameters,
		ParameterMode:        q.ParameterMode,
		DryRun:               cfg.DryRun,
		MaximumBytesBilled:   (*int64)(q.MaximumBytesBilled),
		Labels:               cfg.Labels,
		CreateSession:        q.CreateSession,
		ConnectionProperties: q.ConnectionProperties,
		UseQueryCache:        q.UseQueryCache,
		Destination:          q.DestinationTable,
		WriteDisposition:     q.WriteDisposition,
		CreateDisposition:    q.CreateDisposition,
		Priority:             q.Priority,
		UDFResources:         len(q.UserDefinedFunctionResources),
		Continuous:           q.Continuous,
		Job:                  &job,
	}
	if job.JobReference != nil {
		spec.JobID = job.JobReference.JobID
		spec.Location = job.JobReference.Location
	}
	for name := range q.TableDefinitions {
		spec.ExternalTables = append(spec.ExternalTables, name)
	}
	sort.Strings(spec.ExternalTables)
	spec.LegacySQL = LegacyDialect(q.Query, q.UseLegacySQL)
	return spec, nil
}

// DecodeBody dispatches on the API; calls without a query body return (nil, nil).
func DecodeBody(api API, body []byte) (*QuerySpec, *Rejection) {
	switch api {
	case JobsQuery:
		return DecodeQueryRequest(body)
	case JobsInsert:
		return DecodeJobInsert(body)
	}
	return nil, nil
}

// decodeStrict decodes body into v, then refuses keys BigQuery could read differently
// (see checkKeys). encoding/json validates the whole document first, which the key
// scan relies on.
func decodeStrict(body []byte, v any, schema *keySchema, what string) *Rejection {
	if len(bytes.TrimSpace(body)) == 0 {
		return Reject(ReasonMissingBody, "the request has no body")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return Reject(ReasonMalformedJSON, what+jsonProblem(err))
	}
	return checkKeys(body, schema)
}

// LegacyDialect applies BigQuery's dialect rules (see QuerySpec.LegacySQL) to a query's
// text and its useLegacySql field (nil: absent). jitgate policy explain uses it too.
func LegacyDialect(sql string, useLegacy *bool) bool {
	head := strings.ToLower(strings.TrimLeft(sql, " \t\r\n"))
	switch {
	case strings.HasPrefix(head, "#legacysql"):
		return true
	case strings.HasPrefix(head, "#standardsql"):
		return useLegacy != nil && *useLegacy
	}
	return useLegacy == nil || *useLegacy
}

// jsonProblem describes a decode error without echoing request content.
func jsonProblem(err error) string {
	switch e := err.(type) {
	case *json.UnmarshalTypeError:
		return "field " + quoteKey(e.Field) + " has the wrong type"
	case *json.SyntaxError:
		return "syntax error"
	}
	return "invalid value"
}
