package plugin

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/jitgate/jitgate/filter/authorize"
	"github.com/jitgate/jitgate/filter/bqapi"
)

// The job ledger: the filter holds the 2xx response of an allowed jobs.query, jobs.insert
// or jobs.get, reports the job it names to the control plane, and releases the response
// unchanged only once the ledger recorded it.

// ledgerConfig has a small response limit so the limit tests stay cheap.
const (
	ledgerConfig        = `{"version":"jitgate.dev/filter/v1","maxRequestBodyBytes":65536,"maxResponseBodyBytes":4096,"identityOnly":true}`
	ledgerResponseLimit = 4096
)

const (
	jobsInsertPath = "/bigquery/v2/projects/p/jobs"
	jobsGetPath    = "/bigquery/v2/projects/p/jobs/job_1?location=US&projection=full"
	insertBody     = `{"jobReference":{"projectId":"p","jobId":"job_1"},"configuration":{"query":{"query":"SELECT 1","useLegacySql":false}}}`
	// queryResponse is a jobs.query response (QueryResponse) with rows.
	queryResponse = `{"kind":"bigquery#queryResponse","schema":{"fields":[{"name":"n","type":"INTEGER","mode":"NULLABLE"}]},` +
		`"jobReference":{"projectId":"p","jobId":"job_1","location":"US"},"totalRows":"2","rows":[{"f":[{"v":"1"}]},{"f":[{"v":"2"}]}],` +
		`"totalBytesProcessed":"0","jobComplete":true,"cacheHit":false,"queryId":"q-123"}`
	// jobResponse is a jobs.insert / jobs.get response (Job) of a query job.
	jobResource = `{"kind":"bigquery#job","id":"p:US.job_1","jobReference":{"projectId":"p","jobId":"job_1","location":"US"},` +
		`"configuration":{"query":{"query":"SELECT 1","destinationTable":{"projectId":"p","datasetId":"_anon1","tableId":"anon_tbl"},` +
		`"writeDisposition":"WRITE_TRUNCATE","useLegacySql":false},"jobType":"QUERY"},"status":{"state":"DONE"}}`
)

// upstream is BigQuery's response as the host delivers it.
type upstream struct {
	status  string
	headers [][2]string
	// chunks are body frames; nil means a response without a body.
	chunks   [][]byte
	trailers [][2]string
}

func upstreamOK(body string, extra ...[2]string) upstream {
	h := append([][2]string{{"content-type", "application/json; charset=UTF-8"}, {"content-length", strconv.Itoa(len(body))}}, extra...)
	return upstream{status: "200", headers: h, chunks: chunked([]byte(body), 3)}
}

// ledgerOutcome is what the host saw of one exchange.
type ledgerOutcome struct {
	req                outcome // the request side, as send reports it
	respHeadersAction  types.Action
	respActions        []types.Action // body frames and trailers
	heldBeforeAck      bool           // the response was still paused when the report was answered
	report             *proxytest.HttpCalloutAttribute
	job                authorize.ResponseReport
	streamAction       types.Action // after everything
	reply              *proxytest.LocalHttpResponse
	agentHeaders       [][2]string
	agentBody          []byte // the response body as it stands (what goes to the agent when released)
	logLine            string
	allLogs            []string
	upstreamBodyOrigin []byte // the body upstream sent, concatenated
}

func (o ledgerOutcome) released() bool {
	return o.reply == nil && o.streamAction == types.ActionContinue
}

// recordedAck is the control plane's positive answer (job and response recorded).
func recordedAck(t testing.TB) *answer {
	t.Helper()
	b, err := authorize.ResponseReportAck{Recorded: true, AuditSeq: 42}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return ok200(b)
}

