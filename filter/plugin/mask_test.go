package plugin

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/jitgate/jitgate/filter/authorize"
	"github.com/jitgate/jitgate/filter/bqapi"
	"github.com/jitgate/jitgate/filter/masking"
)

// Masking in the plugin: a decision with a masking instruction makes the filter read the
// upstream response, mask its rows and release the masked body, or fail closed.

// maskHashKey is the canary HMAC key: it must never show up in a log or a response.
const maskHashKey = "hash-key-c4n4ry-0123456789abcdef"

var maskHashKeyB64 = base64.StdEncoding.EncodeToString([]byte(maskHashKey))

const (
	getQueryResultsPath = "/bigquery/v2/projects/p/queries/job_1?location=US&fields=jobReference,totalRows,pageToken,rows&pageToken=tok"
	tabledataPath       = "/bigquery/v2/projects/p/datasets/_anon1/tables/anon_tbl/data?maxResults=2"
	// The canaries of the masked rows.
	canaryEmail = "alice@example.com"
	canarySSN   = "123-45-6789"
	canaryNote  = "write to bob@corp.test" // unmasked column: the email detector catches it
)

// maskSchema: id INTEGER, email STRING (hash), ssn STRING (redact), note STRING
// (detectors), salary INTEGER (redact: returned as STRING).
var maskSchema = &masking.Schema{Fields: []masking.Field{
	{Name: "id", Type: "INTEGER", Mode: "NULLABLE"},
	{Name: "email", Type: "STRING", Mode: "NULLABLE"},
	{Name: "ssn", Type: "STRING", Mode: "REQUIRED"},
	{Name: "note", Type: "STRING", Mode: "NULLABLE"},
	{Name: "salary", Type: "INTEGER", Mode: "NULLABLE"},
}}

const maskSchemaJSON = `{"fields":[{"name":"id","type":"INTEGER","mode":"NULLABLE"},{"name":"email","type":"STRING","mode":"NULLABLE"},` +
	`{"name":"ssn","type":"STRING","mode":"REQUIRED"},{"name":"note","type":"STRING","mode":"NULLABLE"},{"name":"salary","type":"INTEGER","mode":"NULLABLE"}]}`

const maskRows = `[{"f":[{"v":"1"},{"v":"` + canaryEmail + `"},{"v":"` + canarySSN + `"},{"v":"hello"},{"v":"1000"}]},` +
	`{"f":[{"v":"2"},{"v":null},{"v":"987-65-4321"},{"v":"` + canaryNote + `"},{"v":"2000"}]}]`

// The upstream bodies of each API, with the same two rows.
const (
	maskedQueryResponse = `{"kind":"bigquery#queryResponse","schema":` + maskSchemaJSON + `,` +
		`"jobReference":{"projectId":"p","jobId":"job_1","location":"US"},"totalRows":"2","rows":` + maskRows + `,"jobComplete":true,"queryId":"q-9"}`
	laterPage     = `{"jobReference":{"projectId":"p","jobId":"job_1","location":"US"},"totalRows":"4","pageToken":"tok2","rows":` + maskRows + `}`
	tabledataPage = `{"kind":"bigquery#tableDataList","etag":"abc","totalRows":"2","rows":` + maskRows + `}`
)

// maskingFor is the decision's instruction; schema is Masking.Schema (nil: none).
func maskingFor(schema *masking.Schema) *authorize.Masking {
	return &authorize.Masking{
		Rules: []masking.Rule{
			{Path: []int{1}, Action: masking.Hash},
			{Path: []int{2}, Action: masking.Redact},
			{Path: []int{4}, Action: masking.Redact},
		},
		Detectors: []string{"email", "ssn"},
		HashKey:   maskHashKeyB64,
		Schema:    schema,
	}
}

// maskAnswer allows the call with m.
func maskAnswer(t testing.TB, m *authorize.Masking) *answer {
	t.Helper()
	r := allowResponse()
	r.Masking = m
	b, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return ok200(b)
}

// maskedPage is the agent's view of a masked body.
type maskedPage struct {
	Schema *struct {
		Fields []struct{ Name, Type, Mode string } `json:"fields"`
	} `json:"schema"`
	Rows []struct {
		F []struct {
			V *string `json:"v"`
		} `json:"f"`
	} `json:"rows"`
}

