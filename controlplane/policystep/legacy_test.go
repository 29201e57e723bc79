package policystep_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jitgate/jitgate/controlplane/audit"
	"github.com/jitgate/jitgate/controlplane/authz"
	"github.com/jitgate/jitgate/controlplane/credentials"
	"github.com/jitgate/jitgate/controlplane/policystep"
	"github.com/jitgate/jitgate/filter/authorize"
	"github.com/jitgate/jitgate/filter/bqapi"
	"github.com/jitgate/jitgate/policies"
)

const legacyYAML = `apiVersion: jitgate.dev/v1
kind: AgentPolicy
metadata: {name: legacy-reports}
spec:
  who: {agents: [reports, masked, strict-overlaid]}
  where:
    projects: [acme]
    datasets: {allow: [acme.sales]}
    writeTables: [acme.scratch.*]
    apis: [jobs.query, jobs.insert]
  what: {statementKinds: [SELECT, INSERT], legacySql: true, legacySqlAnyTable: true}
---
apiVersion: jitgate.dev/v1
kind: AgentPolicy
metadata: {name: legacy-bounded}
spec:
  who: {agents: [bounded]}
  where: {projects: [acme], datasets: {allow: [acme.sales]}, apis: [jobs.query]}
  what: {statementKinds: [SELECT], legacySql: true}
---
apiVersion: jitgate.dev/v1
kind: AgentPolicy
metadata: {name: standard-only}
spec:
  who: {agents: [standard]}
  where: {projects: [acme], datasets: {allow: [acme.sales]}, apis: [jobs.query]}
  what: {statementKinds: [SELECT]}
---
apiVersion: jitgate.dev/v1
kind: AgentPolicy
metadata: {name: pii-masks}
spec:
  who: {agents: [masked]}
  what:
    masking: [{columns: "acme.*.*.email", action: redact}]
---
apiVersion: jitgate.dev/v1
kind: AgentPolicy
metadata: {name: hr-off-limits}
spec:
  who: {agents: [strict-overlaid]}
  where: {datasets: {deny: [acme.hr]}}
`

// recordingAuditor keeps every audit record.
type recordingAuditor struct {
	mu   sync.Mutex
	recs []audit.Record
}

func (a *recordingAuditor) Append(_ context.Context, r audit.Record) (audit.Appended, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.recs = append(a.recs, r)
	return audit.Appended{Seq: uint64(len(a.recs))}, nil
}

func (a *recordingAuditor) last() audit.Record {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.recs[len(a.recs)-1]
}

