package masking

import (
	"encoding/json"
	"testing"
)

// FuzzMaskResponse: whatever the body, masking either fails or returns valid JSON with
// the same rows and cells; a body encoding/json rejects is never accepted.
func FuzzMaskResponse(f *testing.F) {
	f.Add(body(nestedSchema, nestedRow), byte(0))
	f.Add(body(`{"fields":[{"name":"a","type":"STRING"},{"name":"b","type":"INTEGER","mode":"REPEATED"}]}`,
		`{"f":[{"v":"x@y.com"},{"v":[{"v":"1"},{"v":"2"}]}]}`, `{"f":[{"v":null},{"v":[]}]}`), byte(1))
	f.Add([]byte(`{"rows":[{"f":[{"v":"a"}]}],"schema":{"fields":[{"name":"a","type":"STRING","mode":"REQUIRED"}]}}`), byte(2))
	f.Add([]byte(`{"schema":{"fields":[{"name":"j","type":"JSON"}]},"rows":[{"f":[{"v":"{\"a\":\"10.0.0.1\"}"}]}]}`), byte(3))
	f.Add([]byte(`{"kind":"x","totalRows":"0"}`), byte(4))
	actions := []Action{Redact, Hash, Last4, EmailDomain, Null, "x"}
	f.Fuzz(func(t *testing.T, in []byte, a byte) {
		plan := Plan{Key: testKey, Detectors: allDetectors(),
			Rules: []Rule{{[]int{0}, actions[int(a)%len(actions)]}}}
		out, st, _, err := MaskResponse(in, nil, plan)
		if err != nil {
			if out != nil {
				t.Fatal("output with an error")
			}
			return
		}
		if !json.Valid(in) {
			t.Fatalf("accepted invalid JSON: %q", in)
		}
		if !json.Valid(out) {
			t.Fatalf("output is not valid JSON: %q -> %q", in, out)
		}
		if shape(t, in) != shape(t, out) {
			t.Fatalf("shape changed: %q -> %q", in, out)
		}
		var rows struct{ Rows []json.RawMessage }
		_ = json.Unmarshal(in, &rows)
		if st.Rows != len(rows.Rows) {
			t.Fatalf("stats.Rows %d, rows %d", st.Rows, len(rows.Rows))
		}
	})
}
