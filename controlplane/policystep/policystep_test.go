package policystep_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jitgate/jitgate/controlplane/authz"
	"github.com/jitgate/jitgate/controlplane/credentials"
	"github.com/jitgate/jitgate/controlplane/identity"
	"github.com/jitgate/jitgate/controlplane/policystep"
	"github.com/jitgate/jitgate/filter/authorize"
	"github.com/jitgate/jitgate/filter/bqapi"
	"github.com/jitgate/jitgate/policies"
	"github.com/jitgate/jitgate/policies/source"
)

const policiesYAML = `apiVersion: jitgate.dev/v1
kind: AgentPolicy
metadata:
  name: analysts
spec:
  who:
    groups:
      any: [analysts]
  where:
    projects: [acme]
    datasets:
      allow: [acme.sales]
      deny: [acme.hr]
    writeTables: [acme.scratch.*]
    apis: [jobs.query, jobs.insert, tables.get]
  what:
    statementKinds: [SELECT]
    denyRules:
      - name: no-star
        kind: selectStar
        dryRun: true
      - name: no-external
        kind: externalQuery
  credential:
    mode: self-signed-jwt
    ttl: 90s
---
apiVersion: jitgate.dev/v1
kind: AgentPolicy
metadata:
  name: impersonators
spec:
  who:
    agents: [imp-bot]
  where:
    projects: [acme]
    apis: [datasets.list]
  credential:
    mode: impersonate
    serviceAccount: reader@acme.iam.gserviceaccount.com
`

func compile(t *testing.T, doc string) *policies.Bundle {
	t.Helper()
	res, err := source.Parse(source.File{Name: "p.yaml", Data: []byte(doc)})
	if err != nil {
		t.Fatal(err)
	}
	return res.Bundle
}

// tokenVerifier accepts "agent:group1,group2" as a token.
type tokenVerifier struct{}

func (tokenVerifier) Verify(_ context.Context, raw string) (identity.Identity, error) {
	agent, groups, _ := strings.Cut(raw, ":")
	if agent == "" {
		return identity.Identity{}, errors.New("no token")
	}
	var gs []string
	if groups != "" {
		gs = strings.Split(groups, ",")
	}
	return identity.Identity{AgentID: agent, Issuer: "https://issuer.test", Groups: gs, Subject: agent, ExpiresAt: time.Now().Add(time.Hour)}, nil
}

// recordingMinter remembers the last mint request.
type recordingMinter struct {
	mu   sync.Mutex
	last credentials.Request
}

func (m *recordingMinter) Mint(_ context.Context, r credentials.Request) (credentials.Credential, error) {
	m.mu.Lock()
	m.last = r
	m.mu.Unlock()
	now := time.Now()
	return credentials.Credential{Token: credentials.NewSecret("upstream-token"), ID: "cred-1", Mode: credentials.ModeSelfSignedJWT,
		IssuedAt: now, ExpiresAt: now.Add(r.TTL)}, nil
}

type liveBundle struct {
	b atomic.Pointer[policies.Bundle]
}

func (l *liveBundle) Bundle() *policies.Bundle { return l.b.Load() }

type analyzerFunc func(context.Context, authorize.Request) (*policies.Analysis, error)

