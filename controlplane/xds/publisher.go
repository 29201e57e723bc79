package xds

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/jitgate/jitgate/controlplane/config"
	"github.com/jitgate/jitgate/policies"
)

// FleetHash is a NodeHash that ignores the node's identity: every Envoy that connects gets
// the one snapshot stored under Key.
type FleetHash struct{ Key string }

// ID returns h.Key for every node.
func (h FleetHash) ID(*corev3.Node) string { return h.Key }

// Status is the publisher's state as /v1/status reports it.
type Status struct {
	// SnapshotVersion is the version Envoys are being served; empty before the first success.
	SnapshotVersion string `json:"snapshotVersion"`
	// LastSuccess is when SnapshotVersion was published.
	LastSuccess time.Time `json:"lastSuccess,omitzero"`
	// LastError is the most recent translation failure, cleared by the next success.
	LastError string `json:"lastError,omitempty"`
	// LastErrorTime is when LastError happened.
	LastErrorTime time.Time `json:"lastErrorTime,omitzero"`
	// Failures counts translation failures since start.
	Failures uint64 `json:"failures"`
	// PolicyVersion is the policy bundle version in the served filter configuration;
	// empty without policies.
	PolicyVersion string `json:"policyVersion,omitempty"`
}

// Publisher translates configurations into snapshots and sets them in the cache. Versions
// increase by one per successful publish; a failed translation leaves the last good
// snapshot live and is reported through Status, the log and metrics.
type Publisher struct {
	cache   cachev3.SnapshotCache
	key     string
	log     *slog.Logger
	metrics *Metrics

	mu      sync.Mutex
	version uint64
	status  Status
	// cfg and bundle are the inputs of the live snapshot; either changing republishes
	// with the other kept.
	cfg    *config.Config
	bundle *policies.Bundle
}

// NewPublisher returns a publisher writing the snapshot for every node (see FleetHash) into
// cache under key. metrics may be nil.
func NewPublisher(cache cachev3.SnapshotCache, key string, log *slog.Logger, metrics *Metrics) *Publisher {
	return &Publisher{cache: cache, key: key, log: log, metrics: metrics}
}

// Publish translates cfg (with the current policy bundle) and, if the result is complete
// and consistent, serves it as the next snapshot version. On error the previous snapshot
// stays live.
func (p *Publisher) Publish(ctx context.Context, cfg *config.Config) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.publish(ctx, cfg, p.bundle)
}

// PublishPolicy serves the next snapshot with the policy bundle b (its version and
// compiled JSON) in the filter's configuration and the last published config. Before the
// first Publish it only records b. On error (a bundle above the filter's size limit, say)
// the previous snapshot, with the previous bundle, stays live.
func (p *Publisher) PublishPolicy(ctx context.Context, b *policies.Bundle) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cfg == nil {
		p.bundle = b
		return nil
	}
	return p.publish(ctx, p.cfg, b)
}

func (p *Publisher) publish(ctx context.Context, cfg *config.Config, bundle *policies.Bundle) error {
	version := strconv.FormatUint(p.version+1, 10)
	snap, err := buildSnapshot(version, cfg, bundle)
	if err == nil {
		err = p.cache.SetSnapshot(ctx, p.key, snap)
	}
	if err != nil {
		p.status.LastError = err.Error()
		p.status.LastErrorTime = time.Now()
		p.status.Failures++
		p.metrics.translated("error")
		p.log.Error("xds snapshot not published; last good snapshot stays live",
			"error", err, "live_version", p.status.SnapshotVersion)
		return err
	}
	p.version++
	p.cfg, p.bundle = cfg, bundle
	policyVersion := ""
	if bundle != nil {
		policyVersion = bundle.Version
	}
	p.status.SnapshotVersion = version
	p.status.PolicyVersion = policyVersion
	p.status.LastSuccess = time.Now()
	p.status.LastError = ""
	p.status.LastErrorTime = time.Time{}
	p.metrics.translated("ok")
	p.metrics.setVersion(p.version)
	p.log.Info("xds snapshot published", "version", version, "node_key", p.key,
		"upstream", cfg.Upstream.BigQuery.URL, "wasm", cfg.Filter.WasmPath, "policy_version", policyVersion)
	return nil
}

// Status returns the publisher's current state.
func (p *Publisher) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

func buildSnapshot(version string, cfg *config.Config, bundle *policies.Bundle) (*cachev3.Snapshot, error) {
	rs, err := Translate(cfg, bundle)
	if err != nil {
		return nil, err
	}
	snap, err := cachev3.NewSnapshot(version, rs)
	if err != nil {
		return nil, fmt.Errorf("%w: snapshot: %v", ErrTranslate, err)
	}
	if err := snap.Consistent(); err != nil {
		return nil, fmt.Errorf("%w: snapshot inconsistent: %v", ErrTranslate, err)
	}
	// Consistent() does not follow ECDS references; a listener naming a filter config that
	// the snapshot lacks would warm forever.
	if err := checkExtensionRefs(rs); err != nil {
		return nil, err
	}
	return snap, nil
}

func checkExtensionRefs(rs Resources) error {
	have := map[string]bool{}
	for _, r := range rs[resourcev3.ExtensionConfigType] {
		have[r.(*corev3.TypedExtensionConfig).GetName()] = true
	}
	for _, r := range rs[resourcev3.ListenerType] {
		l := r.(*listenerv3.Listener)
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				hcm := &hcmv3.HttpConnectionManager{}
				if f.GetTypedConfig() == nil || f.GetTypedConfig().UnmarshalTo(hcm) != nil {
					continue
				}
				for _, hf := range hcm.GetHttpFilters() {
					if hf.GetConfigDiscovery() != nil && !have[hf.GetName()] {
						return fmt.Errorf("%w: listener %q: filter %q has no ECDS resource", ErrTranslate, l.GetName(), hf.GetName())
					}
				}
			}
		}
	}
	return nil
}

// Metrics are the xDS server's Prometheus metrics.
type Metrics struct {
	version      prometheus.Gauge
	translations *prometheus.CounterVec
	streams      prometheus.Gauge
	nacks        *prometheus.CounterVec
}

// NewMetrics registers the xDS metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		version: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "jitgate_xds_snapshot_version", Help: "Version of the snapshot served to Envoys (0 before the first).",
		}),
		translations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitgate_xds_translations_total", Help: "Config-to-xDS translations by result (ok, error).",
		}, []string{"result"}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "jitgate_xds_streams", Help: "Open xDS streams from Envoys.",
		}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitgate_xds_nacks_total", Help: "Resources Envoy rejected, by type URL.",
		}, []string{"type_url"}),
	}
	reg.MustRegister(m.version, m.translations, m.streams, m.nacks)
	m.translations.WithLabelValues("ok")
	m.translations.WithLabelValues("error")
	return m
}

func (m *Metrics) translated(result string) {
	if m != nil {
		m.translations.WithLabelValues(result).Inc()
	}
}

func (m *Metrics) setVersion(v uint64) {
	if m != nil {
		m.version.Set(float64(v))
	}
}
