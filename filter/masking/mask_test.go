package masking

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

var testKey = NewKey([]byte("0123456789abcdef0123456789abcdef"))

func hashOf(v string) string {
	m := hmac.New(sha256.New, []byte("0123456789abcdef0123456789abcdef"))
	m.Write([]byte(v))
	return "h:" + hex.EncodeToString(m.Sum(nil))[:32]
}

// body builds a jobs.query response.
func body(schema string, rows ...string) []byte {
	return []byte(`{"kind":"bigquery#queryResponse","schema":` + schema + `,"rows":[` + strings.Join(rows, ",") +
		`],"totalRows":"` + fmt.Sprint(len(rows)) + `","jobComplete":true}`)
}

type decoded struct {
	Schema *Schema `json:"schema"`
	Rows   []struct {
		F []struct {
			V any `json:"v"`
		} `json:"f"`
	} `json:"rows"`
}

func decode(t testing.TB, b []byte) decoded {
	t.Helper()
	var d decoded
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("output is not valid JSON: %v\n%s", err, b)
	}
	return d
}

func mustMask(t testing.TB, b []byte, s *Schema, p Plan) ([]byte, Stats, *Schema) {
	t.Helper()
	out, st, ms, err := MaskResponse(b, s, p)
	if err != nil {
		t.Fatalf("MaskResponse: %v\nbody: %s", err, b)
	}
	if !json.Valid(out) {
		t.Fatalf("output is not valid JSON:\n%s", out)
	}
	if a, b2 := shape(t, b), shape(t, out); a != b2 {
		t.Fatalf("cell shape changed:\n in: %s\nout: %s", a, b2)
	}
	return out, st, ms
}

