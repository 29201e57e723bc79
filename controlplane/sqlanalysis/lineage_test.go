package sqlanalysis

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/goccy/go-googlesql"
)

// lineageSource is an in-memory catalog with sensitive columns and views over them.
func lineageSource() *fakeSource {
	users := &TableMeta{Project: "acme", Dataset: "crm", Table: "users", Type: "TABLE",
		Columns: []Column{{Name: "id", Type: "INTEGER"}, {Name: "name", Type: "STRING"}, {Name: "email", Type: "STRING"},
			{Name: "ssn", Type: "STRING"}, {Name: "country", Type: "STRING"},
			{Name: "addr", Type: "RECORD", Fields: []Column{{Name: "city", Type: "STRING"}, {Name: "zip", Type: "STRING"}}},
			{Name: "emails", Type: "STRING", Repeated: true}, {Name: "doc", Type: "JSON"}}}
	orders := &TableMeta{Project: "acme", Dataset: "crm", Table: "orders", Type: "TABLE",
		Columns: []Column{{Name: "order_id", Type: "STRING"}, {Name: "user_id", Type: "INTEGER"}, {Name: "amount", Type: "NUMERIC"},
			{Name: "card", Type: "STRING"}, {Name: "ordered_at", Type: "TIMESTAMP"}}}
	return &fakeSource{tables: map[string]*TableMeta{
		"acme.crm.users":  users,
		"acme.crm.orders": orders,
		"acme.pub.v_contacts": {Project: "acme", Dataset: "pub", Table: "v_contacts", Type: "VIEW",
			Columns:   []Column{{Name: "who", Type: "STRING"}, {Name: "mail", Type: "STRING"}, {Name: "n_orders", Type: "INTEGER"}},
			ViewQuery: "SELECT u.name AS who, LOWER(u.email) AS mail, (SELECT COUNT(*) FROM crm.orders o WHERE o.user_id = u.id) AS n_orders FROM crm.users u WHERE u.ssn IS NOT NULL"},
		"acme.pub.v_top": {Project: "acme", Dataset: "pub", Table: "v_top", Type: "VIEW",
			Columns:   []Column{{Name: "mail", Type: "STRING"}, {Name: "k", Type: "INTEGER"}},
			ViewQuery: "SELECT mail, COUNT(DISTINCT who) AS k FROM pub.v_contacts GROUP BY mail"},
		"acme.pub.v_loop": {Project: "acme", Dataset: "pub", Table: "v_loop", Type: "VIEW",
			Columns: []Column{{Name: "x", Type: "STRING"}}, ViewQuery: "SELECT x FROM pub.v_loop"},
	}}
}

// describe renders lineage compactly: "name[.path]@pos via [AGGS] [rv] <- t.c, ..." with
// the acme.crm. prefix dropped.
func describe(cols []OutputColumn) []string {
	var out []string
	for _, c := range cols {
		var b strings.Builder
		b.WriteString(c.Name)
		for _, p := range c.Path {
			b.WriteString("." + p)
		}
		fmt.Fprintf(&b, "@%d ", c.Position)
		if c.Unknown {
			b.WriteString("UNKNOWN")
		} else {
			b.WriteString(c.Via)
		}
		if len(c.Aggregates) > 0 {
			b.WriteString(" [" + strings.Join(c.Aggregates, ",") + "]")
		}
		if c.ValueRevealing {
			b.WriteString(" rv")
		}
		if len(c.Sources) > 0 {
			b.WriteString(" <- " + strings.Join(shortSources(c.Sources), ", "))
		}
		out = append(out, b.String())
	}
	return out
}

func shortSources(ss []SourceColumn) []string {
	var out []string
	for _, s := range ss {
		out = append(out, strings.TrimPrefix(strings.TrimPrefix(s.String(), "acme.crm."), demoProject+".crm."))
	}
	return out
}

