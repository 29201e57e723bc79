package sqlanalysis

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// A memory fault inside the engine (a wild pointer in the transpiled C++) must refuse the
// query, not kill the control plane. The fault is made in a catalog callback, which runs
// on the analysing goroutine in the middle of an engine call, by reading a page that was
// unmapped; without the guard the runtime dies with "fatal error: fault", so the case runs
// in a child process.
func TestEngineFaultRefusesTheQuery(t *testing.T) {
	if os.Getenv(lifetimeChildEnv) != "" {
		t.Skip("in the child")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestEngineFaultChild$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), lifetimeChildEnv+"=fault")
	out, err := cmd.CombinedOutput()
	if text := string(out); err != nil || !strings.Contains(text, "fault: ok") {
		t.Fatalf("child failed (%v):\n%s", err, tail(text, 80))
	}
}

// faultSink keeps the faulting read from being optimised away.
var faultSink byte

// TestEngineFaultChild is run by TestEngineFaultRefusesTheQuery.
func TestEngineFaultChild(t *testing.T) {
	if os.Getenv(lifetimeChildEnv) != "fault" {
		t.Skip("run by TestEngineFaultRefusesTheQuery")
	}
	src := &fakeSource{tables: map[string]*TableMeta{"acme.crm.t": {Project: "acme", Dataset: "crm", Table: "t", Type: "TABLE",
		Columns: []Column{{Name: "id", Type: "INT64"}}}}}
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	a, err := New(Options{Catalog: src, Metrics: m, CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	page, err := syscall.Mmap(-1, 0, 4096, syscall.PROT_READ, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Munmap(page); err != nil {
		t.Fatal(err)
	}
	faulted := false
	catalogCallbackHook = func() {
		if !faulted {
			faulted = true
			faultSink = page[0] // unmapped: SIGSEGV at a non-nil address
		}
	}
	t.Cleanup(func() { catalogCallbackHook = nil })
	ctx := context.Background()
	_, err = a.Analyze(ctx, Input{SQL: "SELECT id FROM crm.t", DefaultProject: "acme"})
	if !faulted || !errors.Is(err, ErrUnanalysable) || !strings.Contains(err.Error(), "invalid memory address") {
		t.Fatalf("faulted=%v, err = %v; want the query refused as unanalysable", faulted, err)
	}
	if got := counterValue(t, reg, "jitgate_sql_engine_failures_total"); got != 1 {
		t.Errorf("jitgate_sql_engine_failures_total = %v, want 1", got)
	}
	// The engine still works.
	res, err := a.Analyze(ctx, Input{SQL: "SELECT id FROM crm.t ", DefaultProject: "acme"})
	if err != nil || len(res.ReferencedTables) != 1 {
		t.Fatalf("after the fault: %v %v", res, err)
	}
	os.Stdout.WriteString("fault: ok\n")
}

func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no counter %s", name)
	return 0
}
