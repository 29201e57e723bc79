package audit

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Failure reasons (label "reason" of jitgate_audit_append_failures_total).
const (
	FailureUnavailable = "unavailable" // NATS disconnected, timeout, JetStream error
	FailureConflict    = "conflict"    // optimistic-concurrency retries exhausted
	FailureInvalid     = "invalid"     // the record could not be encoded or was incomplete
)

// Metrics are the audit writer's metrics. Labels hold codes only.
type Metrics struct {
	latency   *prometheus.HistogramVec
	failures  *prometheus.CounterVec
	conflicts prometheus.Counter
}

// NewMetrics registers the audit metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "jitgate_audit_append_duration_seconds",
			Help:    "Time to append one audit record to JetStream (including chain retries), by result (ok, error).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"result"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitgate_audit_append_failures_total",
			Help: "Audit records that could not be written (the call they describe fails closed), by reason.",
		}, []string{"reason"}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jitgate_audit_append_conflicts_total",
			Help: "Appends retried because another writer extended the chain first.",
		}),
	}
	reg.MustRegister(m.latency, m.failures, m.conflicts)
	return m
}

func (m *Metrics) appended(d time.Duration) { m.latency.WithLabelValues("ok").Observe(d.Seconds()) }

func (m *Metrics) failed(reason string, d time.Duration) {
	m.latency.WithLabelValues("error").Observe(d.Seconds())
	m.failures.WithLabelValues(reason).Inc()
}

func (m *Metrics) conflict() { m.conflicts.Inc() }
