package sqlanalysis

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// TestEngineMemoryGrowth measures whether the engine leaks: Go heap and process RSS
// before and after N uncached analyses of distinct queries (go-googlesql's parser is
// known to leak per call). A measurement, not a check: it runs only with
// JITGATE_MEMORY_PROBE=N (e.g. 10000) and logs the numbers.
func TestEngineMemoryGrowth(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("JITGATE_MEMORY_PROBE"))
	if n <= 0 {
		t.Skip("set JITGATE_MEMORY_PROBE=10000 to measure")
	}
	a, err := New(Options{Catalog: featureSource(), CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	run := func(from, to int) {
		for i := from; i < to; i++ {
			sql := fmt.Sprintf("WITH x AS (SELECT s.id, p.url FROM web.sessions s JOIN web.pageviews p ON p.day = DATE '2026-01-01' WHERE s.id > %d) SELECT UPPER(url) AS u, COUNT(*) AS n FROM x GROUP BY u", i)
			if _, err := a.Analyze(ctx, Input{SQL: sql, DefaultProject: "acme"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	run(0, 100) // warm up
	base := sample()
	t.Logf("after warm-up: %s", base)
	step := max(n/5, 1)
	for done := 100; done < n+100; done += step {
		run(done, done+step)
		t.Logf("after %6d analyses: %s", done+step-100, sample())
	}
}

type memSample struct{ heapInuse, heapSys, rss uint64 }

func (m memSample) String() string {
	return fmt.Sprintf("heap in use %.1f MB, heap sys %.1f MB, RSS %.1f MB", float64(m.heapInuse)/1e6, float64(m.heapSys)/1e6, float64(m.rss)/1e6)
}

func sample() memSample {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memSample{heapInuse: ms.HeapInuse, heapSys: ms.HeapSys, rss: rss()}
}

func rss() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			return kb * 1000
		}
	}
	return 0
}
