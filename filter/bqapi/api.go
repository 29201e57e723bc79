// Package bqapi is jitgate's model of the BigQuery REST API as it arrives on the wire:
// which call a request is (Classify), its path and query-string parameters, the request
// bodies of jobs.query and jobs.insert (DecodeQueryRequest, DecodeJobInsert), the reasons
// the gateway refuses a request, and the BigQuery error document every refusal is sent as.
// It is the one place that knows BigQuery's wire shapes; it is wasm-safe (standard library
// only, no I/O) so the filter and the control plane can share it.
package bqapi

// API names one BigQuery REST method.
type API uint8

// The BigQuery REST methods the gateway recognises. Anything else is Unknown and denied.
const (
	Unknown API = iota
	JobsQuery
	JobsInsert
	JobsGetQueryResults
	JobsGet
	JobsCancel
	JobsList
	JobsDelete
	TabledataList
	TablesGet
	TablesList
	DatasetsGet
	DatasetsList
	ProjectsList
	numAPIs
)

var apiNames = [numAPIs]string{
	Unknown:             "unknown",
	JobsQuery:           "jobs.query",
	JobsInsert:          "jobs.insert",
	JobsGetQueryResults: "jobs.getQueryResults",
	JobsGet:             "jobs.get",
	JobsCancel:          "jobs.cancel",
	JobsList:            "jobs.list",
	JobsDelete:          "jobs.delete",
	TabledataList:       "tabledata.list",
	TablesGet:           "tables.get",
	TablesList:          "tables.list",
	DatasetsGet:         "datasets.get",
	DatasetsList:        "datasets.list",
	ProjectsList:        "projects.list",
}

// String returns the method's name as BigQuery's discovery document spells it.
func (a API) String() string {
	if a < numAPIs {
		return apiNames[a]
	}
	return apiNames[Unknown]
}

// ParseAPI is the inverse of API.String; unknown names return Unknown.
func ParseAPI(name string) API {
	for i, n := range apiNames {
		if n == name {
			return API(i)
		}
	}
	return Unknown
}

// HasQueryBody reports whether the method carries a body the gateway must decode
// (the SQL and job configuration live there).
func (a API) HasQueryBody() bool { return a == JobsQuery || a == JobsInsert }
