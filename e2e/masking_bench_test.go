package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkLargePage is the masking load run through real Envoy (`make bench`): one
// getQueryResults page of ~9 MB (36,000 rows of jitgate-demo.hr.employees_big, every
// personal column masked by the e2e-hr-masked policy, detectors on) read side by side:
//
//   - direct: straight from the emulator (through the recording tap), the baseline;
//   - unmasked: through Envoy and the filter for an agent whose policy masks nothing (the
//     page streams through unread);
//   - masked: through Envoy for an agent of e2e-hr-masked: the filter holds the page,
//     masks every row and releases it.
//
// Each reports MB/s of the page (b.SetBytes); masked vs unmasked is the price of masking,
// emulator time included in both. Setup (the table and one job per agent, made through
// the gateway so the job ledger knows their owners) takes about two minutes on the
// emulator, so this runs with a small -benchtime.
func BenchmarkLargePage(b *testing.B) {
	s := largePageSetup(b)
	page := func(token, jobID, base string) (int, int, error) {
		req, err := http.NewRequest("GET", base+"/bigquery/v2/projects/"+project+"/queries/"+jobID+"?maxResults=100000&prettyPrint=false", nil)
		if err != nil {
			return 0, 0, err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := largePageClient.Do(req)
		if err != nil {
			return 0, 0, err
		}
		defer resp.Body.Close()
		n, err := io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, int(n), err
	}
	// Every variant reports MB/s of the upstream page (what BigQuery sent), so the
	// figures compare the same work whatever the masked page's own size.
	code, upstreamBytes, err := page("", s.maskedJob, gw.Tap.URL)
	if err != nil || code != 200 {
		b.Fatalf("direct page: status %d, %v", code, err)
	}
	for _, c := range []struct {
		name, token, job, base string
	}{
		{"direct", "", s.maskedJob, gw.Tap.URL},
		{"unmasked", s.rawToken, s.rawJob, gw.Gateway},
		{"masked", s.maskedToken, s.maskedJob, gw.Gateway},
	} {
		b.Run(c.name, func(b *testing.B) {
			code, n, err := page(c.token, c.job, c.base)
			if err != nil || code != 200 {
				b.Fatalf("%s: status %d, %v", c.name, code, err)
			}
			b.Logf("%s: %d bytes received for a %d-byte upstream page", c.name, n, upstreamBytes)
			b.SetBytes(int64(upstreamBytes))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if code, _, err := page(c.token, c.job, c.base); err != nil || code != 200 {
					b.Fatalf("%s: status %d, %v", c.name, code, err)
				}
			}
			b.StopTimer()
			if c.name == "masked" {
				// The emulator's seconds per page hide the filter's share: the filter logs
				// its own masking time for each page (mask_us), measured inside Envoy.
				if mbps, n := filterMaskRate(c.job); n > 0 {
					b.ReportMetric(mbps, "filter-MB/s")
					b.Logf("masking inside Envoy's wasm VM: %.1f MB/s over %d pages of %d bytes", mbps, n, upstreamBytes)
				}
			}
		})
	}
}

// maskLine matches the filter's log line of a masked getQueryResults page of job.
var maskLine = regexp.MustCompile(`api=jobs\.getQueryResults .* response_bytes=(\d+) masked=true .* mask_us=(\d+)`)

// filterMaskRate reads Envoy's log for the masked pages of job: the filter's own MB/s.
func filterMaskRate(job string) (mbps float64, pages int) {
	var bytes, micros float64
	for _, l := range strings.Split(gw.Log("envoy"), "\n") {
		if !strings.Contains(l, `job="`+job+`"`) {
			continue
		}
		m := maskLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		n, _ := strconv.ParseFloat(m[1], 64)
		us, _ := strconv.ParseFloat(m[2], 64)
		bytes, micros, pages = bytes+n, micros+us, pages+1
	}
	if micros == 0 {
		return 0, 0
	}
	return bytes / micros, pages // bytes per µs = MB/s
}

var largePageClient = &http.Client{Timeout: 5 * time.Minute}

type largePage struct {
	maskedToken, rawToken string
	maskedJob, rawJob     string
}

// largePageSetup creates jitgate-demo.hr.employees_big (directly at the emulator, like
// the seed data), installs the masked policy and a policy that grants the same table
// unmasked, and runs SELECT * of it once per agent through the gateway.
func largePageSetup(b *testing.B) largePage {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var s largePage
	var err error
	if s.maskedToken, err = gw.Token(ctx, hrAgent, hrGroup); err != nil {
		b.Fatal(err)
	}
	if s.rawToken, err = gw.Token(ctx, "e2e-hr-raw-agent", "hr-raw"); err != nil {
		b.Fatal(err)
	}
	masked, err := os.ReadFile(filepath.Join(root, "e2e", "testdata", "hr-masked.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	raw := strings.NewReplacer("name: e2e-hr-masked", "name: e2e-hr-raw", "any: [hr-analysts]", "any: [hr-raw]").Replace(string(masked))
	raw = raw[:strings.Index(raw, "    masking:")]
	for name, content := range map[string]string{"hr-masked.yaml": string(masked), "hr-raw.yaml": raw} {
		p := filepath.Join(policiesDir, name)
		if err := os.WriteFile(p, []byte(scoped(content)), 0o644); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.Remove(p) })
	}
	const big = "`jitgate-demo.hr.employees_big`"
	ddl := `CREATE TABLE IF NOT EXISTS ` + big + ` AS SELECT e.id * 100000 + n AS id, full_name, email, ssn, card, country, salary, phones, address FROM ` +
		hrTable + ` AS e CROSS JOIN UNNEST(GENERATE_ARRAY(1, 6000)) AS n`
	if code, err := longPost(gw.Tap.URL+"/bigquery/v2/projects/"+project+"/queries", "", queryDoc(ddl)); err != nil || code != 200 {
		b.Fatalf("create the large table at the emulator: %d %v", code, err)
	}
	for _, a := range []struct {
		token string
		job   *string
	}{{s.maskedToken, &s.maskedJob}, {s.rawToken, &s.rawJob}} {
		*a.job = fmt.Sprintf("e2e_result_large_%d", time.Now().UnixNano())
		doc, _ := json.Marshal(map[string]any{
			"jobReference":  map[string]string{"projectId": project, "jobId": *a.job},
			"configuration": map[string]any{"query": map[string]any{"query": "SELECT * FROM " + big, "useLegacySql": false}},
		})
		deadline := time.Now().Add(30 * time.Second)
		for {
			code, err := longPost(gw.Gateway+"/bigquery/v2/projects/"+project+"/jobs", "Bearer "+a.token, doc)
			if err == nil && code == 200 {
				break
			}
			if time.Now().After(deadline) { // the policies may still be loading
				b.Fatalf("jobs.insert through the gateway: %d %v", code, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return s
}

// longPost is post without its 30 s bound: the emulator takes ~40 s to run SELECT * of
// the large table.
func longPost(url, authorization string, body []byte) (int, error) {
	req, err := http.NewRequest("POST", url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := largePageClient.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

func queryDoc(sql string) []byte {
	doc, _ := json.Marshal(map[string]any{"query": sql, "useLegacySql": false})
	return doc
}
