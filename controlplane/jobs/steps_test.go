package jobs_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jitgate/jitgate/controlplane/authz"
	"github.com/jitgate/jitgate/controlplane/credentials"
	"github.com/jitgate/jitgate/controlplane/devissuer"
	"github.com/jitgate/jitgate/controlplane/identity"
	"github.com/jitgate/jitgate/controlplane/jobs"
	"github.com/jitgate/jitgate/controlplane/policystep"
	"github.com/jitgate/jitgate/controlplane/policystore"
	"github.com/jitgate/jitgate/filter/authorize"
	"github.com/jitgate/jitgate/filter/bqapi"
	"github.com/jitgate/jitgate/policies"
)

// gateway is the real authorize service (dev issuers, go-oidc verifier, self-signed JWT
// minter) with the job steps on one loopback server, and the ledger the response reports
// record jobs in: what the filter talks to.
type gateway struct {
	url          string
	issA, issB   *devissuer.Issuer
	ledger       *testLedger
	authzLogs    *syncBuffer
	policyBundle *policystore.Store
}

const crmPolicy = `apiVersion: jitgate.dev/v1
kind: AgentPolicy
metadata:
  name: crm-reader
spec:
  who:
    agents: [agent-a, agent-b]
  where:
    projects: [jitgate-demo]
    tables:
      allow: ["jitgate-demo.crm.*"]
    apis: [jobs.query, jobs.insert, jobs.get, jobs.getQueryResults, jobs.cancel, tabledata.list]
  what:
    statementKinds: [SELECT]
`

type staticAnalyzer struct{}

func (staticAnalyzer) Analyze(context.Context, authorize.Request) (*policies.Analysis, error) {
	return &policies.Analysis{StatementKind: "SELECT", ReferencedTables: []string{project + ".crm.customers"}}, nil
}

