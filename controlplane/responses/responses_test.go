package responses

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jitgate/jitgate/controlplane/audit"
	"github.com/jitgate/jitgate/controlplane/jobs"
	"github.com/jitgate/jitgate/controlplane/natsembed"
	"github.com/jitgate/jitgate/filter/authorize"
	"github.com/jitgate/jitgate/filter/bqapi"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// env is a real embedded NATS with the job ledger, the audit trail and the handler.
type env struct {
	nats   *natsembed.NATS
	ledger *jobs.Ledger
	trail  *audit.Writer
	reader *audit.Reader
	h      *Handler
	reg    *prometheus.Registry
}

func newEnv(t *testing.T, relaxed bool, excerpt int) *env { return newEnvTB(t, relaxed, excerpt) }

func newEnvB(b *testing.B) *env { return newEnvTB(b, false, 0) }

func ledgerDecision(id string) jobs.Decision {
	return jobs.Decision{DecisionID: id, Agent: "agent-a", Issuer: "https://issuer", API: "jobs.query", Project: "p"}
}

func newEnvTB(t testing.TB, relaxed bool, excerpt int) *env {
	t.Helper()
	n, err := natsembed.Start(t.Context(), natsembed.Options{StoreDir: t.TempDir(), MaxMemoryBytes: 16 << 20, MaxStoreBytes: 64 << 20, Name: "responses-test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	e := &env{nats: n, reg: prometheus.NewRegistry()}
	if e.ledger, err = jobs.Open(t.Context(), n.JetStream, jobs.Options{Logger: quiet}); err != nil {
		t.Fatal(err)
	}
	if e.trail, err = audit.Open(t.Context(), n.JetStream, audit.Config{Logger: quiet, Name: "cp-test", MaxExcerptBytes: excerpt}); err != nil {
		t.Fatal(err)
	}
	if e.reader, err = audit.NewReader(t.Context(), n.JetStream, ""); err != nil {
		t.Fatal(err)
	}
	e.h = NewHandler(Options{Trail: e.trail, Ledger: e.ledger, Relaxed: relaxed, Logger: quiet, Registerer: e.reg})
	return e
}

// decide stores an authorize decision as authz does: the audit record, and (allowed
// job-creating calls) the ledger's decision.
func (e *env) decide(t *testing.T, id, api, decision string) {
	t.Helper()
	rec := audit.Record{Kind: audit.KindDecision, DecisionID: id, RequestID: "req-" + id, API: api, Project: "p",
		Agent: audit.Agent{ID: "agent-a", Issuer: "https://issuer"}, Decision: decision, CredentialID: "cred-1",
		Client: audit.Client{Address: "10.0.0.1:5", UserAgent: "go-client"}}
	if _, err := e.trail.Append(t.Context(), rec); err != nil {
		t.Fatal(err)
	}
	if decision == "allow" && api == "jobs.query" {
		if err := e.ledger.RecordDecision(t.Context(), jobs.Decision{DecisionID: id, Agent: "agent-a", Issuer: "https://issuer", API: api, Project: "p"}); err != nil {
			t.Fatal(err)
		}
	}
}

const body = `{"kind":"bigquery#queryResponse","rows":[{"f":[{"v":"[REDACTED]"}]}]}`

func report(id, api string) authorize.ResponseReport {
	return authorize.ResponseReport{DecisionID: id, RequestID: "req-" + id, API: api,
		Response: authorize.ResponseSummary{Status: 200, Rows: 1, Masked: true, CellsMasked: 1, Bytes: int64(len(body)),
			Digest: audit.Digest([]byte(body)), Excerpt: body}}
}

func (e *env) post(t *testing.T, rep authorize.ResponseReport) (int, authorize.ResponseReportAck) {
	t.Helper()
	doc, err := rep.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return e.postRaw(t, doc)
}

func (e *env) postRaw(t *testing.T, doc []byte) (int, authorize.ResponseReportAck) {
	t.Helper()
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, authorize.ResponsesPath, bytes.NewReader(doc)))
	var ack authorize.ResponseReportAck
	if rec.Code == 200 {
		var err error
		if ack, err = authorize.ParseResponseReportAck(rec.Body.Bytes()); err != nil {
			t.Fatalf("ack: %v: %s", err, rec.Body)
		}
	}
	return rec.Code, ack
}

