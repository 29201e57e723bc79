package masking

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/jitgate/jitgate/filter/masking/internal/testpage"
)

func benchPlan() Plan {
	p := Plan{Key: testKey, Detectors: testpage.Detectors}
	for _, r := range testpage.Rules {
		p.Rules = append(p.Rules, Rule{Path: r.Path, Action: Action(r.Action)})
	}
	return p
}

// BenchmarkMask masks generated jobs.query pages (first page with schema, and a later
// page masked with the remembered schema) with hash, redact, last4 and all detectors.
func BenchmarkMask(b *testing.B) {
	for _, size := range []int{1 << 20, 10 << 20} {
		page, rows := testpage.Page(size)
		plan := benchPlan()
		b.Run(fmt.Sprintf("%dMB", size>>20), func(b *testing.B) {
			b.SetBytes(int64(len(page)))
			b.ReportAllocs()
			for b.Loop() {
				_, st, _, err := MaskResponse(page, nil, plan)
				if err != nil || st.Rows != rows {
					b.Fatal(err, st.Rows)
				}
			}
		})
	}
}

// BenchmarkMaskNoRules: detectors only (the common case of a plan without masks).
func BenchmarkMaskDetectorsOnly(b *testing.B) {
	page, _ := testpage.Page(10 << 20)
	plan := Plan{Detectors: testpage.Detectors}
	b.SetBytes(int64(len(page)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, err := MaskResponse(page, nil, plan); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodingJSON is the baseline the scanner avoids: decoding the page into
// generic values and encoding it again, without masking anything.
func BenchmarkEncodingJSON(b *testing.B) {
	page, _ := testpage.Page(1 << 20)
	b.SetBytes(int64(len(page)))
	b.ReportAllocs()
	for b.Loop() {
		var v any
		if err := json.Unmarshal(page, &v); err != nil {
			b.Fatal(err)
		}
		if _, err := json.Marshal(v); err != nil {
			b.Fatal(err)
		}
	}
}

func TestBenchPageMasks(t *testing.T) {
	page, rows := testpage.Page(64 << 10)
	out, st, ms := mustMask(t, page, nil, benchPlan())
	if st.Rows != rows || st.CellsMasked < 3*rows || st.DetectorHits["email"] == 0 {
		t.Fatalf("stats %+v", st)
	}
	if ms.Fields[4].Type != "STRING" || ms.Fields[0].Type != "INTEGER" {
		t.Fatalf("schema %+v", ms)
	}
	_ = out
}

// BenchmarkMaskScanOnly: an empty plan (validate the body and count rows).
func BenchmarkMaskScanOnly(b *testing.B) {
	page, _ := testpage.Page(10 << 20)
	b.SetBytes(int64(len(page)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, err := MaskResponse(page, nil, Plan{}); err != nil {
			b.Fatal(err)
		}
	}
}
