package sqlanalysis

import (
	"context"
	"errors"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jitgate/jitgate/policies"
)

// listingSource is a fakeSource that can also list datasets (wildcard tables).
type listingSource struct{ fakeSource }

func (l *listingSource) ListTables(_ context.Context, p, d string) ([]string, error) {
	var out []string
	for fq := range l.tables {
		if strings.HasPrefix(fq, p+"."+d+".") {
			out = append(out, strings.TrimPrefix(fq, p+"."+d+"."))
		}
	}
	if len(out) == 0 {
		return nil, ErrTableNotFound
	}
	sort.Strings(out)
	return out, nil
}

func shard(day string) *TableMeta {
	return &TableMeta{Project: "acme", Dataset: "web", Table: "events_" + day, Type: "TABLE",
		Columns: []Column{{Name: "user_id", Type: "INT64"}, {Name: "url", Type: "STRING"}}}
}

func featureSource() *listingSource {
	return &listingSource{fakeSource{tables: map[string]*TableMeta{
		"acme.web.events_20260101": shard("20260101"),
		"acme.web.events_20260102": shard("20260102"),
		"acme.web.events_20260201": shard("20260201"),
		"acme.web.sessions":        {Project: "acme", Dataset: "web", Table: "sessions", Type: "TABLE", Columns: []Column{{Name: "id", Type: "INT64"}}},
		"acme.web.pageviews": {Project: "acme", Dataset: "web", Table: "pageviews", Type: "TABLE", PartitionField: "day",
			Columns: []Column{{Name: "day", Type: "DATE"}, {Name: "url", Type: "STRING"}}},
		"acme.web.ingest": {Project: "acme", Dataset: "web", Table: "ingest", Type: "TABLE", IngestionTimePartitioned: true,
			Columns: []Column{{Name: "v", Type: "STRING"}}},
		"acme.web.v_pageviews": {Project: "acme", Dataset: "web", Table: "v_pageviews", Type: "VIEW",
			Columns: []Column{{Name: "day", Type: "DATE"}, {Name: "url", Type: "STRING"}}, ViewQuery: "SELECT day, url FROM web.pageviews"},
	}}}
}

func TestWildcardTables(t *testing.T) {
	a := newAnalyzer(t, featureSource())
	all := []string{"acme.web.events_20260101", "acme.web.events_20260102", "acme.web.events_20260201"}
	cases := []struct {
		name string
		sql  string
		want want
	}{
		{"all shards", "SELECT url FROM `acme.web.events_*`", want{kind: "SELECT", reads: all}},
		{"suffix equal", "SELECT url FROM `web.events_*` WHERE _TABLE_SUFFIX = '20260102'",
			want{kind: "SELECT", reads: []string{"acme.web.events_20260102"}}},
		{"suffix between and another condition", "SELECT url FROM `acme.web.events_*` WHERE user_id > 3 AND _TABLE_SUFFIX BETWEEN '20260101' AND '20260131'",
			want{kind: "SELECT", reads: all[:2]}},
		{"suffix mirrored comparison", "SELECT url FROM `web.events_2026*` WHERE '0200' <= _TABLE_SUFFIX",
			want{kind: "SELECT", reads: all[2:]}},
		{"suffix IN", "SELECT url FROM `web.events_*` WHERE _TABLE_SUFFIX IN ('20260101', '20260201')",
			want{kind: "SELECT", reads: []string{all[0], all[2]}}},
		{"suffix OR is not narrowed", "SELECT url FROM `web.events_*` WHERE _TABLE_SUFFIX = '20260101' OR user_id = 1",
			want{kind: "SELECT", reads: all}},
		{"suffix through a function is not narrowed", "SELECT url FROM `web.events_*` WHERE SUBSTR(_TABLE_SUFFIX, 1, 6) = '202601'",
			want{kind: "SELECT", reads: all}},
		{"prefix narrows", "SELECT url FROM `web.events_202602*`", want{kind: "SELECT", reads: all[2:]}},
		{"wildcard matching nothing", "SELECT url FROM `web.nothing_*`", want{err: ErrUnanalysable}},
		{"unquoted wildcard is a syntax error (as in BigQuery)", "SELECT url FROM web.events_*", want{err: ErrUnanalysable}},
		{"star in the middle", "SELECT url FROM `web.ev*ts`", want{err: ErrUnanalysable}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := a.Analyze(context.Background(), Input{SQL: tc.sql, DefaultProject: "acme"})
			check(t, got, err, tc.want)
			if err == nil && len(got.WildcardTables) != 1 {
				t.Errorf("wildcard tables = %v", got.WildcardTables)
			}
		})
	}
	// A catalog that cannot list tables refuses wildcards.
	plain := newAnalyzer(t, &featureSource().fakeSource)
	_, err := plain.Analyze(context.Background(), Input{SQL: "SELECT url FROM `web.events_*`", DefaultProject: "acme"})
	if !errors.Is(err, ErrUnanalysable) {
		t.Fatalf("err = %v, want ErrUnanalysable", err)
	}
}