func TestResponseRecordedAndJoinedToDecision(t *testing.T) {
	e := newEnv(t, false, 0)
	e.decide(t, "d1", "jobs.query", "allow")
	rep := report("d1", "jobs.query")
	rep.Job, rep.QueryID = &bqapi.JobReference{ProjectID: "p", JobID: "job_1", Location: "US"}, "q1"
	code, ack := e.post(t, rep)
	if code != 200 || !ack.Recorded || ack.AuditSeq != 2 {
		t.Fatalf("answer %d %+v, want recorded at seq 2", code, ack)
	}
	if j, err := e.ledger.Job(t.Context(), "p", "job_1"); err != nil || j == nil || j.Agent != "agent-a" {
		t.Fatalf("ledger job %+v, %v", j, err)
	}
	entries, err := e.reader.Show(t.Context(), "d1")
	if err != nil || len(entries) != 2 {
		t.Fatalf("show d1: %d entries, %v", len(entries), err)
	}
	r := entries[1].Record
	if r.Kind != audit.KindResponse || r.Agent.ID != "agent-a" || r.JobID != "job_1" || r.Location != "US" || r.CredentialID != "cred-1" ||
		r.Client.UserAgent != "go-client" || r.Response == nil || r.Response.Rows != 1 || r.Response.CellsMasked != 1 || !r.Response.Masked ||
		r.Response.Digest != audit.Digest([]byte(body)) || r.Response.BodyExcerpt != body || r.Response.UpstreamStatus != 200 {
		t.Fatalf("response record %+v %+v", r, r.Response)
	}
	if v, err := e.reader.Verify(t.Context()); err != nil || !v.OK() || v.Records != 2 {
		t.Fatalf("verify %+v, %v", v, err)
	}
	if n := counter(t, e.reg, ResultRecorded); n != 1 {
		t.Fatalf("recorded counter %v", n)
	}
}

func TestResponseWithoutJob(t *testing.T) {
	e := newEnv(t, false, 0)
	e.decide(t, "d2", "jobs.getQueryResults", "allow")
	if code, ack := e.post(t, report("d2", "jobs.getQueryResults")); code != 200 || !ack.Recorded {
		t.Fatalf("answer %d %+v", code, ack)
	}
}

func TestResponseRefused(t *testing.T) {
	e := newEnv(t, false, 0)
	e.decide(t, "denied", "jobs.query", "deny")
	e.decide(t, "other", "tables.get", "allow")
	e.decide(t, "q", "jobs.query", "allow")
	owned := report("q", "jobs.query")
	owned.Job = &bqapi.JobReference{ProjectID: "elsewhere", JobID: "job_9"}
	for name, tc := range map[string]struct {
		rep    authorize.ResponseReport
		reason string
	}{
		"unknown decision": {report("nope", "jobs.query"), ReasonUnknownDecision},
		"denied decision":  {report("denied", "jobs.query"), ReasonNotAllowed},
		"other api":        {report("other", "jobs.query"), ReasonDecisionMismatch},
		"ledger refuses":   {owned, jobs.ReasonDecisionMismatch},
	} {
		code, ack := e.post(t, tc.rep)
		if code != 200 || ack.Recorded || ack.Reason != tc.reason {
			t.Errorf("%s: answer %d %+v, want refused %s", name, code, ack, tc.reason)
		}
	}
	entries, _ := e.reader.Show(t.Context(), "denied")
	if len(entries) != 1 {
		t.Errorf("a refused report left %d records", len(entries))
	}
	if code, _ := e.postRaw(t, []byte(`{"version":"`+authorize.Version+`","decisionId":"x"}`)); code != 400 {
		t.Errorf("invalid report: %d, want 400", code)
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, authorize.ResponsesPath, nil))
	if rec.Code != 405 {
		t.Errorf("GET: %d", rec.Code)
	}
}

func TestExcerptCapped(t *testing.T) {
	e := newEnv(t, false, 8)
	e.decide(t, "d", "tabledata.list", "allow")
	if _, ack := e.post(t, report("d", "tabledata.list")); !ack.Recorded {
		t.Fatalf("%+v", ack)
	}
	entries, _ := e.reader.Show(t.Context(), "d")
	r := entries[len(entries)-1].Record.Response
	if r.BodyExcerpt != body[:8] || !r.ExcerptTruncated || r.Bytes != int64(len(body)) {
		t.Fatalf("excerpt %q truncated=%v", r.BodyExcerpt, r.ExcerptTruncated)
	}
}

// NATS down: strict refuses (the filter answers 503), relaxed releases unaudited.
func TestAuditUnavailable(t *testing.T) {
	for _, relaxed := range []bool{false, true} {
		e := newEnv(t, relaxed, 0)
		e.decide(t, "d", "tables.get", "allow")
		e.nats.Close()
		code, ack := e.post(t, report("d", "tables.get"))
		if relaxed {
			if code != 200 || !ack.Recorded || ack.AuditSeq != 0 {
				t.Errorf("relaxed: %d %+v, want released without a record", code, ack)
			}
			continue
		}
		if code != 200 || ack.Recorded || ack.Reason != ReasonAuditUnavailable {
			t.Errorf("strict: %d %+v, want refused audit_unavailable", code, ack)
		}
		// A job the ledger cannot record is never released, in either mode.
		rep := report("d", "tables.get")
		rep.QueryID = "q"
		if code, ack := e.post(t, rep); code == 200 && ack.Recorded {
			t.Errorf("ledger down: released")
		}
	}
}

func TestResponseRecordHoldsNoHeader(t *testing.T) {
	rec := ResponseRecord(nil, report("d", "jobs.query"))
	if rec.Agent.ID != "" || rec.Response.Digest == "" || strings.Contains(rec.Response.BodyExcerpt, "Bearer") {
		t.Fatalf("%+v", rec)
	}
	_ = context.Background()
}

func counter(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if mf.GetName() == "jitgate_response_reports_total" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
