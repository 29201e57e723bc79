package sqlanalysis

import (
	"context"
	"fmt"
	"reflect"
	"testing"

	"github.com/jitgate/jitgate/policies"
)

// TestMLTableValuedFunctions analyses ML/AI table-valued functions against the emulator's
// catalog: the tables passed to them (TABLE t, a subquery, a view) are referenced tables,
// the mlFunction finding stays, and every column of their result has Unknown lineage.
func TestMLTableValuedFunctions(t *testing.T) {
	src := emulatorSource(t)
	a := newAnalyzer(t, src)
	ml := []policies.DenyRuleKind{policies.DenyMLFunction}
	mlStar := []policies.DenyRuleKind{policies.DenyMLFunction, policies.DenySelectStar}
	cases := []struct {
		name string
		sql  string
		ds   *DatasetRef
		want want
		// cols are the result's column names (all must have Unknown lineage).
		cols []string
	}{
		{name: "ML.PREDICT over a TABLE", sql: "SELECT * FROM ML.PREDICT(MODEL `jitgate-demo.crm.churn`, TABLE `jitgate-demo.crm.customers`)",
			want: want{kind: "SELECT", reads: []string{customers}, findings: mlStar},
			cols: []string{"id", "name", "email", "country", "lifetime_value", "prediction"}},
		{name: "ML.PREDICT over a subquery joining two tables", sql: "SELECT id, prediction FROM ML.PREDICT(MODEL crm.churn, (SELECT c.id, o.amount FROM crm.customers c JOIN crm.orders o ON o.customer_id = c.id))",
			want: want{kind: "SELECT", reads: []string{customers, orders}, findings: ml},
			cols: []string{"id", "prediction"}},
		{name: "unqualified model and table with the default dataset", sql: "SELECT prediction FROM ml.predict(MODEL churn, TABLE customers)", ds: crmDefault,
			want: want{kind: "SELECT", reads: []string{customers}, findings: ml},
			cols: []string{"prediction"}},
		{name: "ML.PREDICT with an options STRUCT", sql: "SELECT id FROM ML.PREDICT(MODEL crm.churn, TABLE crm.customers, STRUCT(0.5 AS threshold))",
			want: want{kind: "SELECT", reads: []string{customers}, findings: ml}, cols: []string{"id"}},
		{name: "ML.PREDICT joined back to its input", sql: "SELECT p.prediction FROM crm.orders o JOIN ML.PREDICT(MODEL crm.churn, TABLE crm.customers) p ON p.id = o.customer_id",
			want: want{kind: "SELECT", reads: []string{customers, orders}, findings: ml}, cols: []string{"prediction"}},
		{name: "ML.GENERATE_TEXT over a subquery", sql: "SELECT ml_generate_text_llm_result FROM ML.GENERATE_TEXT(MODEL crm.llm, (SELECT name AS prompt FROM crm.customers), STRUCT(0.2 AS temperature))",
			want: want{kind: "SELECT", reads: []string{customers}, findings: ml}, cols: []string{"ml_generate_text_llm_result"}},
		{name: "ML.GENERATE_EMBEDDING", sql: "SELECT ml_generate_embedding_result FROM ML.GENERATE_EMBEDDING(MODEL crm.emb, (SELECT name AS content FROM crm.customers))",
			want: want{kind: "SELECT", reads: []string{customers}, findings: ml}, cols: []string{"ml_generate_embedding_result"}},
		{name: "ML.EVALUATE with and without data", sql: "SELECT * FROM ML.EVALUATE(MODEL crm.churn, TABLE crm.orders) UNION ALL SELECT * FROM ML.EVALUATE(MODEL crm.churn, TABLE crm.orders)",
			want: want{kind: "SELECT", reads: []string{orders}, findings: mlStar}},
		{name: "ML.FORECAST reads no table", sql: "SELECT forecast_value FROM ML.FORECAST(MODEL crm.sales, STRUCT(30 AS horizon))",
			want: want{kind: "SELECT", findings: ml}, cols: []string{"forecast_value"}},
		{name: "AI.GENERATE_TABLE", sql: "SELECT * FROM AI.GENERATE_TABLE(MODEL crm.llm, (SELECT name AS prompt FROM crm.customers), STRUCT('x STRING' AS output_schema))",
			want: want{kind: "SELECT", reads: []string{customers}, findings: mlStar}},
		{name: "TABLE naming a CTE", sql: "WITH src AS (SELECT id FROM crm.orders JOIN crm.customers ON customer_id = id) SELECT prediction FROM ML.PREDICT(MODEL crm.churn, TABLE src)",
			want: want{kind: "SELECT", reads: []string{customers, orders}, findings: ml}, cols: []string{"prediction"}},
		{name: "a CTE as a subquery argument", sql: "WITH src AS (SELECT customer_id FROM crm.orders) SELECT prediction FROM ML.PREDICT(MODEL crm.churn, (SELECT * FROM src))",
			want: want{kind: "SELECT", reads: []string{orders}, findings: mlStar}, cols: []string{"prediction"}},
		{name: "unknown table argument", sql: "SELECT * FROM ML.PREDICT(MODEL crm.churn, TABLE crm.nope)",
			want: want{err: ErrUnanalysable, errHas: ml}},
		{name: "model-specific output column is not known", sql: "SELECT predicted_label FROM ML.PREDICT(MODEL crm.churn, TABLE crm.customers)",
			want: want{err: ErrUnanalysable, errHas: ml}},
		{name: "ML function the analyser does not declare", sql: "SELECT * FROM ML.NOT_A_FUNCTION(MODEL crm.churn, TABLE crm.customers)",
			want: want{err: ErrUnanalysable, errHas: ml}},
		{name: "user-defined table function (routines are not read)", sql: "SELECT * FROM crm.my_tvf(1)",
			want: want{err: ErrUnanalysable}},
		{name: "two relation arguments", sql: "SELECT * FROM ML.PREDICT(MODEL crm.churn, TABLE crm.customers, TABLE crm.orders)",
			want: want{err: ErrUnanalysable, errHas: ml}},
		{name: "no model argument", sql: "SELECT * FROM ML.PREDICT(TABLE crm.customers)",
			want: want{err: ErrUnanalysable, errHas: ml}},
		{name: "a value table argument", sql: "SELECT * FROM ML.PREDICT(MODEL crm.churn, (SELECT AS STRUCT id, name FROM crm.customers))",
			want: want{err: ErrUnanalysable, errHas: ml}},
		{name: "ML.PREDICT in a scalar subquery of a DML", sql: "UPDATE crm.orders SET amount = (SELECT COUNT(*) FROM ML.PREDICT(MODEL crm.churn, TABLE crm.customers)) WHERE TRUE",
			want: want{kind: "UPDATE", reads: []string{customers, orders}, writes: []string{orders}, findings: ml}},
		{name: "scalar AI function", sql: "SELECT AI.GENERATE(('Summarise ', name), connection_id => 'us.c') FROM crm.customers",
			want: want{err: ErrUnanalysable, errHas: ml}},
		{name: "model without a dataset", sql: "SELECT * FROM ML.PREDICT(MODEL churn, TABLE crm.customers)",
			want: want{err: ErrUnanalysable, errHas: ml}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := a.Analyze(context.Background(), Input{SQL: tc.sql, DefaultProject: demoProject, DefaultDataset: tc.ds})
			check(t, got, err, tc.want)
			if err != nil {
				return
			}
			if got.LineageComplete {
				t.Error("LineageComplete with a table-valued function")
			}
			var names []string
			for _, c := range got.Lineage {
				names = append(names, c.Name)
				if !c.Unknown {
					t.Errorf("column %s: lineage %+v, want Unknown (a table-valued function's result)", c.Name, c)
				}
			}
			if tc.cols != nil && !reflect.DeepEqual(names, tc.cols) {
				t.Errorf("columns = %v, want %v", names, tc.cols)
			}
		})
	}
}

