package authz

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the authorize metrics. Labels hold codes only, never agent-supplied text.
type Metrics struct {
	decisions *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	mints     *prometheus.CounterVec
}

// NewMetrics registers the authorize metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitgate_authorize_decisions_total",
			Help: "Authorize decisions by decision (allow, deny, error for a malformed call) and reason code (ok for allow).",
		}, []string{"decision", "reason"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "jitgate_authorize_duration_seconds",
			Help:    "Time to answer an authorize call, by decision.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"decision"}),
		mints: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitgate_credentials_minted_total",
			Help: "Upstream credentials minted for allowed calls, by mode (self-signed-jwt, impersonate).",
		}, []string{"mode"}),
	}
	reg.MustRegister(m.decisions, m.duration, m.mints)
	return m
}

func (m *Metrics) decided(decision, reason string, d time.Duration) {
	m.decisions.WithLabelValues(decision, reason).Inc()
	m.duration.WithLabelValues(decision).Observe(d.Seconds())
}

func (m *Metrics) minted(mode string) { m.mints.WithLabelValues(mode).Inc() }