func TestLineage(t *testing.T) {
	a := newAnalyzer(t, lineageSource())
	cases := []struct {
		name    string
		sql     string
		lineage []string
		control []string // nil: none
		unknown bool     // LineageComplete false
	}{
		{name: "alias", sql: "SELECT email AS e FROM crm.users",
			lineage: []string{"e@0 direct rv <- users.email"}},
		{name: "REVERSE", sql: "SELECT REVERSE(email) AS r FROM crm.users",
			lineage: []string{"r@0 function rv <- users.email"}},
		{name: "CONCAT", sql: "SELECT CONCAT(name, email) AS c, id FROM crm.users",
			lineage: []string{"c@0 function rv <- users.email, users.name", "id@1 direct rv <- users.id"}},
		{name: "CTE and subquery", sql: "WITH x AS (SELECT email AS e, id FROM crm.users) SELECT y.f FROM (SELECT UPPER(e) AS f FROM x) AS y",
			lineage: []string{"f@0 function rv <- users.email"}},
		{name: "CTE name shadowed in a nested scope", sql: "WITH x AS (SELECT email AS v FROM crm.users) SELECT (WITH x AS (SELECT name AS v FROM crm.users) SELECT MAX(v) FROM x) AS inner_v, v FROM x",
			lineage: []string{"inner_v@0 aggregate [MAX] rv <- users.name", "v@1 direct rv <- users.email"}},
		{name: "UNION ALL is positional", sql: "SELECT name AS a, id AS b FROM crm.users UNION ALL SELECT card, user_id FROM crm.orders",
			lineage: []string{"a@0 direct rv <- orders.card, users.name", "b@1 direct rv <- orders.user_id, users.id"}},
		{name: "JOIN two tables", sql: "SELECT u.name, o.amount FROM crm.users u JOIN crm.orders o ON o.user_id = u.id",
			lineage: []string{"name@0 direct rv <- users.name", "amount@1 direct rv <- orders.amount"},
			control: []string{"orders.user_id", "users.id"}},
		{name: "TO_JSON_STRING of a row", sql: "SELECT TO_JSON_STRING(c) AS j FROM crm.orders c",
			lineage: []string{"j@0 function rv <- orders.amount, orders.card, orders.order_id, orders.ordered_at, orders.user_id"}},
		{name: "row as a value", sql: "SELECT o FROM crm.orders o",
			lineage: []string{"o@0 direct rv <- orders.amount, orders.card, orders.order_id, orders.ordered_at, orders.user_id",
				"o.order_id@0 direct rv <- orders.order_id", "o.user_id@0 direct rv <- orders.user_id", "o.amount@0 direct rv <- orders.amount",
				"o.card@0 direct rv <- orders.card", "o.ordered_at@0 direct rv <- orders.ordered_at"}},
		{name: "SELECT AS STRUCT (value table: the fields are the result columns)", sql: "SELECT AS STRUCT email, UPPER(name) AS n FROM crm.users",
			lineage: []string{"email@0 direct rv <- users.email", "n@1 function rv <- users.name"}},
		{name: "ARRAY_AGG is value-revealing", sql: "SELECT country, ARRAY_AGG(email) AS es FROM crm.users GROUP BY country",
			lineage: []string{"country@0 direct rv <- users.country", "es@1 aggregate [ARRAY_AGG] rv <- users.email"},
			control: []string{"users.country"}},
		{name: "COUNT DISTINCT is counting", sql: "SELECT COUNT(DISTINCT email) AS n, COUNT(*) AS m, APPROX_COUNT_DISTINCT(ssn) AS k FROM crm.users",
			lineage: []string{"n@0 aggregate [COUNT DISTINCT] <- users.email", "m@1 aggregate [COUNT]", "k@2 aggregate [APPROX_COUNT_DISTINCT] <- users.ssn"}},
		{name: "COUNTIF counts, and its condition is a control read", sql: "SELECT COUNTIF(ssn = '1') AS c FROM crm.users",
			lineage: []string{"c@0 aggregate [COUNTIF] <- users.ssn"}, control: []string{"users.ssn"}},
		{name: "MAX", sql: "SELECT MAX(email) AS m, STRING_AGG(ssn, ',') AS s FROM crm.users",
			lineage: []string{"m@0 aggregate [MAX] rv <- users.email", "s@1 aggregate [STRING_AGG] rv <- users.ssn"}},
		{name: "count of a max is counting", sql: "SELECT COUNT(m) AS n FROM (SELECT MAX(email) AS m FROM crm.users GROUP BY country)",
			lineage: []string{"n@0 aggregate [COUNT,MAX] <- users.email"}, control: []string{"users.country"}},
		{name: "count mixed with a value reveals", sql: "SELECT CONCAT(CAST(COUNT(DISTINCT email) AS STRING), ANY_VALUE(name)) AS x FROM crm.users",
			lineage: []string{"x@0 aggregate [ANY_VALUE,COUNT DISTINCT] rv <- users.email, users.name"}},
		{name: "STRUCT nested", sql: "SELECT STRUCT(email AS x, STRUCT(ssn AS y, 1 AS z) AS nest) AS s, id FROM crm.users",
			lineage: []string{"s@0 direct rv <- users.email, users.ssn", "s.x@0 direct rv <- users.email",
				"s.nest@0 direct rv <- users.ssn", "s.nest.y@0 direct rv <- users.ssn", "s.nest.z@0 function", "id@1 direct rv <- users.id"}},
		{name: "struct field of a STRUCT literal is exact", sql: "SELECT s.x FROM (SELECT STRUCT(email AS x, ssn AS y) AS s FROM crm.users)",
			lineage: []string{"x@0 direct rv <- users.email"}},
		{name: "struct field of a table column is the whole column", sql: "SELECT addr.city FROM crm.users",
			lineage: []string{"city@0 direct rv <- users.addr"}},
		{name: "UNNEST of an array column", sql: "SELECT e, off FROM crm.users, UNNEST(emails) AS e WITH OFFSET off",
			lineage: []string{"e@0 direct rv <- users.emails", "off@1 function"}},
		{name: "ARRAY subquery and UNNEST", sql: "SELECT ARRAY(SELECT UPPER(x) FROM UNNEST(u.emails) x) AS up FROM crm.users u",
			lineage: []string{"up@0 function rv <- users.emails"}},
		{name: "scalar subquery carries values", sql: "SELECT (SELECT MAX(card) FROM crm.orders o WHERE o.user_id = u.id) AS c FROM crm.users u",
			lineage: []string{"c@0 aggregate [MAX] rv <- orders.card"}, control: []string{"orders.user_id", "users.id"}},
		{name: "view resolves to base columns", sql: "SELECT who, mail, n_orders FROM pub.v_contacts",
			lineage: []string{"who@0 direct rv <- users.name", "mail@1 function rv <- users.email", "n_orders@2 aggregate [COUNT]"}},
		{name: "view over a view", sql: "SELECT UPPER(mail) AS m, k FROM pub.v_top",
			lineage: []string{"m@0 function rv <- users.email", "k@1 aggregate [COUNT DISTINCT] <- users.name"}},
		{name: "predicate on a view column is a control read of its base column", sql: "SELECT who FROM pub.v_contacts WHERE mail = 'a@b.c'",
			lineage: []string{"who@0 direct rv <- users.name"}, control: []string{"users.email"}},
		{name: "CASE condition is control", sql: "SELECT CASE WHEN ssn IS NULL THEN 'x' ELSE name END AS n FROM crm.users",
			lineage: []string{"n@0 function rv <- users.name"}, control: []string{"users.ssn"}},
		{name: "IF, NULLIF and CASE value", sql: "SELECT IF(ssn = 'a', name, NULL) AS i, NULLIF(email, ssn) AS n, CASE country WHEN 'GB' THEN name ELSE email END AS c FROM crm.users",
			lineage: []string{"i@0 function rv <- users.name", "n@1 function rv <- users.email", "c@2 function rv <- users.email, users.name"},
			control: []string{"users.country", "users.ssn"}},
		{name: "WHERE is control", sql: "SELECT id FROM crm.users WHERE email = 'x'",
			lineage: []string{"id@0 direct rv <- users.id"}, control: []string{"users.email"}},
		{name: "EXISTS and IN are control", sql: "SELECT id FROM crm.users u WHERE EXISTS (SELECT card FROM crm.orders o WHERE o.user_id = u.id) AND email IN (SELECT name FROM crm.users)",
			lineage: []string{"id@0 direct rv <- users.id"}, control: []string{"orders.card", "orders.user_id", "users.email", "users.id", "users.name"}},
		{name: "IN subquery in the select list is a control read", sql: "SELECT email IN (SELECT ssn FROM crm.users) AS hit FROM crm.users",
			lineage: []string{"hit@0 function"}, control: []string{"users.email", "users.ssn"}},
		{name: "HAVING, QUALIFY, ORDER BY, window", sql: "SELECT country, MAX(name) AS m FROM crm.users GROUP BY country HAVING COUNT(ssn) > 1 QUALIFY ROW_NUMBER() OVER (ORDER BY MIN(email)) = 1 ORDER BY MAX(id)",
			lineage: []string{"country@0 direct rv <- users.country", "m@1 aggregate [MAX] rv <- users.name"},
			control: []string{"users.country", "users.email", "users.id", "users.ssn"}},
		{name: "analytic FIRST_VALUE reveals, PARTITION BY is control", sql: "SELECT FIRST_VALUE(email) OVER (PARTITION BY country ORDER BY id) AS f FROM crm.users",
			lineage: []string{"f@0 aggregate [FIRST_VALUE] rv <- users.email"}, control: []string{"users.country", "users.id"}},
		{name: "lambda", sql: "SELECT ARRAY_TRANSFORM(emails, e -> UPPER(e)) AS up FROM crm.users",
			// The analyser rewrites the lambda into IF(emails IS NULL, NULL, ARRAY(...)).
			lineage: []string{"up@0 function rv <- users.emails"}, control: []string{"users.emails"}},
		{name: "JSON field", sql: "SELECT doc.a.b AS x FROM crm.users",
			lineage: []string{"x@0 direct rv <- users.doc"}},
		{name: "literal and parameter", sql: "SELECT 1 AS one, @p AS p",
			lineage: []string{"one@0 function", "p@1 function"}},
		{name: "PIVOT (rewritten by the analyser)", sql: "SELECT * FROM (SELECT country, id FROM crm.users) PIVOT (COUNT(id) FOR country IN ('GB', 'US'))",
			lineage: []string{"GB@0 aggregate [COUNT] <- users.id", "US@1 aggregate [COUNT] <- users.id"}, control: []string{"users.country"}},
		{name: "UNPIVOT (rewritten by the analyser)", sql: "SELECT * FROM (SELECT name, email FROM crm.users) UNPIVOT (v FOR k IN (name, email))",
			lineage: []string{"v@0 direct rv <- users.email, users.name", "k@1 function"}, control: []string{"users.email", "users.name"}},
		{name: "CASE condition in an unused CTE column is still a control read", sql: "WITH x AS (SELECT IF(ssn = '1', 1, 0) AS f FROM crm.users) SELECT 2 AS two FROM x",
			lineage: []string{"two@0 function"}, control: []string{"users.ssn"}},
		{name: "unmodelled construct is Unknown: GROUPING()", sql: "SELECT country, GROUPING(country) AS g FROM crm.users GROUP BY ROLLUP(country)",
			lineage: []string{"country@0 direct rv <- users.country", "g@1 UNKNOWN rv <- users.addr, users.country, users.doc, users.email, users.emails, users.id, users.name, users.ssn"}, control: []string{"users.country"}, unknown: true},
		{name: "unmodelled construct is Unknown: recursive CTE", sql: "WITH RECURSIVE r AS (SELECT email AS e FROM crm.users UNION ALL SELECT e FROM r) SELECT e FROM r",
			lineage: []string{"e@0 UNKNOWN rv <- users.addr, users.country, users.doc, users.email, users.emails, users.id, users.name, users.ssn"}, unknown: true},
		{name: "self-referencing view is Unknown", sql: "SELECT x FROM pub.v_loop",
			lineage: []string{"x@0 UNKNOWN rv <- acme.pub.v_loop.x"}, unknown: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := a.Analyze(context.Background(), Input{SQL: tc.sql, DefaultProject: "acme"})
			if err != nil {
				t.Fatalf("Analyze: %v", err)
			}
			if d := describe(got.Lineage); !reflect.DeepEqual(d, tc.lineage) {
				t.Errorf("lineage:\n got  %q\n want %q", d, tc.lineage)
			}
			if c := shortSources(got.ControlReads); !reflect.DeepEqual(c, tc.control) {
				t.Errorf("control reads = %q, want %q", c, tc.control)
			}
			if got.LineageComplete == tc.unknown {
				t.Errorf("LineageComplete = %v (gaps %q), want %v", got.LineageComplete, got.LineageGaps, !tc.unknown)
			}
			if got.LineageComplete && len(got.LineageGaps) > 0 {
				t.Errorf("complete with gaps %q", got.LineageGaps)
			}
			if t.Failed() || testing.Verbose() {
				j, _ := json.Marshal(got)
				t.Logf("%s", j)
			}
		})
	}
}