// TestMLTableValuedFunctionView: a view passed to ML.PREDICT is expanded to the tables
// its body reads (the view and its base tables are read), like any other read of a view.
func TestMLTableValuedFunctionView(t *testing.T) {
	src := &fakeSource{tables: map[string]*TableMeta{
		"acme.hr.people": {Project: "acme", Dataset: "hr", Table: "people", Type: "TABLE",
			Columns: []Column{{Name: "id", Type: "INT64"}, {Name: "ssn", Type: "STRING"}}},
		"acme.pub.v_people": {Project: "acme", Dataset: "pub", Table: "v_people", Type: "VIEW",
			Columns: []Column{{Name: "id", Type: "INT64"}, {Name: "ssn", Type: "STRING"}}, ViewQuery: "SELECT id, ssn FROM `acme.hr.people`"},
	}}
	a := newAnalyzer(t, src)
	got, err := a.Analyze(context.Background(), Input{SQL: "SELECT id FROM ML.PREDICT(MODEL pub.m, TABLE pub.v_people)", DefaultProject: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"acme.hr.people", "acme.pub.v_people"}; !reflect.DeepEqual(got.ReferencedTables, want) {
		t.Errorf("reads = %v, want %v (views %v)", got.ReferencedTables, want, got.Views)
	}
	if len(got.Lineage) != 1 || !got.Lineage[0].Unknown {
		t.Errorf("lineage = %+v, want one Unknown column", got.Lineage)
	}
}

// BenchmarkAnalyzeMLPredict: an uncached analysis of ML.PREDICT over a subquery (metadata
// cached), for comparison with BenchmarkAnalyzeMidSize.
func BenchmarkAnalyzeMLPredict(b *testing.B) {
	a, err := New(Options{Catalog: emulatorSource(b), CacheSize: -1})
	if err != nil {
		b.Fatal(err)
	}
	in := Input{SQL: "SELECT id, prediction FROM ML.PREDICT(MODEL crm.churn, (SELECT c.id, o.amount FROM crm.customers c JOIN crm.orders o ON o.customer_id = c.id))", DefaultProject: demoProject}
	if _, err := a.Analyze(context.Background(), in); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := a.Analyze(context.Background(), in); err != nil {
			b.Fatal(err)
		}
	}
}