// shape renders the rows with every leaf (string or null) as "_": masking must keep it.
func shape(t testing.TB, b []byte) string {
	t.Helper()
	var v struct {
		Rows any `json:"rows"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	var walk func(any) any
	walk = func(x any) any {
		switch x := x.(type) {
		case []any:
			out := make([]any, len(x))
			for i := range x {
				out[i] = walk(x[i])
			}
			return out
		case map[string]any:
			out := map[string]any{}
			for k, e := range x {
				out[k] = walk(e)
			}
			return out
		}
		return "_"
	}
	s, _ := json.Marshal(walk(v.Rows))
	return string(s)
}

var typeValues = map[string]string{
	"STRING": "alice@example.com", "INTEGER": "1234567", "INT64": "-42", "FLOAT": "3.25", "NUMERIC": "12345.67",
	"BIGNUMERIC": "1.5", "BOOLEAN": "true", "TIMESTAMP": "1.7104986E9", "DATE": "2024-03-15", "DATETIME": "2024-03-15T10:30:00",
	"TIME": "10:30:00", "BYTES": "aGVsbG8=", "GEOGRAPHY": "POINT(1 2)", "JSON": `{"k":"v"}`,
}

func expectMasked(action Action, v string, nullable bool) any {
	switch action {
	case Redact:
		return RedactedToken
	case Hash:
		return hashOf(v)
	case Last4:
		if utf8.RuneCountInString(v) <= 4 {
			return "****"
		}
		r := []rune(v)
		return "****" + string(r[len(r)-4:])
	case EmailDomain:
		if i := strings.LastIndexByte(v, '@'); i >= 0 && i < len(v)-1 {
			return "***@" + v[i+1:]
		}
		return RedactedToken
	case Null:
		if nullable {
			return nil
		}
		return RedactedToken
	}
	return RedactedToken // unknown actions fail closed
}

// TestActionsTypesModes: every action on every type in every mode.
func TestActionsTypesModes(t *testing.T) {
	actions := []Action{Redact, Hash, Last4, EmailDomain, Null, "shred"}
	for _, action := range actions {
		for typ, val := range typeValues {
			for _, mode := range []string{"NULLABLE", "REQUIRED", "REPEATED", ""} {
				t.Run(fmt.Sprintf("%s/%s/%s", action, typ, mode), func(t *testing.T) {
					enc, _ := json.Marshal(val)
					schema := fmt.Sprintf(`{"fields":[{"name":"id","type":"INTEGER","mode":"REQUIRED"},{"name":"c","type":%q,"mode":%q,"precision":"10","policyTags":{"names":["x"]}}]}`, typ, mode)
					var rows []string
					if mode == "REPEATED" {
						rows = []string{`{"f":[{"v":"1"},{"v":[{"v":` + string(enc) + `},{"v":` + string(enc) + `}]}]}`, `{"f":[{"v":"2"},{"v":[]}]}`}
					} else {
						rows = []string{`{"f":[{"v":"1"},{"v":` + string(enc) + `}]}`}
						if mode != "REQUIRED" {
							rows = append(rows, `{"f":[{"v":"2"},{"v":null}]}`)
						}
					}
					in := body(schema, rows...)
					out, st, ms := mustMask(t, in, nil, Plan{Rules: []Rule{{Path: []int{1}, Action: action}}, Key: testKey})
					d := decode(t, out)
					nullable := mode == "NULLABLE" || mode == ""
					want := expectMasked(action, val, nullable)
					got := d.Rows[0].F[1].V
					if mode == "REPEATED" {
						arr, ok := got.([]any)
						if !ok || len(arr) != 2 {
							t.Fatalf("REPEATED cell is %#v", got)
						}
						for _, e := range arr {
							if v := e.(map[string]any)["v"]; v != expectMasked(action, val, false) {
								t.Fatalf("element = %#v, want %#v", v, expectMasked(action, val, false))
							}
						}
					} else if got != want {
						t.Fatalf("cell = %#v, want %#v", got, want)
					}
					if d.Rows[0].F[0].V != "1" {
						t.Fatalf("unmasked id changed: %#v", d.Rows[0].F[0].V)
					}
					if len(rows) == 2 && mode != "REPEATED" && d.Rows[1].F[1].V != nil {
						t.Fatalf("null cell became %#v", d.Rows[1].F[1].V)
					}
					keepsType := action == Null && nullable
					wantType := "STRING"
					if keepsType {
						wantType = typ
					}
					for _, s := range []*Schema{d.Schema, ms} {
						f := s.Fields[1]
						if f.Type != wantType || f.Mode != mode {
							t.Fatalf("schema field = %+v, want type %s mode %s", f, wantType, mode)
						}
					}
					if keepsType != bytes.Contains(out, []byte(`"precision"`)) {
						t.Fatalf("precision kept=%v for a field retyped=%v:\n%s", !keepsType, !keepsType, out)
					}
					if !bytes.Contains(out, []byte(`"policyTags":{"names":["x"]}`)) {
						t.Fatalf("policyTags lost:\n%s", out)
					}
					wantMasked := 1
					if mode == "REPEATED" {
						wantMasked = 2
					}
					if st.CellsMasked != wantMasked || st.Rows != len(rows) {
						t.Fatalf("stats = %+v", st)
					}
				})
			}
		}
	}
}

func TestLast4AndEmailDomainValues(t *testing.T) {
	cases := []struct {
		action   Action
		in, want string
	}{
		{Last4, "4111111111111111", "****1111"},
		{Last4, "abcd", "****"},
		{Last4, "ab", "****"},
		{Last4, "", "****"},
		{Last4, "Zürich-€€€€", "****€€€€"},
		{Last4, `ab"c\d`, `****"c\d`},
		{EmailDomain, "alice@example.com", "***@example.com"},
		{EmailDomain, "a@b@corp.example", "***@corp.example"},
		{EmailDomain, "no-at-sign", RedactedToken},
		{EmailDomain, "trailing@", RedactedToken},
		{Hash, "", hashOf("")},
		{Hash, "é\n\"", hashOf("é\n\"")},
	}
	for _, c := range cases {
		enc, _ := json.Marshal(c.in)
		in := body(`{"fields":[{"name":"c","type":"STRING"}]}`, `{"f":[{"v":`+string(enc)+`}]}`)
		out, _, _ := mustMask(t, in, nil, Plan{Rules: []Rule{{[]int{0}, c.action}}, Key: testKey})
		if got := decode(t, out).Rows[0].F[0].V; got != c.want {
			t.Errorf("%s(%q) = %#v, want %q", c.action, c.in, got, c.want)
		}
	}
}

// TestHashDeterministic: same key and value, same token (escaped or not); another key,
// another token.
func TestHashDeterministic(t *testing.T) {
	s := `{"fields":[{"name":"c","type":"STRING"}]}`
	in := body(s, `{"f":[{"v":"alice@example.com"}]}`, `{"f":[{"v":"alice\u0040example.com"}]}`)
	out, _, _ := mustMask(t, in, nil, Plan{Rules: []Rule{{[]int{0}, Hash}}, Key: testKey})
	d := decode(t, out)
	if d.Rows[0].F[0].V != d.Rows[1].F[0].V || d.Rows[0].F[0].V != hashOf("alice@example.com") {
		t.Fatalf("hashes differ: %v %v", d.Rows[0].F[0].V, d.Rows[1].F[0].V)
	}
	out2, _, _ := mustMask(t, in, nil, Plan{Rules: []Rule{{[]int{0}, Hash}}, Key: NewKey([]byte("other"))})
	if decode(t, out2).Rows[0].F[0].V == d.Rows[0].F[0].V {
		t.Fatal("another key gave the same hash")
	}
	if _, _, _, err := MaskResponse(in, nil, Plan{Rules: []Rule{{[]int{0}, Hash}}}); err == nil {
		t.Fatal("hash without a key accepted")
	}
}

const nestedSchema = `{"fields":[
 {"name":"id","type":"INT64","mode":"REQUIRED"},
 {"name":"rec","type":"RECORD","fields":[
   {"name":"a","type":"STRING"},
   {"name":"inner","type":"STRUCT","mode":"REQUIRED","fields":[
     {"name":"b","type":"INTEGER"},
     {"name":"deepest","type":"RECORD","fields":[
       {"name":"c","type":"STRING","mode":"REQUIRED"},
       {"name":"d","type":"DATE","mode":"REPEATED"}]}]}]},
 {"name":"people","type":"RECORD","mode":"REPEATED","fields":[
   {"name":"name","type":"STRING"},
   {"name":"email","type":"STRING","mode":"REQUIRED"},
   {"name":"phones","type":"STRING","mode":"REPEATED"}]}]}`

const nestedRow = `{"f":[{"v":"7"},
 {"v":{"f":[{"v":"alpha"},{"v":{"f":[{"v":"42"},{"v":{"f":[{"v":"secret-c"},{"v":[{"v":"2024-01-01"},{"v":"2024-02-02"}]}]}}]}}]}},
 {"v":[{"v":{"f":[{"v":"Ada"},{"v":"ada@example.com"},{"v":[{"v":"+44 20 7946 0958"}]}]}},
       {"v":{"f":[{"v":null},{"v":"bob@example.org"},{"v":[]}]}}]}]}`

func cellAt(t *testing.T, row []any, path ...any) any {
	t.Helper()
	var cur any = row
	for _, p := range path {
		switch p := p.(type) {
		case int:
			cur = cur.([]any)[p].(map[string]any)["v"]
		case string: // "f" into a record
			cur = cur.(map[string]any)[p].([]any)
		}
	}
	return cur
}

func rowCells(t *testing.T, out []byte) []any {
	t.Helper()
	var v struct {
		Rows []struct {
			F []any `json:"f"`
		} `json:"rows"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatal(err)
	}
	return v.Rows[0].F
}

