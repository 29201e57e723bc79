package sqlanalysis

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jitgate/jitgate/e2e/sqlcorpus"
	"github.com/jitgate/jitgate/filter/authorize"
)

// The engine stress test: the SQL corpus analysed over and over by several goroutines
// while the garbage collector runs all the time (GOGC=1 and runtime.GC() in a loop), so
// that every go-googlesql finalizer runs as early as it can. A use-after-free or a
// double free of an engine object then shows up as a fault within seconds instead of
// once in a few e2e runs under load. The analyses run in a child process (the test
// binary re-executed on TestEngineStressChild) so that a fault is observed and reported
// here rather than killing the test binary.
//
// Bounded in `make unit` (a few seconds); `make stress` runs it longer
// (JITGATE_STRESS=duration, e.g. 2m).

const stressChildEnv = "JITGATE_STRESS_CHILD"

func TestEngineStress(t *testing.T) {
	if os.Getenv(stressChildEnv) != "" {
		t.Skip("in the child")
	}
	dur := 4 * time.Second
	if s := os.Getenv("JITGATE_STRESS"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("JITGATE_STRESS=%q: %v", s, err)
		}
		dur = d
	} else if testing.Short() {
		t.Skip("-short")
	}
	workers := 3
	if s := os.Getenv("JITGATE_STRESS_WORKERS"); s != "" {
		workers, _ = strconv.Atoi(s)
	}
	emulatorSource(t) // skip here, not in the child, when the emulator is absent
	cmd := exec.Command(os.Args[0], "-test.run=^TestEngineStressChild$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), stressChildEnv+"=1",
		"JITGATE_STRESS_DURATION="+dur.String(), "JITGATE_STRESS_WORKERS="+strconv.Itoa(workers),
		"GOTRACEBACK=crash")
	start := time.Now()
	out, err := cmd.CombinedOutput()
	text := string(out)
	iters := ""
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, "stress:") {
			iters = strings.TrimSpace(l)
		}
	}
	t.Logf("child ran %v: %s", time.Since(start).Round(time.Millisecond), iters)
	if err != nil || strings.Contains(text, "fatal error") || strings.Contains(text, "SIGSEGV") || !strings.Contains(text, "stress: done") {
		t.Fatalf("engine stress child failed (%v):\n%s", err, tail(text, 120))
	}
}

func tail(s string, lines int) string {
	ls := strings.Split(s, "\n")
	if len(ls) > lines {
		// The first lines of a Go crash (the fault and the faulting goroutine) matter most.
		for i, l := range ls {
			if strings.HasPrefix(l, "unexpected fault") || strings.HasPrefix(l, "fatal error") || strings.HasPrefix(l, "panic:") {
				end := min(len(ls), i+lines)
				return strings.Join(ls[i:end], "\n")
			}
		}
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// TestEngineStressChild is the child of TestEngineStress; it runs only there.
func TestEngineStressChild(t *testing.T) {
	if os.Getenv(stressChildEnv) == "" {
		t.Skip("run by TestEngineStress")
	}
	dur, err := time.ParseDuration(os.Getenv("JITGATE_STRESS_DURATION"))
	if err != nil {
		t.Fatal(err)
	}
	workers, _ := strconv.Atoi(os.Getenv("JITGATE_STRESS_WORKERS"))
	workers = max(workers, 1)
	cases, err := sqlcorpus.Load()
	if err != nil {
		t.Fatal(err)
	}
	corpusAnalyzer(t, UpstreamOptions{}) // seeds the emulator
	var reqs []authorize.Request
	for _, c := range cases {
		if c.UseLegacySQL == "" || c.UseLegacySQL == "false" {
			reqs = append(reqs, corpusRequest(t, c))
		}
	}
	ctx := context.Background()
	gcPressure := os.Getenv("JITGATE_STRESS_GC") != "0"
	if gcPressure {
		old := debug.SetGCPercent(1)
		defer debug.SetGCPercent(old)
	}
	stop := make(chan struct{})
	var gcs atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for gcPressure {
			select {
			case <-stop:
				return
			default:
			}
			runtime.GC()
			gcs.Add(1)
			time.Sleep(time.Millisecond)
		}
	})
	// Every pass starts cold: a new analyser over a new table-metadata cache (new
	// *TableMeta, so the engine builds new tables and drops the old ones) and, when
	// JITGATE_STRESS_RESET is set, engine caches emptied (tables, ML functions and models
	// built again, the old ones left to their finalizers).
	fresh := func() *PolicyAnalyzer {
		pa, err := NewForUpstream(ctx, emu.url, "", UpstreamOptions{CacheSize: -1})
		if err != nil {
			t.Error(err)
			return nil
		}
		if os.Getenv("JITGATE_STRESS_RESET") != "" {
			e := pa.analyzer.e
			e.mu.Lock()
			e.tables, e.tvfs, e.models = map[string]cachedTable{}, nil, nil
			e.mu.Unlock()
		}
		return pa
	}
	var passes atomic.Int64
	var analyses atomic.Int64
	deadline := time.Now().Add(dur)
	for w := 0; w < workers; w++ {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				pa := fresh()
				if pa == nil {
					return
				}
				for i := range reqs {
					if !time.Now().Before(deadline) {
						break
					}
					_, _ = pa.AnalyzeRequest(ctx, reqs[(i+w*7)%len(reqs)])
					n := analyses.Add(1)
					if n%500 == 0 {
						fmt.Printf("stress: %d analyses, %d passes, %d forced GCs\n", n, passes.Load(), gcs.Load())
					}
				}
				passes.Add(1)
				_ = pa.Close()
			}
		})
	}
	time.Sleep(time.Until(deadline))
	close(stop)
	wg.Wait()
	fmt.Printf("stress: done: %d analyses in %d passes (%d corpus queries, %d workers), %d forced GCs in %v\n", analyses.Load(), passes.Load(), len(reqs), workers, gcs.Load(), dur)
}
