package bqapi

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestWithholdErrorMessages(t *testing.T) {
	const leak = "quorra@canary.test"
	for _, c := range []struct {
		name, doc string
		changed   bool
	}{
		{"error document", `{"error":{"code":400,"message":"Bad int64 value: ` + leak + `","errors":[{"reason":"invalidQuery","location":"query","debugInfo":"` + leak + `","message":"Bad int64 value: ` + leak + `"}],"status":"INVALID_ARGUMENT"}}`, true},
		{"job resource", `{"kind":"bigquery#job","jobReference":{"jobId":"j"},"statistics":{"totalBytesProcessed":"12345678901234567890"},"status":{"state":"DONE","errorResult":{"reason":"invalidQuery","message":"` + leak + `"},"errors":[{"reason":"invalidQuery","message":"` + leak + `"}]}}`, true},
		{"query response errors", `{"jobComplete":true,"errors":[{"reason":"x","message":"` + leak + `"}],"rows":[]}`, true},
		{"job without errors", `{"kind":"bigquery#job","status":{"state":"DONE"}}`, false},
		{"jobs.cancel response", `{"kind":"bigquery#jobCancelResponse","job":{"kind":"bigquery#job","status":{"state":"DONE","errorResult":{"reason":"invalidQuery","message":"` + leak + `"},"errors":[{"reason":"invalidQuery","message":"` + leak + `"}]}}}`, true},
		{"jobs.cancel response without errors", `{"kind":"bigquery#jobCancelResponse","job":{"kind":"bigquery#job","status":{"state":"DONE","errorResult":null}}}`, false},
		{"rows that mention errors", `{"rows":[{"f":[{"v":"\"errors\": none"}]}]}`, false},
		{"no error at all", `{"rows":[]}`, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, changed, err := WithholdErrorMessages([]byte(c.doc))
			if err != nil || changed != c.changed {
				t.Fatalf("changed %v err %v", changed, err)
			}
			if !changed {
				if string(out) != c.doc {
					t.Errorf("unchanged document rewritten: %s", out)
				}
				return
			}
			if strings.Contains(string(out), leak) || strings.Contains(string(out), "debugInfo") {
				t.Errorf("the message survived: %s", out)
			}
			var v map[string]any
			if json.Unmarshal(out, &v) != nil || !strings.Contains(string(out), WithheldMessage) {
				t.Errorf("out = %s", out)
			}
			for _, keep := range []string{`"reason":"invalidQuery"`, `"location":"query"`, `"code":400`, `"status":"INVALID_ARGUMENT"`, `"12345678901234567890"`, `"state":"DONE"`} {
				if strings.Contains(c.doc, keep) && !strings.Contains(string(out), keep) {
					t.Errorf("%s lost: %s", keep, out)
				}
			}
		})
	}
	for _, bad := range []string{`[{"error":1}]`, `{"error":`, `{"error":{}} {}`} {
		if _, _, err := WithholdErrorMessages([]byte(bad)); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

// googleErrorWithDetails is a Google API error document in the shape Google's front end
// sends (google.rpc.Status as JSON), every free-text member quoting leak.
func googleErrorWithDetails(leak string) string {
	return `{"error":{"code":400,"message":"Bad int64 value: ` + leak + `",` +
		`"errors":[{"message":"Bad int64 value: ` + leak + `","domain":"global","reason":"invalidQuery","location":"query","locationType":"parameter","extendedHelp":"https://example.test/?q=` + leak + `"}],` +
		`"status":"INVALID_ARGUMENT","details":[` +
		`{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"INVALID_QUERY","domain":"bigquery.googleapis.com","metadata":{"value":"` + leak + `","service":"bigquery.googleapis.com"}},` +
		`{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{"field":"query","reason":"BAD_VALUE","description":"cannot cast ` + leak + `","localizedMessage":{"locale":"en-US","message":"cannot cast ` + leak + `"}}]},` +
		`{"@type":"type.googleapis.com/google.rpc.LocalizedMessage","locale":"en-US","message":"Ungültiger Wert: ` + leak + `"},` +
		`{"@type":"type.googleapis.com/google.rpc.DebugInfo","stackEntries":["cast.cc:12 ` + leak + `"],"detail":"` + leak + `"},` +
		`{"@type":"type.googleapis.com/google.rpc.Help","links":[{"description":"about ` + leak + `","url":"https://example.test/` + leak + `"}]},` +
		`{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"subject":"` + leak + `","description":"` + leak + `","quotaMetric":"bigquery.googleapis.com/quota","quotaValue":"100","quotaDimensions":{"user":"` + leak + `"}}]},` +
		`{"@type":"type.googleapis.com/google.rpc.PreconditionFailure","violations":[{"type":"TOS","subject":"` + leak + `","description":"` + leak + `"}]},` +
		`{"@type":"type.googleapis.com/google.rpc.ResourceInfo","resourceType":"bigquery.googleapis.com/Table","resourceName":"` + leak + `","owner":"` + leak + `","description":"` + leak + `"},` +
		`{"@type":"type.googleapis.com/google.rpc.RequestInfo","requestId":"r-1","servingData":"` + leak + `"},` +
		`{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"1.500s","extra":"` + leak + `"},` +
		`{"@type":"type.googleapis.com/example.UnknownDetail","text":"` + leak + `"},` +
		`{"text":"` + leak + `"},` +
		`"` + leak + `"` +
		`],"unknownMember":"` + leak + `"}}`
}

// TestWithholdErrorDetails: the google.rpc details of an error document keep their
// "@type" and the members a client decides on; every free-text member is withheld, and
// details of unknown types (or without one) are dropped.
func TestWithholdErrorDetails(t *testing.T) {
	const leak = "quorra@canary.test"
	doc := googleErrorWithDetails(leak)
	out, changed, err := WithholdErrorMessages([]byte(doc))
	if err != nil || !changed {
		t.Fatalf("changed %v err %v", changed, err)
	}
	if strings.Contains(string(out), "quorra") || strings.Contains(string(out), "canary") {
		t.Fatalf("the value survived: %s", out)
	}
	var got struct {
		Error struct {
			Code    int              `json:"code"`
			Status  string           `json:"status"`
			Message string           `json:"message"`
			Errors  []map[string]any `json:"errors"`
			Details []map[string]any `json:"details"`
		} `json:"error"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	e := got.Error
	if e.Code != 400 || e.Status != "INVALID_ARGUMENT" || e.Message != WithheldMessage {
		t.Errorf("error %+v", e)
	}
	if len(e.Errors) != 1 || e.Errors[0]["reason"] != "invalidQuery" || e.Errors[0]["domain"] != "global" ||
		e.Errors[0]["location"] != "query" || e.Errors[0]["locationType"] != "parameter" || e.Errors[0]["extendedHelp"] != nil {
		t.Errorf("errors %v", e.Errors)
	}
	byType := map[string]map[string]any{}
	for _, d := range e.Details {
		byType[strings.TrimPrefix(d["@type"].(string), "type.googleapis.com/google.rpc.")] = d
	}
	if len(e.Details) != 10 || len(byType) != 10 {
		t.Fatalf("details %v", e.Details)
	}
	if _, ok := byType["type.googleapis.com/example.UnknownDetail"]; ok {
		t.Errorf("an unknown detail type was kept")
	}
	mustJSON := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	w := mustJSON(WithheldMessage)
	for name, want := range map[string]string{
		"ErrorInfo":           `{"@type":"type.googleapis.com/google.rpc.ErrorInfo","domain":"bigquery.googleapis.com","metadata":{"service":` + w + `,"value":` + w + `},"reason":"INVALID_QUERY"}`,
		"BadRequest":          `{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{"description":` + w + `,"field":"query","localizedMessage":{"locale":"en-US","message":` + w + `},"reason":"BAD_VALUE"}]}`,
		"LocalizedMessage":    `{"@type":"type.googleapis.com/google.rpc.LocalizedMessage","locale":"en-US","message":` + w + `}`,
		"DebugInfo":           `{"@type":"type.googleapis.com/google.rpc.DebugInfo","detail":` + w + `}`,
		"Help":                `{"@type":"type.googleapis.com/google.rpc.Help","links":[{"description":` + w + `,"url":` + w + `}]}`,
		"QuotaFailure":        `{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"description":` + w + `,"quotaDimensions":{"user":` + w + `},"quotaMetric":"bigquery.googleapis.com/quota","quotaValue":"100","subject":` + w + `}]}`,
		"PreconditionFailure": `{"@type":"type.googleapis.com/google.rpc.PreconditionFailure","violations":[{"description":` + w + `,"subject":` + w + `,"type":"TOS"}]}`,
		"ResourceInfo":        `{"@type":"type.googleapis.com/google.rpc.ResourceInfo","description":` + w + `,"owner":` + w + `,"resourceName":` + w + `,"resourceType":"bigquery.googleapis.com/Table"}`,
		"RequestInfo":         `{"@type":"type.googleapis.com/google.rpc.RequestInfo","requestId":"r-1","servingData":` + w + `}`,
		"RetryInfo":           `{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"1.500s"}`,
	} {
		if got := mustJSON(byType[name]); got != want {
			t.Errorf("%s:\n got %s\nwant %s", name, got, want)
		}
	}
	// Scrubbing is idempotent: a scrubbed document needs nothing more.
	if again, changed, err := WithholdErrorMessages(out); err != nil || changed || string(again) != string(out) {
		t.Errorf("second pass changed %v err %v", changed, err)
	}
}

// TestWithholdErrorShapes: error members that can quote a value in other places than
// the message (a location that is not a field path, unknown members, items of another
// shape) are dropped; errors that carry no free text stay byte for byte.
func TestWithholdErrorShapes(t *testing.T) {
	const leak = "quorra@canary.test"
	for _, doc := range []string{
		`{"kind":"bigquery#job","status":{"state":"DONE","errorResult":{"reason":"invalid","location":"` + leak + `"}}}`,
		`{"kind":"bigquery#job","status":{"state":"DONE","errorResult":{"reason":"invalid","location":"Quorra Vexbridge"},"errors":[{"reason":"invalid","location":"219-44-7731"}]}}`,
		`{"jobComplete":true,"errors":[{"reason":"invalid","debugInfo":"` + leak + `"}]}`,
		`{"jobComplete":true,"errors":[{"reason":"invalid","extendedHelp":"` + leak + `"}]}`,
		`{"jobComplete":true,"errors":["` + leak + `"]}`,
		`{"error":{"code":400,"errors":[{"reason":"invalid","sendReport":"` + leak + `"}]}}`,
		`{"error":{"code":400,"status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"X","metadata":{"k":"` + leak + `"}}]}}`,
		`{"error":{"code":400,"details":"` + leak + `"}}`,
		`{"error":{"code":400,"details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":{"nested":"` + leak + `"}}]}}`,
		`{"error":{"code":400,"details":[{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":["` + leak + `"]}]}}`,
		`{"error":"` + leak + `"}`,
	} {
		out, changed, err := WithholdErrorMessages([]byte(doc))
		if err != nil || !changed || strings.Contains(string(out), "quorra") || strings.Contains(string(out), "Quorra") || strings.Contains(string(out), "219-44") {
			t.Errorf("%s\n-> changed %v err %v: %s", doc, changed, err, out)
		}
	}
	for _, doc := range []string{
		`{"error":{"code":403,"status":"PERMISSION_DENIED","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"ACCESS_TOKEN_SCOPE_INSUFFICIENT","domain":"googleapis.com"}]}}`,
		`{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"30s"}],"errors":[{"reason":"rateLimitExceeded","domain":"usageLimits"}]}}`,
		`{"kind":"bigquery#job","status":{"state":"DONE","errorResult":{"reason":"invalidQuery","location":"query"},"errors":[{"reason":"invalidQuery","location":"address.city","locationType":"other"}]}}`,
		`{"jobComplete":true,"errors":null,"rows":[]}`,
	} {
		out, changed, err := WithholdErrorMessages([]byte(doc))
		if err != nil || changed || string(out) != doc {
			t.Errorf("%s\n-> changed %v err %v: %s", doc, changed, err, out)
		}
	}
}
