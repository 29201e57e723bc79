package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jitgate/jitgate/controlplane/devissuer"
	"github.com/jitgate/jitgate/filter/authorize"
	"github.com/jitgate/jitgate/filter/bqapi"
	"github.com/jitgate/jitgate/tools/freeport"
	"github.com/jitgate/jitgate/tools/testemu"
)

const maskPolicyDoc = `apiVersion: jitgate.dev/v1
kind: AgentPolicy
metadata:
  name: crm-masked
spec:
  who:
    agents: [etl-bot, other-bot]
  where:
    projects: [jitgate-demo]
    tables:
      allow: ["jitgate-demo.crm.*", "jitgate-demo._*.*"]
    apis: [jobs.query, jobs.insert, jobs.get, jobs.getQueryResults, jobs.cancel, tabledata.list, tables.get]
  what:
    statementKinds: [SELECT]
    masking:
    - columns: jitgate-demo.crm.customers.email
      action: email-domain
      allowAggregates: [COUNT_DISTINCT]
    - columns: jitgate-demo.crm.customers.name
      action: NAME_ACTION
    detectors: [ssn]
`

// TestServeMasksWithEmulator runs jitgated with a masking policy against the real
// emulator: an allowed query's answer carries the lineage-based plan (and the hash key
// only when a rule hashes), queries that cannot be masked are denied, the job ledger
// gives the job's later pages and result table the same plan with the table's schema
// (tables.get of the result table), tables.get of either table carries the plan too,
// jobs.get/jobs.cancel of a masked job carry its plan (error messages withheld),
// tabledata.list of a base table is masked as SELECT *,
// a policy change refuses old jobs' pages, and the hash key appears in no log line and
// nowhere in the NATS store (audit trail, job ledger).
func TestServeMasksWithEmulator(t *testing.T) {
	emulator := testemu.Start(t, demoProject, "--dataset=crm")
	// A real result table: the emulator stores a jobs.insert's rows in dataset/table
	// named after the job.
	resp, err := http.Post(emulator+"/bigquery/v2/projects/"+demoProject+"/jobs", "application/json", strings.NewReader(
		`{"jobReference":{"jobId":"_jm1"},"configuration":{"query":{"query":"SELECT name, email, country FROM crm.customers","useLegacySql":false}}}`))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("emulator jobs.insert: %v %v", resp, err)
	}
	resp.Body.Close()

	xdsPort, apiPort, devPort, filterPort := freeport.For(t), freeport.For(t), freeport.For(t), freeport.For(t)
	dir := t.TempDir()
	pdir := filepath.Join(dir, "policies")
	if err := os.Mkdir(pdir, 0o700); err != nil {
		t.Fatal(err)
	}
	writePolicyFile(t, pdir, strings.Replace(maskPolicyDoc, "NAME_ACTION", "hash", 1))
	hashKey := []byte("jitgate-test-hash-key-0123456789abcdef")
	if err := os.WriteFile(filepath.Join(dir, "hash.key"), []byte(base64.StdEncoding.EncodeToString(hashKey)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	key := writeSAKey(t)
	cfgPath := filepath.Join(dir, "jitgated.yaml")
	doc := fmt.Sprintf(`apiVersion: jitgate.dev/v1
kind: ControlPlaneConfig
xds: {listen: "127.0.0.1:%d"}
api: {listen: "127.0.0.1:%d", filterListen: "127.0.0.1:%d"}
upstream: {bigquery: {url: "%s"}}
nats: {storeDir: nats, maxMemoryBytes: 16777216, maxStoreBytes: 67108864}
devIssuer: {keyFile: dev/issuer-key.pem}
policies: {dir: policies}
masking: {hashKeyFile: hash.key}
`, xdsPort, apiPort, filterPort, emulator)
	if err := os.WriteFile(cfgPath, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan int)
	var stderr syncWriter
	go func() {
		done <- run(ctx, []string{"--config", cfgPath, "--log-format", "text", "--dev-issuer",
			"--dev-issuer-listen", fmt.Sprintf("127.0.0.1:%d", devPort), "--credentials-key-file", key}, nil, &bytes.Buffer{}, &stderr)
	}()
	api := fmt.Sprintf("http://127.0.0.1:%d", apiPort)
	waitFor(t, func() bool { code, _ := get(api + "/readyz"); return code == 200 })
	cp := newCallouts(t, dir, filterPort)

	token := func(agent string) string {
		resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d", devPort)+devissuer.TokenPath, "application/json",
			strings.NewReader(`{"agent":"`+agent+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var tr devissuer.TokenResponse
		if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil {
			t.Fatal(err)
		}
		return tr.Token
	}
	etl, other := token("etl-bot"), token("other-bot")
	decide := func(tok string, call authorize.Call, q *authorize.Query) authorize.Response {
		t.Helper()
		call.Project = demoProject
		reqDoc, _ := authorize.Request{RequestID: "r", Token: tok, Call: call, Query: q}.Marshal()
		code, body := cp.post(authorize.Path, reqDoc)
		r, err := authorize.ParseResponse([]byte(body))
		if code != 200 || err != nil {
			t.Fatalf("authorize %d %s %v", code, body, err)
		}
		return r
	}
	rules := func(m *authorize.Masking) []string {
		if m == nil {
			return nil
		}
		var out []string
		for _, r := range m.Rules {
			out = append(out, fmt.Sprintf("%v:%s", r.Path, r.Action))
		}
		return out
	}
	jobsQuery := authorize.Call{API: "jobs.query", Method: "POST"}
	wantKey := base64.StdEncoding.EncodeToString(hashKey)

	// Lineage: name (through an alias and a CTE) is hashed, the email is masked to its
	// domain, country passes; the key comes with the hash rule; detectors go along.
	q := decide(etl, jobsQuery, &authorize.Query{SQL: "WITH c AS (SELECT name AS who, email, country FROM crm.customers) SELECT who, UPPER(email) AS e, country FROM c"})
	if q.Decision != authorize.Allow || q.Masking == nil {
		t.Fatalf("masked query: %+v", q)
	}
	if got, want := rules(q.Masking), []string{"[0]:hash", "[1]:email-domain"}; !reflect.DeepEqual(got, want) {
		t.Errorf("rules = %q, want %q", got, want)
	}
	if q.Masking.HashKey != wantKey || !reflect.DeepEqual(q.Masking.Detectors, []string{"ssn"}) {
		t.Errorf("hash key sent %v, detectors %v", q.Masking.HashKey == wantKey, q.Masking.Detectors)
	}
	// The first page's schema is checked against the analyser's: the rules are positions
	// in it, and a table altered since its metadata was cached must fail closed.
	if s, _ := json.Marshal(q.Masking.Schema); string(s) != `{"fields":[{"name":"who","type":"STRING","mode":"NULLABLE"},{"name":"e","type":"STRING","mode":"NULLABLE"},{"name":"country","type":"STRING","mode":"NULLABLE"}]}` {
		t.Errorf("query masking schema = %s, want the analysed result schema", s)
	}
	// An allowed aggregate: nothing masked, no key, the detectors still run.
	counts := decide(etl, jobsQuery, &authorize.Query{SQL: "SELECT country, COUNT(DISTINCT email) AS n FROM crm.customers GROUP BY country"})
	if counts.Decision != authorize.Allow || counts.Masking == nil || len(counts.Masking.Rules) != 0 || counts.Masking.HashKey != "" || len(counts.Masking.Detectors) != 1 {
		t.Errorf("counts per country: %+v %+v", counts, counts.Masking)
	}
	// Its job is reported without a result table (jobs.query names none): its pages get
	// the result schema the analyser resolved.
	rep := authorize.ResponseReport{DecisionID: counts.DecisionID, API: "jobs.query",
		Job: &bqapi.JobReference{ProjectID: demoProject, JobID: "job_counts"}}
	if code, body := cp.reportResponse(t, rep); code != 200 || !strings.Contains(body, `"recorded":true`) {
		t.Fatalf("response report: %d %s", code, body)
	}
	r := decide(etl, authorize.Call{API: "jobs.getQueryResults", Method: "GET", JobID: "job_counts"}, nil)
	if s, _ := json.Marshal(r.Masking.Schema); r.Decision != authorize.Allow ||
		string(s) != `{"fields":[{"name":"country","type":"STRING","mode":"NULLABLE"},{"name":"n","type":"INTEGER","mode":"NULLABLE"}]}` {
		t.Errorf("page of a job without a result table: %+v schema %s", r, s)
	}
	// Masked values used to choose rows: denied.
	r = decide(etl, jobsQuery, &authorize.Query{SQL: "SELECT id FROM crm.customers WHERE STARTS_WITH(email, 'ada')"})
	if r.Decision != authorize.Deny || r.Status != 403 || r.Reason != "masked_column_in_condition" || !strings.Contains(r.Message, "customers.email") {
		t.Errorf("predicate on a masked column: %+v", r)
	}
	// A multi-statement script over a masked table: no lineage, denied.
	r = decide(etl, jobsQuery, &authorize.Query{SQL: "SELECT 1 AS x; SELECT email FROM crm.customers"})
	t.Logf("script: %d %s: %s", r.Status, r.Reason, r.Message)
	if r.Decision != authorize.Deny || r.Status != 403 {
		t.Errorf("script: %+v", r)
	}

	// The job of the first query, with its result table, is reported by the filter.
	rep = authorize.ResponseReport{DecisionID: q.DecisionID, API: "jobs.query",
		Job:         &bqapi.JobReference{ProjectID: demoProject, JobID: "_jm1", Location: "US"},
		ResultTable: &bqapi.TableReference{ProjectID: demoProject, DatasetID: "_jm1", TableID: "_jm1"}}
	if code, body := cp.reportResponse(t, rep); code != 200 || !strings.Contains(body, `"recorded":true`) {
		t.Fatalf("response report: %d %s", code, body)
	}
	wantSchema := `{"fields":[{"name":"name","type":"STRING","mode":"NULLABLE"},{"name":"email","type":"STRING","mode":"NULLABLE"},{"name":"country","type":"STRING","mode":"NULLABLE"}]}`
	page := authorize.Call{API: "jobs.getQueryResults", Method: "GET", JobID: "_jm1"}
	resultTable := authorize.Call{API: "tabledata.list", Method: "GET", Dataset: "_jm1", Table: "_jm1"}
	for _, call := range []authorize.Call{page, resultTable} {
		r := decide(etl, call, nil)
		if r.Decision != authorize.Allow || r.Masking == nil {
			t.Fatalf("%s by the owner: %+v", call.API, r)
		}
		if !reflect.DeepEqual(rules(r.Masking), rules(q.Masking)) || r.Masking.HashKey != wantKey || r.Masking.Schema == nil {
			t.Errorf("%s: masking %+v, want the query's plan with the result table's schema", call.API, r.Masking)
		} else if s, _ := json.Marshal(r.Masking.Schema); string(s) != wantSchema {
			t.Errorf("%s: schema %s, want %s", call.API, s, wantSchema)
		}
		if r := decide(other, call, nil); r.Decision != authorize.Deny || r.Reason != "job_not_owned" {
			t.Errorf("%s by another agent: %+v", call.API, r)
		}
	}

	// tables.get of the result table: the same plan, so the filter retypes its schema
	// (the Go client's Table.Read decodes the cells with it).
	r = decide(etl, authorize.Call{API: "tables.get", Method: "GET", Dataset: "_jm1", Table: "_jm1"}, nil)
	if s, _ := json.Marshal(r.Masking.Schema); r.Decision != authorize.Allow || r.Masking == nil ||
		!reflect.DeepEqual(rules(r.Masking), rules(q.Masking)) || string(s) != wantSchema {
		t.Errorf("tables.get of the result table: %+v %s", r, s)
	}
	// jobs.get / jobs.cancel of the masked job: its plan, so the filter withholds
	// BigQuery's error messages (they quote values).
	for _, api := range []string{"jobs.get", "jobs.cancel"} {
		method := map[string]string{"jobs.get": "GET", "jobs.cancel": "POST"}[api]
		r = decide(etl, authorize.Call{API: api, Method: method, JobID: "_jm1"}, nil)
		if r.Decision != authorize.Allow || r.Masking == nil || !reflect.DeepEqual(rules(r.Masking), rules(q.Masking)) {
			t.Errorf("%s of a masked job: %+v", api, r)
		}
	}
	// A job whose plan only runs detectors: its messages are withheld too.
	if r = decide(etl, authorize.Call{API: "jobs.get", Method: "GET", JobID: "job_counts"}, nil); r.Decision != authorize.Allow ||
		r.Masking == nil || len(r.Masking.Detectors) != 1 {
		t.Errorf("jobs.get of a detectors-only job: %+v", r)
	}

	// tabledata.list of a base table: SELECT * of it, with its schema (id is REQUIRED).
	r = decide(etl, authorize.Call{API: "tabledata.list", Method: "GET", Dataset: "crm", Table: "customers"}, nil)
	if r.Decision != authorize.Allow || r.Masking == nil || r.Masking.Schema == nil {
		t.Fatalf("tabledata.list of crm.customers: %+v", r)
	}
	if got, want := rules(r.Masking), []string{"[1]:hash", "[2]:email-domain"}; !reflect.DeepEqual(got, want) {
		t.Errorf("base table rules = %q, want %q", got, want)
	}
	if f := r.Masking.Schema.Fields; len(f) != 5 || f[0].Name != "id" || f[0].Mode != "REQUIRED" {
		t.Errorf("base table schema = %+v", f)
	}
	// tables.get of the base table: the same plan.
	if tg := decide(etl, authorize.Call{API: "tables.get", Method: "GET", Dataset: "crm", Table: "customers"}, nil); tg.Decision != authorize.Allow ||
		tg.Masking == nil || !reflect.DeepEqual(rules(tg.Masking), rules(r.Masking)) {
		t.Errorf("tables.get of crm.customers: %+v", tg)
	}

	// The rules change (name: hash -> redact): the job's pages are refused, new queries
	// get the new rules.
	before := status(t, api).Policies.Version
	writePolicyFile(t, pdir, strings.Replace(maskPolicyDoc, "NAME_ACTION", "redact", 1))
	waitFor(t, func() bool { return status(t, api).Policies.Version != before })
	if r := decide(etl, page, nil); r.Decision != authorize.Deny || r.Reason != "masking_changed" {
		t.Errorf("page after a rule change: %+v", r)
	}
	// The job can still be polled, its messages still withheld with the job's plan.
	if r := decide(etl, authorize.Call{API: "jobs.get", Method: "GET", JobID: "_jm1"}, nil); r.Decision != authorize.Allow ||
		r.Masking == nil || !reflect.DeepEqual(rules(r.Masking), rules(q.Masking)) {
		t.Errorf("jobs.get after a rule change: %+v", r)
	}
	r = decide(etl, jobsQuery, &authorize.Query{SQL: "SELECT name FROM crm.customers"})
	if got := rules(r.Masking); r.Decision != authorize.Allow || !reflect.DeepEqual(got, []string{"[0]:redact"}) || r.Masking.HashKey != "" {
		t.Errorf("query after a rule change: %+v %q", r, got)
	}

	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit code %d", code)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("jitgated did not shut down")
	}
	// The key is a secret: not in a log line, not in the audit trail or the job ledger.
	logs := stderr.String()
	if !strings.Contains(logs, "masking_rules=2") {
		t.Errorf("decision log lines do not summarise the masking")
	}
	secrets := [][]byte{hashKey, []byte(wantKey), []byte(wantKey[:20])}
	for _, s := range secrets {
		if strings.Contains(logs, string(s)) {
			t.Errorf("jitgated logged the masking hash key")
		}
	}
	stored := 0
	err = filepath.WalkDir(filepath.Join(dir, "nats"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		stored += len(b)
		for _, s := range secrets {
			if bytes.Contains(b, s) {
				t.Errorf("the masking hash key is stored in %s", p)
			}
		}
		return nil
	})
	if err != nil || stored == 0 {
		t.Fatalf("NATS store not read (%d bytes): %v", stored, err)
	}
	// The store does hold the plan (so the check above looked at the right data).
	found := false
	_ = filepath.WalkDir(filepath.Join(dir, "nats"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := os.ReadFile(p)
			found = found || bytes.Contains(b, []byte(`"action":"email-domain"`))
		}
		return nil
	})
	if !found {
		t.Error("the job ledger holds no masking plan")
	}
}
