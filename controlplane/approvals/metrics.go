package approvals

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the approval metrics. Labels hold codes only.
type Metrics struct {
	pending       prometheus.Gauge
	createdTotal  prometheus.Counter
	decisions     *prometheus.CounterVec
	decisionDelay prometheus.Histogram
	consumedTotal prometheus.Counter
	returned      *prometheus.CounterVec
	holds         *prometheus.CounterVec
	eventFailures prometheus.Counter
	webhooks      *prometheus.CounterVec
}

// NewMetrics registers the approval metrics with reg (nil: a private registry).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := &Metrics{
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "jitgate_approvals_pending",
			Help: "Approvals waiting for a decision (as of the last sweep, every 10s).",
		}),
		createdTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jitgate_approvals_created_total",
			Help: "Approvals created (a call needed one and none matched).",
		}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitgate_approvals_decided_total",
			Help: "Approvals decided, by outcome (approved, denied, expired while pending).",
		}, []string{"outcome"}),
		decisionDelay: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "jitgate_approval_decision_seconds",
			Help:    "Time from an approval's creation to its decision (approved, denied or expired).",
			Buckets: []float64{1, 5, 15, 30, 60, 120, 300, 900, 1800, 3600, 4 * 3600},
		}),
		consumedTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jitgate_approvals_consumed_total",
			Help: "Approval uses consumed by allowed calls.",
		}),
		returned: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitgate_approvals_returned_total",
			Help: "Approval uses given back because the call that consumed one did not run (denied by a later step, audit unavailable, or the caller gone before the answer), by result (returned, failed: the use is lost).",
		}, []string{"result"}),
		holds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitgate_approval_holds_total",
			Help: "Held calls (hold mode) by outcome: approved, denied, timeout, cancelled.",
		}, []string{"outcome"}),
		eventFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jitgate_approval_event_publish_failures_total",
			Help: "Approval events that could not be published on jitgate.approvals.>.",
		}),
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitgate_approval_webhook_deliveries_total",
			Help: "Webhook deliveries of new approvals by webhook name and result (ok, retry, failed: gave up after the last retry).",
		}, []string{"webhook", "result"}),
	}
	reg.MustRegister(m.pending, m.createdTotal, m.decisions, m.decisionDelay, m.consumedTotal, m.returned, m.holds, m.eventFailures, m.webhooks)
	return m
}

func (m *Metrics) setPending(n int)          { m.pending.Set(float64(n)) }
func (m *Metrics) created()                  { m.createdTotal.Inc(); m.pending.Inc() }
func (m *Metrics) consumed()                 { m.consumedTotal.Inc() }
func (m *Metrics) returnedUse(result string) { m.returned.WithLabelValues(result).Inc() }
func (m *Metrics) eventFailed()              { m.eventFailures.Inc() }
func (m *Metrics) held(outcome string) {
	m.holds.WithLabelValues(outcome).Inc()
}
func (m *Metrics) webhook(name, result string) { m.webhooks.WithLabelValues(name, result).Inc() }

func (m *Metrics) decided(outcome string, created, at time.Time) {
	m.decisions.WithLabelValues(outcome).Inc()
	m.decisionDelay.Observe(at.Sub(created).Seconds())
	m.pending.Dec()
}