// exchange drives one allowed request, then the upstream response up, then answers the
// response report (if one is sent) with ack (nil: recorded), and completes the stream.
func exchange(t *testing.T, host proxytest.HostEmulator, req request, up upstream, ack *answer) ledgerOutcome {
	t.Helper()
	before := len(host.GetInfoLogs())
	beforeAll := logLevels(host)
	var o ledgerOutcome
	id := host.InitializeHttpContext()
	headers := [][2]string{{":method", req.method}, {":path", req.path}, {":authority", "gateway"},
		{"authorization", "Bearer " + agentToken}, {"x-request-id", "req-77"}, {"accept-encoding", "gzip, deflate"}}
	headers = append(headers, req.headers...)
	host.CallOnRequestHeaders(id, headers, req.chunks == nil)
	for i, c := range req.chunks {
		host.CallOnRequestBody(id, c, i == len(req.chunks)-1)
	}
	if host.GetSentLocalResponse(id) != nil {
		t.Fatalf("request refused: %s", host.GetSentLocalResponse(id).Data)
	}
	o.req.callout, o.req.authz = answerCallout(t, host, id, req.answer)
	o.req.streamAction = host.GetCurrentHttpStreamAction(id)
	o.req.upstreamHeaders = host.GetCurrentRequestHeaders(id)
	if !o.req.forwarded() || host.GetSentLocalResponse(id) != nil {
		t.Fatalf("request not forwarded (action %v)", o.req.streamAction)
	}
	calloutsBefore := len(host.GetCalloutAttributesFromContext(id))

	rh := append([][2]string{{":status", up.status}}, up.headers...)
	o.respHeadersAction = host.CallOnResponseHeaders(id, rh, up.chunks == nil && up.trailers == nil)
	for i, c := range up.chunks {
		o.upstreamBodyOrigin = append(o.upstreamBodyOrigin, c...)
		if host.GetSentLocalResponse(id) != nil {
			break // Envoy stops delivering the upstream response after a local reply
		}
		eos := i == len(up.chunks)-1 && up.trailers == nil
		o.respActions = append(o.respActions, host.CallOnResponseBody(id, c, eos))
	}
	if up.trailers != nil && host.GetSentLocalResponse(id) == nil {
		o.respActions = append(o.respActions, host.CallOnResponseTrailers(id, up.trailers))
	}
	if cos := host.GetCalloutAttributesFromContext(id); len(cos) > calloutsBefore {
		if len(cos) > calloutsBefore+1 {
			t.Errorf("%d response reports for one response, want 1", len(cos)-calloutsBefore)
		}
		co := cos[len(cos)-1]
		o.report = &co
		job, err := authorize.ParseResponseReport(co.Body)
		if err != nil {
			t.Errorf("report body is not a contract response report: %v: %s", err, co.Body)
		}
		o.job = job
		o.heldBeforeAck = host.GetCurrentHttpStreamAction(id) == types.ActionPause && host.GetSentLocalResponse(id) == nil
		if ack == nil {
			ack = recordedAck(t)
		}
		host.CallOnHttpCallResponse(co.CalloutID, ack.headers, nil, ack.body)
	}
	o.streamAction = host.GetCurrentHttpStreamAction(id)
	o.reply = host.GetSentLocalResponse(id)
	o.agentHeaders = host.GetCurrentResponseHeaders(id)
	o.agentBody = host.GetCurrentResponseBody(id)
	host.CompleteHttpContext(id)
	o.req.logs = host.GetInfoLogs()[before:]
	o.req.allLogs = logsSince(host, beforeAll)
	o.req.reply = o.reply
	o.logLine = o.req.logLine(t)
	noSecrets(t, o.req)
	return o
}