func fieldAt(s *Schema, path ...int) Field {
	fs := s.Fields
	var f Field
	for _, p := range path {
		f = fs[p]
		fs = f.Fields
	}
	return f
}

func TestNestedRecords(t *testing.T) {
	in := body(nestedSchema, nestedRow)
	t.Run("leaves", func(t *testing.T) {
		plan := Plan{Key: testKey, Rules: []Rule{
			{[]int{1, 1, 1, 0}, Null},  // REQUIRED 3 deep: redact
			{[]int{1, 1, 0}, Hash},     // INTEGER 2 deep: STRING
			{[]int{1, 1, 1, 1}, Null},  // REPEATED DATE: redact per element, STRING
			{[]int{2, 1}, EmailDomain}, // REQUIRED in REPEATED RECORD
			{[]int{2, 0}, Null},        // NULLABLE in REPEATED RECORD: null, type kept
			{[]int{2, 1}, Last4},       // weaker than email-domain: ignored
		}}
		out, st, ms := mustMask(t, in, nil, plan)
		row := rowCells(t, out)
		deep := cellAt(t, row, 1, "f", 1, "f", 1, "f").([]any)
		checks := []struct {
			got, want any
		}{
			{cellAt(t, row, 0), "7"},
			{cellAt(t, row, 1, "f", 0), "alpha"},
			{cellAt(t, row, 1, "f", 1, "f", 0), hashOf("42")},
			{cellAt(t, deep, 0), RedactedToken},
			{cellAt(t, deep, 1, 0), RedactedToken},
			{cellAt(t, deep, 1, 1), RedactedToken},
			{cellAt(t, row, 2, 0, "f", 0), nil},
			{cellAt(t, row, 2, 0, "f", 1), "***@example.com"},
			{cellAt(t, row, 2, 0, "f", 2, 0), "+44 20 7946 0958"},
			{cellAt(t, row, 2, 1, "f", 1), "***@example.org"},
		}
		for i, c := range checks {
			if c.got != c.want {
				t.Errorf("check %d: got %#v, want %#v", i, c.got, c.want)
			}
		}
		if st.CellsMasked != 7 {
			t.Errorf("CellsMasked = %d, want 7", st.CellsMasked)
		}
		types := []struct {
			path      []int
			typ, mode string
		}{
			{[]int{1}, "RECORD", ""}, {[]int{1, 1}, "STRUCT", "REQUIRED"}, {[]int{1, 1, 0}, "STRING", ""},
			{[]int{1, 1, 1, 0}, "STRING", "REQUIRED"}, {[]int{1, 1, 1, 1}, "STRING", "REPEATED"},
			{[]int{2, 0}, "STRING", ""}, {[]int{2, 1}, "STRING", "REQUIRED"}, {[]int{0}, "INT64", "REQUIRED"},
		}
		d := decode(t, out)
		for _, s := range []*Schema{ms, d.Schema} {
			for _, c := range types {
				if f := fieldAt(s, c.path...); f.Type != c.typ || f.Mode != c.mode {
					t.Errorf("field %v = %s %s, want %s %s", c.path, f.Type, f.Mode, c.typ, c.mode)
				}
			}
		}
	})
	t.Run("whole record", func(t *testing.T) {
		out, st, ms := mustMask(t, in, nil, Plan{Rules: []Rule{{[]int{1}, Redact}, {[]int{2}, Null}}})
		row := rowCells(t, out)
		for _, c := range []any{
			cellAt(t, row, 1, "f", 0), cellAt(t, row, 1, "f", 1, "f", 0), cellAt(t, row, 1, "f", 1, "f", 1, "f", 0),
			cellAt(t, row, 1, "f", 1, "f", 1, "f", 1, 1), cellAt(t, row, 2, 0, "f", 1), cellAt(t, row, 2, 0, "f", 2, 0),
		} {
			if c != RedactedToken {
				t.Errorf("leaf = %#v, want redacted", c)
			}
		}
		if c := cellAt(t, row, 2, 0, "f", 0); c != nil {
			t.Errorf("nullable leaf under null = %#v", c)
		}
		if st.CellsMasked != 9 {
			t.Errorf("CellsMasked = %d, want 9", st.CellsMasked)
		}
		for _, p := range [][]int{{1, 0}, {1, 1, 0}, {1, 1, 1, 0}, {1, 1, 1, 1}, {2, 1}, {2, 2}} {
			if f := fieldAt(ms, p...); f.Type != "STRING" {
				t.Errorf("field %v type %s", p, f.Type)
			}
		}
		if f := fieldAt(ms, 1, 1); f.Type != "STRUCT" || len(f.Fields) != 2 {
			t.Errorf("record field rewritten: %+v", f)
		}
		if f := fieldAt(ms, 2); f.Type != "RECORD" || f.Mode != "REPEATED" {
			t.Errorf("repeated record rewritten: %+v", f)
		}
	})
}

