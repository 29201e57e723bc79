// Package policystore holds the control plane's live policy bundle: it loads a policy
// directory with policies/source, watches it (polling file names, sizes and modification
// times every PollInterval) and reloads it on demand (jitgated forwards SIGHUP to Reload).
// An invalid change never replaces the live bundle: every error is logged with
// file:line:column, and the failure shows in Status (/v1/status "policies") and in the
// metrics until a good version is loaded. Subscribers are told about every new good
// bundle (the xDS publisher pushes its version to every Envoy).
package policystore

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jitgate/jitgate/policies"
	"github.com/jitgate/jitgate/policies/source"
)

// PollInterval is how often Watch looks at the directory by default.
const PollInterval = 200 * time.Millisecond

// settleDelay: after a change is seen, the directory must look the same this much later
// before it is loaded, so an editor's multi-step save is read once, complete.
const settleDelay = 30 * time.Millisecond

// maxStatusErrors bounds Status.LastErrors.
const maxStatusErrors = 50

// Snapshot is one good, compiled policy directory.
type Snapshot struct {
	Bundle *policies.Bundle
	// Sources says where each document is defined ("AgentPolicy/name" → file:line:col).
	Sources map[string]source.Position
	// LoadedAt is when this bundle was loaded (first loaded, for an unchanged reload).
	LoadedAt time.Time
}

// Status is the "policies" part of /v1/status.
type Status struct {
	// Enforcing is true when a policy directory is configured: every authorize call is
	// decided by the live bundle. False means identity-only (no policies are loaded).
	Enforcing bool `json:"enforcing"`
	// Dir is the policy directory; empty when none is configured.
	Dir string `json:"dir"`
	// Version is the live bundle's version ("sha256:...").
	Version string `json:"version,omitempty"`
	// LoadedAt is when the live bundle was loaded.
	LoadedAt time.Time `json:"loadedAt,omitzero"`
	// Policies are the live bundle's policies, "name@version", sorted by name.
	Policies []string `json:"policies"`
	// LastError is the most recent failed reload, one line ("file:line:col: message (hint)",
	// and how many more errors there were); cleared by the next good reload.
	LastError string `json:"lastError,omitempty"`
	// LastErrors are all errors of that reload (at most 50).
	LastErrors []string `json:"lastErrors,omitempty"`
	// LastErrorAt is when LastError happened.
	LastErrorAt time.Time `json:"lastErrorAt,omitzero"`
	// Reloads and Failures count reloads since start (Failures: the failed ones).
	Reloads  uint64 `json:"reloads"`
	Failures uint64 `json:"failures"`
}

// Options configure a Store.
type Options struct {
	// Logger receives reload results and every error. Default slog.Default().
	Logger *slog.Logger
	// Metrics records reloads; nil records nothing.
	Metrics *Metrics
	// PollInterval for Watch; default PollInterval.
	PollInterval time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// TrustedIssuers are the OIDC issuers jitgated trusts: with more than one, a directory
	// whose policies or approver groups do not name their issuers does not load
	// (policies.CheckIssuers).
	TrustedIssuers []string
}

// Store holds the live bundle of one policy directory. Safe for concurrent use.
type Store struct {
	dir     string
	log     *slog.Logger
	metrics *Metrics
	poll    time.Duration
	now     func() time.Time
	load    source.Options

	live atomic.Pointer[Snapshot]

	reloadMu sync.Mutex // serializes reloads, so subscribers see versions in order
	mu       sync.Mutex
	status   Status
	subs     []func(*Snapshot)
	stamp    uint64 // directory fingerprint of the last reload
}

// Open loads dir and returns a Store serving it. A directory that does not load is an
// error (an ErrorList from policies/source, every entry with file:line:col): jitgated
// refuses to start on it rather than serve without policies.
func Open(dir string, o Options) (*Store, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.PollInterval <= 0 {
		o.PollInterval = PollInterval
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("policies: %w", err)
	}
	s := &Store{dir: abs, log: o.Logger, metrics: o.Metrics, poll: o.PollInterval, now: o.Now,
		load: source.Options{TrustedIssuers: append([]string(nil), o.TrustedIssuers...)}}
	s.status = Status{Enforcing: true, Dir: abs, Policies: []string{}}
	stamp, _ := fingerprint(abs)
	res, err := source.LoadWith(abs, s.load)
	if err != nil {
		return nil, err
	}
	s.stamp = stamp
	s.install(res)
	s.metrics.reloaded("ok", s.now())
	s.log.Info("policies loaded", "dir", abs, "version", res.Bundle.Version, "policies", policyRefs(res.Bundle))
	return s, nil
}

