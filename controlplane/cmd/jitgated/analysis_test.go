package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jitgate/jitgate/controlplane/config"
	"github.com/jitgate/jitgate/controlplane/devissuer"
	"github.com/jitgate/jitgate/controlplane/policystep"
	"github.com/jitgate/jitgate/controlplane/sqlanalysis"
	"github.com/jitgate/jitgate/filter/authorize"
	"github.com/jitgate/jitgate/filter/bqapi"
	"github.com/jitgate/jitgate/tools/freeport"
	"github.com/jitgate/jitgate/tools/testemu"
)

const demoProject = "jitgate-demo"

const crmPolicyDoc = `apiVersion: jitgate.dev/v1
kind: AgentPolicy
metadata:
  name: crm-reader
spec:
  who:
    agents: [etl-bot, other-bot]
  where:
    projects: [jitgate-demo]
    tables:
      allow: ["jitgate-demo.crm.*"]
    apis: [jobs.query, jobs.insert, jobs.get, jobs.getQueryResults, tabledata.list]
  what:
    statementKinds: [SELECT]
`

// TestServeAnalysesWithEmulator runs jitgated with policies against the real emulator:
// queries are analysed over tables.get metadata and decided by the policy, the job an
// allowed query creates is recorded through the response report (POST /v1/responses),
// and only its owner may page it; the retired job-report endpoint POST /v1/jobs is gone.
func TestServeAnalysesWithEmulator(t *testing.T) {
	emulator := testemu.Start(t, demoProject, "--dataset=crm")
	xdsPort, apiPort, devPort, filterPort := freeport.For(t), freeport.For(t), freeport.For(t), freeport.For(t)
	dir := t.TempDir()
	pdir := filepath.Join(dir, "policies")
	if err := os.Mkdir(pdir, 0o700); err != nil {
		t.Fatal(err)
	}
	writePolicyFile(t, pdir, crmPolicyDoc)
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
analysis: {cacheSize: 128, cacheTTL: 1m, tableMetadataTTL: 30s}
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
	v := status(t, api).Policies.Policies
	if len(v) != 1 || !strings.HasPrefix(v[0], "crm-reader@") {
		t.Fatalf("policies = %v", v)
	}
	wantPolicy := v[0]

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
	query := func(sql string) *authorize.Query { return &authorize.Query{SQL: sql} }
	jobsQuery := authorize.Call{API: "jobs.query", Method: "POST"}

	// Allowed: the analyser resolves crm.customers (alias, CTE) against the emulator's schema.
	r := decide(etl, jobsQuery, query("WITH c AS (SELECT name, country FROM crm.customers AS x) SELECT name FROM c WHERE country = 'GB'"))
	if r.Decision != authorize.Allow || r.Policy == nil || r.Policy.Name+"@"+r.Policy.Version != wantPolicy {
		t.Fatalf("SELECT on crm.customers: %+v policy %+v", r, r.Policy)
	}
	// defaultDataset resolves an unqualified name.
	if r := decide(etl, jobsQuery, &authorize.Query{SQL: "SELECT COUNT(*) FROM orders",
		DefaultDataset: &bqapi.DatasetReference{DatasetID: "crm"}}); r.Decision != authorize.Allow {
		t.Errorf("defaultDataset: %+v", r)
	}
	denials := []struct {
		name, sql, reason, msg string
	}{
		{"unknown table", "SELECT * FROM crm.no_such_table", "unanalysable_sql", "no_such_table"},
		{"unknown dataset", "SELECT 1 FROM hr.salaries", "unanalysable_sql", "salaries"},
		{"legacy prefix", "#legacySQL\nSELECT name FROM [jitgate-demo:crm.customers]", "legacy_sql", "legacy SQL"},
		{"DML", "DELETE FROM crm.customers WHERE TRUE", "statement_kind_not_allowed", "crm-reader@"},
	}
	for _, d := range denials {
		r := decide(etl, jobsQuery, query(d.sql))
		t.Logf("%s: %d %s: %s", d.name, r.Status, r.Reason, r.Message)
		if r.Decision != authorize.Deny || r.Status != 403 || r.Reason != d.reason || !strings.Contains(r.Message, d.msg) {
			t.Errorf("%s: %s %d %s %q", d.name, r.Decision, r.Status, r.Reason, r.Message)
		}
	}

	// The filter reports the job the allowed query created; its owner may page it.
	rep := authorize.ResponseReport{DecisionID: r.DecisionID, API: "jobs.query",
		Job:         &bqapi.JobReference{ProjectID: demoProject, JobID: "job_emu_1", Location: "US"},
		ResultTable: &bqapi.TableReference{ProjectID: demoProject, DatasetID: "_anon_emu", TableID: "anon1"}}
	code, body := cp.reportResponse(t, rep)
	ack, err := authorize.ParseResponseReportAck([]byte(body))
	if code != 200 || err != nil || !ack.Recorded {
		t.Fatalf("response report: %d %s %v", code, body, err)
	}
	// The job-only report of earlier filters is retired: nothing serves it.
	old, _ := json.Marshal(map[string]any{"version": authorize.Version, "decisionId": r.DecisionID, "api": "jobs.query",
		"job": map[string]string{"projectId": demoProject, "jobId": "job_emu_2"}})
	if code, body := cp.post("/v1/jobs", old); code != http.StatusNotFound {
		t.Errorf("POST /v1/jobs: %d %s, want 404", code, body)
	}
	page := authorize.Call{API: "jobs.getQueryResults", Method: "GET", JobID: "job_emu_1"}
	if r := decide(etl, page, nil); r.Decision != authorize.Allow {
		t.Errorf("owner paging: %+v", r)
	}
	if r := decide(other, page, nil); r.Decision != authorize.Deny || r.Status != 403 || r.Reason != "job_not_owned" {
		t.Errorf("other agent paging: %+v", r)
	}
	if r := decide(other, authorize.Call{API: "tabledata.list", Method: "GET", Dataset: "_anon_emu", Table: "anon1"}, nil); r.Reason != "job_not_owned" {
		t.Errorf("other agent reading the result table: %+v", r)
	}
	if r := decide(etl, authorize.Call{API: "tabledata.list", Method: "GET", Dataset: "_anon_emu", Table: "anon1"}, nil); r.Decision != authorize.Allow {
		t.Errorf("owner reading the result table: %+v", r)
	}

	_, metrics := get(api + "/metrics")
	for _, want := range []string{`jitgate_jobs_recorded_total{result="recorded"} 1`, `jitgate_job_lookups_total{result="owner"} 2`,
		`jitgate_job_lookups_total{result="not_owner"} 2`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	logs := stderr.String()
	if !strings.Contains(logs, "msg=\"sql analyser ready\"") || !strings.Contains(logs, "catalog_auth=\"none (plain http upstream)\"") {
		t.Errorf("no analyser log line:\n%s", logs)
	}
	if !strings.Contains(logs, "msg=\"job recorded\"") {
		t.Errorf("no job record log line")
	}
	for _, secret := range []string{etl, other, "SELECT name FROM c"} {
		if strings.Contains(logs, secret) {
			t.Errorf("jitgated logged a secret or SQL text (%.12s...)", secret)
		}
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
}

func TestCatalogClientOptions(t *testing.T) {
	key := writeSAKey(t)
	for _, tt := range []struct {
		url, auth string
		n         int
	}{
		{"http://127.0.0.1:9050", "none (plain http upstream)", 2},
		{"http://10.0.0.7:9050", "none (plain http upstream, not loopback)", 2},
		{"https://bigquery.googleapis.com", "service-account key (credentials.keyFile)", 2},
		{"https://bq.internal.example", "service-account key (credentials.keyFile)", 3},
	} {
		cfg, err := config.Default()
		if err != nil {
			t.Fatal(err)
		}
		url, keyFile := tt.url, key
		if err := cfg.Apply(config.Overrides{UpstreamURL: &url, CredentialsKeyFile: &keyFile}); err != nil {
			t.Fatal(err)
		}
		opts, auth := catalogClientOptions(cfg)
		if auth != tt.auth || len(opts) != tt.n || strings.Contains(auth, key) {
			t.Errorf("%s: %d options, auth %q", tt.url, len(opts), auth)
		}
	}
}

func TestAnalysisErrorMapping(t *testing.T) {
	cases := []struct {
		err        error
		unavail    bool
		reason     string
		msgContain string
	}{
		{&sqlanalysis.AnalysisError{Kind: sqlanalysis.ErrLegacySQL, Reason: "legacy"}, false, "legacy_sql", "useLegacySql: false"},
		{&sqlanalysis.AnalysisError{Kind: sqlanalysis.ErrUnanalysable, Reason: "Table not found: crm.x"}, false, "unanalysable_sql", "Table not found: crm.x."},
		{&sqlanalysis.AnalysisError{Kind: sqlanalysis.ErrCatalogUnavailable, Reason: "tables.get: 500"}, true, "", ""},
		{errors.New("boom"), false, "unanalysable_sql", "cannot be allowed"},
	}
	for _, c := range cases {
		err := analysisError(c.err)
		if errors.Is(err, policystep.ErrAnalyzerUnavailable) != c.unavail {
			t.Errorf("%v: unavailable = %v", c.err, !c.unavail)
			continue
		}
		if c.unavail {
			continue
		}
		ae, ok := errors.AsType[*policystep.AnalysisError](err)
		if !ok || ae.Reason != c.reason || !strings.Contains(ae.Message, c.msgContain) {
			t.Errorf("%v: %+v", c.err, ae)
		}
	}
	in := analysisInput(authorize.Request{Call: authorize.Call{Project: "p"}, Query: &authorize.Query{SQL: "SELECT @a",
		DefaultDataset: &bqapi.DatasetReference{DatasetID: "d"},
		Parameters: []bqapi.QueryParameter{{Name: "a", ParameterType: &bqapi.QueryParameterType{Type: "ARRAY",
			ArrayType: &bqapi.QueryParameterType{Type: "STRUCT", StructTypes: []bqapi.QueryParameterTypeStructTypes{
				{Name: "x", Type: &bqapi.QueryParameterType{Type: "INT64"}}}}}}}}})
	if in.DefaultProject != "p" || in.DefaultDataset == nil || *in.DefaultDataset != (sqlanalysis.DatasetRef{Project: "p", Dataset: "d"}) ||
		len(in.Parameters) != 1 || in.Parameters[0] != (sqlanalysis.Parameter{Name: "a", Type: "ARRAY<STRUCT<`x` INT64>>"}) { // field names quoted for the analyser
		t.Errorf("input = %+v", in)
	}
}