func TestMissingPartitionFilter(t *testing.T) {
	a := newAnalyzer(t, featureSource())
	miss := []policies.DenyRuleKind{policies.DenyMissingPartitionFilter}
	cases := []struct {
		name       string
		sql        string
		want       want
		unfiltered []string
	}{
		{"no filter", "SELECT url FROM web.pageviews", want{kind: "SELECT", reads: []string{"acme.web.pageviews"}, findings: miss}, []string{"acme.web.pageviews"}},
		{"filter on another column", "SELECT url FROM web.pageviews WHERE url LIKE 'x%'", want{kind: "SELECT", reads: []string{"acme.web.pageviews"}, findings: miss}, []string{"acme.web.pageviews"}},
		{"partition column in SELECT only", "SELECT day FROM web.pageviews", want{kind: "SELECT", reads: []string{"acme.web.pageviews"}, findings: miss}, []string{"acme.web.pageviews"}},
		{"filter on the partition column", "SELECT url FROM web.pageviews WHERE day = '2026-01-01'", want{kind: "SELECT", reads: []string{"acme.web.pageviews"}}, nil},
		{"filter through a join", "SELECT p.url FROM web.pageviews p JOIN web.sessions s ON s.id = 1 WHERE p.day > '2026-01-01'",
			want{kind: "SELECT", reads: []string{"acme.web.pageviews", "acme.web.sessions"}}, nil},
		{"ingestion time without filter", "SELECT v FROM web.ingest", want{kind: "SELECT", reads: []string{"acme.web.ingest"}, findings: miss}, []string{"acme.web.ingest"}},
		{"ingestion time with _PARTITIONDATE", "SELECT v FROM web.ingest WHERE _PARTITIONDATE = '2026-01-01'", want{kind: "SELECT", reads: []string{"acme.web.ingest"}}, nil},
		{"unpartitioned table", "SELECT id FROM web.sessions", want{kind: "SELECT", reads: []string{"acme.web.sessions"}}, nil},
		{"view over a partitioned table, agent filters nothing", "SELECT url FROM web.v_pageviews",
			want{kind: "SELECT", reads: []string{"acme.web.pageviews", "acme.web.v_pageviews"}}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := a.Analyze(context.Background(), Input{SQL: tc.sql, DefaultProject: "acme"})
			check(t, got, err, tc.want)
			if err == nil && !reflect.DeepEqual(got.UnfilteredPartitionedTables, tc.unfiltered) {
				t.Errorf("unfiltered = %v, want %v", got.UnfilteredPartitionedTables, tc.unfiltered)
			}
		})
	}
}

