package policystore

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func policy(name, project string) string {
	return `apiVersion: jitgate.dev/v1
kind: AgentPolicy
metadata:
  name: ` + name + `
spec:
  who:
    agents: [etl-bot]
  where:
    projects: [` + project + `]
    apis: [datasets.list]
`
}

// badPolicy has an unknown field at line 9, column 5.
const badPolicy = `apiVersion: jitgate.dev/v1
kind: AgentPolicy
metadata:
  name: broken
spec:
  who:
    agents: [etl-bot]
  where:
    tabels: [acme.crm.t]
`

func write(t *testing.T, dir, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func open(t *testing.T, dir string, poll time.Duration) (*Store, *prometheus.Registry, *syncBuffer) {
	t.Helper()
	reg := prometheus.NewRegistry()
	logs := &syncBuffer{}
	s, err := Open(dir, Options{Logger: slog.New(slog.NewTextHandler(logs, nil)), Metrics: NewMetrics(reg), PollInterval: poll})
	if err != nil {
		t.Fatal(err)
	}
	return s, reg, logs
}

func TestOpenRefusesAnInvalidDirectory(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "a.yaml", badPolicy)
	_, err := Open(dir, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err == nil || !strings.Contains(err.Error(), "a.yaml:9:5: unknown field \"tabels\"") {
		t.Fatalf("Open = %v, want the error with file:line:col", err)
	}
	if _, err := Open(filepath.Join(dir, "missing"), Options{}); err == nil {
		t.Error("Open of a missing directory succeeded")
	}
}

// TestReloadKeepsLastGood: good → bad (the good bundle stays live, the error with
// file:line:col in status, log and metrics) → fixed (a new version, error cleared,
// subscribers told).
func TestReloadKeepsLastGood(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "a.yaml", policy("a", "acme"))
	s, reg, logs := open(t, dir, time.Hour)
	v1 := s.Bundle().Version
	var got []string
	s.Subscribe(func(snap *Snapshot) { got = append(got, snap.Bundle.Version) })
	if st := s.Status(); !st.Enforcing || st.Version != v1 || len(st.Policies) != 1 || !strings.HasPrefix(st.Policies[0], "a@sha256:") || st.LastError != "" {
		t.Fatalf("status = %+v", st)
	}

	write(t, dir, "b.yaml", badPolicy)
	if err := s.Reload("SIGHUP"); err == nil {
		t.Fatal("Reload of a bad directory succeeded")
	}
	st := s.Status()
	if s.Bundle().Version != v1 || st.Version != v1 {
		t.Errorf("live version %s / status %s, want the last good %s", s.Bundle().Version, st.Version, v1)
	}
	wantErr := filepath.Join(dir, "b.yaml") + `:9:5: unknown field "tabels" in where (did you mean "tables"?)`
	if st.LastError != wantErr || len(st.LastErrors) != 1 || st.LastErrorAt.IsZero() || st.Failures != 1 {
		t.Errorf("status after bad reload = %+v\nwant lastError %q", st, wantErr)
	}
	if !strings.Contains(logs.String(), "b.yaml:9:5: unknown field") || !strings.Contains(logs.String(), "last good policies stay live") {
		t.Errorf("log lacks the positioned error:\n%s", logs.String())
	}
	expectMetrics(t, reg, `
jitgate_policy_reload_total{result="error"} 1
jitgate_policy_reload_total{result="ok"} 1
`, "jitgate_policy_reload_total")
	expectMetrics(t, reg, "jitgate_policy_reload_failing 1\n", "jitgate_policy_reload_failing")
	expectMetrics(t, reg, `jitgate_policy_bundle_info{version="`+v1+`"} 1`+"\n", "jitgate_policy_bundle_info")

	write(t, dir, "b.yaml", policy("b", "acme"))
	if err := s.Reload("SIGHUP"); err != nil {
		t.Fatal(err)
	}
	st = s.Status()
	v2 := s.Bundle().Version
	if v2 == v1 || st.Version != v2 || st.LastError != "" || len(st.Policies) != 2 {
		t.Errorf("status after fix = %+v", st)
	}
	if len(got) != 2 || got[0] != v1 || got[1] != v2 {
		t.Errorf("subscriber saw %v, want [%s %s]", got, v1, v2)
	}
	expectMetrics(t, reg, `jitgate_policy_bundle_info{version="`+v2+`"} 1`+"\n", "jitgate_policy_bundle_info")
	expectMetrics(t, reg, "jitgate_policy_reload_failing 0\n", "jitgate_policy_reload_failing")
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "jitgate_policy_last_reload_success_timestamp_seconds" {
			if ts := mf.GetMetric()[0].GetGauge().GetValue(); time.Since(time.Unix(int64(ts), 0)) > time.Minute {
				t.Errorf("last success timestamp %v", ts)
			}
		}
	}

	// The same content again: no new version, no notification.
	if err := s.Reload("SIGHUP"); err != nil || len(got) != 2 {
		t.Errorf("unchanged reload: %v, notifications %v", err, got)
	}
}

