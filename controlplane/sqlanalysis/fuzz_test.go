package sqlanalysis

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jitgate/jitgate/e2e/sqlcorpus"
	"github.com/jitgate/jitgate/policies"
)

// FuzzAnalyze: whatever the SQL, default dataset and parameter, Analyze returns either
// an analysis whose statement kind is set and whose tables are fully qualified, or an
// *AnalysisError wrapping one of its three kinds; it never panics and never returns
// (nil, nil). Seeds: the SQL corpus. Catalog: the in-memory featureSource (wildcards,
// partitions, views), so runs are fast and repeatable.
// fuzzHang is how long one analysis may take before the fuzzer calls it a hang (an
// ordinary one takes milliseconds).
const fuzzHang = 20 * time.Second

func FuzzAnalyze(f *testing.F) {
	cases, err := sqlcorpus.Load()
	if err != nil {
		f.Fatal(err)
	}
	for _, c := range cases {
		f.Add(c.SQL, c.DefaultDataset != "", "")
	}
	f.Add("SELECT url FROM `web.events_*` WHERE _TABLE_SUFFIX BETWEEN '1' AND '2'", false, "")
	f.Add("SELECT id FROM web.sessions WHERE id = @p", false, "ARRAY<STRUCT<a INT64>>")
	f.Add("SELECT TO_JSON_STRING(v) FROM web.v_pageviews v", true, "INT64")
	f.Add("SELECT * FROM ML.PREDICT(MODEL m, (SELECT id FROM sessions WHERE id = @p), STRUCT(0.5 AS threshold))", true, "INT64")
	f.Add("SELECT x.* FROM ML.GENERATE_TEXT(MODEL web.m, TABLE web.v_pageviews) x, ML.FORECAST(MODEL web.f, STRUCT(3 AS horizon))", false, "")
	a, err := New(Options{Catalog: featureSource(), CacheSize: -1})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, sql string, withDataset bool, paramType string) {
		in := Input{SQL: sql, DefaultProject: "acme"}
		if withDataset {
			in.DefaultDataset = &DatasetRef{Project: "acme", Dataset: "web"}
		}
		if paramType != "" {
			in.Parameters = []Parameter{{Name: "p", Type: paramType}}
		}
		// A hang is a failure too: the input is reported (and saved by the fuzzer).
		type result struct {
			res *Analysis
			err error
		}
		done := make(chan result, 1)
		go func() {
			res, err := a.Analyze(context.Background(), in)
			done <- result{res, err}
		}()
		var (
			res *Analysis
			err error
		)
		select {
		case r := <-done:
			res, err = r.res, r.err
		case <-time.After(fuzzHang):
			t.Fatalf("Analyze did not return within %s: sql %q dataset %v param %q", fuzzHang, sql, withDataset, paramType)
		}
		if err != nil {
			var ae *AnalysisError
			if !errors.As(err, &ae) {
				t.Fatalf("error %T %v is not an *AnalysisError", err, err)
			}
			if !errors.Is(err, ErrLegacySQL) && !errors.Is(err, ErrUnanalysable) && !errors.Is(err, ErrCatalogUnavailable) {
				t.Fatalf("error %v wraps none of the three kinds", err)
			}
			if res != nil {
				t.Fatal("an analysis together with an error")
			}
			return
		}
		if res == nil || res.StatementKind == "" {
			t.Fatalf("analysis %+v without a statement kind", res)
		}
		for _, tbl := range append(append([]string(nil), res.ReferencedTables...), res.WrittenTables...) {
			if len(policies.SplitQualified(tbl)) < 3 || strings.Contains(tbl, "*") {
				t.Fatalf("table %q is not fully qualified", tbl)
			}
		}
	})
}