// TestLineageAgainstEmulator runs lineage on schemas read with tables.get from the real
// emulator.
func TestLineageAgainstEmulator(t *testing.T) {
	a := newAnalyzer(t, emulatorSource(t))
	cases := []struct {
		name    string
		sql     string
		lineage []string
		control []string
	}{
		{name: "mid-size query", sql: midSizeQuery, lineage: []string{
			"id@0 direct rv <- customers.id", "name@1 direct rv <- customers.name", "country@2 direct rv <- customers.country",
			"total@3 aggregate [SUM] rv <- orders.amount", "n@4 aggregate [COUNT]", "last_order@5 aggregate [MAX] rv <- orders.ordered_at",
			"country_rank@6 aggregate [RANK]", "tier@7 function"},
			control: []string{"customers.country", "customers.id", "customers.lifetime_value", "orders.amount", "orders.customer_id", "orders.ordered_at"}},
		{name: "alias through backticked path", sql: "SELECT customers.email AS e FROM `jitgate-demo.crm.customers`",
			lineage: []string{"e@0 direct rv <- customers.email"}},
		{name: "exfiltration through packing", sql: "SELECT TO_BASE64(CAST(TO_JSON_STRING(STRUCT(c.email, o.amount)) AS BYTES)) AS x FROM crm.customers c JOIN crm.orders o ON o.customer_id = c.id WHERE c.email LIKE '%@example.com'",
			lineage: []string{"x@0 function rv <- customers.email, orders.amount"}, control: []string{"customers.email", "customers.id", "orders.customer_id"}},
		{name: "counts per country", sql: "SELECT country, COUNT(DISTINCT email) AS users FROM crm.customers GROUP BY country",
			lineage: []string{"country@0 direct rv <- customers.country", "users@1 aggregate [COUNT DISTINCT] <- customers.email"},
			control: []string{"customers.country"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := a.Analyze(context.Background(), Input{SQL: tc.sql, DefaultProject: demoProject})
			if err != nil {
				t.Fatalf("Analyze: %v", err)
			}
			if d := describe(got.Lineage); !reflect.DeepEqual(d, tc.lineage) {
				t.Errorf("lineage:\n got  %q\n want %q", d, tc.lineage)
			}
			if c := shortSources(got.ControlReads); !reflect.DeepEqual(c, tc.control) {
				t.Errorf("control reads = %q, want %q", c, tc.control)
			}
			if !got.LineageComplete {
				t.Errorf("lineage incomplete: %q", got.LineageGaps)
			}
		})
	}
}