// Dir is the watched directory (absolute).
func (s *Store) Dir() string { return s.dir }

// Current returns the live snapshot; never nil for a Store made by Open.
func (s *Store) Current() *Snapshot { return s.live.Load() }

// Bundle returns the live bundle.
func (s *Store) Bundle() *policies.Bundle {
	if snap := s.live.Load(); snap != nil {
		return snap.Bundle
	}
	return nil
}

// Subscribe calls fn with the live snapshot now and with every new good bundle after,
// in order, from the goroutine that reloaded. fn must not block for long.
func (s *Store) Subscribe(fn func(*Snapshot)) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	s.mu.Lock()
	s.subs = append(s.subs, fn)
	s.mu.Unlock()
	fn(s.live.Load())
}

// Status returns the store's state for /v1/status.
func (s *Store) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status
	st.Policies = append([]string{}, s.status.Policies...)
	st.LastErrors = append([]string(nil), s.status.LastErrors...)
	return st
}

// Reload reads the directory again. A good directory with a new bundle version becomes
// live and subscribers are told; the same version only refreshes the status; a bad one
// keeps the live bundle and is reported (log, Status, metrics). It returns the load
// error, if any.
func (s *Store) Reload(reason string) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	stamp, _ := fingerprint(s.dir)
	s.mu.Lock()
	s.stamp = stamp
	s.mu.Unlock()
	start := s.now()
	res, err := source.LoadWith(s.dir, s.load)
	if err != nil {
		s.fail(reason, err)
		return err
	}
	old := s.live.Load()
	if old != nil && old.Bundle.Version == res.Bundle.Version {
		s.mu.Lock()
		s.status.LastError, s.status.LastErrors, s.status.LastErrorAt = "", nil, time.Time{}
		s.status.Reloads++
		s.mu.Unlock()
		s.metrics.reloaded("ok", s.now())
		s.log.Info("policies reloaded, unchanged", "reason", reason, "dir", s.dir, "version", res.Bundle.Version)
		return nil
	}
	snap := s.install(res)
	s.mu.Lock()
	s.status.Reloads++
	subs := append([]func(*Snapshot){}, s.subs...)
	s.mu.Unlock()
	s.metrics.reloaded("ok", s.now())
	oldVersion := ""
	if old != nil {
		oldVersion = old.Bundle.Version
	}
	s.log.Info("policies reloaded", "reason", reason, "dir", s.dir, "version", res.Bundle.Version,
		"previous_version", oldVersion, "policies", policyRefs(res.Bundle),
		"load_ms", float64(s.now().Sub(start).Microseconds())/1000)
	for _, fn := range subs {
		fn(snap)
	}
	return nil
}

// install makes res live and updates the status.
func (s *Store) install(res *source.Result) *Snapshot {
	snap := &Snapshot{Bundle: res.Bundle, Sources: res.Sources, LoadedAt: s.now()}
	s.live.Store(snap)
	s.metrics.setVersion(res.Bundle.Version)
	s.mu.Lock()
	s.status.Version = res.Bundle.Version
	s.status.LoadedAt = snap.LoadedAt
	s.status.Policies = policyRefs(res.Bundle)
	s.status.LastError, s.status.LastErrors, s.status.LastErrorAt = "", nil, time.Time{}
	s.mu.Unlock()
	return snap
}