// wantReleased fails unless the response was held until the ledger answered and then
// released byte-identical, headers included.
func wantReleased(t *testing.T, o ledgerOutcome, up upstream) {
	t.Helper()
	if o.reply != nil {
		t.Fatalf("response replaced with %d: %s", o.reply.StatusCode, o.reply.Data)
	}
	if o.respHeadersAction != types.ActionPause {
		t.Errorf("response headers action = %v, want pause until the job is recorded", o.respHeadersAction)
	}
	for i, a := range o.respActions {
		if a != types.ActionPause {
			t.Errorf("response frame %d action = %v, want pause", i, a)
		}
	}
	if o.report == nil || !o.heldBeforeAck {
		t.Fatalf("response not held for a response report (report %v)", o.report != nil)
	}
	if o.streamAction != types.ActionContinue {
		t.Fatalf("response not resumed after the ack (action %v)", o.streamAction)
	}
	if !bytes.Equal(o.agentBody, o.upstreamBodyOrigin) {
		t.Errorf("released body changed:\n got %q\nwant %q", o.agentBody, o.upstreamBodyOrigin)
	}
	for _, kv := range up.headers {
		if got := headerValue(o.agentHeaders, kv[0]); got != kv[1] {
			t.Errorf("response header %s = %q, want %q", kv[0], got, kv[1])
		}
	}
	if got := headerValue(o.agentHeaders, DecisionIDHeader); got != allowDecisionID {
		t.Errorf("%s = %q", DecisionIDHeader, got)
	}
	if !strings.Contains(o.logLine, " decision=allow status=200 ") || !strings.Contains(o.logLine, " audit_seq=42") ||
		o.job.NamesJob() != strings.Contains(o.logLine, " job_recorded=true") {
		t.Errorf("log line %q does not record the released, recorded response", o.logLine)
	}
	co := o.report
	if co.Upstream != "jitgate_controlplane" {
		t.Errorf("report cluster = %q", co.Upstream)
	}
	for k, v := range map[string]string{":method": "POST", ":path": "/v1/responses", ":authority": "jitgate-controlplane", "content-type": "application/json"} {
		if got := headerValue(co.Headers, k); got != v {
			t.Errorf("report %s = %q, want %q", k, got, v)
		}
	}
	if o.job.DecisionID != allowDecisionID || o.job.RequestID != "req-77" || o.job.Version != authorize.Version {
		t.Errorf("report = %+v", o.job)
	}
}

// wantNoAcceptEncoding checks what went upstream for a ledger call.
func wantNoAcceptEncoding(t *testing.T, o ledgerOutcome) {
	t.Helper()
	if v := headerValues(o.req.upstreamHeaders, "accept-encoding"); len(v) != 0 {
		t.Errorf("accept-encoding still goes upstream on a ledger call: %q", v)
	}
	if got := headerValues(o.req.upstreamHeaders, "authorization"); len(got) != 1 || got[0] != mintedCredential {
		t.Errorf("upstream authorization = %q", got)
	}
}