func newGateway(t *testing.T, l *testLedger, withPolicies bool) *gateway {
	t.Helper()
	g := &gateway{ledger: l, authzLogs: &syncBuffer{}}
	var err error
	for _, iss := range []**devissuer.Issuer{&g.issA, &g.issB} {
		if *iss, err = devissuer.Start(devissuer.Options{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = (*iss).Close() })
	}
	log := slog.New(slog.NewJSONHandler(g.authzLogs, nil))
	verifier, err := identity.NewVerifier(identity.Config{Issuers: []identity.IssuerConfig{
		{Issuer: g.issA.URL(), Audiences: []string{"jitgate"}}, {Issuer: g.issB.URL(), Audiences: []string{"jitgate"}},
	}}, identity.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	keyJSON, err := credentials.GenerateServiceAccountKey("gw@jitgate-dev.iam.gserviceaccount.com")
	if err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(t.TempDir(), "sa.json")
	if err := os.WriteFile(keyPath, keyJSON, 0o600); err != nil {
		t.Fatal(err)
	}
	minter, err := credentials.New(credentials.Config{KeyFile: keyPath}, credentials.WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	steps := []authz.Step{l.FollowUpStep(jobs.StepOptions{PoliciesEnabled: withPolicies})}
	if withPolicies {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "crm.yaml"), []byte(crmPolicy), 0o600); err != nil {
			t.Fatal(err)
		}
		if g.policyBundle, err = policystore.Open(dir, policystore.Options{Logger: log}); err != nil {
			t.Fatal(err)
		}
		ps, err := policystep.New(policystep.Options{Bundles: g.policyBundle, Analyzer: staticAnalyzer{}, Jobs: l.PolicyLedger(),
			MinterMode: credentials.ModeSelfSignedJWT, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		steps = append(steps, ps)
	}
	steps = append(steps, l.DecisionStep())
	// Without policies the gateway runs in jitgated's explicit identity-only mode (the
	// ledger's own checks are what these tests exercise).
	svc, err := authz.New(authz.Options{Verifier: verifier, Minter: minter, Steps: steps, Logger: log,
		Metrics: authz.NewMetrics(prometheus.NewRegistry()), IdentityOnly: !withPolicies})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(authorize.Path, svc)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	g.url = srv.URL
	return g
}

// agent is an agent's token from one of the two issuers.
type agent struct {
	name, token string
}

func (g *gateway) agent(t *testing.T, iss *devissuer.Issuer, name string) agent {
	t.Helper()
	tok, err := iss.Mint(name, []string{"analysts"}, 5*time.Minute, "jitgate")
	if err != nil {
		t.Fatal(err)
	}
	return agent{name, tok}
}

func (g *gateway) authorize(t *testing.T, a agent, call authorize.Call, q *authorize.Query) authorize.Response {
	t.Helper()
	if call.Method == "" {
		call.Method = "GET"
	}
	if call.Project == "" {
		call.Project = project
	}
	body, err := authorize.Request{RequestID: "r", Token: a.token, Call: call, Query: q}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(g.url+authorize.Path, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	r, err := authorize.ParseResponse(out)
	if resp.StatusCode != 200 || err != nil {
		t.Fatalf("authorize %d %s: %v", resp.StatusCode, out, err)
	}
	return r
}

// runQuery is what the filter does for one jobs.query: authorize, forward, report the job
// in the response. It returns the authorize response.
func (g *gateway) runQuery(t *testing.T, a agent, jobID, resultDataset, resultTable string) authorize.Response {
	t.Helper()
	r := g.authorize(t, a, authorize.Call{API: "jobs.query", Method: "POST"}, &authorize.Query{SQL: "SELECT name FROM crm.customers"})
	if r.Decision != authorize.Allow {
		t.Fatalf("query denied: %+v", r)
	}
	// The ledger's part of the filter's response report (POST /v1/responses).
	rep := jobs.Report{DecisionID: r.DecisionID, API: "jobs.query", Job: &bqapi.JobReference{ProjectID: project, JobID: jobID, Location: "US"}}
	if resultTable != "" {
		rep.ResultTable = &bqapi.TableReference{ProjectID: project, DatasetID: resultDataset, TableID: resultTable}
	}
	if out, err := g.ledger.Record(t.Context(), rep); err != nil || !out.Recorded {
		t.Fatalf("report: %+v %v", out, err)
	}
	return r
}

type verdict struct {
	decision authorize.Decision
	status   int
	reason   string
}

func (g *gateway) expect(t *testing.T, who string, a agent, call authorize.Call, want verdict) authorize.Response {
	t.Helper()
	r := g.authorize(t, a, call, nil)
	if r.Decision != want.decision || r.Status != want.status || r.Reason != want.reason {
		t.Errorf("%s: %s %s/%s%s = %s %d %s (%s), want %s %d %s", who, call.API, call.Dataset, call.Table, call.JobID,
			r.Decision, r.Status, r.Reason, r.Message, want.decision, want.status, want.reason)
	}
	return r
}

var (
	allowed   = verdict{authorize.Allow, 0, ""}
	notOwned  = verdict{authorize.Deny, 403, jobs.ReasonJobNotOwned}
	ledgerOut = verdict{authorize.Deny, 503, jobs.ReasonLedgerUnavailable}
)

func TestFollowUpsWithoutPolicies(t *testing.T) {
	l := openLedger(t, startNATS(t, "", ""))
	g := newGateway(t, l, false)
	a := g.agent(t, g.issA, "agent-a")
	b := g.agent(t, g.issA, "agent-b")
	aElsewhere := g.agent(t, g.issB, "agent-a") // same agent id, another issuer

	q := g.runQuery(t, a, "job_a", "_anon_a", "anon_t1")
	d, err := l.Decision(t.Context(), q.DecisionID)
	if err != nil || d == nil || d.Agent != "agent-a" || d.Issuer != g.issA.URL() || d.API != "jobs.query" || d.Policy != "" ||
		!slices.Equal(d.Groups, []string{"analysts"}) {
		t.Errorf("recorded decision = %+v, %v", d, err)
	}

	for _, api := range []string{"jobs.get", "jobs.getQueryResults", "jobs.cancel", "jobs.delete"} {
		call := authorize.Call{API: api, JobID: "job_a"}
		g.expect(t, "owner", a, call, allowed)
		r := g.expect(t, "other agent", b, call, notOwned)
		if !strings.Contains(r.Message, "Job job_a was not created through jitgate by this agent") {
			t.Errorf("message: %q", r.Message)
		}
		g.expect(t, "same agent id, other issuer", aElsewhere, call, notOwned)
		g.expect(t, "unknown job", a, authorize.Call{API: api, JobID: "job_unknown"}, notOwned)
	}
	result := authorize.Call{API: "tabledata.list", Dataset: "_anon_a", Table: "anon_t1"}
	g.expect(t, "owner reads result table", a, result, allowed)
	g.expect(t, "other agent reads result table", b, result, notOwned)
	// A base table (not a recorded result table): nothing to check without policies.
	g.expect(t, "base table", b, authorize.Call{API: "tabledata.list", Dataset: "crm", Table: "customers"}, allowed)
	g.expect(t, "jobs.list", a, authorize.Call{API: "jobs.list"}, verdict{authorize.Deny, 403, jobs.ReasonJobsListNotAllowed})

	// The job step denies before the credential step: no credential minted for B.
	logs := g.authzLogs.String()
	if !strings.Contains(logs, `"step":"jobs"`) {
		t.Errorf("denials not attributed to the jobs step:\n%s", logs)
	}
	if !strings.Contains(l.logs.String(), `"msg":"job call denied"`) || !strings.Contains(l.logs.String(), `"owner_agent":"agent-a"`) {
		t.Errorf("no denial log:\n%s", l.logs.String())
	}
	for result, min := range map[string]float64{jobs.LookupOwner: 5, jobs.LookupNotOwner: 9, jobs.LookupNotFound: 5} {
		if got := l.count(t, "jitgate_job_lookups_total", result); got < min {
			t.Errorf("lookups{%s} = %v, want >= %v", result, got, min)
		}
	}
	for _, secret := range []string{a.token, b.token} {
		if strings.Contains(l.logs.String(), secret) || strings.Contains(logs, secret) {
			t.Error("a token was logged")
		}
	}
}

func TestFollowUpsWithPolicies(t *testing.T) {
	l := openLedger(t, startNATS(t, "", ""))
	g := newGateway(t, l, true)
	a := g.agent(t, g.issA, "agent-a")
	b := g.agent(t, g.issA, "agent-b")

	q := g.runQuery(t, a, "job_p", "_anon_p", "anon_p1")
	if q.Policy == nil || q.Policy.Name != "crm-reader" {
		t.Fatalf("query policy = %+v", q.Policy)
	}
	policy := q.Policy.Name + "@" + q.Policy.Version
	d, err := l.Decision(t.Context(), q.DecisionID)
	if err != nil || d.Policy != policy || d.PolicyBundle != q.Policy.Bundle || d.StatementKind != "SELECT" ||
		!slices.Equal(d.ReferencedTables, []string{project + ".crm.customers"}) {
		t.Errorf("recorded decision = %+v, %v", d, err)
	}
	j, err := l.Job(t.Context(), project, "job_p")
	if err != nil || j.Policy != policy || j.StatementKind != "SELECT" || j.ResultTable != project+"._anon_p.anon_p1" {
		t.Errorf("job record = %+v, %v", j, err)
	}

	r := g.expect(t, "owner", a, authorize.Call{API: "jobs.getQueryResults", JobID: "job_p"}, allowed)
	if r.Policy == nil || r.Policy.Name != "crm-reader" {
		t.Errorf("follow-up not decided by the policy: %+v", r.Policy)
	}
	g.expect(t, "other agent", b, authorize.Call{API: "jobs.getQueryResults", JobID: "job_p"}, notOwned)
	g.expect(t, "unknown job", a, authorize.Call{API: "jobs.get", JobID: "nope"}, notOwned)
	// jobs.delete is not among the policy's apis: the owner passes the ledger, the policy refuses.
	g.expect(t, "owner, api not allowed", a, authorize.Call{API: "jobs.delete", JobID: "job_p"}, verdict{authorize.Deny, 403, policies.RuleAPINotAllowed})

	g.expect(t, "owner reads result table", a, authorize.Call{API: "tabledata.list", Dataset: "_anon_p", Table: "anon_p1"}, allowed)
	g.expect(t, "other reads result table", b, authorize.Call{API: "tabledata.list", Dataset: "_anon_p", Table: "anon_p1"}, notOwned)
	// An anonymous table no recorded job wrote: the evaluator cannot name an owner.
	g.expect(t, "unrecorded result table", a, authorize.Call{API: "tabledata.list", Dataset: "_anon_x", Table: "t"}, verdict{authorize.Deny, 403, policies.RuleNotDecidable})
	// Base tables: SELECT * of the table, by policy.
	g.expect(t, "allowed base table", b, authorize.Call{API: "tabledata.list", Dataset: "crm", Table: "customers"}, allowed)
	g.expect(t, "other base table", b, authorize.Call{API: "tabledata.list", Dataset: "hr", Table: "salaries"}, verdict{authorize.Deny, 403, policies.RuleTableNotAllowed})
	g.expect(t, "jobs.list", a, authorize.Call{API: "jobs.list"}, verdict{authorize.Deny, 403, policies.RuleAPINotAllowed})
}

func TestLedgerDownFailsClosed(t *testing.T) {
	n := startNATS(t, "", "")
	l := openLedger(t, n)
	g := newGateway(t, l, false)
	a := g.agent(t, g.issA, "agent-a")
	g.runQuery(t, a, "job_d", "", "")
	n.Conn.Close()
	g.expect(t, "query", a, authorize.Call{API: "jobs.query", Method: "POST"}, ledgerOut)
	g.expect(t, "follow-up", a, authorize.Call{API: "jobs.getQueryResults", JobID: "job_d"}, ledgerOut)
	g.expect(t, "result table", a, authorize.Call{API: "tabledata.list", Dataset: "_x", Table: "y"}, ledgerOut)
	// Calls that need no ledger still work.
	g.expect(t, "metadata", a, authorize.Call{API: "tables.get", Dataset: "crm", Table: "customers"}, allowed)
}