// TestLegacySQLDecisions: through the authorize service, legacy SQL is allowed unanalysed
// under what.legacySql (the analyser is never asked; the response, the audit record and
// the decision log say "not analysed: legacy SQL"), denied legacy_sql without it, and
// refused legacy_sql_unchecked where a rule needs the analysis (masking, a deny list, a
// table list not accepted by what.legacySqlAnyTable).
func TestLegacySQLDecisions(t *testing.T) {
	live := &liveBundle{}
	live.b.Store(compile(t, legacyYAML))
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	analysed := 0
	an := analyzerFunc(func(_ context.Context, r authorize.Request) (*policies.Analysis, error) {
		analysed++
		return &policies.Analysis{StatementKind: "SELECT", ReferencedTables: []string{"acme.sales.orders"}}, nil
	})
	step, err := policystep.New(policystep.Options{Bundles: live, Analyzer: an, MinterMode: credentials.ModeSelfSignedJWT, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	aud := &recordingAuditor{}
	svc, err := authz.New(authz.Options{Verifier: tokenVerifier{}, Minter: &recordingMinter{}, CredentialTTL: 5 * time.Minute,
		Steps: []authz.Step{step}, Logger: log, Audit: aud})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(svc)
	t.Cleanup(srv.Close)
	call := func(token, api string, q *authorize.Query) authorize.Response {
		t.Helper()
		body, err := authorize.Request{RequestID: "r", Token: token, Call: authorize.Call{API: api, Method: "POST", Project: "acme"}, Query: q}.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Post(srv.URL, "application/json", bytes.NewReader(body))
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
	legacy := func() *authorize.Query {
		return &authorize.Query{SQL: "SELECT email FROM [acme:hr.people]", LegacySQL: true}
	}
	for _, c := range []struct {
		name, token, api string
		q                *authorize.Query
		reason           string // "" = allowed
		msg              string
	}{
		{"granted", "reports:", "jobs.query", legacy(), "", ""},
		{"granted on jobs.insert with a destination in writeTables", "reports:", "jobs.insert", func() *authorize.Query {
			q := legacy()
			q.Destination = &bqapi.TableReference{DatasetID: "scratch", TableID: "out"}
			return q
		}(), "", ""},
		{"destination outside writeTables", "reports:", "jobs.insert", func() *authorize.Query {
			q := legacy()
			q.Destination = &bqapi.TableReference{DatasetID: "sales", TableID: "out"}
			return q
		}(), policies.RuleWriteNotAllowed, "where.writeTables"},
		{"no grant", "standard:", "jobs.query", legacy(), policies.RuleLegacySQL, "legacy SQL cannot be analysed"},
		{"masking rules apply to the agent", "masked:", "jobs.query", legacy(), policies.RuleLegacySQLUnchecked, "rule legacy_sql_unchecked (what.masking)"},
		{"a dataset deny applies to the agent", "strict-overlaid:", "jobs.query", legacy(), policies.RuleLegacySQLUnchecked, "rule legacy_sql_unchecked (where.datasets.deny)"},
		{"table lists not accepted", "bounded:", "jobs.query", legacy(), policies.RuleLegacySQLUnchecked, "rule legacy_sql_unchecked (what.legacySqlAnyTable)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			logs.mu.Lock()
			logs.b.Reset()
			logs.mu.Unlock()
			r := call(c.token, c.api, c.q)
			rec := aud.last()
			if c.reason != "" {
				if r.Decision != authorize.Deny || r.Status != 403 || r.Reason != c.reason || !strings.Contains(r.Message, c.msg) {
					t.Fatalf("got %s %d %q %q, want 403 %s naming %q", r.Decision, r.Status, r.Reason, r.Message, c.reason, c.msg)
				}
				if r.NotAnalysed != "" || (rec.Analysis != nil && rec.Analysis.NotAnalysed != "") {
					t.Errorf("a denial claims an unanalysed allow: %q / %+v", r.NotAnalysed, rec.Analysis)
				}
				return
			}
			if r.Decision != authorize.Allow {
				t.Fatalf("denied %d %q: %s", r.Status, r.Reason, r.Message)
			}
			if r.NotAnalysed != policies.NotAnalysedLegacySQL {
				t.Errorf("response notAnalysed %q, want %q", r.NotAnalysed, policies.NotAnalysedLegacySQL)
			}
			if rec.Decision != "allow" || rec.Analysis == nil || rec.Analysis.NotAnalysed != policies.NotAnalysedLegacySQL || rec.SQL == "" {
				t.Errorf("audit record decision %q analysis %+v sql %q, want an allow with the SQL saying not analysed: legacy SQL", rec.Decision, rec.Analysis, rec.SQL)
			}
			if l := logs.String(); !strings.Contains(l, `"analysis":"not analysed: legacy SQL"`) {
				t.Errorf("decision log does not say the SQL was not analysed:\n%s", l)
			}
		})
	}
	if analysed != 0 {
		t.Errorf("the analyser was asked %d times about legacy SQL", analysed)
	}
	// Standard SQL under the same grant is analysed, and says nothing of the kind.
	r := call("reports:", "jobs.query", &authorize.Query{SQL: "SELECT id FROM acme.sales.orders"})
	if r.Decision != authorize.Allow || r.NotAnalysed != "" || analysed != 1 {
		t.Errorf("standard SQL: %s %q notAnalysed %q, analysed %d times", r.Decision, r.Reason, r.NotAnalysed, analysed)
	}
	if rec := aud.last(); rec.Analysis == nil || rec.Analysis.NotAnalysed != "" || rec.Analysis.StatementKind != "SELECT" {
		t.Errorf("standard SQL audit analysis %+v", rec.Analysis)
	}
}