func TestJobLedgerReportsAndReleases(t *testing.T) {
	job1 := &bqapi.JobReference{ProjectID: "p", JobID: "job_1", Location: "US"}
	anon := &bqapi.TableReference{ProjectID: "p", DatasetID: "_anon1", TableID: "anon_tbl"}
	queryReq := request{method: "POST", path: queryPath, chunks: withBody(queryBody)}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host := configuredHost(t, vm)

		t.Run("jobs.query", func(t *testing.T) {
			up := upstreamOK(queryResponse)
			o := exchange(t, host, queryReq, up, nil)
			wantNoAcceptEncoding(t, o)
			wantReleased(t, o, up)
			j := o.job
			if j.API != "jobs.query" || j.Job == nil || *j.Job != *job1 || j.QueryID != "q-123" || j.ResultTable != nil {
				t.Errorf("report = %+v job %+v", j, j.Job)
			}
			for _, want := range []string{` job_id="job_1" job_location="US" query_id="q-123" job_recorded=true response_bytes=` + strconv.Itoa(len(queryResponse))} {
				if !strings.Contains(o.logLine, want) {
					t.Errorf("log line %q lacks %q", o.logLine, want)
				}
			}
		})
		t.Run("stateless jobs.query: queryId only", func(t *testing.T) {
			body := `{"kind":"bigquery#queryResponse","totalRows":"1","rows":[{"f":[{"v":"1"}]}],"jobComplete":true,"queryId":"q-stateless"}`
			up := upstreamOK(body)
			o := exchange(t, host, queryReq, up, nil)
			wantReleased(t, o, up)
			if o.job.Job != nil || o.job.QueryID != "q-stateless" {
				t.Errorf("report = %+v", o.job)
			}
			if !strings.Contains(o.logLine, ` query_id="q-stateless" job_recorded=true`) || strings.Contains(o.logLine, "job_id=") {
				t.Errorf("log line %q", o.logLine)
			}
		})
		t.Run("jobs.insert names its result table", func(t *testing.T) {
			up := upstreamOK(jobResource)
			o := exchange(t, host, request{method: "POST", path: jobsInsertPath, chunks: withBody(insertBody)}, up, nil)
			wantNoAcceptEncoding(t, o)
			wantReleased(t, o, up)
			j := o.job
			if j.API != "jobs.insert" || j.Job == nil || *j.Job != *job1 || j.QueryID != "" || j.ResultTable == nil || *j.ResultTable != *anon {
				t.Errorf("report = %+v job %+v table %+v", j, j.Job, j.ResultTable)
			}
		})
		t.Run("jobs.get", func(t *testing.T) {
			up := upstreamOK(jobResource)
			o := exchange(t, host, request{method: "GET", path: jobsGetPath}, up, nil)
			wantNoAcceptEncoding(t, o)
			wantReleased(t, o, up)
			j := o.job
			if j.API != "jobs.get" || j.Job == nil || *j.Job != *job1 || j.ResultTable == nil || *j.ResultTable != *anon {
				t.Errorf("report = %+v", j)
			}
		})
		t.Run("gzip response read, forwarded compressed", func(t *testing.T) {
			gz := gzipped(t, []byte(queryResponse))
			up := upstream{status: "200", headers: [][2]string{{"content-type", "application/json"}, {"content-encoding", "gzip"}, {"vary", "Accept-Encoding"}},
				chunks: chunked(gz, 4)}
			o := exchange(t, host, queryReq, up, nil)
			wantReleased(t, o, up)
			if !bytes.Equal(o.agentBody, gz) {
				t.Errorf("the gzip body was not forwarded unchanged")
			}
			if o.job.Job == nil || *o.job.Job != *job1 || o.job.QueryID != "q-123" {
				t.Errorf("report = %+v", o.job)
			}
		})
		t.Run("201 with a job is reported too", func(t *testing.T) {
			up := upstreamOK(jobResource)
			up.status = "201"
			o := exchange(t, host, request{method: "POST", path: jobsInsertPath, chunks: withBody(insertBody)}, up, nil)
			if o.report == nil || !o.released() {
				t.Errorf("201 not reported and released (report %v, reply %v)", o.report != nil, o.reply)
			}
		})
	})
}

// TestJobLedgerNothingToRecord: a 2xx that names neither a job nor a query id (a dry
// run), and every non-2xx, goes to the agent unchanged once its response report (which
// names no job) is recorded.
func TestJobLedgerNothingToRecord(t *testing.T) {
	queryReq := request{method: "POST", path: queryPath, chunks: withBody(queryBody)}
	bqErr := `{"error":{"code":404,"message":"Not found: Job p:job_1","errors":[{"message":"Not found: Job p:job_1","domain":"global","reason":"notFound"}],"status":"NOT_FOUND"}}`
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host := configuredHost(t, vm)
		t.Run("dry run", func(t *testing.T) {
			body := `{"kind":"bigquery#queryResponse","schema":{"fields":[]},"jobReference":{"projectId":"p","location":"US"},"totalBytesProcessed":"1024","jobComplete":true}`
			up := upstreamOK(body)
			o := exchange(t, host, queryReq, up, nil)
			wantReleased(t, o, up)
			if o.job.NamesJob() || o.job.ResultTable != nil || strings.Contains(o.logLine, "job_recorded") {
				t.Errorf("dry run named a job: %+v, log line %q", o.job, o.logLine)
			}
		})
		for _, status := range []string{"400", "403", "404", "500", "503"} {
			t.Run("upstream "+status, func(t *testing.T) {
				up := upstream{status: status, headers: [][2]string{{"content-type", "application/json"}}, chunks: withBody(bqErr)}
				o := exchange(t, host, request{method: "GET", path: jobsGetPath}, up, nil)
				if o.reply != nil || o.streamAction != types.ActionContinue || !bytes.Equal(o.agentBody, []byte(bqErr)) {
					t.Errorf("an upstream %s was replaced or changed", status)
				}
				if o.report == nil || !o.heldBeforeAck || o.job.NamesJob() || strconv.Itoa(o.job.Response.Status) != status {
					t.Errorf("an upstream %s was not held for its report: %+v", status, o.job)
				}
				if !strings.Contains(o.logLine, " decision=allow status="+status+" ") {
					t.Errorf("log line %q", o.logLine)
				}
			})
		}
	})
}

