package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jitgate/jitgate/controlplane/audit"
	"github.com/jitgate/jitgate/e2e/stack"
)

// TestLegacySQLGrantedUnanalysed: with the standard Python client sending useLegacySql:
// true (client.query(...).result(): jobs.insert), a legacy query is denied 403 legacy_sql
// to an agent without a legacy grant and never reaches BigQuery; under the corpus policy
// that grants it (what.legacySql) it is forwarded unanalysed and the rows come back (the
// emulator runs it as GoogleSQL). A raw jobs.query of the same agent carries
// x-jitgate-analysis "not analysed: legacy SQL", and the audit record and jitgated's
// decision log of that decision say so.
func TestLegacySQLGrantedUnanalysed(t *testing.T) {
	withCorpus(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	legacyToken, err := gw.Token(ctx, "legacy-agent", "sql-corpus-legacy")
	if err != nil {
		t.Fatal(err)
	}
	plainToken, err := gw.Token(ctx, "plain-agent", "sql-corpus")
	if err != nil {
		t.Fatal(err)
	}
	const sql = "SELECT name FROM crm.customers" // valid in both dialects
	python := func(token string) (map[string]any, int) {
		t.Helper()
		cmd := exec.CommandContext(ctx, stack.Python(root), root+"/tools/agent/bq_query.py", "--endpoint", gw.Gateway,
			"--project", project, "--token", token, "--mode", "job", "--legacy-sql", sql)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("python client: %v\n%s", err, stderr.String())
		}
		var doc map[string]any
		if err := json.Unmarshal(out, &doc); err != nil {
			t.Fatalf("python client output %q (exit %d): %v\n%s", out, code, err, stderr.String())
		}
		return doc, code
	}

	before := upstreamRequests(t)
	doc, code := python(plainToken)
	e, _ := doc["error"].(map[string]any)
	if code != 3 || e == nil || e["code"] != float64(403) || !strings.Contains(e["message"].(string), "legacy_sql") {
		t.Fatalf("without a grant: exit %d %v, want a 403 naming legacy_sql", code, doc)
	}
	if upstreamRequests(t) != before {
		t.Error("a denied legacy query reached upstream")
	}
	t.Logf("without a grant: %v", e["message"])

	before = upstreamRequests(t)
	doc, code = python(legacyToken)
	rows, _ := doc["rows"].([]any)
	if code != 0 || len(rows) == 0 {
		t.Fatalf("with the grant: exit %d %v, want rows", code, doc)
	}
	var sawInsert bool
	for _, s := range gw.Tap.Requests()[before:] {
		sawInsert = sawInsert || (s.Method == "POST" && strings.HasSuffix(strings.SplitN(s.Path, "?", 2)[0], "/projects/"+project+"/jobs"))
	}
	if !sawInsert {
		t.Errorf("the legacy jobs.insert did not reach upstream: %+v", gw.Tap.Requests()[before:])
	}

	// The same agent, raw jobs.query with the flag: the response says so, and so do the
	// audit record and the decision log of its decision.
	resp, body := rawCallAs(t, "Bearer "+legacyToken, "POST", "/bigquery/v2/projects/"+project+"/queries",
		[]byte(`{"query":"`+sql+`","useLegacySql":true}`), nil)
	if resp.StatusCode != 200 {
		t.Fatalf("raw legacy jobs.query: %d %s", resp.StatusCode, body)
	}
	if got := resp.Header.Get("x-jitgate-analysis"); got != "not analysed: legacy SQL" {
		t.Errorf("x-jitgate-analysis = %q", got)
	}
	decision := resp.Header.Get("x-jitgate-decision-id")
	if decision == "" {
		t.Fatal("no decision id")
	}
	out, err := exec.CommandContext(ctx, cliBinary(), "audit", "export", "--format", "jsonl", "--nats-url", gw.NATS).CombinedOutput()
	if err != nil {
		t.Fatalf("audit export: %v\n%s", err, out)
	}
	var found *audit.Record
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var r audit.Record
		if json.Unmarshal(sc.Bytes(), &r) == nil && r.DecisionID == decision && r.Kind == audit.KindDecision {
			found = &r
		}
	}
	if found == nil || found.Decision != "allow" || found.Analysis == nil || found.Analysis.NotAnalysed != "legacy SQL" || found.SQL != sql {
		t.Errorf("audit decision record %+v, want an allow of the SQL with analysis.notAnalysed \"legacy SQL\"", found)
	} else {
		t.Logf("audit record: decision %s policy %s analysis %+v", found.Decision, found.Policy, *found.Analysis)
	}
	eventually(t, 5*time.Second, "jitgated's decision log says not analysed", func() bool {
		for _, l := range strings.Split(gw.Log("jitgated"), "\n") {
			if strings.Contains(l, decision) && strings.Contains(l, `"analysis":"not analysed: legacy SQL"`) {
				return true
			}
		}
		return false
	})
}