// fail reports a reload that did not load; the live bundle stays.
func (s *Store) fail(reason string, err error) {
	var lines []string
	var list source.ErrorList
	if errors.As(err, &list) {
		for _, e := range list {
			lines = append(lines, e.Error())
		}
	} else {
		lines = []string{err.Error()}
	}
	live := ""
	if snap := s.live.Load(); snap != nil {
		live = snap.Bundle.Version
	}
	for _, l := range lines {
		s.log.Error("policy error", "error", l, "dir", s.dir)
	}
	s.log.Error("policy reload failed; the last good policies stay live", "reason", reason, "dir", s.dir,
		"errors", len(lines), "live_version", live)
	first := lines[0]
	if len(lines) > 1 {
		first += fmt.Sprintf(" (and %d more)", len(lines)-1)
	}
	if len(lines) > maxStatusErrors {
		lines = lines[:maxStatusErrors]
	}
	s.mu.Lock()
	s.status.LastError, s.status.LastErrors, s.status.LastErrorAt = first, lines, s.now()
	s.status.Reloads++
	s.status.Failures++
	s.mu.Unlock()
	s.metrics.reloaded("error", time.Time{})
}

// Watch polls the directory until ctx ends and reloads when a policy file appears,
// disappears or changes size or modification time.
func (s *Store) Watch(ctx context.Context) {
	t := time.NewTicker(s.poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		stamp, _ := fingerprint(s.dir)
		s.mu.Lock()
		changed := stamp != s.stamp
		s.mu.Unlock()
		if !changed {
			continue
		}
		// Let a multi-step save finish: load once the directory holds still.
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(settleDelay):
			}
			again, _ := fingerprint(s.dir)
			if again == stamp {
				break
			}
			stamp = again
		}
		_ = s.Reload("file change")
	}
}

// fingerprint hashes the names, sizes and modification times of the files source.Load
// reads. A directory that cannot be read hashes to its error, so it changing back is
// noticed too.
func fingerprint(dir string) (uint64, error) {
	h := fnv.New64a()
	entries, err := os.ReadDir(dir)
	if err != nil {
		fmt.Fprintf(h, "error:%v", err)
		return h.Sum64(), err
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		if e.IsDir() || (ext != ".yaml" && ext != ".yml") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		names = append(names, e.Name())
	}
	sort.Strings(names)
	for _, n := range names {
		// Stat follows symlinks (ConfigMap mounts swap a ..data link).
		fi, err := os.Stat(filepath.Join(dir, n))
		if err != nil {
			fmt.Fprintf(h, "%s\x00error\x00", n)
			continue
		}
		fmt.Fprintf(h, "%s\x00%d\x00%d\x00", n, fi.Size(), fi.ModTime().UnixNano())
	}
	return h.Sum64(), nil
}

// policyRefs lists a bundle's policies as name@version.
func policyRefs(b *policies.Bundle) []string {
	out := make([]string, 0, len(b.Policies))
	for _, p := range b.Policies {
		out = append(out, p.Name+"@"+p.Version)
	}
	return out
}

// DisabledStatus is the status when no policy directory is configured.
func DisabledStatus() Status { return Status{Policies: []string{}} }

// Metrics are the policy store's Prometheus metrics.
type Metrics struct {
	info        *prometheus.GaugeVec
	reloads     *prometheus.CounterVec
	lastSuccess prometheus.Gauge
	failing     prometheus.Gauge
}

// NewMetrics registers the policy metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "jitgate_policy_bundle_info",
			Help: "The live policy bundle: 1 for its version, absent when no policies are loaded.",
		}, []string{"version"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitgate_policy_reload_total",
			Help: "Policy directory loads by result (ok, error); an error keeps the last good bundle live.",
		}, []string{"result"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "jitgate_policy_last_reload_success_timestamp_seconds",
			Help: "When the policy directory last loaded successfully (Unix seconds).",
		}),
		failing: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "jitgate_policy_reload_failing",
			Help: "1 while the policy directory on disk does not load (the last good bundle is live), else 0.",
		}),
	}
	reg.MustRegister(m.info, m.reloads, m.lastSuccess, m.failing)
	m.reloads.WithLabelValues("ok")
	m.reloads.WithLabelValues("error")
	return m
}

func (m *Metrics) reloaded(result string, at time.Time) {
	if m == nil {
		return
	}
	m.reloads.WithLabelValues(result).Inc()
	if result == "ok" {
		m.lastSuccess.Set(float64(at.UnixNano()) / 1e9)
		m.failing.Set(0)
		return
	}
	m.failing.Set(1)
}

func (m *Metrics) setVersion(v string) {
	if m == nil {
		return
	}
	m.info.Reset()
	m.info.WithLabelValues(v).Set(1)
}