// wantMasked fails unless the agent got the two rows masked, with every header that
// describes the body right, and no secret or canary anywhere.
func wantMasked(t *testing.T, o ledgerOutcome, withSchema bool) {
	t.Helper()
	if o.reply != nil {
		t.Fatalf("response replaced with %d: %s", o.reply.StatusCode, o.reply.Data)
	}
	if o.respHeadersAction != types.ActionPause {
		t.Errorf("response headers action = %v, want pause until masked", o.respHeadersAction)
	}
	if o.streamAction != types.ActionContinue {
		t.Fatalf("masked response not released (action %v)", o.streamAction)
	}
	body := o.agentBody
	for _, canary := range []string{canaryEmail, canarySSN, "987-65-4321", "bob@corp.test", maskHashKey, maskHashKeyB64} {
		if bytes.Contains(body, []byte(canary)) {
			t.Errorf("the agent's body contains %q: %s", canary, body)
		}
	}
	if got := headerValue(o.agentHeaders, "content-length"); got != strconv.Itoa(len(body)) {
		t.Errorf("content-length = %q, body is %d bytes", got, len(body))
	}
	if got := headerValue(o.agentHeaders, "content-encoding"); got != "" {
		t.Errorf("content-encoding = %q on the decoded masked body", got)
	}
	var p maskedPage
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("masked body is not JSON: %v: %s", err, body)
	}
	if len(p.Rows) != 2 || len(p.Rows[0].F) != 5 || len(p.Rows[1].F) != 5 {
		t.Fatalf("masked rows = %s", body)
	}
	cell := func(r, c int) string {
		if v := p.Rows[r].F[c].V; v != nil {
			return *v
		}
		return "<null>"
	}
	hashed := cell(0, 1)
	if !strings.HasPrefix(hashed, "h:") || len(hashed) != 34 {
		t.Errorf("hashed email = %q", hashed)
	}
	for _, c := range []struct {
		r, c int
		want string
	}{
		{0, 0, "1"}, {1, 0, "2"}, {1, 1, "<null>"}, {0, 2, masking.RedactedToken}, {1, 2, masking.RedactedToken},
		{0, 3, "hello"}, {1, 3, "[REDACTED:email]"}, {0, 4, masking.RedactedToken}, {1, 4, masking.RedactedToken},
	} {
		if got := cell(c.r, c.c); got != c.want {
			t.Errorf("row %d cell %d = %q, want %q", c.r, c.c, got, c.want)
		}
	}
	if withSchema {
		if p.Schema == nil || len(p.Schema.Fields) != 5 || p.Schema.Fields[4].Type != "STRING" || p.Schema.Fields[0].Type != "INTEGER" {
			t.Errorf("masked schema = %+v", p.Schema)
		}
	} else if p.Schema != nil {
		t.Errorf("a schema appeared in a page that had none: %s", body)
	}
	if !strings.Contains(o.logLine, " masked=true masked_rows=2 masked_cells=5 detector_hits=1") {
		t.Errorf("log line %q does not summarise the masking", o.logLine)
	}
	if got := headerValue(o.agentHeaders, DecisionIDHeader); got != allowDecisionID {
		t.Errorf("%s = %q", DecisionIDHeader, got)
	}
	noKeyInLogs(t, o)
}

// noKeyInLogs: the hash key (raw or base64) is in no log line of any level.
func noKeyInLogs(t *testing.T, o ledgerOutcome) {
	t.Helper()
	for _, l := range o.req.allLogs {
		if strings.Contains(l, maskHashKey) || strings.Contains(l, maskHashKeyB64) {
			t.Errorf("log line leaks the hash key: %q", l)
		}
	}
}