// wantWithheld fails unless the upstream response was replaced by the error for reason
// with the message want (when non-empty) and never released.
func wantWithheld(t *testing.T, o ledgerOutcome, reason bqapi.Reason, want string) {
	t.Helper()
	if o.reply == nil {
		t.Fatalf("response not replaced (action %v)", o.streamAction)
	}
	if o.streamAction == types.ActionContinue {
		t.Errorf("the upstream response was resumed")
	}
	if int(o.reply.StatusCode) != reason.HTTPStatus() || headerValue(o.reply.Headers, DenyReasonHeader) != string(reason) ||
		headerValue(o.reply.Headers, "content-type") != "application/json" {
		t.Errorf("reply %d %q, want %d %s", o.reply.StatusCode, o.reply.Headers, reason.HTTPStatus(), reason)
	}
	var doc bqapi.ErrorDocument
	if err := json.Unmarshal(o.reply.Data, &doc); err != nil {
		t.Fatalf("reply is not JSON: %s", o.reply.Data)
	}
	e := doc.Error
	if e.Code != reason.HTTPStatus() || len(e.Errors) != 1 || e.Errors[0].Reason != "backendError" || e.Errors[0].Domain != "global" ||
		e.Status != reason.Status() || e.Errors[0].Message != e.Message {
		t.Errorf("error document = %s", o.reply.Data)
	}
	if got := headerValue(o.reply.Headers, DecisionIDHeader); got != allowDecisionID {
		t.Errorf("reply %s = %q, want the decision that allowed the call", DecisionIDHeader, got)
	}
	if want != "" && e.Message != want {
		t.Errorf("message = %q\n         want %q", e.Message, want)
	}
	if !strings.Contains(o.logLine, " decision=deny reason="+string(reason)+" status="+strconv.Itoa(reason.HTTPStatus())) {
		t.Errorf("log line %q does not record the withheld response", o.logLine)
	}
}