func (f analyzerFunc) Analyze(ctx context.Context, r authorize.Request) (*policies.Analysis, error) {
	return f(ctx, r)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type gateway struct {
	url    string
	minter *recordingMinter
	live   *liveBundle
	logs   *syncBuffer
}

func newGateway(t *testing.T, an policystep.Analyzer) *gateway {
	t.Helper()
	g := &gateway{minter: &recordingMinter{}, live: &liveBundle{}, logs: &syncBuffer{}}
	g.live.b.Store(compile(t, policiesYAML))
	log := slog.New(slog.NewJSONHandler(g.logs, nil))
	step, err := policystep.New(policystep.Options{Bundles: g.live, Analyzer: an, MinterMode: credentials.ModeSelfSignedJWT, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := authz.New(authz.Options{Verifier: tokenVerifier{}, Minter: g.minter, CredentialTTL: 5 * time.Minute,
		Steps: []authz.Step{step}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(svc)
	t.Cleanup(srv.Close)
	g.url = srv.URL
	return g
}

func (g *gateway) call(t *testing.T, token string, c authorize.Call, q *authorize.Query) authorize.Response {
	t.Helper()
	if c.Method == "" {
		c.Method = "POST"
	}
	body, err := authorize.Request{RequestID: "r", Token: token, Call: c, Query: q}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(g.url, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	r, err := authorize.ParseResponse(out)
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	return r
}

func selectOf(tables ...string) analyzerFunc {
	return func(_ context.Context, r authorize.Request) (*policies.Analysis, error) {
		a := &policies.Analysis{StatementKind: "SELECT", ReferencedTables: tables}
		if strings.Contains(r.Query.SQL, "*") {
			a.Findings = []policies.DenyRuleKind{policies.DenySelectStar}
		}
		return a, nil
	}
}

func TestPolicyDecisions(t *testing.T) {
	g := newGateway(t, selectOf("acme.sales.orders"))
	b := g.live.Bundle()
	analysts, _ := b.Policy("analysts")
	imp, _ := b.Policy("impersonators")
	at := "@" + analysts.Version

	tests := []struct {
		name        string
		token       string
		call        authorize.Call
		query       *authorize.Query
		allow       bool
		status      int
		reason      string
		policy      string // name@version, or "" for none
		msgContains []string
	}{
		{"granted table", "ana:analysts", authorize.Call{API: "tables.get", Method: "GET", Project: "acme", Dataset: "sales", Table: "orders"}, nil,
			true, 0, "", "analysts" + at, nil},
		{"denied dataset", "ana:analysts", authorize.Call{API: "tables.get", Method: "GET", Project: "acme", Dataset: "hr", Table: "people"}, nil,
			false, 403, policies.RuleDatasetDenied, "analysts" + at,
			[]string{"Denied by policy analysts" + at + ", rule dataset_denied (where.datasets.deny): table acme.hr.people is in a dataset matching where.datasets.deny \"acme.hr\"."}},
		{"api not granted", "ana:analysts", authorize.Call{API: "datasets.list", Method: "GET", Project: "acme"}, nil,
			false, 403, policies.RuleAPINotAllowed, "analysts" + at, []string{"rule api_not_allowed (where.apis)", "API datasets.list is not in where.apis"}},
		{"no policy matches", "stranger:", authorize.Call{API: "tables.get", Method: "GET", Project: "acme", Dataset: "sales", Table: "orders"}, nil,
			false, 403, policies.RuleDefaultDeny, "", []string{"Denied by policy bundle " + b.Version + ", rule default_deny: no policy matches agent stranger."}},
		{"query analysed and granted", "ana:analysts", authorize.Call{API: "jobs.query", Project: "acme"}, &authorize.Query{SQL: "SELECT id FROM acme.sales.orders"},
			true, 0, "", "analysts" + at, nil},
		{"legacy SQL", "ana:analysts", authorize.Call{API: "jobs.query", Project: "acme"}, &authorize.Query{SQL: "SELECT 1", LegacySQL: true},
			false, 403, policies.RuleLegacySQL, "", []string{"legacy SQL cannot be analysed"}},
		{"destination needs a write grant", "ana:analysts", authorize.Call{API: "jobs.insert", Project: "acme"},
			&authorize.Query{SQL: "SELECT id FROM acme.sales.orders", Destination: &bqapi.TableReference{DatasetID: "sales", TableID: "copy"}},
			false, 403, policies.RuleStatementKindNotAllowed, "analysts" + at, nil},
		{"impersonation refused by a self-signed minter", "imp-bot:", authorize.Call{API: "datasets.list", Method: "GET", Project: "acme"}, nil,
			false, 403, "credential_mode_unavailable", "impersonators@" + imp.Version, []string{"asks for impersonate upstream credentials"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := g.call(t, tt.token, tt.call, tt.query)
			if (r.Decision == authorize.Allow) != tt.allow || r.Status != tt.status || r.Reason != tt.reason {
				t.Fatalf("decision %s %d %q %q, want allow=%v %d %q", r.Decision, r.Status, r.Reason, r.Message, tt.allow, tt.status, tt.reason)
			}
			if r.Policy == nil || r.Policy.Bundle != b.Version {
				t.Fatalf("response policy %+v, want bundle %s", r.Policy, b.Version)
			}
			got := ""
			if r.Policy.Name != "" {
				got = r.Policy.Name + "@" + r.Policy.Version
			}
			if got != tt.policy {
				t.Errorf("policy %q, want %q", got, tt.policy)
			}
			for _, s := range tt.msgContains {
				if !strings.Contains(r.Message, s) {
					t.Errorf("message %q lacks %q", r.Message, s)
				}
			}
		})
	}

	// The granting policy's credential narrows the mint: 90s instead of the 5m default.
	g.call(t, "ana:analysts", authorize.Call{API: "tables.get", Method: "GET", Project: "acme", Dataset: "sales", Table: "orders"}, nil)
	if g.minter.last.TTL != 90*time.Second || g.minter.last.ServiceAccount != "" {
		t.Errorf("mint request %+v, want TTL 90s", g.minter.last)
	}
	// Every decision line names the policy and bundle.
	if !strings.Contains(g.logs.String(), `"policy":"analysts`+at+`"`) || !strings.Contains(g.logs.String(), `"policy_bundle":"`+b.Version+`"`) {
		t.Errorf("decision log lacks the policy:\n%s", g.logs.String())
	}
}

func TestDryRunRuleLogsWouldDeny(t *testing.T) {
	g := newGateway(t, selectOf("acme.sales.orders"))
	r := g.call(t, "ana:analysts", authorize.Call{API: "jobs.query", Project: "acme"}, &authorize.Query{SQL: "SELECT * FROM acme.sales.orders"})
	if r.Decision != authorize.Allow {
		t.Fatalf("dry-run rule denied: %+v", r)
	}
	logs := g.logs.String()
	if !strings.Contains(logs, `"msg":"policy would deny (dry run)"`) || !strings.Contains(logs, `"rule":"no-star"`) ||
		!strings.Contains(logs, `"policy_would_deny":["analysts/no-star"]`) {
		t.Errorf("no would-deny log line:\n%s", logs)
	}
}

func TestAnalyzerOutcomes(t *testing.T) {
	q := &authorize.Query{SQL: "SELECT id FROM acme.sales.orders"}
	call := authorize.Call{API: "jobs.query", Project: "acme"}
	tests := []struct {
		name   string
		an     policystep.Analyzer
		status int
		reason string
		msg    string
	}{
		{"no analyser: not decidable, denied", nil, 403, policies.RuleNotDecidable, "SQL analysis is unavailable"},
		{"analyser refuses the SQL", analyzerFunc(func(context.Context, authorize.Request) (*policies.Analysis, error) {
			return nil, &policystep.AnalysisError{Reason: "unanalysable_sql", Message: "The query uses a construct the gateway cannot analyse (line 1, column 8)."}
		}), 403, "unanalysable_sql", "cannot analyse (line 1, column 8)"},
		{"analyser refuses, having noticed a finding a deny rule names", analyzerFunc(func(context.Context, authorize.Request) (*policies.Analysis, error) {
			return nil, &policystep.AnalysisError{Reason: "unanalysable_sql", Message: "EXTERNAL_QUERY is not analysed.",
				Findings: []policies.DenyRuleKind{policies.DenyExternalQuery}}
		}), 403, policies.RuleDenyRule, "rule deny_rule (no-external)"},
		{"analyser refuses with a finding only a dry-run rule names", analyzerFunc(func(context.Context, authorize.Request) (*policies.Analysis, error) {
			return nil, &policystep.AnalysisError{Reason: "unanalysable_sql", Message: "Cannot analyse.",
				Findings: []policies.DenyRuleKind{policies.DenySelectStar}}
		}), 403, "unanalysable_sql", "Cannot analyse."},
		{"analyser fails without a reason", analyzerFunc(func(context.Context, authorize.Request) (*policies.Analysis, error) {
			return nil, errors.New("parser exploded")
		}), 403, "unanalysable_sql", "could not analyse this query's SQL"},
		{"analyser down", analyzerFunc(func(context.Context, authorize.Request) (*policies.Analysis, error) {
			return nil, policystep.ErrAnalyzerUnavailable
		}), 503, "analysis_unavailable", "retry later"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGateway(t, tt.an)
			r := g.call(t, "ana:analysts", call, q)
			if r.Decision != authorize.Deny || r.Status != tt.status || r.Reason != tt.reason || !strings.Contains(r.Message, tt.msg) {
				t.Errorf("got %d %q %q, want %d %q containing %q", r.Status, r.Reason, r.Message, tt.status, tt.reason, tt.msg)
			}
			if r.Policy == nil || r.Policy.Bundle == "" {
				t.Errorf("response carries no policy bundle: %+v", r.Policy)
			}
		})
	}
}

// TestNewBundleDecidesTheNextCall: swapping the live bundle changes the next decision, and
// the response names the new version.
func TestNewBundleDecidesTheNextCall(t *testing.T) {
	g := newGateway(t, nil)
	call := authorize.Call{API: "tables.get", Method: "GET", Project: "acme", Dataset: "sales", Table: "orders"}
	if r := g.call(t, "ana:analysts", call, nil); r.Decision != authorize.Allow {
		t.Fatalf("first call: %+v", r)
	}
	next := compile(t, strings.Replace(policiesYAML, "deny: [acme.hr]", "deny: [acme.hr, acme.sales]", 1))
	g.live.b.Store(next)
	r := g.call(t, "ana:analysts", call, nil)
	p, _ := next.Policy("analysts")
	if r.Decision != authorize.Deny || r.Policy.Version != p.Version || r.Policy.Bundle != next.Version {
		t.Errorf("after the change: %+v policy %+v, want deny by analysts@%s", r, r.Policy, p.Version)
	}
}

func TestInputMapping(t *testing.T) {
	req := authorize.Request{
		Call: authorize.Call{API: "jobs.insert", Method: "POST", Project: "acme", JobID: "j1"},
		Query: &authorize.Query{SQL: "x", LegacySQL: false, DryRun: true, WriteDisposition: "WRITE_APPEND",
			Destination: &bqapi.TableReference{DatasetID: "scratch", TableID: "t"}},
	}
	id := identity.Identity{AgentID: "a", Issuer: "https://i", Groups: []string{"g"}}
	an := &policies.Analysis{StatementKind: "SELECT"}
	in := policystep.Input(req, id, an, nil)
	if in.Identity.AgentID != "a" || in.Identity.Issuer != "https://i" || in.Identity.Groups[0] != "g" ||
		in.Call.API != "jobs.insert" || in.Call.Project != "acme" || in.Call.JobID != "j1" ||
		in.Query == nil || !in.Query.DryRun || in.Query.Destination != "acme.scratch.t" || in.Query.WriteDisposition != "WRITE_APPEND" ||
		in.Analysis != an {
		t.Errorf("input = %+v query %+v", in, in.Query)
	}
}

type jobLedgerFunc func(project, dataset, table, jobID string) *policies.Job

func (f jobLedgerFunc) Job(_ context.Context, project, jobID string) (*policies.Job, error) {
	return f(project, "", "", jobID), nil
}

func (f jobLedgerFunc) ResultTableJob(_ context.Context, project, dataset, table string) (*policies.Job, error) {
	return f(project, dataset, table, ""), nil
}

// tabledata.list on an anonymous result table is decided by the owner of the job that
// wrote it, found by table when the ledger can, and by the call's job id otherwise.
func TestResultTableOwner(t *testing.T) {
	b := compile(t, `apiVersion: jitgate.dev/v1
kind: AgentPolicy
metadata:
  name: pager
spec:
  who:
    agents: [a, b]
  where:
    projects: [acme]
    apis: [tabledata.list, jobs.getQueryResults]
`)
	owners := jobLedgerFunc(func(project, dataset, table, jobID string) *policies.Job {
		if project == "acme" && ((dataset == "_anon" && table == "t1") || jobID == "j1") {
			return &policies.Job{OwnerAgentID: "a", OwnerIssuer: "https://i"}
		}
		return nil
	})
	list := authorize.Request{Call: authorize.Call{API: "tabledata.list", Method: "GET", Project: "acme", Dataset: "_anon", Table: "t1"}}
	for _, tt := range []struct {
		agent string
		req   authorize.Request
		jobs  policystep.JobLedger
		rule  string
	}{
		{"a", list, owners, policies.RuleAllow},
		{"b", list, owners, policies.RuleJobNotOwned},
		{"a", list, nil, policies.RuleNotDecidable},
		{"a", authorize.Request{Call: authorize.Call{API: "tabledata.list", Method: "GET", Project: "acme", Dataset: "_anon", Table: "t2"}}, owners, policies.RuleNotDecidable},
		{"a", authorize.Request{Call: authorize.Call{API: "jobs.getQueryResults", Method: "GET", Project: "acme", JobID: "j1"}}, owners, policies.RuleAllow},
	} {
		out := policystep.Decide(context.Background(), b, tt.req, identity.Identity{AgentID: tt.agent, Issuer: "https://i"}, nil, tt.jobs)
		if out.Decision == nil || out.Decision.Rule != tt.rule {
			t.Errorf("%s %s %s.%s: %+v", tt.agent, tt.req.Call.API, tt.req.Call.Dataset, tt.req.Call.Table, out.Decision)
		}
	}
}