func TestMaskEachAPI(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host := configuredHost(t, vm)
		t.Run("jobs.query: schema in the body, masked then reported", func(t *testing.T) {
			req := request{method: "POST", path: queryPath, chunks: withBody(queryBody), answer: maskAnswer(t, maskingFor(nil))}
			o := exchange(t, host, req, upstreamOK(maskedQueryResponse), nil)
			wantNoAcceptEncoding(t, o)
			wantMasked(t, o, true)
			if o.report == nil || !o.heldBeforeAck || o.job.QueryID != "q-9" || o.job.Job == nil || o.job.Job.JobID != "job_1" {
				t.Errorf("the masked response was not held for its response report (report %v)", o.report != nil)
			}
			if !strings.Contains(o.logLine, " job_recorded=true") {
				t.Errorf("log line %q", o.logLine)
			}
		})
		t.Run("jobs.query: the body's schema wins over the decision's", func(t *testing.T) {
			req := request{method: "POST", path: queryPath, chunks: withBody(queryBody), answer: maskAnswer(t, maskingFor(maskSchema))}
			wantMasked(t, exchange(t, host, req, upstreamOK(maskedQueryResponse), nil), true)
		})
		t.Run("getQueryResults: later page masked with the decision's schema", func(t *testing.T) {
			req := request{method: "GET", path: getQueryResultsPath, answer: maskAnswer(t, maskingFor(maskSchema))}
			o := exchange(t, host, req, upstreamOK(laterPage), nil)
			wantNoAcceptEncoding(t, o)
			wantMasked(t, o, false)
			if o.report == nil || o.job.NamesJob() || !o.job.Response.Masked {
				t.Errorf("getQueryResults was not reported as a masked response without a job: %+v", o.job)
			}
			var p struct{ PageToken string }
			if json.Unmarshal(o.agentBody, &p) != nil || p.PageToken != "tok2" {
				t.Errorf("pageToken lost: %s", o.agentBody)
			}
		})
		t.Run("tabledata.list masked with the decision's schema", func(t *testing.T) {
			req := request{method: "GET", path: tabledataPath, answer: maskAnswer(t, maskingFor(maskSchema))}
			up := upstreamOK(tabledataPage, [2]string{"etag", `"abc"`})
			o := exchange(t, host, req, up, nil)
			wantNoAcceptEncoding(t, o)
			wantMasked(t, o, false)
			if got := headerValue(o.agentHeaders, "etag"); got != "" {
				t.Errorf("the upstream etag describes the unmasked body: %q", got)
			}
		})
		t.Run("jobs.insert: no rows, held for the report, released unchanged", func(t *testing.T) {
			req := request{method: "POST", path: jobsInsertPath, chunks: withBody(insertBody), answer: maskAnswer(t, maskingFor(nil))}
			up := upstreamOK(jobResource)
			o := exchange(t, host, req, up, nil)
			wantNoAcceptEncoding(t, o)
			wantReleased(t, o, up)
			if !strings.Contains(o.logLine, " masked=true masked_rows=0 masked_cells=0 ") {
				t.Errorf("log line %q", o.logLine)
			}
			noKeyInLogs(t, o)
		})
		t.Run("tables.get: the table's schema says what the masked pages hold", func(t *testing.T) {
			// A client that reads tabledata.list takes the schema from tables.get: with a
			// masking instruction (the control plane's to send) it must describe the
			// masked cells, or the client decodes "[REDACTED]" as the original type.
			table := `{"kind":"bigquery#table","tableReference":{"projectId":"p","datasetId":"_anon1","tableId":"anon_tbl"},"schema":` + maskSchemaJSON + `,"numRows":"2"}`
			req := request{method: "GET", path: "/bigquery/v2/projects/p/datasets/_anon1/tables/anon_tbl", answer: maskAnswer(t, maskingFor(maskSchema))}
			o := exchange(t, host, req, upstreamOK(table), nil)
			if o.reply != nil || o.streamAction != types.ActionContinue {
				t.Fatalf("reply %v action %v", o.reply, o.streamAction)
			}
			var p maskedPage
			if err := json.Unmarshal(o.agentBody, &p); err != nil || p.Schema == nil || len(p.Schema.Fields) != 5 ||
				p.Schema.Fields[4].Type != "STRING" || p.Schema.Fields[0].Type != "INTEGER" {
				t.Errorf("schema = %s", o.agentBody)
			}
			if headerValue(o.agentHeaders, "content-length") != strconv.Itoa(len(o.agentBody)) {
				t.Errorf("content-length %q for %d bytes", headerValue(o.agentHeaders, "content-length"), len(o.agentBody))
			}
		})
		t.Run("gzip upstream: inflated, masked, answered uncompressed", func(t *testing.T) {
			req := request{method: "GET", path: getQueryResultsPath, answer: maskAnswer(t, maskingFor(maskSchema))}
			gz := gzipped(t, []byte(laterPage))
			up := upstream{status: "200", headers: [][2]string{{"content-type", "application/json"}, {"content-encoding", "gzip"},
				{"content-length", strconv.Itoa(len(gz))}}, chunks: chunked(gz, 3)}
			o := exchange(t, host, req, up, nil)
			wantMasked(t, o, false)
			if !strings.Contains(o.logLine, " response_decoded=gzip") {
				t.Errorf("log line %q", o.logLine)
			}
		})
		t.Run("gzip upstream, nothing to mask: still answered decoded", func(t *testing.T) {
			req := request{method: "GET", path: getQueryResultsPath, answer: maskAnswer(t, maskingFor(maskSchema))}
			page := `{"totalRows":"0","jobComplete":true}`
			up := upstream{status: "200", headers: [][2]string{{"content-encoding", "gzip"}}, chunks: withBody(string(gzipped(t, []byte(page))))}
			o := exchange(t, host, req, up, nil)
			if o.reply != nil || string(o.agentBody) != page || headerValue(o.agentHeaders, "content-encoding") != "" ||
				headerValue(o.agentHeaders, "content-length") != strconv.Itoa(len(page)) {
				t.Errorf("reply %v body %q headers %q", o.reply, o.agentBody, o.agentHeaders)
			}
		})
	})
}

