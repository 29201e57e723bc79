package e2e

import (
	"bytes"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jitgate/jitgate/filter/authorize"
)

// Latency benchmarks against the real stack, side by side (`make bench`):
//   - QueryGatewayVsDirect: the agent's jobs.query straight to the emulator (the
//     baseline) and the same call through Envoy, the jitgate filter, the authorize callout
//     (token verification, policy, credential mint, audit) and the response report, alternated
//     call by call;
//   - Authorize: jitgated's /v1/authorize alone, as the filter calls it.
// They report p50 and p99; compare them as ratios, never as absolutes.
//
// The emulator gets slower with every job it keeps (measured: 41, 83 then 276 ms p50 for
// three consecutive runs of 100 direct calls), so a baseline run before or after the
// gateway run is not comparable: the two paths must alternate, as they do here.

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
	return postWith(benchClient, url, authorization, body)
}

func postWith(c *http.Client, url, authorization string, body []byte) (int, error) {
	req, err := http.NewRequest("POST", url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// BenchmarkQueryGatewayVsDirect alternates the direct call (through the same recording
// tap as Envoy's upstream calls, so the difference is exactly Envoy, the filter and its
// callouts) and the gateway call, and reports both distributions, the ratio of their
// medians and the median of the per-pair difference.
func BenchmarkQueryGatewayVsDirect(b *testing.B) {
	direct := gw.Tap.URL + "/bigquery/v2/projects/" + project + "/queries"
	gateway := gw.Gateway + "/bigquery/v2/projects/" + project + "/queries"
	var d, g, diff []time.Duration
	timed := func(url, auth string) time.Duration {
		start := time.Now()
		code, err := post(url, auth, []byte(benchQuery))
		if err != nil || code != 200 {
			b.Fatalf("%s: status %d, %v", url, code, err)
		}
		return time.Since(start)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var dt, gt time.Duration
		if i%2 == 0 { // alternate which goes first, so neither always meets a warmer emulator
			dt, gt = timed(direct, ""), timed(gateway, "Bearer "+agentToken)
		} else {
			gt, dt = timed(gateway, "Bearer "+agentToken), timed(direct, "")
		}
		d, g, diff = append(d, dt), append(g, gt), append(diff, gt-dt)
	}
	b.StopTimer()
	for _, s := range [][]time.Duration{d, g, diff} {
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	}
	p := func(s []time.Duration, q int) float64 { return float64(s[(len(s)*q)/100].Microseconds()) }
	b.ReportMetric(p(d, 50), "direct-p50-µs")
	b.ReportMetric(p(d, 99), "direct-p99-µs")
	b.ReportMetric(p(g, 50), "gateway-p50-µs")
	b.ReportMetric(p(g, 99), "gateway-p99-µs")
	b.ReportMetric(p(g, 50)/p(d, 50), "gateway/direct-p50")
	b.ReportMetric(p(diff, 50), "added-p50-µs")
}

// BenchmarkTablesGetGatewayVsDirect is the same side-by-side run for a call whose
// response the gateway only reports (tables.get: no job, no masking): the added latency is
// Envoy, the authorize callout and the response report (audit record) before release.
func BenchmarkTablesGetGatewayVsDirect(b *testing.B) {
	path := "/bigquery/v2/projects/" + project + "/datasets/crm/tables/customers"
	var d, g, diff []time.Duration
	timed := func(url, auth string) time.Duration {
		start := time.Now()
		code, err := get(url, auth)
		if err != nil || code != 200 {
			b.Fatalf("%s: status %d, %v", url, code, err)
		}
		return time.Since(start)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var dt, gt time.Duration
		if i%2 == 0 {
			dt, gt = timed(gw.Tap.URL+path, ""), timed(gw.Gateway+path, "Bearer "+agentToken)
		} else {
			gt, dt = timed(gw.Gateway+path, "Bearer "+agentToken), timed(gw.Tap.URL+path, "")
		}
		d, g, diff = append(d, dt), append(g, gt), append(diff, gt-dt)
	}
	b.StopTimer()
	for _, s := range [][]time.Duration{d, g, diff} {
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	}
	p := func(s []time.Duration, q int) float64 { return float64(s[(len(s)*q)/100].Microseconds()) }
	b.ReportMetric(p(d, 50), "direct-p50-µs")
	b.ReportMetric(p(g, 50), "gateway-p50-µs")
	b.ReportMetric(p(g, 99), "gateway-p99-µs")
	b.ReportMetric(p(g, 50)/p(d, 50), "gateway/direct-p50")
	b.ReportMetric(p(diff, 50), "added-p50-µs")
}

func get(url, authorization string) (int, error) {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return 0, err
	}
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

// BenchmarkResponseReportRoundTrip is jitgated's POST /v1/responses alone, as the filter
// calls it before releasing a response: find the decision record, append the response
// record (a 1 KiB excerpt). This is the latency every released response waits for.
func BenchmarkResponseReportRoundTrip(b *testing.B) {
	req, err := http.NewRequest("GET", gw.Gateway+"/bigquery/v2/projects/"+project+"/datasets/crm/tables/customers", nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+agentToken)
	resp, err := benchClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	id := resp.Header.Get("x-jitgate-decision-id")
	if resp.StatusCode != 200 || id == "" {
		b.Fatalf("tables.get through the gateway: %d, decision %q", resp.StatusCode, id)
	}
	body := bytes.Repeat([]byte("x"), 1024)
	doc, err := authorize.ResponseReport{DecisionID: id, RequestID: "bench", API: "tables.get",
		Response: authorize.ResponseSummary{Status: 200, Bytes: 1024, Digest: "sha256:" + strings.Repeat("0", 64), Excerpt: string(body)}}.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	// Envoy's callout: mutual TLS on the filter listener, as Envoy makes it.
	envoy, err := gw.EnvoyClient()
	if err != nil {
		b.Fatal(err)
	}
	url := gw.FilterAPI + authorize.ResponsesPath
	benchCalls(b, func() (int, error) { return postWith(envoy, url, "", doc) })
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
	envoy, err := gw.EnvoyClient()
	if err != nil {
		b.Fatal(err)
	}
	url := gw.FilterAPI + authorize.Path
	benchCalls(b, func() (int, error) { return postWith(envoy, url, "", doc) })
}