// TestMLTableValuedFunctionSources: every result column of ML.PREDICT may come from every
// column the query scans, so a mask on any of them covers it (masking over-masks). With
// TABLE t every column of t is scanned; a subquery at least what it names.
func TestMLTableValuedFunctionSources(t *testing.T) {
	a := newAnalyzer(t, emulatorSource(t))
	for sql, want := range map[string][]string{
		"SELECT prediction, id FROM ML.PREDICT(MODEL crm.churn, TABLE crm.customers)": {
			customers + ".country", customers + ".email", customers + ".id", customers + ".lifetime_value", customers + ".name"},
		"SELECT prediction FROM ML.PREDICT(MODEL crm.churn, (SELECT id AS x FROM crm.customers WHERE email LIKE '%@x'))": {
			customers + ".email", customers + ".id"},
	} {
		got, err := a.Analyze(context.Background(), Input{SQL: sql, DefaultProject: demoProject})
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		for _, c := range got.Lineage {
			have := map[string]bool{}
			for _, s := range c.Sources {
				have[fmt.Sprint(s)] = true
			}
			for _, w := range want {
				if !c.Unknown || !have[w] {
					t.Errorf("%s: column %s unknown=%v sources %v, want unknown from at least %v", sql, c.Name, c.Unknown, c.Sources, want)
					break
				}
			}
		}
	}
}