// TestMaskFailsClosed: a response that must be masked and cannot be is replaced by a
// BigQuery-shaped 502, never released, never truncated.
func TestMaskFailsClosed(t *testing.T) {
	const limit = 4096
	big := `{"totalRows":"1","rows":[{"f":[{"v":"1"},{"v":"` + strings.Repeat("x", 2*limit) + `"},{"v":"s"},{"v":null},{"v":"1"}]}]}`
	gzHeaders := [][2]string{{"content-type", "application/json"}, {"content-encoding", "gzip"}}
	cases := []struct {
		name   string
		schema *masking.Schema // Masking.Schema
		up     upstream
		reason bqapi.Reason
		msg    string
	}{
		{"rows without a schema from anywhere", nil, upstreamOK(laterPage), bqapi.ReasonMaskingFailed,
			"jitgate: bad gateway: the gateway could not mask this response (masking-failed)"},
		{"malformed JSON", maskSchema, upstreamOK(laterPage[:60]), bqapi.ReasonMaskingFailed, ""},
		{"not JSON", maskSchema, upstreamOK(`<html>oops</html>`), bqapi.ReasonMaskingFailed, ""},
		{"JSON array", maskSchema, upstreamOK(`[` + laterPage + `]`), bqapi.ReasonMaskingFailed, ""},
		{"trailing data", maskSchema, upstreamOK(laterPage + `{}`), bqapi.ReasonMaskingFailed, ""},
		{"duplicate rows key", maskSchema, upstreamOK(`{"rows":[],"rows":` + maskRows + `}`), bqapi.ReasonMaskingFailed, ""},
		{"cell count differs from the schema", maskSchema, upstreamOK(`{"rows":[{"f":[{"v":"1"}]}]}`), bqapi.ReasonMaskingFailed, ""},
		{"schema of another shape than the decision's", maskSchema,
			upstreamOK(`{"schema":{"fields":[{"name":"x","type":"STRING"}]},"rows":[{"f":[{"v":"` + canarySSN + `"}]}]}`), bqapi.ReasonMaskingFailed, ""},
		{"no body", maskSchema, upstream{status: "200"}, bqapi.ReasonBadUpstreamResponse, ""},
		{"content-length over the limit", maskSchema, upstream{status: "200", headers: [][2]string{{"content-length", strconv.Itoa(limit + 1)}}, chunks: withBody(laterPage)},
			bqapi.ReasonResponseTooLarge, "jitgate: bad gateway: the BigQuery response exceeds the gateway limit of 4096 bytes (response-too-large)"},
		{"streamed over the limit", maskSchema, upstream{status: "200", chunks: chunked([]byte(big), 4)}, bqapi.ReasonResponseTooLarge, ""},
		{"gzip inflating over the limit", maskSchema, upstream{status: "200", headers: gzHeaders, chunks: withBody(string(gzipped(t, []byte(big))))}, bqapi.ReasonResponseTooLarge, ""},
		{"bad gzip", maskSchema, upstream{status: "200", headers: gzHeaders, chunks: withBody(laterPage)}, bqapi.ReasonBadUpstreamResponse, ""},
		{"brotli", maskSchema, upstream{status: "200", headers: [][2]string{{"content-encoding", "br"}}, chunks: withBody(laterPage)}, bqapi.ReasonBadUpstreamResponse, ""},
		{"trailers", maskSchema, upstream{status: "200", chunks: withBody(laterPage), trailers: [][2]string{{"x", "y"}}}, bqapi.ReasonBadUpstreamResponse, ""},
		{"an error response carrying rows", maskSchema, upstream{status: "500", headers: [][2]string{{"content-type", "application/json"}},
			chunks: withBody(`{"error":{"code":500,"message":"x"},"rows":` + maskRows + `}`)}, bqapi.ReasonMaskingFailed, ""},
	}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host, status := startHost(t, vm, ledgerConfig)
		if status != types.OnPluginStartStatusOK {
			t.Fatal("plugin did not start")
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				req := request{method: "GET", path: getQueryResultsPath, answer: maskAnswer(t, maskingFor(c.schema))}
				o := exchange(t, host, req, c.up, nil)
				wantWithheld(t, o, c.reason, c.msg)
				if o.reply.StatusCode != 502 {
					t.Errorf("status %d, want 502", o.reply.StatusCode)
				}
				if bytes.Contains(o.reply.Data, []byte(canarySSN)) || bytes.Contains(o.reply.Data, []byte(canaryEmail)) {
					t.Errorf("the error leaks a value: %s", o.reply.Data)
				}
				noKeyInLogs(t, o)
				if c.reason == bqapi.ReasonMaskingFailed && !strings.Contains(strings.Join(o.req.allLogs, "\n"), "jitgate: response withheld: ") {
					t.Errorf("the failure is not logged: %q", o.req.allLogs)
				}
			})
		}
		t.Run("jobs.query whose columns moved since the plan fails closed", func(t *testing.T) {
			// The plan (from a cached table schema) masks email at 1 and ssn at 2; the
			// table was altered and BigQuery now returns ssn at 1, email at 2.
			moved := strings.Replace(strings.Replace(maskSchemaJSON, `"email"`, `"tmp"`, 1), `"ssn"`, `"email"`, 1)
			moved = strings.Replace(moved, `"tmp"`, `"ssn"`, 1)
			body := `{"jobReference":{"projectId":"p","jobId":"job_1"},"schema":` + moved + `,"rows":` + maskRows + `,"jobComplete":true}`
			req := request{method: "POST", path: queryPath, chunks: withBody(queryBody), answer: maskAnswer(t, maskingFor(maskSchema))}
			o := exchange(t, host, req, upstreamOK(body), nil)
			wantWithheld(t, o, bqapi.ReasonMaskingFailed, "")
			if o.report != nil {
				t.Errorf("an unmaskable response was reported")
			}
		})
		t.Run("jobs.query without a schema and rows fails before any report", func(t *testing.T) {
			body := `{"jobReference":{"projectId":"p","jobId":"job_1"},"rows":` + maskRows + `,"jobComplete":true}`
			req := request{method: "POST", path: queryPath, chunks: withBody(queryBody), answer: maskAnswer(t, maskingFor(nil))}
			o := exchange(t, host, req, upstreamOK(body), nil)
			wantWithheld(t, o, bqapi.ReasonMaskingFailed, "")
			if o.report != nil {
				t.Errorf("an unmaskable response was reported")
			}
		})
	})
}

