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
