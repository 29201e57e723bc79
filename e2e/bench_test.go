package e2e

import (
	"bytes"

	"io"
	"net/http"
	"sort"
	"testing"
	"time"

	"github.com/jitgate/jitgate/filter/authorize"
)

// Latency benchmarks against the real stack, side by side (`make bench`):
//   - Direct: the agent's jobs.query straight to the emulator (the baseline),
//   - Gateway: the same call through Envoy, the jitgate filter, the authorize callout
//     (token verification + credential mint) and the upstream swap,
//   - Authorize: jitgated's /v1/authorize alone, as the filter calls it.
// Each reports p50 and p99 besides ns/op; compare them as ratios, never as absolutes.

const benchQuery = `{"query":"SELECT id FROM ` + "`jitgate-demo.crm.customers`" + ` WHERE id = 1","useLegacySql":false}`

func benchCalls(b *testing.B, do func() (int, error)) {
	b.Helper()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		code, err := do()
		lat = append(lat, time.Since(start))
		if err != nil || code != 200 {
			b.Fatalf("call %d: status %d, %v", i, code, err)
		}
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[(len(lat)*99)/100].Microseconds()), "p99-µs")
}

var benchClient = &http.Client{Timeout: 30 * time.Second}

func post(url, authorization string, body []byte) (int, error) {
	req, err := http.NewRequest("POST", url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := benchClient.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// The direct baseline goes through the same recording tap as Envoy's upstream calls, so the
// difference is exactly Envoy, the filter and its callouts.
func BenchmarkQueryDirectToEmulator(b *testing.B) {
	url := gw.Tap.URL + "/bigquery/v2/projects/" + project + "/queries"
	benchCalls(b, func() (int, error) { return post(url, "", []byte(benchQuery)) })
}

func BenchmarkQueryThroughGateway(b *testing.B) {
	url := gw.Gateway + "/bigquery/v2/projects/" + project + "/queries"
	benchCalls(b, func() (int, error) { return post(url, "Bearer "+agentToken, []byte(benchQuery)) })
}

func BenchmarkAuthorizeRoundTrip(b *testing.B) {
	doc, err := authorize.Request{
		RequestID: "bench", Token: agentToken,
		Call:  authorize.Call{API: "jobs.query", Method: "POST", Project: project},
		Query: &authorize.Query{SQL: "SELECT 1"},
	}.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	url := gw.API + authorize.Path
	benchCalls(b, func() (int, error) { return post(url, "", doc) })
}