// TestMaskErrorsPass: BigQuery's own errors (no rows) reach the agent on a masked call
// with their status, code and reasons, so clients still react as they should, but with
// every message withheld: BigQuery quotes values in them (CAST(email AS INT64) fails
// with "Bad int64 value: <the email>").
func TestMaskErrorsPass(t *testing.T) {
	leakMsg := `Bad int64 value: ` + canaryEmail
	bqErr := `{"error":{"code":400,"message":"` + leakMsg + `","errors":[{"message":"` + leakMsg + `","domain":"global","reason":"invalidQuery","location":"query"}],"status":"INVALID_ARGUMENT"}}`
	failedJob := `{"kind":"bigquery#job","jobReference":{"projectId":"p","jobId":"job_1","location":"US"},"configuration":{"query":{"query":"SELECT 1"}},` +
		`"status":{"state":"DONE","errorResult":{"reason":"invalidQuery","message":"` + leakMsg + `"},"errors":[{"reason":"invalidQuery","message":"` + leakMsg + `"}]}}`
	wantScrubbed := func(t *testing.T, o ledgerOutcome) {
		t.Helper()
		if o.reply != nil || o.streamAction != types.ActionContinue {
			t.Fatalf("reply %v action %v", o.reply, o.streamAction)
		}
		body := string(o.agentBody)
		if strings.Contains(body, canaryEmail) || !strings.Contains(body, bqapi.WithheldMessage) || !strings.Contains(body, `"reason":"invalidQuery"`) {
			t.Errorf("body %s", body)
		}
		if headerValue(o.agentHeaders, "content-encoding") != "" || headerValue(o.agentHeaders, "content-length") != strconv.Itoa(len(body)) {
			t.Errorf("headers %q", o.agentHeaders)
		}
		if !strings.Contains(o.logLine, " error_messages=withheld") {
			t.Errorf("log line %q", o.logLine)
		}
		if strings.Contains(strings.Join(o.req.allLogs, "\n"), canaryEmail) {
			t.Errorf("the value was logged")
		}
	}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host := configuredHost(t, vm)
		queryReq := func() request {
			return request{method: "POST", path: queryPath, chunks: withBody(queryBody), answer: maskAnswer(t, maskingFor(nil))}
		}
		t.Run("BigQuery error document", func(t *testing.T) {
			up := upstream{status: "400", headers: [][2]string{{"content-type", "application/json"}}, chunks: withBody(bqErr)}
			o := exchange(t, host, queryReq(), up, nil)
			wantScrubbed(t, o)
			var doc bqapi.ErrorDocument
			if json.Unmarshal(o.agentBody, &doc) != nil || doc.Error.Code != 400 || doc.Error.Status != "INVALID_ARGUMENT" || len(doc.Error.Errors) != 1 {
				t.Errorf("error document %s", o.agentBody)
			}
		})
		t.Run("google.rpc details of an error document", func(t *testing.T) {
			withDetails := `{"error":{"code":400,"message":"` + leakMsg + `","errors":[{"message":"` + leakMsg + `","domain":"global","reason":"invalidQuery"}],"status":"INVALID_ARGUMENT",` +
				`"details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"INVALID_QUERY","domain":"bigquery.googleapis.com","metadata":{"value":"` + canaryEmail + `"}},` +
				`{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{"field":"query","description":"` + leakMsg + `"}]},` +
				`{"@type":"type.googleapis.com/google.rpc.DebugInfo","stackEntries":["` + canaryEmail + `"],"detail":"` + canaryEmail + `"},` +
				`{"@type":"type.example/Unknown","text":"` + canaryEmail + `"}]}}`
			up := upstream{status: "400", headers: [][2]string{{"content-type", "application/json"}}, chunks: withBody(withDetails)}
			o := exchange(t, host, queryReq(), up, nil)
			wantScrubbed(t, o)
			var doc struct {
				Error struct {
					Details []struct {
						Type   string `json:"@type"`
						Reason string `json:"reason"`
					} `json:"details"`
				} `json:"error"`
			}
			if json.Unmarshal(o.agentBody, &doc) != nil || len(doc.Error.Details) != 3 || doc.Error.Details[0].Reason != "INVALID_QUERY" {
				t.Errorf("details %s", o.agentBody)
			}
		})
		t.Run("gzip BigQuery error, decoded", func(t *testing.T) {
			up := upstream{status: "404", headers: [][2]string{{"content-encoding", "gzip"}}, chunks: withBody(string(gzipped(t, []byte(bqErr))))}
			wantScrubbed(t, exchange(t, host, queryReq(), up, nil))
		})
		t.Run("failed job: 2xx job resource, reported", func(t *testing.T) {
			req := request{method: "POST", path: jobsInsertPath, chunks: withBody(insertBody), answer: maskAnswer(t, maskingFor(nil))}
			o := exchange(t, host, req, upstreamOK(failedJob), nil)
			wantScrubbed(t, o)
			if o.report == nil || o.job.Job == nil || o.job.Job.JobID != "job_1" {
				t.Errorf("the failed job was not reported")
			}
		})
		for _, c := range []struct {
			name string
			up   upstream
			want string
		}{
			{"plain-text 503", upstream{status: "503", headers: [][2]string{{"content-type", "text/plain"}}, chunks: withBody("upstream connect error")}, "upstream connect error"},
			{"no body", upstream{status: "503"}, ""},
			{"error without a message", upstream{status: "500", chunks: withBody(`{"error":{"code":500}}`)}, `{"error":{"code":500}}`},
		} {
			t.Run(c.name, func(t *testing.T) {
				o := exchange(t, host, queryReq(), c.up, nil)
				if o.reply != nil || o.streamAction != types.ActionContinue || string(o.agentBody) != c.want {
					t.Errorf("reply %v action %v body %q", o.reply, o.streamAction, o.agentBody)
				}
				// Recorded like every response of an allowed call: its status, no rows, no job.
				if o.report == nil || !o.heldBeforeAck || o.job.NamesJob() || o.job.Response.Rows != 0 ||
					strconv.Itoa(o.job.Response.Status) != c.up.status || o.job.Response.Bytes != int64(len(c.want)) {
					t.Errorf("report %+v", o.job)
				}
			})
		}
	})
}

