package bqapi

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestDecodeQueryRequest(t *testing.T) {
	body := `{"query":"SELECT @x","useLegacySql":false,"defaultDataset":{"projectId":"p","datasetId":"d"},
	"queryParameters":[{"name":"x","parameterType":{"type":"ARRAY","arrayType":{"type":"STRUCT","structTypes":[{"name":"a","type":{"type":"INT64"}}]}},
	  "parameterValue":{"arrayValues":[{"structValues":{"a":{"value":"1"}}}]}}],
	"parameterMode":"NAMED","dryRun":true,"maximumBytesBilled":"1000","location":"EU","labels":{"team":"x"},
	"createSession":true,"connectionProperties":[{"key":"session_id","value":"s"}],"requestId":"r1",
	"jobCreationMode":"JOB_CREATION_OPTIONAL","formatOptions":{"useInt64Timestamp":true},"maxResults":10,"someFutureField":1}`
	q, rej := DecodeQueryRequest([]byte(body))
	if rej != nil {
		t.Fatal(rej)
	}
	if q.API != JobsQuery || q.SQL != "SELECT @x" || q.LegacySQL || !q.DryRun || q.DefaultDataset.DatasetID != "d" ||
		q.MaximumBytesBilled == nil || *q.MaximumBytesBilled != 1000 || q.Location != "EU" || q.Labels["team"] != "x" ||
		!q.CreateSession || q.ConnectionProperties[0].Value != "s" || q.RequestID != "r1" ||
		q.JobCreationMode != "JOB_CREATION_OPTIONAL" || q.QueryRequest == nil || !q.QueryRequest.FormatOptions.UseInt64Timestamp {
		t.Errorf("%+v", q)
	}
	v := q.Parameters[0].ParameterValue.ArrayValues[0].StructValues["a"].Value
	if v == nil || *v != "1" || q.Parameters[0].ParameterType.ArrayType.StructTypes[0].Type.Type != "INT64" {
		t.Errorf("parameters %+v", q.Parameters)
	}
}

func TestDialect(t *testing.T) {
	f, tr := false, true
	cases := []struct {
		sql    string
		use    *bool
		legacy bool
	}{
		{"SELECT 1", nil, true}, // REST default is legacy
		{"SELECT 1", &f, false},
		{"SELECT 1", &tr, true},
		{"#standardSQL\nSELECT 1", nil, false},
		{"  #StandardSQL\nSELECT 1", &f, false},
		{"#legacySQL\nSELECT 1", &f, true},    // conflict: fail closed as legacy
		{"#standardSQL\nSELECT 1", &tr, true}, // conflict: fail closed as legacy
	}
	for _, c := range cases {
		if got := LegacyDialect(c.sql, c.use); got != c.legacy {
			t.Errorf("LegacyDialect(%q, %v) = %v", c.sql, c.use, got)
		}
	}
}

func TestDecodeJobInsert(t *testing.T) {
	body := `{"jobReference":{"projectId":"p","jobId":"j1","location":"US"},"configuration":{"dryRun":true,"labels":{"a":"b"},
	"query":{"query":"SELECT 1","useLegacySql":false,"destinationTable":{"projectId":"p","datasetId":"d","tableId":"t"},
	"writeDisposition":"WRITE_APPEND","createDisposition":"CREATE_IF_NEEDED","priority":"BATCH","maximumBytesBilled":5,
	"tableDefinitions":{"ext2":{},"ext1":{}},"userDefinedFunctionResources":[{"inlineCode":"x"}]}}}`
	q, rej := DecodeJobInsert([]byte(body))
	if rej != nil {
		t.Fatal(rej)
	}
	if q.API != JobsInsert || q.JobID != "j1" || q.Location != "US" || !q.DryRun || q.Labels["a"] != "b" ||
		q.Destination.TableID != "t" || q.WriteDisposition != "WRITE_APPEND" || q.CreateDisposition != "CREATE_IF_NEEDED" ||
		q.Priority != "BATCH" || *q.MaximumBytesBilled != 5 || strings.Join(q.ExternalTables, ",") != "ext1,ext2" ||
		q.UDFResources != 1 || q.Job == nil || q.LegacySQL {
		t.Errorf("%+v", q)
	}
}

