package jobs_test

import (
	"bytes"
	"errors"
	"log/slog"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/jitgate/jitgate/controlplane/jobs"
	"github.com/jitgate/jitgate/controlplane/natsembed"
	"github.com/jitgate/jitgate/filter/bqapi"
	"github.com/jitgate/jitgate/filter/masking"
)

const (
	project = "jitgate-demo"
	issuerA = "https://issuer-a.example"
)

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// startNATS embeds a NATS server with JetStream on dir (a temp dir when empty) or
// connects to url.
func startNATS(t *testing.T, dir, url string) *natsembed.NATS {
	t.Helper()
	if dir == "" && url == "" {
		dir = t.TempDir()
	}
	n, err := natsembed.Start(t.Context(), natsembed.Options{URL: url, StoreDir: dir, MaxMemoryBytes: 16 << 20, MaxStoreBytes: 64 << 20, Name: "jobs-test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	return n
}

type testLedger struct {
	*jobs.Ledger
	reg  *prometheus.Registry
	logs *syncBuffer
	nats *natsembed.NATS
}

func openLedger(t *testing.T, n *natsembed.NATS) *testLedger {
	t.Helper()
	tl := &testLedger{reg: prometheus.NewRegistry(), logs: &syncBuffer{}, nats: n}
	l, err := jobs.Open(t.Context(), n.JetStream, jobs.Options{
		Logger:  slog.New(slog.NewJSONHandler(tl.logs, nil)),
		Metrics: jobs.NewMetrics(tl.reg),
	})
	if err != nil {
		t.Fatal(err)
	}
	tl.Ledger = l
	return tl
}

func (tl *testLedger) count(t *testing.T, metric, result string) float64 {
	t.Helper()
	mfs, err := tl.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != metric {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "result" && lp.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func decision(id, agent, api string) jobs.Decision {
	return jobs.Decision{
		DecisionID: id, Agent: agent, Issuer: issuerA, Groups: []string{"analysts"},
		Policy: "crm-reader@sha256:abc", PolicyBundle: "sha256:bundle", API: api, Project: project,
		StatementKind: "SELECT", ReferencedTables: []string{project + ".crm.customers"},
	}
}

func report(decisionID, api, jobID string) jobs.Report {
	r := jobs.Report{DecisionID: decisionID, API: api}
	if jobID != "" {
		r.Job = &bqapi.JobReference{ProjectID: project, JobID: jobID, Location: "US"}
	}
	return r
}

func mustRecord(t *testing.T, l *testLedger, r jobs.Report) jobs.Outcome {
	t.Helper()
	out, err := l.Record(t.Context(), r)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDecisionReportLookup(t *testing.T) {
	n := startNATS(t, "", "")
	l := openLedger(t, n)
	ctx := t.Context()
	if err := l.RecordDecision(ctx, decision("dec_a1", "agent-a", "jobs.query")); err != nil {
		t.Fatal(err)
	}
	d, err := l.Decision(ctx, "dec_a1")
	if err != nil || d == nil || d.Agent != "agent-a" || d.Policy != "crm-reader@sha256:abc" || d.CreatedAt.IsZero() {
		t.Fatalf("decision = %+v, %v", d, err)
	}
	r := report("dec_a1", "jobs.query", "job_1")
	r.QueryID = "q-1"
	r.ResultTable = &bqapi.TableReference{ProjectID: project, DatasetID: "_anon0123", TableID: "anon_t1"}
	if out := mustRecord(t, l, r); !out.Recorded || out.Reason != "" {
		t.Fatalf("outcome = %+v", out)
	}

	j, err := l.Job(ctx, project, "job_1")
	if err != nil || j == nil {
		t.Fatalf("job = %v, %v", j, err)
	}
	want := jobs.Job{Agent: "agent-a", Issuer: issuerA, DecisionID: "dec_a1", Policy: "crm-reader@sha256:abc",
		API: "jobs.query", StatementKind: "SELECT", ReferencedTables: []string{project + ".crm.customers"},
		ResultTable: project + "._anon0123.anon_t1", Project: project, JobID: "job_1", QueryID: "q-1", Location: "US", CreatedAt: j.CreatedAt}
	if !jobEqual(*j, want) || j.CreatedAt.IsZero() {
		t.Errorf("job = %+v\nwant %+v", *j, want)
	}
	if !j.OwnedBy(issuerA, "agent-a") || j.OwnedBy(issuerA, "agent-b") || j.OwnedBy("https://other.example", "agent-a") {
		t.Error("OwnedBy does not compare issuer and agent")
	}
	for name, get := range map[string]func() (*jobs.Job, error){
		"query id":     func() (*jobs.Job, error) { return l.QueryJob(ctx, project, "q-1") },
		"result table": func() (*jobs.Job, error) { return l.ResultTable(ctx, project, "_anon0123", "anon_t1") },
	} {
		if got, err := get(); err != nil || got == nil || !jobEqual(*got, *j) {
			t.Errorf("by %s: %+v, %v", name, got, err)
		}
	}
	if got, err := l.Job(ctx, project, "job_2"); got != nil || err != nil {
		t.Errorf("unknown job = %+v, %v", got, err)
	}
	if got, err := l.ResultTable(ctx, project, "crm", "customers"); got != nil || err != nil {
		t.Errorf("base table = %+v, %v", got, err)
	}
	pj, err := l.PolicyLedger().ResultTableJob(ctx, project, "_anon0123", "anon_t1")
	if err != nil || pj == nil || pj.OwnerAgentID != "agent-a" || pj.OwnerIssuer != issuerA {
		t.Errorf("policy view = %+v, %v", pj, err)
	}

	// The buckets and keys, as an operator sees them with `nats kv`.
	kv, err := n.JetStream.KeyValue(ctx, jobs.JobsBucket)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.Keys(ctx)
	slices.Sort(keys)
	wantKeys := []string{"job.jitgate-demo.job_1", "query.jitgate-demo.q-1", "table.jitgate-demo._anon0123.anon_t1"}
	if err != nil || !slices.Equal(keys, wantKeys) {
		t.Errorf("keys = %q, %v; want %q", keys, err, wantKeys)
	}
	st, err := kv.Status(ctx)
	if err != nil || st.TTL() != 48*time.Hour || st.History() != 1 {
		t.Errorf("jobs bucket TTL %v history %d (%v)", st.TTL(), st.History(), err)
	}
	dkv, err := n.JetStream.KeyValue(ctx, jobs.DecisionsBucket)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := dkv.Status(ctx); err != nil || st.TTL() != time.Hour {
		t.Errorf("decisions bucket: %v", err)
	}
	if got := l.count(t, "jitgate_jobs_recorded_total", "recorded"); got != 1 {
		t.Errorf("recorded metric = %v", got)
	}
}

func jobEqual(a, b jobs.Job) bool {
	return a.Agent == b.Agent && a.Issuer == b.Issuer && a.DecisionID == b.DecisionID && a.Policy == b.Policy &&
		a.API == b.API && a.StatementKind == b.StatementKind && slices.Equal(a.ReferencedTables, b.ReferencedTables) &&
		a.ResultTable == b.ResultTable && a.Project == b.Project && a.JobID == b.JobID && a.QueryID == b.QueryID &&
		a.Location == b.Location && a.CreatedAt.Equal(b.CreatedAt)
}

// A jobs.query response names no result table; the owner's later jobs.get response does,
// and the table joins the record.
func TestJobsGetReportAddsResultTable(t *testing.T) {
	l := openLedger(t, startNATS(t, "", ""))
	ctx := t.Context()
	_ = l.RecordDecision(ctx, decision("dec_q", "agent-a", "jobs.query"))
	if out := mustRecord(t, l, report("dec_q", "jobs.query", "job_7")); !out.Recorded {
		t.Fatalf("%+v", out)
	}
	get := decision("dec_g", "agent-a", "jobs.get")
	get.JobID, get.StatementKind, get.ReferencedTables = "job_7", "", nil
	_ = l.RecordDecision(ctx, get)
	r := report("dec_g", "jobs.get", "job_7")
	r.ResultTable = &bqapi.TableReference{DatasetID: "_anon9", TableID: "anon_x"} // project defaults to the job's
	if out := mustRecord(t, l, r); !out.Recorded {
		t.Fatalf("%+v", out)
	}
	j, err := l.Job(ctx, project, "job_7")
	if err != nil || j.ResultTable != project+"._anon9.anon_x" || j.DecisionID != "dec_q" || j.StatementKind != "SELECT" {
		t.Errorf("merged job = %+v, %v", j, err)
	}
	if rt, err := l.ResultTable(ctx, project, "_anon9", "anon_x"); err != nil || rt == nil || rt.Agent != "agent-a" {
		t.Errorf("result table = %+v, %v", rt, err)
	}
	// A jobs.get report for another job than the decision's is refused.
	r.Job.JobID = "job_8"
	if out := mustRecord(t, l, r); out.Recorded || out.Reason != jobs.ReasonDecisionMismatch {
		t.Errorf("mismatched jobs.get report: %+v", out)
	}
}

func TestRestartKeepsRecords(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nats")
	n1, err := natsembed.Start(t.Context(), natsembed.Options{StoreDir: dir, MaxMemoryBytes: 16 << 20, MaxStoreBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	l1 := openLedger(t, n1)
	_ = l1.RecordDecision(t.Context(), decision("dec_r", "agent-a", "jobs.insert"))
	if out := mustRecord(t, l1, report("dec_r", "jobs.insert", "job_r")); !out.Recorded {
		t.Fatalf("%+v", out)
	}
	n1.Close()

	n2 := startNATS(t, dir, "")
	l2 := openLedger(t, n2)
	j, err := l2.Job(t.Context(), project, "job_r")
	if err != nil || j == nil || !j.OwnedBy(issuerA, "agent-a") {
		t.Fatalf("after restart: %+v, %v", j, err)
	}
	// The decision survived too (its TTL is an hour).
	if d, err := l2.Decision(t.Context(), "dec_r"); err != nil || d == nil {
		t.Errorf("decision after restart: %+v, %v", d, err)
	}
}

// Two control planes on one NATS share the ledger: one records the decision, the other
// gets the report, the first answers the follow-up.
func TestTwoLedgersOneNATS(t *testing.T) {
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true,
		StoreDir: t.TempDir(), JetStreamMaxMemory: 16 << 20, JetStreamMaxStore: 64 << 20, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats not ready")
	}
	a := openLedger(t, startNATS(t, "", srv.ClientURL()))
	b := openLedger(t, startNATS(t, "", srv.ClientURL()))
	ctx := t.Context()
	_ = a.RecordDecision(ctx, decision("dec_two", "agent-a", "jobs.query"))
	if out := mustRecord(t, b, report("dec_two", "jobs.query", "job_two")); !out.Recorded {
		t.Fatalf("report on the other control plane: %+v", out)
	}
	if j, err := a.Job(ctx, project, "job_two"); err != nil || j == nil || j.Agent != "agent-a" {
		t.Fatalf("first control plane does not see the record: %+v, %v", j, err)
	}
	// A conflicting claim through the first one sees the second's record.
	other := decision("dec_other", "agent-b", "jobs.insert")
	other.ClientJobID = "job_two"
	_ = b.RecordDecision(ctx, other)
	if out := mustRecord(t, a, report("dec_other", "jobs.insert", "job_two")); out.Recorded || out.Reason != jobs.ReasonOwnedByAnother {
		t.Errorf("conflict across control planes: %+v", out)
	}
}

func TestUnknownDecision(t *testing.T) {
	l := openLedger(t, startNATS(t, "", ""))
	for _, id := range []string{"dec_never", "not a decision id!"} {
		if out := mustRecord(t, l, report(id, "jobs.query", "job_u")); out.Recorded || out.Reason != jobs.ReasonUnknownDecision {
			t.Errorf("%q: %+v", id, out)
		}
	}
	if j, _ := l.Job(t.Context(), project, "job_u"); j != nil {
		t.Errorf("a report without a decision was recorded: %+v", j)
	}
	if out := mustRecord(t, l, report("dec_never", "jobs.query", "job_u")); out.Recorded || out.Reason != jobs.ReasonUnknownDecision {
		t.Errorf("again: %+v", out)
	}
	if got := l.count(t, "jitgate_jobs_recorded_total", jobs.ReasonUnknownDecision); got != 3 {
		t.Errorf("metric unknown_decision = %v", got)
	}
}

func TestDifferentOwner(t *testing.T) {
	l := openLedger(t, startNATS(t, "", ""))
	ctx := t.Context()
	_ = l.RecordDecision(ctx, decision("dec_a", "agent-a", "jobs.query"))
	if out := mustRecord(t, l, report("dec_a", "jobs.query", "job_x")); !out.Recorded {
		t.Fatal(out)
	}
	// Agent B inserts a job with the same (client-chosen) id; the filter reports it.
	b := decision("dec_b", "agent-b", "jobs.insert")
	b.ClientJobID = "job_x"
	_ = l.RecordDecision(ctx, b)
	if out := mustRecord(t, l, report("dec_b", "jobs.insert", "job_x")); out.Recorded || out.Reason != jobs.ReasonOwnedByAnother ||
		!strings.Contains(out.Detail, `owned by agent "agent-a"`) {
		t.Fatalf("%+v", out)
	}
	if j, _ := l.Job(ctx, project, "job_x"); j == nil || j.Agent != "agent-a" || j.DecisionID != "dec_a" {
		t.Errorf("owner changed: %+v", j)
	}
	// The same agent id from another issuer is another agent.
	c := decision("dec_c", "agent-a", "jobs.insert")
	c.Issuer, c.ClientJobID = "https://issuer-b.example", "job_x"
	_ = l.RecordDecision(ctx, c)
	if out := mustRecord(t, l, report("dec_c", "jobs.insert", "job_x")); out.Recorded || out.Reason != jobs.ReasonOwnedByAnother {
		t.Errorf("other issuer: %+v", out)
	}
	logs := l.logs.String()
	if !strings.Contains(logs, `"level":"WARN","msg":"job report refused"`) || !strings.Contains(logs, `"reason":"job_owned_by_another_agent"`) {
		t.Errorf("no WARN for the conflict:\n%s", logs)
	}
	if got := l.count(t, "jitgate_jobs_recorded_total", jobs.ReasonOwnedByAnother); got != 2 {
		t.Errorf("metric = %v", got)
	}
	// The report must match its decision: API, project and client job id.
	mismatch := []jobs.Report{report("dec_b", "jobs.query", "job_x"), report("dec_b", "jobs.insert", "job_other")}
	wrongProject := report("dec_b", "jobs.insert", "job_x")
	wrongProject.Job.ProjectID = "another-project"
	for _, r := range append(mismatch, wrongProject) {
		if out := mustRecord(t, l, r); out.Recorded || out.Reason != jobs.ReasonDecisionMismatch {
			t.Errorf("%+v: %+v", r, out)
		}
	}
}

func TestKVFailure(t *testing.T) {
	n := startNATS(t, "", "")
	l := openLedger(t, n)
	ctx := t.Context()
	_ = l.RecordDecision(ctx, decision("dec_k", "agent-a", "jobs.query"))
	n.Conn.Close() // NATS gone
	if err := l.RecordDecision(ctx, decision("dec_k2", "agent-a", "jobs.query")); !errors.Is(err, jobs.ErrUnavailable) {
		t.Errorf("RecordDecision: %v", err)
	}
	if _, err := l.Job(ctx, project, "job_k"); !errors.Is(err, jobs.ErrUnavailable) {
		t.Errorf("Job: %v", err)
	}
	if _, err := l.Record(ctx, report("dec_k", "jobs.query", "job_k")); !errors.Is(err, jobs.ErrUnavailable) {
		t.Errorf("Record: %v", err)
	}
	if _, err := l.Record(ctx, report("dec_k", "jobs.insert", "job_k2")); !errors.Is(err, jobs.ErrUnavailable) {
		t.Errorf("Record again: %v", err)
	}
	if got := l.count(t, "jitgate_jobs_recorded_total", jobs.ResultError); got != 2 {
		t.Errorf("metric error = %v", got)
	}
}

// A decision's masking plan goes with its job under every key (job, result table), after
// a restart and on another control plane, and a result table first named by a jobs.get
// report gets the plan of the query that made it.
func TestMaskingPlanKeptWithJob(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nats")
	n1, err := natsembed.Start(t.Context(), natsembed.Options{StoreDir: dir, MaxMemoryBytes: 16 << 20, MaxStoreBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	l1 := openLedger(t, n1)
	ctx := t.Context()
	plan := &jobs.Masking{Rules: []masking.Rule{{Path: []int{2}, Action: masking.EmailDomain}, {Path: []int{1, 0}, Action: masking.Hash}},
		Detectors: []string{"ssn"}, Basis: "sha256:0123456789abcdef"}
	d := decision("dec_m", "agent-a", "jobs.query")
	d.Masking = plan
	_ = l1.RecordDecision(ctx, d)
	r := report("dec_m", "jobs.query", "job_m")
	r.ResultTable = &bqapi.TableReference{DatasetID: "_anon_m", TableID: "t1"}
	if out := mustRecord(t, l1, r); !out.Recorded {
		t.Fatalf("%+v", out)
	}
	// A second job, whose result table only a later jobs.get names.
	d2 := decision("dec_m2", "agent-a", "jobs.insert")
	d2.ClientJobID, d2.Masking = "job_m2", plan
	_ = l1.RecordDecision(ctx, d2)
	if out := mustRecord(t, l1, report("dec_m2", "jobs.insert", "job_m2")); !out.Recorded {
		t.Fatalf("%+v", out)
	}
	n1.Close()

	n2 := startNATS(t, dir, "")
	l2 := openLedger(t, n2)
	replica := openLedger(t, n2) // a second control plane on the same NATS
	get := decision("dec_g2", "agent-a", "jobs.get")
	get.JobID, get.StatementKind, get.ReferencedTables = "job_m2", "", nil // a jobs.get decision carries no plan
	_ = l2.RecordDecision(ctx, get)
	rg := report("dec_g2", "jobs.get", "job_m2")
	rg.ResultTable = &bqapi.TableReference{DatasetID: "_anon_m", TableID: "t2"}
	if out := mustRecord(t, replica, rg); !out.Recorded {
		t.Fatalf("%+v", out)
	}
	for name, lookup := range map[string]func() (*jobs.Job, error){
		"job":                func() (*jobs.Job, error) { return l2.Job(ctx, project, "job_m") },
		"result table":       func() (*jobs.Job, error) { return l2.ResultTable(ctx, project, "_anon_m", "t1") },
		"jobs.get's table":   func() (*jobs.Job, error) { return l2.ResultTable(ctx, project, "_anon_m", "t2") },
		"job after jobs.get": func() (*jobs.Job, error) { return l2.Job(ctx, project, "job_m2") },
	} {
		j, err := lookup()
		if err != nil || j == nil || !reflect.DeepEqual(j.Masking, plan) {
			t.Errorf("%s after restart: %+v, %v", name, j, err)
		}
	}
}

// TestLedgerKeepsNotAnalysed: a legacy query allowed unanalysed is recorded as such, and a
// later jobs.get report (whose decision has no analysis) keeps it.
func TestLedgerKeepsNotAnalysed(t *testing.T) {
	l := openLedger(t, startNATS(t, "", ""))
	ctx := t.Context()
	d := decision("dec_l", "agent-a", "jobs.insert")
	d.StatementKind, d.ReferencedTables, d.NotAnalysed = "", nil, "legacy SQL"
	_ = l.RecordDecision(ctx, d)
	if out := mustRecord(t, l, report("dec_l", "jobs.insert", "job_l")); !out.Recorded {
		t.Fatalf("%+v", out)
	}
	get := decision("dec_lg", "agent-a", "jobs.get")
	get.JobID, get.StatementKind, get.ReferencedTables = "job_l", "", nil
	_ = l.RecordDecision(ctx, get)
	r := report("dec_lg", "jobs.get", "job_l")
	r.ResultTable = &bqapi.TableReference{DatasetID: "_anon1", TableID: "anon_l"}
	if out := mustRecord(t, l, r); !out.Recorded {
		t.Fatalf("%+v", out)
	}
	j, err := l.Job(ctx, project, "job_l")
	if err != nil || j.NotAnalysed != "legacy SQL" || j.StatementKind != "" || j.ResultTable == "" {
		t.Errorf("job = %+v, %v; want notAnalysed legacy SQL kept with the result table", j, err)
	}
}
