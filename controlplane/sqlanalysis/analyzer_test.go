package sqlanalysis

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/bigquery"
	"google.golang.org/api/option"

	"github.com/jitgate/jitgate/policies"
	"github.com/jitgate/jitgate/tools/freeport"
)

const (
	demoProject = "jitgate-demo"
	customers   = "jitgate-demo.crm.customers"
	orders      = "jitgate-demo.crm.orders"
)

// emulator starts the real BigQuery emulator once per test binary.
var emu struct {
	once   sync.Once
	url    string
	err    error
	skip   string
	cmd    *exec.Cmd
	source *BigQueryTableSource
}

func repoRoot(t testing.TB) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if emu.cmd != nil && emu.cmd.Process != nil {
		_ = emu.cmd.Process.Kill()
		_, _ = emu.cmd.Process.Wait()
	}
	os.Exit(code)
}

// emulatorSource returns a BigQueryTableSource over the emulator seeded with
// tools/demo/bigquery-data.yaml, skipping only when the emulator binary is absent.
func emulatorSource(t testing.TB) *BigQueryTableSource {
	t.Helper()
	emu.once.Do(func() {
		root := repoRoot(t)
		bin := filepath.Join(root, ".tools", "bin", "bigquery-emulator")
		if _, err := os.Stat(bin); err != nil {
			emu.skip = "BigQuery emulator not installed at " + bin + " (run `make setup` or tools/setup.sh)"
			return
		}
		port, grpcPort := freeport.For(t), freeport.For(t)
		cmd := exec.Command(bin, "--project="+demoProject, "--dataset=crm", "--host=127.0.0.1",
			"--port="+strconv.Itoa(port), "--grpc-port="+strconv.Itoa(grpcPort),
			"--data-from-yaml="+filepath.Join(root, "tools", "demo", "bigquery-data.yaml"), "--log-level=warn")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Start(); err != nil {
			emu.err = err
			return
		}
		emu.cmd = cmd
		emu.url = "http://127.0.0.1:" + strconv.Itoa(port)
		deadline := time.Now().Add(60 * time.Second)
		for {
			resp, err := http.Get(emu.url + "/bigquery/v2/projects/" + demoProject + "/datasets")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
			if time.Now().After(deadline) {
				emu.err = fmt.Errorf("emulator not ready after 60s: %v", err)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		client, err := bigquery.NewClient(context.Background(), demoProject,
			option.WithEndpoint(emu.url+"/bigquery/v2/"), option.WithoutAuthentication())
		if err != nil {
			emu.err = err
			return
		}
		emu.source = NewBigQueryTableSource(client)
	})
	if emu.skip != "" {
		t.Skip(emu.skip)
	}
	if emu.err != nil {
		t.Fatal(emu.err)
	}
	return emu.source
}

func newAnalyzer(t testing.TB, src TableSource) *Analyzer {
	t.Helper()
	a, err := New(Options{Catalog: src})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

var crmDefault = &DatasetRef{Project: demoProject, Dataset: "crm"}

type want struct {
	kind     string
	reads    []string
	writes   []string
	findings []policies.DenyRuleKind
	err      error // ErrLegacySQL / ErrUnanalysable / ErrCatalogUnavailable
	errHas   []policies.DenyRuleKind
}

func TestAnalyzeAgainstEmulator(t *testing.T) {
	src := emulatorSource(t)
	a := newAnalyzer(t, src)
	star := []policies.DenyRuleKind{policies.DenySelectStar}
	cases := []struct {
		name   string
		sql    string
		ds     *DatasetRef
		legacy bool
		params []Parameter
		want   want
	}{
		{name: "simple select", sql: "SELECT id, email FROM `jitgate-demo.crm.customers` WHERE country = 'GB'",
			want: want{kind: "SELECT", reads: []string{customers}}},
		{name: "dataset.table in job project", sql: "SELECT name FROM crm.customers",
			want: want{kind: "SELECT", reads: []string{customers}}},
		{name: "unqualified with default dataset", sql: "select NAME from customers", ds: crmDefault,
			want: want{kind: "SELECT", reads: []string{customers}}},
		{name: "unqualified without default dataset", sql: "SELECT name FROM customers",
			want: want{err: ErrUnanalysable}},
		{name: "backticked dotted path and its implicit alias", sql: "SELECT customers.email FROM `jitgate-demo.crm.customers`",
			want: want{kind: "SELECT", reads: []string{customers}}},
		{name: "backticked parts", sql: "SELECT c.email FROM `jitgate-demo`.`crm`.`customers` AS c",
			want: want{kind: "SELECT", reads: []string{customers}}},
		{name: "unquoted dashed project", sql: "SELECT email FROM jitgate-demo.crm.customers",
			want: want{kind: "SELECT", reads: []string{customers}}},
		{name: "alias join", sql: "SELECT c.name, o.amount FROM crm.customers c JOIN crm.orders o ON o.customer_id = c.id",
			want: want{kind: "SELECT", reads: []string{customers, orders}}},
		{name: "CTE hides table", sql: "WITH x AS (SELECT email AS e FROM crm.customers) SELECT e FROM x",
			want: want{kind: "SELECT", reads: []string{customers}}},
		{name: "subquery and comment hide table", sql: "SELECT (SELECT MAX(amount) FROM /* no tables here */ crm.orders) AS m, name FROM crm.customers",
			want: want{kind: "SELECT", reads: []string{customers, orders}}},
		{name: "IN subquery", sql: "SELECT order_id FROM crm.orders WHERE customer_id IN (SELECT id FROM crm.customers WHERE country='US')",
			want: want{kind: "SELECT", reads: []string{customers, orders}}},
		{name: "union", sql: "SELECT CAST(id AS STRING) FROM crm.customers UNION ALL SELECT order_id FROM crm.orders",
			want: want{kind: "SELECT", reads: []string{customers, orders}}},
		{name: "QUALIFY", sql: "SELECT customer_id, amount FROM crm.orders WHERE true QUALIFY ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY amount DESC) = 1",
			want: want{kind: "SELECT", reads: []string{orders}}},
		{name: "time travel", sql: "SELECT name FROM crm.customers FOR SYSTEM_TIME AS OF TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 1 HOUR)",
			want: want{kind: "SELECT", reads: []string{customers}}},
		{name: "named parameter", sql: "SELECT name FROM crm.customers WHERE country = @c", params: []Parameter{{Name: "c", Type: "STRING"}},
			want: want{kind: "SELECT", reads: []string{customers}}},
		{name: "positional parameter", sql: "SELECT name FROM crm.customers WHERE country = ?", params: []Parameter{{Type: "STRING"}},
			want: want{kind: "SELECT", reads: []string{customers}}},
		{name: "select star", sql: "SELECT * FROM crm.customers",
			want: want{kind: "SELECT", reads: []string{customers}, findings: star}},
		{name: "select t.* except", sql: "SELECT c.* EXCEPT (email) FROM crm.customers c",
			want: want{kind: "SELECT", reads: []string{customers}, findings: star}},
		{name: "count star is not select star", sql: "SELECT COUNT(*) FROM crm.customers",
			want: want{kind: "SELECT", reads: []string{customers}}},
		{name: "cross join", sql: "SELECT c.name, o.amount FROM crm.customers c CROSS JOIN crm.orders o",
			want: want{kind: "SELECT", reads: []string{customers, orders}, findings: []policies.DenyRuleKind{policies.DenyCrossJoin}}},
		{name: "insert select", sql: "INSERT INTO crm.orders (order_id, customer_id) SELECT CAST(id AS STRING), id FROM crm.customers",
			want: want{kind: "INSERT", reads: []string{customers}, writes: []string{orders}}},
		{name: "insert values", sql: "INSERT `jitgate-demo.crm.orders` (order_id) VALUES ('x')",
			want: want{kind: "INSERT", writes: []string{orders}}},
		{name: "update", sql: "UPDATE crm.customers SET email = NULL WHERE id = 1",
			want: want{kind: "UPDATE", reads: []string{customers}, writes: []string{customers}}},
		{name: "delete", sql: "DELETE FROM crm.orders WHERE customer_id IN (SELECT id FROM crm.customers)",
			want: want{kind: "DELETE", reads: []string{customers, orders}, writes: []string{orders}}},
		{name: "merge", sql: "MERGE crm.orders t USING crm.customers s ON t.customer_id = s.id WHEN MATCHED THEN DELETE",
			want: want{kind: "MERGE", reads: []string{customers, orders}, writes: []string{orders}}},
		{name: "create table as select", sql: "CREATE TABLE crm.copy AS SELECT * FROM crm.customers",
			want: want{kind: "CREATE_TABLE_AS_SELECT", reads: []string{customers}, writes: []string{"jitgate-demo.crm.copy"}, findings: star}},
		{name: "create table", sql: "CREATE TABLE `jitgate-demo.crm.t2` (x INT64)",
			want: want{kind: "CREATE_TABLE", writes: []string{"jitgate-demo.crm.t2"}}},
		{name: "drop table", sql: "DROP TABLE crm.orders",
			want: want{kind: "DROP_TABLE", writes: []string{orders}}},
		{name: "export data", sql: "EXPORT DATA OPTIONS (uri='gs://b/x-*.csv', format='CSV') AS SELECT email FROM crm.customers",
			want: want{kind: "EXPORT_DATA", reads: []string{customers}, findings: []policies.DenyRuleKind{policies.DenyExportData}}},
		{name: "execute immediate", sql: "EXECUTE IMMEDIATE 'SELECT email FROM crm.customers'",
			want: want{kind: "EXECUTE_IMMEDIATE", findings: []policies.DenyRuleKind{policies.DenyExecuteImmediate}}},
		{name: "information schema jobs", sql: "SELECT query, user_email FROM `region-us`.INFORMATION_SCHEMA.JOBS_BY_PROJECT",
			want: want{kind: "SELECT", reads: []string{"jitgate-demo.region-us.INFORMATION_SCHEMA.JOBS_BY_PROJECT"}, findings: []policies.DenyRuleKind{policies.DenyInformationSchemaJobs}}},
		{name: "information schema jobs unknown column", sql: "SELECT nonsense FROM region-us.INFORMATION_SCHEMA.JOBS",
			want: want{err: ErrUnanalysable, errHas: []policies.DenyRuleKind{policies.DenyInformationSchemaJobs}}},
		{name: "external query", sql: "SELECT * FROM EXTERNAL_QUERY('us.conn', 'SELECT 1')",
			want: want{err: ErrUnanalysable, errHas: []policies.DenyRuleKind{policies.DenyExternalQuery}}},
		{name: "multi-statement", sql: "SELECT name FROM crm.customers; DELETE FROM crm.orders WHERE true",
			want: want{kind: "SCRIPT", reads: []string{customers, orders}, writes: []string{orders}}},
		{name: "script with DECLARE", sql: "DECLARE x INT64 DEFAULT 1; SELECT name FROM crm.customers WHERE id = x",
			want: want{kind: "SCRIPT", reads: []string{customers}}},
		{name: "BEGIN END", sql: "BEGIN SELECT 1; END",
			want: want{err: ErrUnanalysable}},
		{name: "legacy flag", sql: "SELECT name FROM [jitgate-demo:crm.customers]", legacy: true,
			want: want{err: ErrLegacySQL}},
		{name: "legacy prefix", sql: "  #legacySQL\nSELECT name FROM crm.customers",
			want: want{err: ErrLegacySQL}},
		{name: "standardSQL prefix", sql: "#standardSQL\nSELECT name FROM crm.customers",
			want: want{kind: "SELECT", reads: []string{customers}}},
		{name: "syntax error", sql: "SELEC name FROM crm.customers",
			want: want{err: ErrUnanalysable}},
		{name: "unknown table", sql: "SELECT a FROM crm.nope",
			want: want{err: ErrUnanalysable}},
		{name: "unknown column", sql: "SELECT ssn FROM crm.customers",
			want: want{err: ErrUnanalysable}},
		{name: "wildcard table (tables.list on the emulator)", sql: "SELECT name FROM `jitgate-demo.crm.cust*`",
			want: want{kind: "SELECT", reads: []string{customers}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := Input{SQL: tc.sql, DefaultProject: demoProject, DefaultDataset: tc.ds, LegacySQL: tc.legacy, Parameters: tc.params}
			got, err := a.Analyze(context.Background(), in)
			check(t, got, err, tc.want)
		})
	}
}

func check(t *testing.T, got *Analysis, err error, w want) {
	t.Helper()
	if w.err != nil {
		if !errors.Is(err, w.err) {
			t.Fatalf("error = %v (analysis %+v), want %v", err, got, w.err)
		}
		var ae *AnalysisError
		if !errors.As(err, &ae) {
			t.Fatalf("error %T is not *AnalysisError", err)
		}
		if len(w.errHas) > 0 && !reflect.DeepEqual(ae.Findings, w.errHas) {
			t.Errorf("error findings = %v, want %v", ae.Findings, w.errHas)
		}
		t.Logf("error: %v", err)
		return
	}
	if err != nil {
		t.Fatalf("Analyze: %v", err)
	}
	if got.StatementKind != w.kind {
		t.Errorf("kind = %q, want %q", got.StatementKind, w.kind)
	}
	if _, ok := policies.StatementFamily(got.StatementKind); !ok {
		t.Errorf("kind %q is not one policies know", got.StatementKind)
	}
	if !reflect.DeepEqual(got.ReferencedTables, w.reads) {
		t.Errorf("reads = %v, want %v", got.ReferencedTables, w.reads)
	}
	if !reflect.DeepEqual(got.WrittenTables, w.writes) {
		t.Errorf("writes = %v, want %v", got.WrittenTables, w.writes)
	}
	if !reflect.DeepEqual(got.Findings, w.findings) {
		t.Errorf("findings = %v, want %v", got.Findings, w.findings)
	}
	for _, f := range got.Findings {
		if !slicesContains(policies.DenyRuleKinds, f) {
			t.Errorf("finding %q is not in policies.DenyRuleKinds", f)
		}
	}
}

func slicesContains[T comparable](xs []T, x T) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func TestCacheHit(t *testing.T) {
	src := emulatorSource(t)
	a := newAnalyzer(t, src)
	in := Input{SQL: "SELECT name FROM crm.customers WHERE id = 7", DefaultProject: demoProject}
	first, err := a.Analyze(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if first.Cached {
		t.Fatal("first analysis came from the cache")
	}
	second, err := a.Analyze(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if !second.Cached || second.Fingerprint != first.Fingerprint {
		t.Fatalf("second analysis cached=%v fp=%s, want cached with %s", second.Cached, second.Fingerprint, first.Fingerprint)
	}
	second.ReferencedTables[0] = "tampered"
	third, _ := a.Analyze(context.Background(), in)
	if third.ReferencedTables[0] != customers {
		t.Fatal("a caller's edit reached the cache")
	}
	// Everything in the fingerprint changes it.
	for _, other := range []Input{
		{SQL: in.SQL + " ", DefaultProject: demoProject},
		{SQL: in.SQL, DefaultProject: "other"},
		{SQL: in.SQL, DefaultProject: demoProject, DefaultDataset: crmDefault},
		{SQL: in.SQL, DefaultProject: demoProject, Parameters: []Parameter{{Name: "x", Type: "INT64"}}},
	} {
		if a.Fingerprint(other) == first.Fingerprint {
			t.Errorf("fingerprint of %+v equals the original", other)
		}
	}
	// Errors are not cached (a table may appear later).
	bad := Input{SQL: "SELECT 1 FROM crm.not_yet", DefaultProject: demoProject}
	n := a.CacheLen()
	if _, err := a.Analyze(context.Background(), bad); !errors.Is(err, ErrUnanalysable) {
		t.Fatalf("err = %v", err)
	}
	if a.CacheLen() != n {
		t.Error("a failed analysis was cached")
	}
}

func TestPolicyShape(t *testing.T) {
	src := emulatorSource(t)
	a := newAnalyzer(t, src)
	got, err := a.Analyze(context.Background(), Input{SQL: "SELECT * FROM crm.orders", DefaultProject: demoProject})
	if err != nil {
		t.Fatal(err)
	}
	p := got.ToPolicy()
	want := &policies.Analysis{StatementKind: "SELECT", ReferencedTables: []string{orders}, Findings: []policies.DenyRuleKind{policies.DenySelectStar},
		FindingTables: map[policies.DenyRuleKind][]string{policies.DenySelectStar: {orders}}}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("ToPolicy = %+v, want %+v", p, want)
	}
}

// fakeSource is an in-memory TableSource for views and failure modes the emulator's seed
// does not have.
type fakeSource struct {
	tables map[string]*TableMeta
	err    error
}

func (f *fakeSource) Table(_ context.Context, p, d, t string) (*TableMeta, error) {
	if f.err != nil {
		return nil, f.err
	}
	if m, ok := f.tables[p+"."+d+"."+t]; ok {
		return m, nil
	}
	return nil, fmt.Errorf("%s.%s.%s: %w", p, d, t, ErrTableNotFound)
}

func TestViews(t *testing.T) {
	users := &TableMeta{Project: "acme", Dataset: "crm", Table: "users", Type: "TABLE",
		Columns: []Column{{Name: "id", Type: "INTEGER"}, {Name: "ssn", Type: "STRING"},
			{Name: "addr", Type: "RECORD", Fields: []Column{{Name: "city", Type: "STRING"}}}, {Name: "tags", Type: "STRING", Repeated: true}}}
	src := &fakeSource{tables: map[string]*TableMeta{
		"acme.crm.users": users,
		"acme.pub.v_users": {Project: "acme", Dataset: "pub", Table: "v_users", Type: "VIEW",
			Columns: []Column{{Name: "id", Type: "INTEGER"}, {Name: "ssn", Type: "STRING"}}, ViewQuery: "SELECT id, ssn FROM crm.users"},
		"acme.pub.v_nested": {Project: "acme", Dataset: "pub", Table: "v_nested", Type: "VIEW",
			Columns: []Column{{Name: "ssn", Type: "STRING"}}, ViewQuery: "SELECT ssn FROM `acme.pub.v_users`"},
		"acme.pub.v_broken": {Project: "acme", Dataset: "pub", Table: "v_broken", Type: "VIEW",
			Columns: []Column{{Name: "x", Type: "STRING"}}, ViewQuery: "SELECT x FROM crm.gone"},
		"acme.pub.v_legacy": {Project: "acme", Dataset: "pub", Table: "v_legacy", Type: "VIEW",
			Columns: []Column{{Name: "x", Type: "STRING"}}, ViewQuery: "SELECT x FROM [acme:crm.users]", ViewLegacySQL: true},
		"acme.pub.v_loop": {Project: "acme", Dataset: "pub", Table: "v_loop", Type: "VIEW",
			Columns: []Column{{Name: "x", Type: "STRING"}}, ViewQuery: "SELECT x FROM pub.v_loop"},
		"acme.crm.part": {Project: "acme", Dataset: "crm", Table: "part", Type: "TABLE", IngestionTimePartitioned: true,
			Columns: []Column{{Name: "v", Type: "STRING"}}},
	}}
	a := newAnalyzer(t, src)
	cases := []struct {
		name string
		sql  string
		want want
	}{
		{"backticked path alias (GOOGLESQL.md example)", "SELECT users.ssn FROM `acme.crm.users`",
			want{kind: "SELECT", reads: []string{"acme.crm.users"}}},
		{"struct, array and unnest", "SELECT u.addr.city, t FROM acme.crm.users u, UNNEST(u.tags) t",
			want{kind: "SELECT", reads: []string{"acme.crm.users"}}},
		{"view expands to base table", "SELECT ssn FROM pub.v_users",
			want{kind: "SELECT", reads: []string{"acme.crm.users", "acme.pub.v_users"}}},
		{"nested views", "SELECT ssn FROM pub.v_nested",
			want{kind: "SELECT", reads: []string{"acme.crm.users", "acme.pub.v_nested", "acme.pub.v_users"}}},
		{"view with broken body", "SELECT x FROM pub.v_broken", want{err: ErrUnanalysable}},
		{"legacy view", "SELECT x FROM pub.v_legacy", want{err: ErrUnanalysable}},
		{"self-referencing view terminates", "SELECT x FROM pub.v_loop",
			want{kind: "SELECT", reads: []string{"acme.pub.v_loop"}}},
		{"ingestion-time partition pseudo-column", "SELECT v FROM crm.part WHERE _PARTITIONDATE = '2026-01-01'",
			want{kind: "SELECT", reads: []string{"acme.crm.part"}}},
		{"temp function", "CREATE TEMP FUNCTION f(x STRING) AS (x); SELECT f(ssn) FROM crm.users",
			want{err: ErrUnanalysable, errHas: []policies.DenyRuleKind{policies.DenyTemporaryFunction}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := a.Analyze(context.Background(), Input{SQL: tc.sql, DefaultProject: "acme"})
			check(t, got, err, tc.want)
		})
	}
}

func TestCatalogUnavailable(t *testing.T) {
	a := newAnalyzer(t, &fakeSource{err: errors.New("connection refused")})
	_, err := a.Analyze(context.Background(), Input{SQL: "SELECT 1 FROM crm.users", DefaultProject: "acme"})
	if !errors.Is(err, ErrCatalogUnavailable) {
		t.Fatalf("err = %v, want ErrCatalogUnavailable", err)
	}
}

func TestConcurrentAnalyses(t *testing.T) {
	src := emulatorSource(t)
	a, err := New(Options{Catalog: src, CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := 0; j < 5; j++ {
				sql := fmt.Sprintf("SELECT name FROM crm.customers WHERE id = %d", i*10+j)
				ds := crmDefault
				if j%2 == 0 {
					sql = fmt.Sprintf("SELECT amount FROM orders WHERE customer_id = %d", i)
				}
				got, err := a.Analyze(context.Background(), Input{SQL: sql, DefaultProject: demoProject, DefaultDataset: ds})
				if err != nil {
					errs <- err
					return
				}
				if len(got.ReferencedTables) != 1 {
					errs <- fmt.Errorf("%s: reads %v", sql, got.ReferencedTables)
				}
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

const midSizeQuery = `
WITH recent AS (
  SELECT customer_id, amount, ordered_at
  FROM crm.orders
  WHERE ordered_at >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 90 DAY)
),
totals AS (
  SELECT customer_id, SUM(amount) AS total, COUNT(*) AS n, MAX(ordered_at) AS last_order
  FROM recent
  GROUP BY customer_id
)
SELECT c.id, c.name, c.country, t.total, t.n, t.last_order,
       RANK() OVER (PARTITION BY c.country ORDER BY t.total DESC) AS country_rank,
       CASE WHEN t.total > 1000 THEN 'gold' WHEN t.total > 100 THEN 'silver' ELSE 'bronze' END AS tier
FROM ` + "`jitgate-demo.crm.customers`" + ` AS c
LEFT JOIN totals t ON t.customer_id = c.id
WHERE c.country IN ('GB', 'US', 'NL') AND c.lifetime_value > 50
QUALIFY country_rank <= 10
ORDER BY c.country, country_rank`

func BenchmarkAnalyzeMidSize(b *testing.B) {
	src := emulatorSource(b)
	in := Input{SQL: midSizeQuery, DefaultProject: demoProject}
	b.Run("uncached", func(b *testing.B) {
		a, err := New(Options{Catalog: src, CacheSize: -1})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := a.Analyze(context.Background(), in); err != nil { // warm the metadata cache
			b.Fatal(err)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := a.Analyze(context.Background(), in); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		a := newAnalyzer(b, src)
		if _, err := a.Analyze(context.Background(), in); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := a.Analyze(context.Background(), in); err != nil {
				b.Fatal(err)
			}
		}
	})
}
