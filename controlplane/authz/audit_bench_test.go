package authz_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http/httptest"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jitgate/jitgate/controlplane/audit"
	"github.com/jitgate/jitgate/controlplane/authz"
	"github.com/jitgate/jitgate/controlplane/identity"
	"github.com/jitgate/jitgate/controlplane/natsembed"
	"github.com/jitgate/jitgate/filter/authorize"
)

type fixedVerifier struct{}

func (fixedVerifier) Verify(context.Context, string) (identity.Identity, error) {
	return identity.Identity{AgentID: "etl-bot", Issuer: "https://issuer.test", Groups: []string{"analysts"}}, nil
}

// BenchmarkAuthorizeAudit measures what the audit append adds to one authorize call: the
// same Service (stub verifier and minter, so the pipeline itself costs microseconds) with
// no audit and with an audit writer on jitgated's embedded NATS (in-process connection,
// file storage), as jitgated runs it. Compare the p50/p99 of the two sub-benchmarks.
func BenchmarkAuthorizeAudit(b *testing.B) {
	for _, mode := range []string{"no-audit", "audit"} {
		b.Run(mode, func(b *testing.B) {
			var auditor authz.Auditor
			if mode == "audit" {
				n, err := natsembed.Start(context.Background(), natsembed.Options{StoreDir: b.TempDir(), MaxMemoryBytes: 16 << 20, MaxStoreBytes: 1 << 30})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(n.Close)
				w, err := audit.Open(context.Background(), n.JetStream, audit.Config{Name: "bench", Metrics: audit.NewMetrics(prometheus.NewRegistry()),
					Logger: slog.New(slog.DiscardHandler)})
				if err != nil {
					b.Fatal(err)
				}
				auditor = w
			}
			svc, err := authz.New(authz.Options{Verifier: fixedVerifier{}, Minter: mintCounter{&atomic.Int64{}}, CredentialTTL: time.Minute, IdentityOnly: true, // measures the allow path
				Logger: slog.New(slog.DiscardHandler), Audit: auditor})
			if err != nil {
				b.Fatal(err)
			}
			body, err := auditedRequest("token").Marshal()
			if err != nil {
				b.Fatal(err)
			}
			lat := make([]time.Duration, 0, 1024)
			b.ReportAllocs()
			for b.Loop() {
				rec := httptest.NewRecorder()
				start := time.Now()
				svc.ServeHTTP(rec, httptest.NewRequest("POST", authorize.Path, bytes.NewReader(body)))
				lat = append(lat, time.Since(start))
				if rec.Code != 200 || !bytes.Contains(rec.Body.Bytes(), []byte(`"decision":"allow"`)) {
					b.Fatalf("= %d %s", rec.Code, rec.Body)
				}
			}
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			if n := len(lat); n > 0 {
				b.ReportMetric(float64(lat[n/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(lat[n*99/100].Microseconds()), "p99-µs")
			}
		})
	}
}