func TestLineageNonQueryAndCache(t *testing.T) {
	a := newAnalyzer(t, lineageSource())
	got, err := a.Analyze(context.Background(), Input{SQL: "DELETE FROM crm.users WHERE ssn = 'x'", DefaultProject: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if got.LineageComplete || got.Lineage != nil || len(got.LineageGaps) == 0 {
		t.Errorf("DML lineage: complete=%v lineage=%v gaps=%q; want incomplete, none, a gap", got.LineageComplete, got.Lineage, got.LineageGaps)
	}
	got, err = a.Analyze(context.Background(), Input{SQL: "SELECT 1 AS x; SELECT email FROM crm.users", DefaultProject: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if got.LineageComplete || got.Lineage != nil {
		t.Errorf("script lineage: complete=%v lineage=%v; want incomplete, none", got.LineageComplete, got.Lineage)
	}
	in := Input{SQL: "SELECT STRUCT(email AS x) AS s FROM crm.users", DefaultProject: "acme"}
	first, err := a.Analyze(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	first.Lineage[1].Path[0] = "tampered"
	first.Lineage[0].Sources[0].Column = "tampered"
	second, err := a.Analyze(context.Background(), in)
	if err != nil || !second.Cached {
		t.Fatalf("second: %v cached=%v", err, second != nil && second.Cached)
	}
	if d := describe(second.Lineage); !reflect.DeepEqual(d, []string{"s@0 direct rv <- users.email", "s.x@0 direct rv <- users.email"}) {
		t.Errorf("cached lineage = %q (a caller's edit reached the cache?)", d)
	}
}

// BenchmarkLineageMidSize measures the lineage walk alone on an already resolved mid-size
// query (the analysis itself is BenchmarkAnalyzeMidSize), and a whole uncached Analyze
// with lineage on the in-memory catalog.
func BenchmarkLineageMidSize(b *testing.B) {
	src := &fakeSource{tables: map[string]*TableMeta{
		"jitgate-demo.crm.customers": {Project: demoProject, Dataset: "crm", Table: "customers", Type: "TABLE", Columns: []Column{
			{Name: "id", Type: "INTEGER"}, {Name: "name", Type: "STRING"}, {Name: "email", Type: "STRING"},
			{Name: "country", Type: "STRING"}, {Name: "lifetime_value", Type: "NUMERIC"}}},
		"jitgate-demo.crm.orders": {Project: demoProject, Dataset: "crm", Table: "orders", Type: "TABLE", Columns: []Column{
			{Name: "order_id", Type: "STRING"}, {Name: "customer_id", Type: "INTEGER"}, {Name: "amount", Type: "NUMERIC"},
			{Name: "ordered_at", Type: "TIMESTAMP"}}},
	}}
	a, err := New(Options{Catalog: src, CacheSize: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("walk", func(b *testing.B) {
		e := a.e
		e.mu.Lock()
		defer e.mu.Unlock()
		e.cat.cur = &request{ctx: context.Background(), source: src, jobProject: demoProject}
		out, err := googlesql.AnalyzeStatement(midSizeQuery, e.opts, e.multi, e.tf)
		e.cat.cur = nil
		if err != nil {
			b.Fatal(err)
		}
		stmt, err := out.ResolvedStatement()
		if err != nil {
			b.Fatal(err)
		}
		q := stmt.(*googlesql.ResolvedQueryStmt)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if l := statementLineage(q, nil); !l.complete {
				b.Fatalf("incomplete: %v", l.gaps)
			}
		}
		b.StopTimer()
		runtime.KeepAlive(out)
	})
	b.Run("analyze", func(b *testing.B) {
		in := Input{SQL: midSizeQuery, DefaultProject: demoProject}
		for i := 0; i < b.N; i++ {
			res, err := a.Analyze(context.Background(), in)
			if err != nil || !res.LineageComplete {
				b.Fatalf("%v %v", err, res)
			}
		}
	})
}

// Flows say per source whether every path is an aggregate (and which), and nested entries
// carry their field positions: masking needs both (controlplane/maskplan).
func TestLineageFlowsAndPositions(t *testing.T) {
	a := newAnalyzer(t, lineageSource())
	got, err := a.Analyze(context.Background(), Input{SQL: "SELECT CONCAT(CAST(COUNT(DISTINCT email) AS STRING), MAX(name)) AS m, " +
		"STRUCT(id, STRUCT(ssn AS s, country) AS sub) AS p, CONCAT(email, CAST(COUNT(*) OVER () AS STRING)) AS e FROM crm.users GROUP BY email, id, ssn, country",
		DefaultProject: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	flows := map[string]string{}
	positions := map[string][]int{}
	for _, c := range got.Lineage {
		key := strings.Join(append([]string{c.Name}, c.Path...), ".")
		positions[key] = append([]int{c.Position}, c.FieldPositions...)
		for _, f := range c.Flows {
			flows[key+"<-"+f.Source.Column] = fmt.Sprintf("%v %v", f.OnlyAggregated, f.Aggregates)
		}
	}
	wantFlows := map[string]string{
		"m<-email": "true [COUNT DISTINCT]", "m<-name": "true [MAX]",
		"p<-id": "false []", "p<-ssn": "false []", "p<-country": "false []",
		"p.id<-id": "false []", "p.sub<-ssn": "false []", "p.sub<-country": "false []", "p.sub.s<-ssn": "false []", "p.sub.country<-country": "false []",
		"e<-email": "false []",
	}
	if !reflect.DeepEqual(flows, wantFlows) {
		t.Errorf("flows:\n got  %v\n want %v", flows, wantFlows)
	}
	wantPos := map[string][]int{"m": {0}, "p": {1}, "p.id": {1, 0}, "p.sub": {1, 1}, "p.sub.s": {1, 1, 0}, "p.sub.country": {1, 1, 1}, "e": {2}}
	if !reflect.DeepEqual(positions, wantPos) {
		t.Errorf("positions:\n got  %v\n want %v", positions, wantPos)
	}
}

// ResultSchema is the result rows' schema in BigQuery terms (for later pages that carry
// none): nested STRUCTs as RECORD, arrays REPEATED, value tables expanded.
func TestResultSchema(t *testing.T) {
	a := newAnalyzer(t, lineageSource())
	render := func(cs []Column) string {
		var f func(cs []Column) string
		f = func(cs []Column) string {
			var parts []string
			for _, c := range cs {
				s := c.Name + ":" + c.Type
				if c.Repeated {
					s += "*"
				}
				if len(c.Fields) > 0 {
					s += "{" + f(c.Fields) + "}"
				}
				parts = append(parts, s)
			}
			return strings.Join(parts, ",")
		}
		return f(cs)
	}
	for sql, want := range map[string]string{
		"SELECT id, email, addr, emails, 1.5 AS f, TRUE AS b FROM crm.users":       "id:INTEGER,email:STRING,addr:RECORD{city:STRING,zip:STRING},emails:STRING*,f:FLOAT,b:BOOLEAN",
		"SELECT ARRAY_AGG(STRUCT(user_id, amount)) AS a, COUNT(*) FROM crm.orders": "a:RECORD*{user_id:INTEGER,amount:NUMERIC},$col2:INTEGER",
		"SELECT AS STRUCT name, doc FROM crm.users":                                "name:STRING,doc:JSON",
		"SELECT o FROM crm.orders o":                                               "o:RECORD{order_id:STRING,user_id:INTEGER,amount:NUMERIC,card:STRING,ordered_at:TIMESTAMP}",
	} {
		got, err := a.Analyze(context.Background(), Input{SQL: sql, DefaultProject: "acme"})
		if err != nil {
			t.Fatal(err)
		}
		if r := render(got.ResultSchema); r != want {
			t.Errorf("%s:\n got  %s\n want %s", sql, r, want)
		}
	}
	if got, _ := a.Analyze(context.Background(), Input{SQL: "SELECT 1 AS x; SELECT 2 AS y", DefaultProject: "acme"}); got == nil || got.ResultSchema != nil {
		t.Errorf("script: %+v", got)
	}
}