// TestTableValuedFunctions: ML.* table-valued functions are analysed (the tables passed
// to them are read, the mlFunction finding is kept: tvf_test.go has the emulator cases);
// a user-defined table function is not (routines are not read: unanalysable).
func TestTableValuedFunctions(t *testing.T) {
	a := newAnalyzer(t, featureSource())
	for _, tc := range []struct {
		sql      string
		findings []policies.DenyRuleKind
		reads    []string // nil: unanalysable
	}{
		{"SELECT * FROM ML.PREDICT(MODEL web.m, TABLE web.sessions)", []policies.DenyRuleKind{policies.DenyMLFunction}, []string{"acme.web.sessions"}},
		{"SELECT * FROM ml.predict(MODEL web.m, (SELECT id FROM web.sessions))", []policies.DenyRuleKind{policies.DenyMLFunction}, []string{"acme.web.sessions"}},
		{"SELECT * FROM web.my_tvf(1)", nil, nil},
	} {
		got, err := a.Analyze(context.Background(), Input{SQL: tc.sql, DefaultProject: "acme"})
		if tc.reads != nil {
			if err != nil {
				t.Fatalf("%s: %v", tc.sql, err)
			}
			if !reflect.DeepEqual(got.ReferencedTables, tc.reads) {
				t.Errorf("%s: reads %v, want %v", tc.sql, got.ReferencedTables, tc.reads)
			}
			for _, f := range tc.findings {
				if !slicesContains(got.Findings, f) {
					t.Errorf("%s: findings %v lack %s", tc.sql, got.Findings, f)
				}
			}
			continue
		}
		var ae *AnalysisError
		if !errors.As(err, &ae) || !errors.Is(err, ErrUnanalysable) {
			t.Fatalf("%s: err = %v, want unanalysable", tc.sql, err)
		}
		t.Logf("%s: %v", tc.sql, err)
	}
}