func TestDecodeRefusals(t *testing.T) {
	cases := []struct {
		api    API
		body   string
		reason Reason
	}{
		{JobsQuery, ``, ReasonMissingBody},
		{JobsQuery, "  \n", ReasonMissingBody},
		{JobsQuery, `null`, ReasonMissingSQL},
		{JobsQuery, `{}`, ReasonMissingSQL},
		{JobsQuery, `{"query":"  "}`, ReasonMissingSQL},
		{JobsQuery, `{"query":`, ReasonMalformedJSON},
		{JobsQuery, `{"query":"a"} {}`, ReasonMalformedJSON},
		{JobsQuery, `[]`, ReasonMalformedJSON},
		{JobsQuery, `{"query":1}`, ReasonMalformedJSON},
		{JobsQuery, `{"query":"a","x":` + strings.Repeat("[", 101) + strings.Repeat("]", 101) + `}`, ReasonMalformedJSON},
		{JobsQuery, `{"query":"a","maximumBytesBilled":"lots"}`, ReasonMalformedJSON},
		{JobsQuery, `{"query":"a","query":"b"}`, ReasonAmbiguousJSON},
		{JobsQuery, `{"query":"a","Query":"b"}`, ReasonAmbiguousJSON},
		{JobsQuery, `{"QUERY":"a"}`, ReasonAmbiguousJSON},
		{JobsQuery, `{"query":"a","use_legacy_sql":false}`, ReasonAmbiguousJSON},
		{JobsQuery, `{"query":"a","\u0071uery":"b"}`, ReasonAmbiguousJSON},
		{JobsQuery, `{"query":"a","labels":{"k":"1","K":"2"}}`, ReasonAmbiguousJSON},
		{JobsQuery, `{"query":"a","defaultDataset":{"datasetId":"x","dataset_id":"y"}}`, ReasonAmbiguousJSON},
		{JobsQuery, `{"query":"a","defaultDataset":{"DatasetId":"x"}}`, ReasonAmbiguousJSON},
		{JobsQuery, `{"query":"a","queryParameters":[{"parameterValue":{"Value":"1"}}]}`, ReasonAmbiguousJSON},
		{JobsInsert, `{"configuration":{"dry_run":true,"query":{"query":"a"}}}`, ReasonAmbiguousJSON},
		{JobsInsert, `{"configuration":{"query":{"query":"a","write_disposition":"WRITE_TRUNCATE"}}}`, ReasonAmbiguousJSON},
		{JobsInsert, `{"job_reference":{"jobId":"j"},"configuration":{"query":{"query":"a"}}}`, ReasonAmbiguousJSON},
		{JobsInsert, `{"configuration":{"load":{}}}`, ReasonLoadJob},
		{JobsInsert, `{"configuration":{"query":{"query":"a"},"load":{}}}`, ReasonLoadJob},
		{JobsInsert, `{"configuration":{"extract":{}}}`, ReasonExtractJob},
		{JobsInsert, `{"configuration":{"copy":{}}}`, ReasonCopyJob},
		{JobsInsert, `{"configuration":{}}`, ReasonUnknownJobKind},
		{JobsInsert, `{}`, ReasonUnknownJobKind},
		{JobsInsert, `{"configuration":{"query":{}}}`, ReasonMissingSQL},
	}
	for _, c := range cases {
		t.Run(c.api.String()+" "+c.body, func(t *testing.T) {
			_, rej := DecodeBody(c.api, []byte(c.body))
			if rej == nil || rej.Reason != c.reason {
				t.Fatalf("got %v, want %s", rej, c.reason)
			}
			if strings.Contains(rej.Message(), "lots") {
				t.Errorf("message echoes request content: %s", rej.Message())
			}
		})
	}
}

// Free-form maps (labels, structValues) may use any keys, including underscores.
func TestDecodeFreeKeys(t *testing.T) {
	body := `{"query":"a","labels":{"agent_id":"x","Team":"y"},"queryParameters":[{"parameterValue":{"structValues":{"user_id":{"value":"1"}}}}]}`
	if _, rej := DecodeQueryRequest([]byte(body)); rej != nil {
		t.Fatal(rej)
	}
}

// The key scan must not be confused by structure inside strings, escapes or odd spacing.
func TestDecodeTrickyJSON(t *testing.T) {
	body := " \n{ \"query\" : \"SELECT '}{[,:\\\"' \\\\\" ,\"labels\":{\"k\":\"v}\"},\r\n\t\"x\":[1,-2.5e3,true,null,{\"a\":[[],{}]},\"\\u0041\"] ,\"useLegacySql\":false}\n"
	q, rej := DecodeQueryRequest([]byte(body))
	if rej != nil {
		t.Fatal(rej)
	}
	if q.SQL != `SELECT '}{[,:"' \` || q.LegacySQL || q.Labels["k"] != "v}" {
		t.Errorf("%+v", q)
	}
}

func FuzzDecodeQueryRequest(f *testing.F) {
	f.Add([]byte(benchQueryRequest))
	f.Add([]byte(`{"query":"a","\u0071uery":"b"}`))
	f.Add([]byte(`{"query":"x","queryParameters":[{"parameterValue":{"arrayValues":[{"structValues":{"a":{}}}]}}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		q, rej := DecodeQueryRequest(body) // must not panic
		if (q == nil) == (rej == nil) {
			t.Fatalf("q=%v rej=%v", q, rej)
		}
	})
}

