package sqlanalysis

import "github.com/prometheus/client_golang/prometheus"

// Metrics counts what the analyser does. Labels are fixed codes, never SQL or table names.
type Metrics struct {
	analyses    *prometheus.CounterVec
	engineRuns  prometheus.Counter
	fetchRounds prometheus.Counter
	failures    prometheus.Counter
}

// Values of jitgate_sql_analyses_total's result label.
const (
	ResultAnalysed           = "analysed"
	ResultCached             = "cached"
	ResultRefused            = "refused"
	ResultCatalogUnavailable = "catalog_unavailable"
)

// NewMetrics registers the analyser's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		analyses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitgate_sql_analyses_total",
			Help: "SQL analyses by result: analysed, cached (result cache hit), refused (legacy or unanalysable SQL), catalog_unavailable.",
		}, []string{"result"}),
		engineRuns: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jitgate_sql_engine_runs_total",
			Help: "Analyses run on the GoogleSQL engine (cache misses, each catalog round counted). go-googlesql v0.3.0 keeps ~24 KB of engine memory per run that is never returned; watch process_resident_memory_bytes against this and restart (or scale out) jitgated when it grows too large.",
		}),
		fetchRounds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jitgate_sql_catalog_fetch_rounds_total",
			Help: "Times an analysis released the engine to fetch table metadata (tables.get / tables.list) it met uncached.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jitgate_sql_engine_failures_total",
			Help: "Analyses the GoogleSQL engine failed inside (a panic, a wasm trap, or a memory fault turned into a panic): the query was refused as unanalysable and jitgated kept running. Any increase is a bug to report with the decision log's SQL.",
		}),
	}
	for _, r := range []string{ResultAnalysed, ResultCached, ResultRefused, ResultCatalogUnavailable} {
		m.analyses.WithLabelValues(r)
	}
	reg.MustRegister(m.analyses, m.engineRuns, m.fetchRounds, m.failures)
	return m
}

func (m *Metrics) analysis(result string) {
	if m != nil {
		m.analyses.WithLabelValues(result).Inc()
	}
}

func (m *Metrics) engineRun() {
	if m != nil {
		m.engineRuns.Inc()
	}
}

func (m *Metrics) fetchRound() {
	if m != nil {
		m.fetchRounds.Inc()
	}
}

func (m *Metrics) engineFailure() {
	if m != nil {
		m.failures.Inc()
	}
}