// TestUnmaskedResponsesHeldAndReleasedUnchanged: without a masking instruction, row
// responses are still held for the response report, and go to the agent byte for byte
// (a gzip answer stays gzip) once it is recorded; upstream is asked for identity.
func TestUnmaskedResponsesHeldAndReleasedUnchanged(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host := configuredHost(t, vm)
		for _, path := range []string{getQueryResultsPath, tabledataPath} {
			t.Run(path, func(t *testing.T) {
				gz := gzipped(t, []byte(laterPage))
				up := upstream{status: "200", headers: [][2]string{{"content-encoding", "gzip"}, {"content-length", strconv.Itoa(len(gz))}}, chunks: chunked(gz, 3)}
				o := exchange(t, host, request{method: "GET", path: path}, up, nil)
				wantReleased(t, o, up)
				if headerValue(o.agentHeaders, "content-encoding") != "gzip" || len(headerValues(o.req.upstreamHeaders, "accept-encoding")) != 0 {
					t.Errorf("encoding headers: %q / %q", o.agentHeaders, o.req.upstreamHeaders)
				}
				r := o.job.Response
				if r.Masked || r.Rows != 2 || r.Encoding != "gzip" || r.Bytes != int64(len(gz)) || r.Digest != sha256Hex(gz) || r.Excerpt != laterPage {
					t.Errorf("report %+v", r)
				}
				if strings.Contains(o.logLine, "masked=") || !strings.Contains(o.logLine, " response_rows=2 audit_seq=42") {
					t.Errorf("log line %q", o.logLine)
				}
			})
		}
		t.Run("jobs.query released byte-identical", func(t *testing.T) {
			up := upstreamOK(maskedQueryResponse)
			o := exchange(t, host, request{method: "POST", path: queryPath, chunks: withBody(queryBody)}, up, nil)
			wantReleased(t, o, up)
		})
	})
}

