package authorize

import (
	"errors"
	"strings"
	"testing"

	"github.com/jitgate/jitgate/filter/bqapi"
)

func responseReport() ResponseReport {
	return ResponseReport{DecisionID: "d-1", RequestID: "r-1", API: "jobs.query",
		Job: &bqapi.JobReference{ProjectID: "p", JobID: "job_1"}, QueryID: "q-1",
		Response: ResponseSummary{Status: 200, Rows: 2, Masked: true, CellsMasked: 2, Bytes: 20,
			Digest: "sha256:" + strings.Repeat("ab", 32), Excerpt: `{"rows":[]}`}}
}

func TestResponseReportRoundTrip(t *testing.T) {
	b, err := responseReport().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	r, err := ParseResponseReport(b)
	if err != nil {
		t.Fatal(err)
	}
	if r.Version != Version || !r.NamesJob() || r.Response.Rows != 2 || r.Response.Excerpt != `{"rows":[]}` {
		t.Fatalf("round trip lost data: %+v", r)
	}
	if r.DecisionID != "d-1" || r.Job == nil || r.Job.JobID != "job_1" || r.QueryID != "q-1" {
		t.Fatalf("job part: %+v", r)
	}
	a, err := ResponseReportAck{Recorded: true, AuditSeq: 7}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if ack, err := ParseResponseReportAck(a); err != nil || !ack.Recorded || ack.AuditSeq != 7 {
		t.Fatalf("ack %+v, %v", ack, err)
	}
}

func TestParseResponseReportRejects(t *testing.T) {
	for name, mutate := range map[string]func(*ResponseReport){
		"no decision":   func(r *ResponseReport) { r.DecisionID = "" },
		"no api":        func(r *ResponseReport) { r.API = "" },
		"no status":     func(r *ResponseReport) { r.Response.Status = 0 },
		"negative rows": func(r *ResponseReport) { r.Response.Rows = -1 },
		"no digest":     func(r *ResponseReport) { r.Response.Digest = "" },
		"bad digest":    func(r *ResponseReport) { r.Response.Digest = "sha256:XYZ" },
		"table without job": func(r *ResponseReport) {
			r.Job, r.QueryID, r.ResultTable = nil, "", &bqapi.TableReference{TableID: "t"}
		},
	} {
		r := responseReport()
		mutate(&r)
		b, err := r.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseResponseReport(b); !errors.Is(err, ErrContract) {
			t.Errorf("%s: ParseResponseReport = %v, want ErrContract", name, err)
		}
	}
	if _, err := ParseResponseReport([]byte(`{"version":"` + Version + `","decisionId":"d","api":"a","response":{},"extra":1}`)); !errors.Is(err, ErrContract) {
		t.Errorf("unknown field accepted: %v", err)
	}
	if _, err := ParseResponseReportAck([]byte(`{"version":"v0","recorded":true}`)); !errors.Is(err, ErrContract) {
		t.Errorf("old ack version accepted: %v", err)
	}
}