// A wildcard's columns trace to every table it matches, so a mask on one shard's column
// cannot be dodged by naming the shard through a wildcard.
func TestWildcardLineage(t *testing.T) {
	a := newAnalyzer(t, featureSource())
	got, err := a.Analyze(context.Background(), Input{SQL: "SELECT UPPER(url) AS u, _TABLE_SUFFIX AS day FROM `web.events_2026*`", DefaultProject: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Lineage) != 2 {
		t.Fatalf("lineage = %+v", got.Lineage)
	}
	var srcs []string
	for _, s := range got.Lineage[0].Sources {
		srcs = append(srcs, s.String())
	}
	want := []string{"acme.web.events_20260101.url", "acme.web.events_20260102.url", "acme.web.events_20260201.url"}
	if !reflect.DeepEqual(srcs, want) {
		t.Errorf("u sources = %v, want %v", srcs, want)
	}
	if len(got.Lineage[1].Sources) != 0 || got.Lineage[1].Unknown {
		t.Errorf("_TABLE_SUFFIX lineage = %+v, want a constant", got.Lineage[1])
	}
}

func TestDeclaredParameterTypes(t *testing.T) {
	a := newAnalyzer(t, featureSource())
	cases := []struct {
		name   string
		sql    string
		params []Parameter
		ok     bool
	}{
		{"typed named", "SELECT url FROM web.sessions s JOIN web.pageviews p ON s.id = @id WHERE p.day = @d", []Parameter{{Name: "id", Type: "INT64"}, {Name: "d", Type: "DATE"}}, true},
		{"wrong type is refused as BigQuery would", "SELECT id FROM web.sessions WHERE id = @id", []Parameter{{Name: "id", Type: "STRING"}}, false},
		{"undeclared parameter is refused", "SELECT id FROM web.sessions WHERE id = @other", []Parameter{{Name: "id", Type: "INT64"}}, false},
		{"array parameter", "SELECT id FROM web.sessions WHERE id IN UNNEST(@ids)", []Parameter{{Name: "ids", Type: "ARRAY<INT64>"}}, true},
		{"struct parameter", "SELECT @s.a AS a", []Parameter{{Name: "s", Type: "STRUCT<`a` INT64, `b` STRING>"}}, true},
		{"positional typed", "SELECT id FROM web.sessions WHERE id = ?", []Parameter{{Type: "INT64"}}, true},
		{"unknown type", "SELECT 1 WHERE @x", []Parameter{{Name: "x", Type: "NOPE"}}, false},
		{"untyped stays undeclared", "SELECT id FROM web.sessions WHERE id = @id", []Parameter{{Name: "id"}}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := a.Analyze(context.Background(), Input{SQL: tc.sql, DefaultProject: "acme", Parameters: tc.params})
			if tc.ok && err != nil {
				t.Fatalf("err = %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrUnanalysable) {
				t.Fatalf("err = %v, want unanalysable", err)
			}
			t.Logf("%v", err)
		})
	}
	// Declarations do not leak into the next analysis.
	if _, err := a.Analyze(context.Background(), Input{SQL: "SELECT id FROM web.sessions WHERE id = @later", DefaultProject: "acme"}); err != nil {
		t.Fatalf("undeclared parameter after a declared analysis: %v", err)
	}
}

// Whole-row functions reveal every column, like SELECT *.
func TestWholeRowIsSelectStar(t *testing.T) {
	a := newAnalyzer(t, featureSource())
	star := []policies.DenyRuleKind{policies.DenySelectStar}
	for _, tc := range []struct {
		sql  string
		want []policies.DenyRuleKind
	}{
		{"SELECT TO_JSON_STRING(s) FROM web.sessions s", star},
		{"SELECT FORMAT('%T', p) FROM web.pageviews AS p WHERE p.day > '2020-01-01'", star},
		{"SELECT TO_JSON(p) FROM web.pageviews p WHERE day = '2020-01-01'", star},
		{"SELECT ARRAY_AGG(p) FROM web.pageviews p WHERE day = '2020-01-01'", star},
		{"SELECT TO_JSON_STRING(STRUCT(p.url)) FROM web.pageviews p WHERE day = '2020-01-01'", nil},
		{"SELECT TO_JSON_STRING(x) FROM (SELECT url FROM web.pageviews WHERE day = '2020-01-01') x", nil},
	} {
		got, err := a.Analyze(context.Background(), Input{SQL: tc.sql, DefaultProject: "acme"})
		if err != nil {
			t.Fatalf("%s: %v", tc.sql, err)
		}
		if !reflect.DeepEqual(got.Findings, tc.want) {
			t.Errorf("%s: findings %v, want %v", tc.sql, got.Findings, tc.want)
		}
	}
}

// cachingSource is a CachedTableSource over featureSource whose tables.get of one table
// blocks until released, like a slow BigQuery.
type cachingSource struct {
	*listingSource
	mu      sync.Mutex
	cache   map[string]*TableMeta
	slow    string
	entered chan struct{}
	release chan struct{}
	gets    int
}

func (c *cachingSource) Table(ctx context.Context, p, d, t string) (*TableMeta, error) {
	fq := p + "." + d + "." + t
	if fq == c.slow {
		close(c.entered)
		<-c.release
	}
	m, err := c.listingSource.Table(ctx, p, d, t)
	c.mu.Lock()
	c.gets++
	if err == nil {
		c.cache[fq] = m
	}
	c.mu.Unlock()
	return m, err
}

func (c *cachingSource) CachedTable(p, d, t string) (*TableMeta, error, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.cache[p+"."+d+"."+t]
	return m, nil, ok
}

func (c *cachingSource) CachedListTables(p, d string) ([]string, error, bool) {
	names, err := c.ListTables(context.Background(), p, d)
	return names, err, true
}

// TestEngineLockNotHeldDuringTablesGet: while one analysis waits for a slow tables.get,
// another analysis (of a cached table) completes.
func TestEngineLockNotHeldDuringTablesGet(t *testing.T) {
	src := &cachingSource{listingSource: featureSource(), cache: map[string]*TableMeta{},
		slow: "acme.web.pageviews", entered: make(chan struct{}), release: make(chan struct{})}
	a, err := New(Options{Catalog: src, CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// Warm the other table (and prove the fetch-and-retry path resolves joins and views).
	got, err := a.Analyze(ctx, Input{SQL: "SELECT s.id, e.url FROM web.sessions s JOIN web.events_20260101 e ON e.user_id = s.id", DefaultProject: "acme"})
	if err != nil || len(got.ReferencedTables) != 2 {
		t.Fatalf("warm-up: %v %+v", err, got)
	}
	slowDone := make(chan error, 1)
	go func() {
		_, err := a.Analyze(ctx, Input{SQL: "SELECT url FROM web.pageviews WHERE day = '2026-01-01'", DefaultProject: "acme"})
		slowDone <- err
	}()
	<-src.entered // the slow analysis is inside tables.get now
	fast := make(chan error, 1)
	go func() {
		_, err := a.Analyze(ctx, Input{SQL: "SELECT id FROM web.sessions", DefaultProject: "acme"})
		fast <- err
	}()
	select {
	case err := <-fast:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		close(src.release)
		t.Fatal("an analysis of a cached table waited for another analysis's tables.get: the engine lock is held across it")
	}
	close(src.release)
	if err := <-slowDone; err != nil {
		t.Fatalf("slow analysis: %v", err)
	}
}

// TestScriptsWithVariables: DECLARE and SET are walked; the tables their expressions read
// count; control flow stays unanalysable.
func TestScriptsWithVariables(t *testing.T) {
	a := newAnalyzer(t, featureSource())
	cases := []struct {
		name string
		sql  string
		want want
	}{
		{"declare with default, then use", "DECLARE x INT64 DEFAULT 1;\nSELECT url FROM web.pageviews WHERE day = '2026-01-01' AND LENGTH(url) > x",
			want{kind: "SCRIPT", reads: []string{"acme.web.pageviews"}}},
		{"declare without type, set from a subquery", "DECLARE top DEFAULT 0;\nSET top = (SELECT MAX(user_id) FROM `acme.web.events_20260101`);\nSELECT id FROM web.sessions WHERE id = top",
			want{kind: "SCRIPT", reads: []string{"acme.web.events_20260101", "acme.web.sessions"}}},
		{"several variables, case-insensitive use", "DECLARE a, b STRING;\nSET A = 'x';\nSELECT id FROM web.sessions WHERE CAST(id AS STRING) IN (a, B)",
			want{kind: "SCRIPT", reads: []string{"acme.web.sessions"}}},
		{"a variable's default reads a table with a whole row", "DECLARE j STRING DEFAULT (SELECT TO_JSON_STRING(s) FROM web.sessions s LIMIT 1);\nSELECT j",
			want{kind: "SCRIPT", reads: []string{"acme.web.sessions"}, findings: []policies.DenyRuleKind{policies.DenySelectStar}}},
		{"undeclared variable", "SET nope = 1; SELECT 1", want{err: ErrUnanalysable}},
		{"declared twice", "DECLARE x INT64; DECLARE X INT64; SELECT 1", want{err: ErrUnanalysable}},
		{"IF stays denied", "DECLARE x INT64 DEFAULT 1; IF x > 0 THEN SELECT 1; END IF", want{err: ErrUnanalysable}},
		{"system variable SET stays denied", "SET @@dataset_id = 'web'; SELECT id FROM sessions", want{err: ErrUnanalysable}},
		{"unknown table in a SET", "DECLARE x INT64; SET x = (SELECT COUNT(*) FROM web.gone); SELECT x", want{err: ErrUnanalysable}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := a.Analyze(context.Background(), Input{SQL: tc.sql, DefaultProject: "acme"})
			check(t, got, err, tc.want)
			if err == nil {
				t.Logf("statements: %v", got.Statements)
			}
		})
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	src := &cachingSource{listingSource: featureSource(), cache: map[string]*TableMeta{}, slow: "-", entered: make(chan struct{}), release: make(chan struct{})}
	a, err := New(Options{Catalog: src, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, sql := range []string{"SELECT id FROM web.sessions", "SELECT id FROM web.sessions", "SELECT nope FROM web.sessions"} {
		_, _ = a.Analyze(ctx, Input{SQL: sql, DefaultProject: "acme"})
	}
	_, _ = a.Analyze(ctx, Input{SQL: "SELECT 1", LegacySQL: true})
	for result, want := range map[string]float64{ResultAnalysed: 1, ResultCached: 1, ResultRefused: 2, ResultCatalogUnavailable: 0} {
		if got := counter(t, reg, "jitgate_sql_analyses_total", result); got != want {
			t.Errorf("analyses{%s} = %v, want %v", result, got, want)
		}
	}
	// The first analysis met web.sessions uncached: one fetch round, two engine runs; the
	// refused one ran once more (the table was cached by then).
	if got := counter(t, reg, "jitgate_sql_catalog_fetch_rounds_total", ""); got != 1 {
		t.Errorf("fetch rounds = %v, want 1", got)
	}
	if got := counter(t, reg, "jitgate_sql_engine_runs_total", ""); got != 3 {
		t.Errorf("engine runs = %v, want 3", got)
	}
}

// counter reads a counter (with result label value, or none) from reg.
func counter(t *testing.T, reg *prometheus.Registry, name, result string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			match := result == ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					match = true
				}
			}
			if match {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no metric %s{result=%q}", name, result)
	return 0
}