// TestMaskLargePage: a page near the limit is masked whole (many frames, no truncation).
func TestMaskLargePage(t *testing.T) {
	var sb strings.Builder
	sb.WriteString(`{"totalRows":"N","rows":[`)
	n := 0
	for ; sb.Len() < 200<<10; n++ {
		if n > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(`{"f":[{"v":"` + strconv.Itoa(n) + `"},{"v":"u` + strconv.Itoa(n) + `@example.com"},{"v":"` + canarySSN + `"},{"v":"x"},{"v":"7"}]}`)
	}
	sb.WriteString(`]}`)
	page := sb.String()
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host := configuredHost(t, vm)
		req := request{method: "GET", path: getQueryResultsPath, answer: maskAnswer(t, maskingFor(maskSchema))}
		up := upstream{status: "200", chunks: chunked([]byte(page), 50)}
		o := exchange(t, host, req, up, nil)
		if o.reply != nil {
			t.Fatalf("reply %d %s", o.reply.StatusCode, o.reply.Data)
		}
		var p maskedPage
		if err := json.Unmarshal(o.agentBody, &p); err != nil || len(p.Rows) != n {
			t.Fatalf("rows %d of %d (%v)", len(p.Rows), n, err)
		}
		if bytes.Contains(o.agentBody, []byte(canarySSN)) || bytes.Contains(o.agentBody, []byte("@example.com")) {
			t.Errorf("a canary survived")
		}
		if !strings.Contains(o.logLine, " masked_rows="+strconv.Itoa(n)+" ") {
			t.Errorf("log line %q", o.logLine)
		}
	})
}