// TestJobLedgerUnrecordedJobWithheld: any failure to record the job replaces the
// response with 503 backendError (clients retry).
func TestJobLedgerUnrecordedJobWithheld(t *testing.T) {
	refused, err := authorize.ResponseReportAck{Recorded: false, Reason: "unknown decision"}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	bare, _ := authorize.ResponseReportAck{}.Marshal()
	good := rawJSON(t, authorize.ResponseReportAck{Version: authorize.Version, Recorded: true})
	cases := []struct {
		name   string
		ack    *answer
		detail string
	}{
		{"recorded false", ok200(refused), "refused: unknown_decision"},
		{"recorded false, no reason", ok200(bare), "refused"},
		{"HTTP 500 (even with a positive ack)", &answer{headers: [][2]string{{":status", "500"}}, body: good}, "HTTP 500"},
		{"timeout", &answer{}, "no response: timeout or connection failure"},
		{"malformed", ok200([]byte(`{"version":`)), "invalid response"},
		{"wrong version", ok200([]byte(`{"version":"jitgate.dev/authorize/v0","recorded":true}`)), "invalid response"},
		{"unknown field", ok200([]byte(`{"version":"` + authorize.Version + `","recorded":true,"extra":1}`)), "invalid response"},
		{"recorded as a string", ok200([]byte(`{"version":"` + authorize.Version + `","recorded":"true"}`)), "invalid response"},
		{"empty", ok200(nil), "empty response"},
	}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host := configuredHost(t, vm)
		for i, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				req := request{method: "POST", path: queryPath, chunks: withBody(queryBody)}
				if i%2 == 1 {
					req = request{method: "GET", path: jobsGetPath}
				}
				body := queryResponse
				if i%2 == 1 {
					body = jobResource
				}
				o := exchange(t, host, req, upstreamOK(body), c.ack)
				if o.report == nil || !o.heldBeforeAck {
					t.Fatal("no response report while the response was held")
				}
				wantWithheld(t, o, bqapi.ReasonJobNotRecorded,
					"jitgate: unavailable: the job could not be recorded ("+c.detail+") (job-not-recorded)")
				if o.reply.StatusCode != 503 || !strings.Contains(o.logLine, ` upstream_status=200 `) ||
					!strings.Contains(o.logLine, ` job_id="job_1"`) || !strings.Contains(o.logLine, " job_recorded=false") {
					t.Errorf("status %d, log line %q", o.reply.StatusCode, o.logLine)
				}
				if !strings.Contains(strings.Join(o.req.allLogs, "\n"), "jitgate: response report failed: "+c.detail) {
					t.Errorf("failure not logged: %q", o.req.allLogs)
				}
			})
		}
	})
}

// TestJobLedgerBadResponsesFailClosed: a 2xx the filter cannot read, or one over the
// response limit, is replaced by 502 backendError and never reported.
func TestJobLedgerBadResponsesFailClosed(t *testing.T) {
	queryReq := request{method: "POST", path: queryPath, chunks: withBody(queryBody)}
	big := `{"jobReference":{"projectId":"p","jobId":"job_1"},"rows":[{"f":[{"v":"` + strings.Repeat("x", 2*ledgerResponseLimit) + `"}]}]}`
	gzHeaders := [][2]string{{"content-type", "application/json"}, {"content-encoding", "gzip"}}
	json200 := func(body string) upstream {
		return upstream{status: "200", headers: [][2]string{{"content-type", "application/json"}}, chunks: withBody(body)}
	}
	cases := []struct {
		name   string
		req    request
		up     upstream
		reason bqapi.Reason
		msg    string
	}{
		{"truncated JSON", queryReq, json200(queryResponse[:40]), bqapi.ReasonBadUpstreamResponse,
			"jitgate: bad gateway: the response is not a BigQuery JSON document (bad-upstream-response)"},
		{"HTML", queryReq, json200(`<html>502</html>`), bqapi.ReasonBadUpstreamResponse, ""},
		{"JSON array", queryReq, json200(`[{"jobReference":{"jobId":"j"}}]`), bqapi.ReasonBadUpstreamResponse, ""},
		{"JSON null", queryReq, json200(`null`), bqapi.ReasonBadUpstreamResponse, ""},
		{"trailing data", queryReq, json200(queryResponse + `{}`), bqapi.ReasonBadUpstreamResponse, ""},
		{"jobId of the wrong type", request{method: "GET", path: jobsGetPath}, json200(`{"jobReference":{"jobId":7}}`), bqapi.ReasonBadUpstreamResponse, ""},
		{"no body", queryReq, upstream{status: "200"}, bqapi.ReasonBadUpstreamResponse,
			"jitgate: bad gateway: the response has no body (bad-upstream-response)"},
		{"bad gzip", queryReq, upstream{status: "200", headers: gzHeaders, chunks: withBody(queryResponse)}, bqapi.ReasonBadUpstreamResponse,
			"jitgate: bad gateway: the gzip-encoded response cannot be decoded (bad-upstream-response)"},
		{"brotli", queryReq, upstream{status: "200", headers: [][2]string{{"content-encoding", "br"}}, chunks: withBody(queryResponse)}, bqapi.ReasonBadUpstreamResponse, ""},
		{"trailers", queryReq, upstream{status: "200", chunks: withBody(queryResponse), trailers: [][2]string{{"x", "y"}}}, bqapi.ReasonBadUpstreamResponse, ""},
		{"content-length over the limit", queryReq, upstream{status: "200", headers: [][2]string{{"content-length", strconv.Itoa(ledgerResponseLimit + 1)}}, chunks: withBody(queryResponse)},
			bqapi.ReasonResponseTooLarge, "jitgate: bad gateway: the BigQuery response exceeds the gateway limit of 4096 bytes (response-too-large)"},
		{"streamed over the limit", queryReq, upstream{status: "200", chunks: chunked([]byte(big), 4)}, bqapi.ReasonResponseTooLarge, ""},
		{"gzip inflating over the limit", queryReq, upstream{status: "200", headers: gzHeaders, chunks: withBody(string(gzipped(t, []byte(big))))}, bqapi.ReasonResponseTooLarge, ""},
	}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host, status := startHost(t, vm, ledgerConfig)
		if status != types.OnPluginStartStatusOK {
			t.Fatal("plugin did not start")
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				o := exchange(t, host, c.req, c.up, nil)
				if o.report != nil {
					t.Errorf("a bad response was reported: %s", o.report.Body)
				}
				wantWithheld(t, o, c.reason, c.msg)
				if o.reply.StatusCode != 502 {
					t.Errorf("status %d, want 502", o.reply.StatusCode)
				}
			})
		}
		t.Run("exactly at the limit", func(t *testing.T) {
			body := queryResponse[:len(queryResponse)-1] + `,"pad":"` + strings.Repeat("x", ledgerResponseLimit-len(queryResponse)-9) + `"}`
			if len(body) != ledgerResponseLimit {
				t.Fatalf("body is %d bytes", len(body))
			}
			up := upstreamOK(body)
			wantReleased(t, exchange(t, host, queryReq, up, nil), up)
		})
	})
}

