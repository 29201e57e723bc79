package audit

import (
	"context"
	"sort"
	"testing"
	"time"
)

// BenchmarkAppend measures one writer appending sequentially (the latency an authorize
// call pays) and from many goroutines (the writer's throughput; appends are serialised by
// the chain). The server is in-process with a loopback client connection and file storage.
func BenchmarkAppend(b *testing.B) {
	for _, mode := range []string{"sequential", "parallel"} {
		b.Run(mode, func(b *testing.B) {
			e := newEnv(b, Config{Timeout: 5 * time.Second})
			rec := testRecord(1, "alice")
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			if mode == "sequential" {
				lat := make([]time.Duration, 0, b.N)
				for b.Loop() {
					start := time.Now()
					if _, err := e.w.Append(ctx, rec); err != nil {
						b.Fatal(err)
					}
					lat = append(lat, time.Since(start))
				}
				b.StopTimer()
				sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
				if n := len(lat); n > 0 {
					b.ReportMetric(float64(lat[n/2].Microseconds()), "p50-µs")
					b.ReportMetric(float64(lat[n*99/100].Microseconds()), "p99-µs")
				}
			} else {
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := e.w.Append(ctx, rec); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