// expectMetrics checks that every "name{label=\"v\"} value" line of want is gathered
// from reg (names lists the families to look at; other series are ignored).
func expectMetrics(t *testing.T, reg *prometheus.Registry, want string, names ...string) {
	t.Helper()
	got := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			if len(m.GetLabel()) > 0 {
				var ls []string
				for _, l := range m.GetLabel() {
					ls = append(ls, l.GetName()+"=\""+l.GetValue()+"\"")
				}
				key += "{" + strings.Join(ls, ",") + "}"
			}
			switch {
			case m.GetGauge() != nil:
				got[key] = m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				got[key] = m.GetCounter().GetValue()
			}
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(want), "\n") {
		i := strings.LastIndex(line, " ")
		key, val := line[:i], line[i+1:]
		if v, ok := got[key]; !ok || strconv.FormatFloat(v, 'g', -1, 64) != val {
			t.Errorf("metric %s = %v (present %v), want %s", key, v, ok, val)
		}
	}
	for _, n := range names {
		if n == "jitgate_policy_bundle_info" {
			count := 0
			for k := range got {
				if strings.HasPrefix(k, n+"{") {
					count++
				}
			}
			if count != 1 {
				t.Errorf("%d %s series, want exactly 1", count, n)
			}
		}
	}
}

// TestWatchPicksUpAWriteQuickly: a saved change goes live by itself, and an invalid save
// is reported without replacing the live bundle. The time it takes is logged, not
// asserted (timings are measured by the e2e propagation run, never asserted in tests).
func TestWatchPicksUpAWriteQuickly(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "a.yaml", policy("a", "acme"))
	s, _, _ := open(t, dir, PollInterval)
	changed := make(chan string, 4)
	s.Subscribe(func(snap *Snapshot) { changed <- snap.Bundle.Version })
	<-changed
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go s.Watch(ctx)

	var worst time.Duration
	for i, project := range []string{"acme-two", "acme-three", "acme-four"} {
		start := time.Now()
		write(t, dir, "a.yaml", policy("a", project))
		select {
		case v := <-changed:
			d := time.Since(start)
			worst = max(worst, d)
			if v != s.Bundle().Version {
				t.Errorf("notified %s, live %s", v, s.Bundle().Version)
			}
			t.Logf("edit %d live after %s", i+1, d)
		case <-time.After(10 * time.Second):
			t.Fatalf("edit %d not picked up at all (waited 10s)", i+1)
		}
	}
	t.Logf("slowest of 3 reloads: %s", worst)

	live := s.Bundle().Version
	write(t, dir, "b.yaml", badPolicy)
	deadline := time.Now().Add(10 * time.Second)
	for s.Status().LastError == "" {
		if time.Now().After(deadline) {
			t.Fatal("invalid write not reported (waited 10s)")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if s.Bundle().Version != live {
		t.Error("an invalid write replaced the live bundle")
	}
	if err := os.Remove(filepath.Join(dir, "b.yaml")); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for s.Status().LastError != "" {
		if time.Now().After(deadline) {
			t.Fatal("removing the bad file did not clear the error (waited 10s)")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