// TestJobLedgerFrameAfterWithholding: once the response was replaced, what is left of the
// upstream response is never released, while the local reply's own body passes.
func TestJobLedgerFrameAfterWithholding(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host, _ := startHost(t, vm, ledgerConfig)
		id := host.InitializeHttpContext()
		host.CallOnRequestHeaders(id, [][2]string{{":method", "GET"}, {":path", jobsGetPath}, {"authorization", "Bearer " + agentToken}}, true)
		answerCallout(t, host, id, nil)
		host.CallOnResponseHeaders(id, [][2]string{{":status", "200"}, {"content-length", "99999"}}, false)
		if r := host.GetSentLocalResponse(id); r == nil || r.StatusCode != 502 {
			t.Fatalf("reply = %+v, want 502 at the response headers", r)
		}
		if a := host.CallOnResponseBody(id, []byte(jobResource), true); a != types.ActionPause {
			t.Errorf("upstream frame after the reply: action %v, want pause", a)
		}
		if a := host.CallOnResponseHeaders(id, [][2]string{{":status", "502"}}, false); a != types.ActionContinue {
			t.Errorf("the reply's headers: action %v, want continue", a)
		}
		if a := host.CallOnResponseBody(id, []byte(`{"error":{}}`), true); a != types.ActionContinue {
			t.Errorf("the reply's body: action %v, want continue", a)
		}
		host.CompleteHttpContext(id)
	})
}