// TestLaterPages: pages without a schema, masked with the remembered schema (original
// or masked) exactly like the first page; rows before the schema in the body; no schema
// at all is an error.
func TestLaterPages(t *testing.T) {
	plan := Plan{Key: testKey, Rules: []Rule{{[]int{1, 1, 0}, Hash}, {[]int{2, 1}, Last4}}, Detectors: []string{"phone"}}
	first := body(nestedSchema, nestedRow)
	out1, _, ms := mustMask(t, first, nil, plan)
	orig, err := ParseSchema(first)
	if err != nil || orig == nil {
		t.Fatal(err)
	}
	later := []byte(`{"rows":[` + nestedRow + `],"pageToken":"abc"}`)
	rowsOf := func(b []byte) string { return shapeless(t, b) }
	for name, s := range map[string]*Schema{"original": orig, "masked": ms} {
		out, st, _ := mustMask(t, later, s, plan)
		if rowsOf(out) != rowsOf(out1) {
			t.Errorf("%s schema: later page masked differently:\n%s\n%s", name, out, out1)
		}
		if st.DetectorHits["phone"] != 1 {
			t.Errorf("%s schema: stats %+v", name, st)
		}
	}
	if _, _, _, err := MaskResponse(later, nil, plan); err == nil {
		t.Error("rows without any schema accepted")
	}
	reordered := []byte(`{"rows":[` + nestedRow + `],"schema":` + nestedSchema + `}`)
	for _, s := range []*Schema{nil, orig} {
		out, _, _ := mustMask(t, reordered, s, plan)
		if rowsOf(out) != rowsOf(out1) {
			t.Errorf("rows before schema masked differently:\n%s", out)
		}
		if !bytes.Contains(out, []byte(`{"name":"b","type":"STRING"}`)) {
			t.Errorf("schema after rows not rewritten:\n%s", out)
		}
	}
	other, _ := ParseSchema(body(`{"fields":[{"name":"x","type":"STRING"}]}`))
	if _, _, _, err := MaskResponse(first, other, plan); err == nil {
		t.Error("a remembered schema of another shape accepted")
	}
	// Anonymous columns: the analyser's "$col1" and BigQuery's "f0_" match any name; two
	// different real names do not.
	for _, c := range []struct {
		body, remembered string
		want             bool
	}{{"f0_", "$col1", true}, {"f0_", "email", true}, {"email", "$col1", true}, {"email", "EMAIL", true},
		{"email", "name", false}, {"email", "f_", false}, {"email", "fx_", false}, {"email", "f1", false}} {
		page := body(`{"fields":[{"name":"`+c.body+`","type":"STRING"}]}`, `{"f":[{"v":"x@example.com"}]}`)
		s := &Schema{Fields: []Field{{Name: c.remembered, Type: "STRING"}}}
		_, _, _, err := MaskResponse(page, s, Plan{Rules: []Rule{{[]int{0}, Redact}}})
		if (err == nil) != c.want {
			t.Errorf("remembered column %q vs body's %q: err = %v, want accepted = %v", c.remembered, c.body, err, c.want)
		}
	}
	// no rows, no schema: nothing to do
	empty := []byte(`{"jobComplete":false,"jobReference":{"jobId":"j"}}`)
	if out, st, _, err := MaskResponse(empty, nil, plan); err != nil || !bytes.Equal(out, empty) || st.Rows != 0 {
		t.Errorf("pending job: %s %+v %v", out, st, err)
	}
}

