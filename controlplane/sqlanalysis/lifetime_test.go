package sqlanalysis

import (
	"context"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Engine objects the analyser hands to GoogleSQL (tables, models, ML functions) must stay
// alive for as long as the analysis that asked for them: the engine only borrows them.
// Each case runs in a child process (a use-after-free faults the process) with a garbage
// collection forced inside every catalog callback, when go-googlesql finalizers can run
// while the analysis is suspended.

const lifetimeChildEnv = "JITGATE_LIFETIME_CHILD"

func TestEngineObjectsOutliveTheirAnalysis(t *testing.T) {
	if os.Getenv(lifetimeChildEnv) != "" {
		t.Skip("in the child")
	}
	for _, name := range []string{"InformationSchemaTwice", "CacheResetMidAnalysis"} {
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestEngineLifetimeChild$", "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), lifetimeChildEnv+"="+name)
			out, err := cmd.CombinedOutput()
			text := string(out)
			if err != nil || !strings.Contains(text, "lifetime: ok") {
				t.Fatalf("child %s failed (%v):\n%s", name, err, tail(text, 80))
			}
		})
	}
}

// gcInCallbacks makes every FindTable callback collect garbage and give the finalizer
// goroutine time to run.
func gcInCallbacks(t *testing.T) {
	catalogCallbackHook = func() {
		runtime.GC()
		runtime.GC()
		time.Sleep(2 * time.Millisecond)
	}
	t.Cleanup(func() { catalogCallbackHook = nil })
}

// TestEngineLifetimeChild is run by TestEngineObjectsOutliveTheirAnalysis.
func TestEngineLifetimeChild(t *testing.T) {
	name := os.Getenv(lifetimeChildEnv)
	if name == "" {
		t.Skip("run by TestEngineObjectsOutliveTheirAnalysis")
	}
	ctx := context.Background()
	switch name {
	case "InformationSchemaTwice":
		// Every INFORMATION_SCHEMA.JOBS reference resolves to a table; a statement naming
		// it several times must not lose the first ones while it is analysed.
		a := newAnalyzer(t, &fakeSource{})
		gcInCallbacks(t)
		sql := "SELECT a.job_id, b.user_email, c.query FROM `region-us`.INFORMATION_SCHEMA.JOBS a " +
			"JOIN `region-us`.INFORMATION_SCHEMA.JOBS b USING (job_id) JOIN `region-us`.INFORMATION_SCHEMA.JOBS c USING (job_id) " +
			"JOIN `region-us`.INFORMATION_SCHEMA.JOBS d USING (job_id)"
		for i := 0; i < 30; i++ {
			res, err := a.Analyze(ctx, Input{SQL: sql + strings.Repeat(" ", i), DefaultProject: "acme"})
			if err != nil {
				t.Fatalf("round %d: %v", i, err)
			}
			if len(res.Lineage) != 3 {
				t.Fatalf("round %d: lineage %v", i, res.Lineage)
			}
		}
	case "CacheResetMidAnalysis":
		// The engine's table cache is bounded; emptying it in the middle of an analysis
		// must not free the tables that analysis already resolved.
		old := maxCachedTables
		maxCachedTables = 2
		t.Cleanup(func() { maxCachedTables = old })
		src := &fakeSource{tables: map[string]*TableMeta{}}
		var parts []string
		for _, n := range []string{"t1", "t2", "t3", "t4", "t5", "t6"} {
			src.tables["acme.crm."+n] = &TableMeta{Project: "acme", Dataset: "crm", Table: n, Type: "TABLE",
				Columns: []Column{{Name: "id", Type: "INT64"}, {Name: n + "_v", Type: "STRING"}}}
			parts = append(parts, n)
		}
		sql := "SELECT t1.t1_v, t6.t6_v FROM crm.t1 JOIN crm.t2 USING (id) JOIN crm.t3 USING (id) JOIN crm.t4 USING (id) JOIN crm.t5 USING (id) JOIN crm.t6 USING (id)"
		a := newAnalyzer(t, src)
		gcInCallbacks(t)
		for i := 0; i < 30; i++ {
			res, err := a.Analyze(ctx, Input{SQL: sql + strings.Repeat(" ", i), DefaultProject: "acme"})
			if err != nil {
				t.Fatalf("round %d: %v", i, err)
			}
			if len(res.ReferencedTables) != len(parts) {
				t.Fatalf("round %d: referenced %v", i, res.ReferencedTables)
			}
			if got := res.Lineage[0].Sources; len(got) != 1 || got[0].Table != "acme.crm.t1" || got[0].Column != "t1_v" {
				t.Fatalf("round %d: lineage of the first column %+v", i, res.Lineage[0])
			}
		}
	default:
		t.Fatalf("unknown case %q", name)
	}
	os.Stdout.WriteString("lifetime: ok\n")
}