// TestJobLedgerHostReplyReplacesHeldResponse: when Envoy itself replaces a response the
// filter holds (its buffer limit, an upstream reset), its reply passes through unread.
func TestJobLedgerHostReplyReplacesHeldResponse(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host := configuredHost(t, vm)
		id := host.InitializeHttpContext()
		host.CallOnRequestHeaders(id, [][2]string{{":method", "GET"}, {":path", jobsGetPath}, {"authorization", "Bearer " + agentToken}}, true)
		answerCallout(t, host, id, nil)
		if a := host.CallOnResponseHeaders(id, [][2]string{{":status", "200"}}, false); a != types.ActionPause {
			t.Fatalf("response headers action = %v, want pause", a)
		}
		if a := host.CallOnResponseBody(id, []byte(jobResource[:20]), false); a != types.ActionPause {
			t.Fatalf("first frame action = %v, want pause", a)
		}
		if a := host.CallOnResponseHeaders(id, [][2]string{{":status", "500"}, {"content-type", "text/plain"}}, false); a != types.ActionContinue {
			t.Errorf("Envoy's reply headers: action %v, want continue", a)
		}
		if a := host.CallOnResponseBody(id, []byte("response payload too large"), true); a != types.ActionContinue {
			t.Errorf("Envoy's reply body: action %v, want continue", a)
		}
		if host.GetSentLocalResponse(id) != nil || len(host.GetCalloutAttributesFromContext(id)) != 1 {
			t.Errorf("the filter replied or reported")
		}
		host.CompleteHttpContext(id)
	})
}

// TestJobLedgerPanicsFailClosed: a panic on the response path or in the report's
// callback replaces the held response with 500 (native only: options.faultAt).
func TestJobLedgerPanicsFailClosed(t *testing.T) {
	for _, at := range []string{"response-headers", "response-body", "response-trailers", "response-report-response"} {
		t.Run(at, func(t *testing.T) {
			host := configuredHost(t, faultyVM(at))
			up := upstreamOK(queryResponse)
			if at == "response-trailers" {
				up.trailers = [][2]string{{"x", "y"}}
			}
			o := exchange(t, host, request{method: "POST", path: queryPath, chunks: withBody(queryBody)}, up, nil)
			wantWithheld(t, o, bqapi.ReasonInternal, "")
			if o.reply.StatusCode != 500 {
				t.Errorf("status %d", o.reply.StatusCode)
			}
			if !strings.Contains(strings.Join(host.GetCriticalLogs(), "\n"), "recovered panic in "+at) {
				t.Errorf("panic not logged: %q", host.GetCriticalLogs())
			}
		})
	}
}

// TestJobLedgerExchange: the observer sees what the response named (native).
func TestJobLedgerExchange(t *testing.T) {
	var last Exchange
	vm := newVMContext(options{observe: func(ex *Exchange) { last = *ex }})
	host := configuredHost(t, vm)
	exchange(t, host, request{method: "POST", path: jobsInsertPath, chunks: withBody(insertBody)}, upstreamOK(jobResource), ok200([]byte(`nope`)))
	if last.ResponseJob == nil || last.ResponseJob.JobID != "job_1" || last.ResultTable == nil || last.ResultTable.TableID != "anon_tbl" ||
		last.JobRecorded || last.Rejection == nil || last.Rejection.Reason != bqapi.ReasonJobNotRecorded {
		t.Errorf("exchange = %+v", last)
	}
}

// BenchmarkParseJobResponse reads a 1 MiB jobs.query response (the whole document is
// validated, only the ledger's fields kept).
func BenchmarkParseJobResponse(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"kind":"bigquery#queryResponse","jobReference":{"projectId":"p","jobId":"job_1","location":"US"},"rows":[`)
	for i := 0; sb.Len() < 1<<20; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(`{"f":[{"v":"` + strconv.Itoa(i) + `"},{"v":"some text value"},{"v":null},{"v":[{"v":"1"},{"v":"2"}]}]}`)
	}
	sb.WriteString(`],"jobComplete":true,"queryId":"q"}`)
	doc := []byte(sb.String())
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		if _, err := parseJobResponse(bqapi.JobsQuery, doc); err != nil {
			b.Fatal(err)
		}
	}
}
