package jobs

import "github.com/prometheus/client_golang/prometheus"

// Metrics counts what the ledger does. Labels are fixed codes: never agent, job or table
// names.
type Metrics struct {
	recorded *prometheus.CounterVec
	lookups  *prometheus.CounterVec
}

// Values of jitgate_jobs_recorded_total's result label.
const (
	ResultRecorded = "recorded"
	ResultError    = "error"
	// ...and the refusal reasons: unknown_decision, job_owned_by_another_agent,
	// decision_mismatch, decision_not_recordable.
)

// Values of jitgate_job_lookups_total's result label.
const (
	LookupOwner    = "owner"
	LookupNotOwner = "not_owner"
	LookupNotFound = "not_found"
	LookupError    = "error"
)

// NewMetrics registers the ledger's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		recorded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitgate_jobs_recorded_total",
			Help: "Jobs named by the filter's response reports (POST /v1/responses) by result: recorded, unknown_decision, job_owned_by_another_agent, decision_mismatch, decision_not_recordable, error (ledger unavailable).",
		}, []string{"result"}),
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitgate_job_lookups_total",
			Help: "Ownership checks of follow-up calls (jobs.get, getQueryResults, cancel, delete, tabledata.list on result tables) by result: owner, not_owner, not_found, error.",
		}, []string{"result"}),
	}
	for _, r := range []string{ResultRecorded, ResultError, ReasonUnknownDecision, ReasonOwnedByAnother, ReasonDecisionMismatch, ReasonNotRecordable} {
		m.recorded.WithLabelValues(r)
	}
	for _, r := range []string{LookupOwner, LookupNotOwner, LookupNotFound, LookupError} {
		m.lookups.WithLabelValues(r)
	}
	reg.MustRegister(m.recorded, m.lookups)
	return m
}

func (m *Metrics) record(result string) { m.recorded.WithLabelValues(result).Inc() }

func (m *Metrics) lookup(result string) { m.lookups.WithLabelValues(result).Inc() }