func shapeless(t *testing.T, b []byte) string {
	var v struct {
		Rows json.RawMessage `json:"rows"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	_ = json.Compact(&buf, v.Rows)
	return buf.String()
}

// TestPassThroughBytes: unmasked parts keep their exact bytes (spacing, escapes, key
// order); a plan with nothing to do returns the body itself.
func TestPassThroughBytes(t *testing.T) {
	in := []byte("{ \"schema\" : {\"fields\":[{\"name\":\"a\",\"type\":\"STRING\"},{\"name\":\"n\",\"type\":\"FLOAT\",\"mode\":\"NULLABLE\"}]},\n" +
		"  \"rows\": [ {\"f\": [ {\"v\": \"caf\\u00e9 \\\"x\\\"\"} , {\"v\" : \"1.5\"} ] } ],\"totalRows\":\"1\" }")
	out, _, _ := mustMask(t, in, nil, Plan{Detectors: allDetectors()})
	if &out[0] != &in[0] {
		t.Error("no-op masking copied the body")
	}
	out, _, _ = mustMask(t, in, nil, Plan{Rules: []Rule{{[]int{1}, Redact}}})
	want := "{ \"schema\" : {\"fields\":[{\"name\":\"a\",\"type\":\"STRING\"},{\"name\":\"n\",\"type\":\"STRING\",\"mode\":\"NULLABLE\"}]},\n" +
		"  \"rows\": [ {\"f\": [ {\"v\": \"caf\\u00e9 \\\"x\\\"\"} , {\"v\" : \"[REDACTED]\"} ] } ],\"totalRows\":\"1\" }"
	if string(out) != want {
		t.Errorf("got\n%s\nwant\n%s", out, want)
	}
}

// TestSchemaAttributeDrop: a retyped field loses type attributes wherever they are.
func TestSchemaAttributeDrop(t *testing.T) {
	for _, f := range []string{
		`{"precision":"10","name":"n","type":"NUMERIC","scale":"2"}`,
		`{"precision":"10","scale":"2","name":"n","type":"NUMERIC"}`,
		`{"name":"n","type":"NUMERIC","precision":"10","scale":"2"}`,
		`{"type":"NUMERIC","precision":"10","name":"n","scale":"2","roundingMode":"ROUND_HALF_EVEN"}`,
	} {
		in := body(`{"fields":[`+f+`]}`, `{"f":[{"v":"1.25"}]}`)
		out, _, _ := mustMask(t, in, nil, Plan{Rules: []Rule{{[]int{0}, Hash}}, Key: testKey})
		var v struct {
			Schema struct{ Fields []map[string]any } `json:"schema"`
		}
		if err := json.Unmarshal(out, &v); err != nil {
			t.Fatalf("%s: %v\n%s", f, err, out)
		}
		if !reflect.DeepEqual(v.Schema.Fields[0], map[string]any{"name": "n", "type": "STRING"}) {
			t.Errorf("%s -> %v", f, v.Schema.Fields[0])
		}
	}
}

// TestDetectorsInCells: detectors redact unmasked STRING/JSON cells only, and count hits.
func TestDetectorsInCells(t *testing.T) {
	s := `{"fields":[{"name":"s","type":"STRING"},{"name":"j","type":"JSON"},{"name":"b","type":"BYTES"},{"name":"m","type":"STRING"},{"name":"r","type":"STRING","mode":"REPEATED"}]}`
	in := body(s,
		`{"f":[{"v":"mail bob@example.com"},{"v":"{\"ip\":\"10.1.2.3\"}"},{"v":"Ym9iQGV4YW1wbGUuY29t"},{"v":"4111111111111111"},{"v":[{"v":"ok"},{"v":"123-45-6789"}]}]}`,
		`{"f":[{"v":"nothing here"},{"v":null},{"v":null},{"v":null},{"v":[]}]}`)
	out, st, ms := mustMask(t, in, nil, Plan{Rules: []Rule{{[]int{3}, Last4}}, Detectors: allDetectors()})
	d := decode(t, out)
	r := d.Rows[0].F
	if r[0].V != "[REDACTED:email]" || r[1].V != `"[REDACTED:ip]"` || r[2].V != "Ym9iQGV4YW1wbGUuY29t" || r[3].V != "****1111" {
		t.Errorf("row = %s", out)
	}
	if e := r[4].V.([]any); e[0].(map[string]any)["v"] != "ok" || e[1].(map[string]any)["v"] != "[REDACTED:ssn]" {
		t.Errorf("repeated = %v", e)
	}
	var j any
	if err := json.Unmarshal([]byte(r[1].V.(string)), &j); err != nil {
		t.Errorf("JSON cell no longer JSON: %v", err)
	}
	if ms.Fields[1].Type != "JSON" || ms.Fields[0].Type != "STRING" {
		t.Errorf("schema = %+v", ms)
	}
	want := map[string]int{"email": 1, "ip": 1, "ssn": 1}
	if !reflect.DeepEqual(st.DetectorHits, want) || st.CellsMasked != 1 || st.Rows != 2 {
		t.Errorf("stats = %+v", st)
	}
	if _, _, _, err := MaskResponse(in, nil, Plan{Detectors: []string{"mail"}}); err == nil {
		t.Error("unknown detector accepted")
	}
}

// TestCanary: with the email column masked by any action, the canary never leaves, on
// any path: top level, REPEATED, RECORD, REPEATED RECORD, escaped, in another column
// (detectors), in a JSON column.
func TestCanary(t *testing.T) {
	const canary = "canary.user"
	s := `{"fields":[{"name":"email","type":"STRING"},{"name":"emails","type":"STRING","mode":"REPEATED"},
	 {"name":"u","type":"RECORD","fields":[{"name":"email","type":"STRING","mode":"REQUIRED"},{"name":"x","type":"STRING"}]},
	 {"name":"us","type":"RECORD","mode":"REPEATED","fields":[{"name":"email","type":"STRING"}]},
	 {"name":"other","type":"STRING"},{"name":"doc","type":"JSON"}]}`
	row := `{"f":[{"v":"canary.user@example.com"},{"v":[{"v":"canary.user@example.com"},{"v":"canary.user\u0040example.com"}]},
	 {"v":{"f":[{"v":"canary.user@example.com"},{"v":"reach canary.user@example.com"}]}},
	 {"v":[{"v":{"f":[{"v":"CANARY.USER@EXAMPLE.COM"}]}}]},{"v":"moved to canary.user@example.com"},
	 {"v":"{\"e\":\"canary.user@example.com\"}"}]}`
	in := body(s, row)
	masked := []Rule{{[]int{0}, ""}, {[]int{1}, ""}, {[]int{2, 0}, ""}, {[]int{3, 0}, ""}}
	for _, a := range []Action{Redact, Hash, Last4, EmailDomain, Null, "bogus"} {
		rules := make([]Rule, len(masked))
		for i, r := range masked {
			rules[i] = Rule{r.Path, a}
		}
		out, _, _ := mustMask(t, in, nil, Plan{Rules: rules, Key: testKey, Detectors: []string{"email"}})
		if bytes.Contains(bytes.ToLower(out), []byte(canary)) {
			t.Errorf("%s: canary leaked:\n%s", a, out)
		}
		var all any
		_ = json.Unmarshal(out, &all)
		dec, _ := json.Marshal(all)
		if bytes.Contains(bytes.ToLower(dec), []byte(canary)) || bytes.Contains(dec, []byte(`canary.user\u0040`)) {
			t.Errorf("%s: canary leaked after decoding:\n%s", a, dec)
		}
	}
}

// TestMalformed: unreadable or inconsistent bodies are errors, never passed through.
func TestMalformed(t *testing.T) {
	s := `{"fields":[{"name":"a","type":"STRING"},{"name":"b","type":"STRING","mode":"REPEATED"},{"name":"r","type":"RECORD","fields":[{"name":"x","type":"STRING"}]}]}`
	good := `{"f":[{"v":"x"},{"v":[{"v":"y"}]},{"v":{"f":[{"v":"z"}]}}]}`
	plan := Plan{Rules: []Rule{{[]int{0}, Redact}, {[]int{1}, Redact}, {[]int{2, 0}, Redact}}}
	if _, _, _, err := MaskResponse(body(s, good), nil, plan); err != nil {
		t.Fatalf("good body: %v", err)
	}
	full := string(body(s, good))
	cases := map[string]string{
		"empty":             ``,
		"truncated":         full[:len(full)-5],
		"trailing garbage":  full + `x`,
		"two objects":       full + full,
		"not an object":     `[` + full + `]`,
		"bad escape":        strings.Replace(full, `"x"`, `"\x"`, 1),
		"bad unicode":       strings.Replace(full, `"x"`, `"\u12"`, 1),
		"control char":      strings.Replace(full, `"x"`, "\"a\nb\"", 1),
		"bad number":        strings.Replace(full, `"totalRows":"1"`, `"totalRows":01`, 1),
		"bad literal":       strings.Replace(full, `true`, `tru`, 1),
		"missing comma":     strings.Replace(full, `},{"v":[`, `} {"v":[`, 1),
		"too few cells":     string(body(s, `{"f":[{"v":"x"},{"v":[]}]}`)),
		"too many cells":    string(body(s, `{"f":[{"v":"x"},{"v":[]},{"v":null},{"v":"extra"}]}`)),
		"record cell count": string(body(s, `{"f":[{"v":"x"},{"v":[]},{"v":{"f":[{"v":"z"},{"v":"w"}]}}]}`)),
		"number cell":       string(body(s, `{"f":[{"v":1},{"v":[]},{"v":null}]}`)),
		"object for string": string(body(s, `{"f":[{"v":{"f":[]}},{"v":[]},{"v":null}]}`)),
		"array not array":   string(body(s, `{"f":[{"v":"x"},{"v":"y"},{"v":null}]}`)),
		"record not object": string(body(s, `{"f":[{"v":"x"},{"v":[]},{"v":"z"}]}`)),
		"extra cell key":    string(body(s, `{"f":[{"v":"x","w":"leak"},{"v":[]},{"v":null}]}`)),
		"extra row key":     string(body(s, `{"f":[{"v":"x"},{"v":[]},{"v":null}],"g":1}`)),
		"wrong row key":     string(body(s, `{"g":[{"v":"x"},{"v":[]},{"v":null}]}`)),
		"duplicate rows":    strings.Replace(full, `"totalRows"`, `"rows":[],"totalRows"`, 1),
		"duplicate schema":  strings.Replace(full, `"totalRows"`, `"schema":{"fields":[]},"totalRows"`, 1),
		"case variant rows": strings.Replace(full, `"totalRows"`, `"Rows":[],"totalRows"`, 1),
		"long s rows":       strings.Replace(full, `"totalRows"`, `"rowſ":[],"totalRows"`, 1),
		"case variant type": strings.Replace(full, `"type":"STRING"`, `"type":"STRING","TYPE":"INTEGER"`, 1),
		"rows not array":    `{"schema":` + s + `,"rows":{"f":[]}}`,
		"no schema":         `{"rows":[` + good + `]}`,
		"schema field type": string(body(`{"fields":[{"name":"a"}]}`, `{"f":[{"v":"x"}]}`)),
		"schema bad mode":   string(body(`{"fields":[{"name":"a","type":"STRING","mode":"OPTIONAL"}]}`, `{"f":[{"v":"x"}]}`)),
		"deep nesting":      `{"x":` + strings.Repeat("[", 2000) + strings.Repeat("]", 2000) + `}`,
	}
	for name, b := range cases {
		out, _, _, err := MaskResponse([]byte(b), nil, plan)
		if err == nil || out != nil {
			t.Errorf("%s: accepted (err=%v)\n%s", name, err, out)
		}
	}
	// plan errors
	for name, p := range map[string]Plan{
		"path out of range":   {Rules: []Rule{{[]int{3}, Redact}}},
		"path through a leaf": {Rules: []Rule{{[]int{0, 0}, Redact}}},
		"empty path":          {Rules: []Rule{{nil, Redact}}},
		"negative":            {Rules: []Rule{{[]int{-1}, Redact}}},
	} {
		if _, _, _, err := MaskResponse(body(s, good), nil, p); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestKeyNeverPrinted: the HMAC key does not show in fmt output or JSON.
func TestKeyNeverPrinted(t *testing.T) {
	secret := "very-secret-hmac-key"
	p := Plan{Key: NewKey([]byte(secret)), Rules: []Rule{{[]int{0}, Hash}}}
	hexSecret := hex.EncodeToString([]byte(secret))
	var outs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%q", "%d"} {
		outs = append(outs, fmt.Sprintf(verb, p), fmt.Sprintf(verb, p.Key), fmt.Sprintf(verb, &p))
	}
	j, _ := json.Marshal(p)
	outs = append(outs, string(j), p.Key.String(), p.Key.GoString())
	for _, o := range outs {
		if strings.Contains(o, secret) || strings.Contains(strings.ToLower(o), hexSecret) || strings.Contains(o, "118 101 114") {
			t.Errorf("key printed: %s", o)
		}
	}
	var back Plan
	if err := json.Unmarshal(j, &back); err == nil && back.Key.Len() != 0 {
		t.Error("a redacted key decoded into a key")
	}
}