// TestMaskedCallShape: on a masked call the plan's column positions must be the
// response's, so column selections and partial responses that reach inside a member are
// refused (403, before anything goes upstream); top-level partial responses (what the
// clients send) pass; without masking nothing changes.
func TestMaskedCallShape(t *testing.T) {
	const table = "/bigquery/v2/projects/p/datasets/_anon1/tables/anon_tbl"
	refused := []struct {
		name, path string
		headers    [][2]string
		reason     bqapi.Reason
	}{
		{"tabledata.list selectedFields", tabledataPath + "&selectedFields=ssn,id", nil, bqapi.ReasonMaskedSelectedFields},
		{"tabledata.list selected_fields", tabledataPath + "&selected_fields=ssn", nil, bqapi.ReasonMaskedSelectedFields},
		{"tables.get selectedFields", table + "?selectedFields=salary", nil, bqapi.ReasonMaskedSelectedFields},
		{"fields inside the schema", "/bigquery/v2/projects/p/queries/job_1?fields=schema/fields(name),rows", nil, bqapi.ReasonMaskedPartialResponse},
		{"fields inside the rows", "/bigquery/v2/projects/p/queries/job_1?fields=rows/f,schema", nil, bqapi.ReasonMaskedPartialResponse},
		{"$fields", table + "?%24fields=schema(fields(name,mode))", nil, bqapi.ReasonMaskedPartialResponse},
		{"empty fields member", tabledataPath + "&fields=rows,,", nil, bqapi.ReasonMaskedPartialResponse},
		{"X-Goog-FieldMask header", table, [][2]string{{"x-goog-fieldmask", "schema.fields.name"}}, bqapi.ReasonMaskedPartialResponse},
		// Envoy's single-value getter returns the first of repeated headers: every one counts.
		{"second X-Goog-FieldMask header", table, [][2]string{{"x-goog-fieldmask", "rows"}, {"x-goog-fieldmask", "schema.fields.name"}}, bqapi.ReasonMaskedPartialResponse},
		{"third X-Goog-FieldMask header", table, [][2]string{{"x-goog-fieldmask", "rows"}, {"x-goog-fieldmask", "totalRows"}, {"x-goog-fieldmask", "rows/f"}}, bqapi.ReasonMaskedPartialResponse},
		{"top-level fields and an inner X-Goog-FieldMask", table + "?fields=rows,schema", [][2]string{{"x-goog-fieldmask", "schema(fields(name))"}}, bqapi.ReasonMaskedPartialResponse},
		{"top-level X-Goog-FieldMask and inner $fields", table + "?%24fields=schema/fields", [][2]string{{"x-goog-fieldmask", "rows"}}, bqapi.ReasonMaskedPartialResponse},
	}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host := configuredHost(t, vm)
		for _, c := range refused {
			t.Run(c.name, func(t *testing.T) {
				o := send(t, host, request{method: "GET", path: c.path, headers: c.headers, answer: maskAnswer(t, maskingFor(maskSchema))})
				wantRefused(t, o, c.reason)
				if o.reply.StatusCode != 403 {
					t.Errorf("status %d", o.reply.StatusCode)
				}
				if o.forwarded() {
					t.Errorf("forwarded upstream")
				}
			})
			t.Run(c.name+" without masking", func(t *testing.T) {
				wantAllowed(t, send(t, host, request{method: "GET", path: c.path, headers: c.headers, answer: allowAnswer(t)}))
			})
		}
		t.Run("top-level fields pass and are masked", func(t *testing.T) {
			for _, path := range []string{
				"/bigquery/v2/projects/p/queries/job_1?fields=rows,pageToken,totalRows",
				"/bigquery/v2/projects/p/queries/job_1?fields=*",
				"/bigquery/v2/projects/p/queries/job_1?fields=jobReference,%20totalRows,pageToken,rows",
			} {
				req := request{method: "GET", path: path, answer: maskAnswer(t, maskingFor(maskSchema))}
				wantMasked(t, exchange(t, host, req, upstreamOK(laterPage), nil), false)
			}
		})
		t.Run("fields inside the schema in a form body (POST + X-HTTP-Method-Override: GET)", func(t *testing.T) {
			o := send(t, host, request{method: "POST", path: table,
				headers: [][2]string{{"x-http-method-override", "GET"}, {"content-type", "application/x-www-form-urlencoded"}},
				chunks:  withBody("fields=rows&fields=schema/fields(name)"), answer: maskAnswer(t, maskingFor(maskSchema))})
			wantRefused(t, o, bqapi.ReasonMaskedPartialResponse)
		})
		t.Run("top-level X-Goog-FieldMask headers pass and are masked", func(t *testing.T) {
			req := request{method: "GET", path: "/bigquery/v2/projects/p/queries/job_1?fields=rows", answer: maskAnswer(t, maskingFor(maskSchema)),
				headers: [][2]string{{"x-goog-fieldmask", "rows,pageToken"}, {"x-goog-fieldmask", "totalRows"}}}
			wantMasked(t, exchange(t, host, req, upstreamOK(laterPage), nil), false)
		})
		t.Run("jobs.cancel of a masked job: the job's messages are withheld", func(t *testing.T) {
			leak := `Bad int64 value: ` + canaryEmail
			cancelled := `{"kind":"bigquery#jobCancelResponse","job":{"kind":"bigquery#job","jobReference":{"projectId":"p","jobId":"job_1"},` +
				`"status":{"state":"DONE","errorResult":{"reason":"invalidQuery","message":"` + leak + `"}}}}`
			req := request{method: "POST", path: "/bigquery/v2/projects/p/jobs/job_1/cancel", answer: maskAnswer(t, maskingFor(nil))}
			o := exchange(t, host, req, upstreamOK(cancelled), nil)
			if o.reply != nil || o.streamAction != types.ActionContinue {
				t.Fatalf("reply %v action %v", o.reply, o.streamAction)
			}
			if b := string(o.agentBody); strings.Contains(b, canaryEmail) || !strings.Contains(b, bqapi.WithheldMessage) || !strings.Contains(b, `"reason":"invalidQuery"`) {
				t.Errorf("body %s", b)
			}
		})
	})
}