func TestDecodeOtherAPIs(t *testing.T) {
	if q, rej := DecodeBody(JobsCancel, []byte("anything")); q != nil || rej != nil {
		t.Errorf("got %v %v", q, rej)
	}
}

func TestErrorDocument(t *testing.T) {
	for _, c := range []struct {
		reason        Reason
		code          int
		errReason, st string
		messagePrefix string
	}{
		{ReasonUploadEndpoint, 403, "accessDenied", "PERMISSION_DENIED", "jitgate: denied: "},
		{ReasonMalformedJSON, 400, "invalid", "INVALID_ARGUMENT", "jitgate: invalid request: "},
		{ReasonBodyTooLarge, 413, "invalid", "INVALID_ARGUMENT", "jitgate: request too large: "},
		{ReasonNotConfigured, 503, "backendError", "UNAVAILABLE", "jitgate: unavailable: "},
		{ReasonControlPlaneUnavailable, 503, "backendError", "UNAVAILABLE", "jitgate: unavailable: "},
		{ReasonInternal, 500, "backendError", "INTERNAL", "jitgate: internal error: "},
		{Reason("some-future-code"), 403, "accessDenied", "PERMISSION_DENIED", "jitgate: denied: "},
	} {
		var raw map[string]map[string]any
		if err := json.Unmarshal(ErrorBodyFor(Reject(c.reason, "why")), &raw); err != nil {
			t.Fatal(err)
		}
		e := raw["error"]
		errs := e["errors"].([]any)[0].(map[string]any)
		msg := c.messagePrefix + "why (" + string(c.reason) + ")"
		if e["code"] != float64(c.code) || e["status"] != c.st || e["message"] != msg ||
			errs["reason"] != c.errReason || errs["domain"] != "global" || errs["message"] != msg || len(e) != 4 {
			t.Errorf("%s: %v", c.reason, raw)
		}
	}
}

func TestSessionID(t *testing.T) {
	for _, c := range []struct {
		body, want string
	}{
		{`{"query":"SELECT 1"}`, ""},
		{`{"query":"SELECT 1","connectionProperties":[{"key":"time_zone","value":"UTC"}]}`, ""},
		{`{"query":"SELECT 1","connectionProperties":[{"key":"session_id","value":"a"},{"key":"session_id","value":"b"}]}`, "b"},
		{`{"query":"SELECT 1","connectionProperties":[{"key":"session_id","value":""}]}`, "(empty)"},
	} {
		spec, rej := DecodeQueryRequest([]byte(c.body))
		if rej != nil {
			t.Fatal(rej.Detail)
		}
		if got := spec.SessionID(); got != c.want {
			t.Errorf("%s: session id %q, want %q", c.body, got, c.want)
		}
	}
}

// Result formats other than JSON rows are refused, in the body and in the query string.
func TestResultFormats(t *testing.T) {
	for _, c := range []struct {
		body string
		ok   bool
	}{
		{`{"query":"SELECT 1","formatOptions":{"useInt64Timestamp":true}}`, true},
		{`{"query":"SELECT 1","formatOptions":{"timestampOutputFormat":"ISO8601_STRING"}}`, true},
		{`{"query":"SELECT 1","formatOptions":{"timestampOutputFormat":"ARROW"}}`, false},
		{`{"query":"SELECT 1","formatOptions":{"outputFormat":"ARROW"}}`, false},
		{`{"query":"SELECT 1 AS formatOptions"}`, true},
	} {
		_, rej := DecodeQueryRequest([]byte(c.body))
		if c.ok && rej != nil {
			t.Errorf("%s: refused: %s", c.body, rej.Detail)
		}
		if !c.ok && (rej == nil || rej.Reason != ReasonUnsupportedFormat) {
			t.Errorf("%s: %v, want %s", c.body, rej, ReasonUnsupportedFormat)
		}
	}
	for _, c := range []struct {
		query string
		ok    bool
	}{
		{"formatOptions.useInt64Timestamp=true", true},
		{"formatOptions.timestampOutputFormat=INT64", true},
		{"formatOptions.timestampOutputFormat=PROTO", false},
		{"formatOptions.arrowSerializationOptions=x", false},
	} {
		_, rej := ParseParams(c.query)
		if c.ok && rej != nil {
			t.Errorf("%s: refused: %s", c.query, rej.Detail)
		}
		if !c.ok && (rej == nil || rej.Reason != ReasonUnsupportedFormat || rej.Reason.HTTPStatus() != 403) {
			t.Errorf("%s: %v, want %s", c.query, rej, ReasonUnsupportedFormat)
		}
	}
}
