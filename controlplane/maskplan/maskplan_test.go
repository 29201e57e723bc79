package maskplan

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/jitgate/jitgate/controlplane/sqlanalysis"
	"github.com/jitgate/jitgate/filter/authorize"
	"github.com/jitgate/jitgate/filter/masking"
	"github.com/jitgate/jitgate/policies"
)

// memCatalog is an in-memory tables.get for the real analyser.
type memCatalog map[string]*sqlanalysis.TableMeta

func (m memCatalog) Table(_ context.Context, p, d, t string) (*sqlanalysis.TableMeta, error) {
	if x, ok := m[p+"."+d+"."+t]; ok {
		return x, nil
	}
	return nil, fmt.Errorf("%s.%s.%s: %w", p, d, t, sqlanalysis.ErrTableNotFound)
}

var usersColumns = []sqlanalysis.Column{
	{Name: "id", Type: "INTEGER", Required: true}, {Name: "name", Type: "STRING"}, {Name: "email", Type: "STRING"},
	{Name: "ssn", Type: "STRING"}, {Name: "country", Type: "STRING"},
	{Name: "addr", Type: "RECORD", Fields: []sqlanalysis.Column{{Name: "city", Type: "STRING"}, {Name: "zip", Type: "STRING"}}},
	{Name: "emails", Type: "STRING", Repeated: true}, {Name: "amount", Type: "NUMERIC"},
}

func catalog() memCatalog {
	return memCatalog{
		"acme.crm.users": {Project: "acme", Dataset: "crm", Table: "users", Type: "TABLE", Columns: usersColumns},
		"acme.crm.scratch": {Project: "acme", Dataset: "crm", Table: "scratch", Type: "TABLE",
			Columns: []sqlanalysis.Column{{Name: "v", Type: "STRING"}}},
		"acme.pub.v_users": {Project: "acme", Dataset: "pub", Table: "v_users", Type: "VIEW",
			Columns:   []sqlanalysis.Column{{Name: "who", Type: "STRING"}, {Name: "mail", Type: "STRING"}},
			ViewQuery: "SELECT name AS who, LOWER(email) AS mail FROM crm.users"},
	}
}

// rules is the policy side: email email-domain (COUNT DISTINCT allowed), ssn redact,
// addr.city hash, emails last4, amount null (SUM allowed).
var rules = policies.MaskPlan{
	{Columns: "acme.crm.users.email", Action: policies.MaskEmailDomain, AllowAggregates: []string{"COUNT_DISTINCT"}},
	{Columns: "acme.crm.users.ssn", Action: policies.MaskRedact},
	{Columns: "acme.crm.users.addr.city", Action: policies.MaskHash},
	{Columns: "acme.*.users.emails", Action: policies.MaskLast4},
	{Columns: "acme.crm.users.amount", Action: policies.MaskNull, AllowAggregates: []string{"SUM", "AVG"}},
}

var testKey = []byte("0123456789abcdef0123456789abcdef")

func analyse(t *testing.T, sql string) *sqlanalysis.Analysis {
	t.Helper()
	an, err := sqlanalysis.New(sqlanalysis.Options{Catalog: catalog()})
	if err != nil {
		t.Fatal(err)
	}
	a, err := an.Analyze(context.Background(), sqlanalysis.Input{SQL: sql, DefaultProject: "acme",
		DefaultDataset: &sqlanalysis.DatasetRef{Project: "acme", Dataset: "crm"}})
	if err != nil {
		t.Fatalf("analyse %q: %v", sql, err)
	}
	return a
}

// show renders rules as "path:action".
func show(m *authorize.Masking) []string {
	if m == nil {
		return nil
	}
	var out []string
	for _, r := range m.Rules {
		out = append(out, fmt.Sprintf("%v:%s", r.Path, r.Action))
	}
	return out
}

func TestQueryRules(t *testing.T) {
	cases := []struct {
		name string
		sql  string
		want []string // nil: no rule
	}{
		{"alias", "SELECT email AS e, id FROM crm.users", []string{"[0]:email-domain"}},
		{"function", "SELECT id, REVERSE(ssn) AS r, UPPER(name) AS n FROM crm.users", []string{"[1]:redact"}},
		{"several functions", "SELECT TO_BASE64(CAST(CONCAT(SUBSTR(email, 2), 'x') AS BYTES)) AS b FROM crm.users", []string{"[0]:email-domain"}},
		{"strongest source wins", "SELECT CONCAT(email, ssn) AS c FROM crm.users", []string{"[0]:redact"}},
		{"CTE", "WITH x AS (SELECT ssn AS s, id FROM crm.users) SELECT id, s FROM x", []string{"[1]:redact"}},
		{"subquery", "SELECT y.f FROM (SELECT LOWER(email) AS f FROM crm.users) AS y", []string{"[0]:email-domain"}},
		{"UNION ALL is positional", "SELECT name, id FROM crm.users UNION ALL SELECT email, id FROM crm.users", []string{"[0]:email-domain"}},
		{"TO_JSON_STRING of a row", "SELECT id, TO_JSON_STRING(u) AS j FROM crm.users u", []string{"[1]:redact"}},
		{"FORMAT %T of a row", "SELECT FORMAT('%T', u) AS j FROM crm.users u", []string{"[0]:redact"}},
		{"STRUCT packing maps fields to positions", "SELECT id, STRUCT(name, email AS e, STRUCT(ssn AS s, country) AS sub) AS p FROM crm.users",
			[]string{"[1 1]:email-domain", "[1 2 0]:redact"}},
		{"row as a value: every field judged", "SELECT u FROM crm.users u",
			[]string{"[0 2]:email-domain", "[0 3]:redact", "[0 5]:hash", "[0 6]:last4", "[0 7]:null"}},
		{"ARRAY_AGG of STRUCT keeps positions", "SELECT country, ARRAY_AGG(STRUCT(id, ssn)) AS a FROM crm.users GROUP BY country",
			[]string{"[1 1]:redact"}},
		{"nested mask covers its whole top-level column", "SELECT addr FROM crm.users", []string{"[0]:hash"}},
		{"nested field read is over-approximated to its column", "SELECT addr.zip AS z FROM crm.users", []string{"[0]:hash"}},
		{"UNNEST of a sensitive array", "SELECT e FROM crm.users, UNNEST(emails) AS e", []string{"[0]:last4"}},
		{"allowed aggregate", "SELECT country, COUNT(DISTINCT email) AS n FROM crm.users GROUP BY country", nil},
		{"allowed aggregate through a function", "SELECT CAST(COUNT(DISTINCT LOWER(email)) AS STRING) AS n FROM crm.users", nil},
		{"counting aggregate not listed", "SELECT COUNT(email) AS n FROM crm.users", []string{"[0]:email-domain"}},
		{"COUNT DISTINCT of a column allowing nothing", "SELECT COUNT(DISTINCT ssn) AS n FROM crm.users", []string{"[0]:redact"}},
		{"value-revealing aggregate", "SELECT MAX(email) AS m FROM crm.users", []string{"[0]:email-domain"}},
		{"STRING_AGG", "SELECT STRING_AGG(email, ',') AS m FROM crm.users", []string{"[0]:email-domain"}},
		{"ANY_VALUE", "SELECT country, ANY_VALUE(ssn) AS s FROM crm.users GROUP BY country", []string{"[1]:redact"}},
		{"allowed and revealing aggregates of one source", "SELECT CONCAT(CAST(COUNT(DISTINCT email) AS STRING), MAX(email)) AS m FROM crm.users",
			[]string{"[0]:email-domain"}},
		{"allowed aggregate mixed with an unmasked column", "SELECT CONCAT(CAST(COUNT(DISTINCT email) AS STRING), MAX(name)) AS m FROM crm.users", nil},
		{"SUM allowed", "SELECT country, SUM(amount) AS s, AVG(amount) AS a FROM crm.users GROUP BY country", nil},
		{"SUM DISTINCT is not SUM", "SELECT SUM(DISTINCT amount) AS s FROM crm.users", []string{"[0]:null"}},
		{"COALESCE", "SELECT COALESCE(ssn, name) AS c FROM crm.users", []string{"[0]:redact"}},
		{"CASE value (not condition)", "SELECT CASE WHEN id > 3 THEN email ELSE name END AS c FROM crm.users", []string{"[0]:email-domain"}},
		{"scalar subquery", "SELECT (SELECT MAX(ssn) FROM crm.users) AS s", []string{"[0]:redact"}},
		{"view resolved to base columns", "SELECT who, mail FROM pub.v_users", []string{"[1]:email-domain"}},
		{"value table without masked columns", "SELECT AS STRUCT id, country FROM crm.users", nil},
		{"unmasked columns only", "SELECT id, name, country FROM crm.users", nil},
		{"JSON functions", "SELECT JSON_VALUE(TO_JSON_STRING(STRUCT(ssn)), '$.ssn') AS s FROM crm.users", []string{"[0]:redact"}},
	}
	b := NewBuilder(testKey)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := analyse(t, tc.sql)
			m, err := b.Query(a, rules, nil, false)
			if err != nil {
				t.Fatalf("Query: %v", err)
			}
			if got := show(m); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("rules = %q, want %q\nlineage: %+v", got, tc.want, a.Lineage)
			}
			if m != nil {
				hashes := strings.Contains(strings.Join(show(m), " "), "hash")
				if (m.HashKey != "") != hashes {
					t.Errorf("hash key sent = %v, a rule hashes = %v", m.HashKey != "", hashes)
				}
				if hashes && m.HashKey != base64.StdEncoding.EncodeToString(testKey) {
					t.Errorf("hash key is not the configured one")
				}
				doc, err := authorize.Response{Version: authorize.Version, DecisionID: "d", Decision: authorize.Allow, Masking: m,
					Identity: &authorize.Identity{AgentID: "a"}, Credential: &authorize.Credential{Authorization: "Bearer x", ID: "c", ExpiresAtUnix: 1}}.Marshal()
				if err != nil {
					t.Fatalf("the contract refuses the plan: %v", err)
				}
				if _, err := authorize.ParseResponse(doc); err != nil {
					t.Fatalf("the filter would refuse the plan: %v", err)
				}
				// Every rule path fits the result's schema (the analyser's types): the
				// masking engine compiles the plan against it.
				p, err := m.Plan()
				if err != nil {
					t.Fatal(err)
				}
				if len(a.ResultSchema) == 0 {
					t.Fatal("no result schema")
				}
				if _, _, _, err := masking.MaskResponse([]byte(`{"rows":[]}`), SchemaOf(a.ResultSchema), p); err != nil {
					t.Errorf("plan does not fit the result schema %+v: %v", a.ResultSchema, err)
				}
			}
		})
	}
}

func TestQueryRefusals(t *testing.T) {
	cases := []struct {
		name, sql   string
		writesTable bool
		plan        policies.MaskPlan
		reason      string
		msgHas      string
	}{
		{name: "predicate on a masked column", sql: "SELECT id FROM crm.users WHERE ssn = '123-45-6789'", reason: ReasonMaskedCondition, msgHas: "acme.crm.users.ssn"},
		{name: "CASE condition spells a masked value", sql: "SELECT id, CASE WHEN SUBSTR(ssn, 1, 1) = '1' THEN 1 WHEN SUBSTR(ssn, 1, 1) = '2' THEN 2 ELSE 0 END AS d FROM crm.users",
			reason: ReasonMaskedCondition},
		{name: "JOIN on a masked column", sql: "SELECT a.id FROM crm.users a JOIN crm.users b ON a.email = b.name", reason: ReasonMaskedCondition},
		{name: "GROUP BY a masked column", sql: "SELECT COUNT(*) AS n FROM crm.users GROUP BY email", reason: ReasonMaskedCondition},
		{name: "ORDER BY a masked column", sql: "SELECT id FROM crm.users ORDER BY ssn", reason: ReasonMaskedCondition},
		{name: "IN subquery on a masked column", sql: "SELECT id FROM crm.users WHERE id IN (SELECT id FROM crm.users WHERE email LIKE 'a%')", reason: ReasonMaskedCondition},
		{name: "multi-statement script", sql: "SELECT 1 AS one; SELECT email FROM crm.users", reason: ReasonUnresolvable, msgHas: "script"},
		{name: "DML copies masked values", sql: "INSERT INTO crm.scratch (v) SELECT email FROM crm.users", reason: ReasonUnresolvable, msgHas: "INSERT"},
		{name: "destination table", sql: "SELECT email FROM crm.users", writesTable: true, reason: ReasonUnresolvable, msgHas: "destination"},
		{name: "mask on a view column", sql: "SELECT who FROM pub.v_users", reason: ReasonUnresolvable, msgHas: "view acme.pub.v_users",
			plan: policies.MaskPlan{{Columns: "acme.pub.v_users.mail", Action: policies.MaskRedact}}},
		{name: "wildcard mask matching a view column", sql: "SELECT who FROM pub.v_users", reason: ReasonUnresolvable, msgHas: "acme.*.*.who",
			plan: policies.MaskPlan{{Columns: "acme.*.*.who", Action: policies.MaskRedact}}},
		{name: "hash without a key", sql: "SELECT addr FROM crm.users", reason: ReasonKeyUnavailable},
		{name: "value table", sql: "SELECT AS STRUCT id, email FROM crm.users", reason: ReasonUnresolvable, msgHas: "value table"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBuilder(testKey)
			if tc.reason == ReasonKeyUnavailable {
				b = NewBuilder(nil)
			}
			plan := rules
			if tc.plan != nil {
				plan = tc.plan
			}
			m, err := b.Query(analyse(t, tc.sql), plan, nil, tc.writesTable)
			r, ok := errors.AsType[*Refusal](err)
			if !ok || m != nil {
				t.Fatalf("Query = %+v, %v; want refusal %s", m, err, tc.reason)
			}
			if r.Reason != tc.reason || r.Status != 403 || !strings.Contains(r.Message, tc.msgHas) {
				t.Errorf("refusal = %d %s %q, want 403 %s containing %q", r.Status, r.Reason, r.Message, tc.reason, tc.msgHas)
			}
		})
	}
}

func TestQueryWithoutMasks(t *testing.T) {
	b := NewBuilder(nil)
	a := analyse(t, "SELECT email, ssn FROM crm.users WHERE ssn = 'x'")
	// No rules, no detectors: nothing to send.
	if m, err := b.Query(a, nil, nil, false); m != nil || err != nil {
		t.Errorf("no masks: %+v, %v", m, err)
	}
	// Detectors only: they go through, with no rule, whatever the query does.
	m, err := b.Query(a, nil, []policies.Detector{"ssn", "email"}, true)
	if err != nil || m == nil || len(m.Rules) != 0 || !reflect.DeepEqual(m.Detectors, []string{"email", "ssn"}) || m.HashKey != "" {
		t.Errorf("detectors only: %+v, %v", m, err)
	}
	// Masks that name other tables do not apply (even to a script or a destination).
	other := policies.MaskPlan{{Columns: "acme.hr.people.salary", Action: policies.MaskRedact}}
	if m, err := b.Query(a, other, nil, true); m != nil || err != nil {
		t.Errorf("masks on other tables: %+v, %v", m, err)
	}
	script := analyse(t, "SELECT 1 AS one; SELECT v FROM crm.scratch")
	if m, err := b.Query(script, rules, []policies.Detector{"ssn"}, false); err != nil || m == nil || len(m.Rules) != 0 {
		t.Errorf("script reading no masked table: %+v, %v", m, err)
	}
	// A wildcard rule that matches the view's table but none of its columns does not
	// refuse a query of the view (the view was read: acme.pub.v_users).
	ssnAnywhere := policies.MaskPlan{{Columns: "acme.*.*.ssn", Action: policies.MaskRedact}}
	// It masks no cell; the (empty) instruction only withholds error messages, since the
	// view reads a table with a masked column.
	if m, err := b.Query(analyse(t, "SELECT who, mail FROM pub.v_users"), ssnAnywhere, nil, false); err != nil || m == nil || len(m.Rules) != 0 {
		t.Errorf("wildcard rule naming no view column: %+v, %v", m, err)
	}
	// Analysis missing while masks exist: refused.
	if _, err := b.Query(nil, rules, nil, false); err == nil {
		t.Error("no analysis: want a refusal")
	}
}

// An Unknown column (the walker did not model its expression) is masked by every masked
// source it may come from, even where the analysis claims completeness.
func TestUnknownLineageIsMasked(t *testing.T) {
	a := &sqlanalysis.Analysis{StatementKind: "SELECT", ReferencedTables: []string{"acme.crm.users"}, LineageComplete: true,
		Lineage: []sqlanalysis.OutputColumn{
			{Name: "x", Position: 0, Unknown: true, ValueRevealing: true,
				Sources: []sqlanalysis.SourceColumn{{Table: "acme.crm.users", Column: "email"}, {Table: "acme.crm.users", Column: "id"}},
				Flows: []sqlanalysis.SourceFlow{{Source: sqlanalysis.SourceColumn{Table: "acme.crm.users", Column: "email"}, OnlyAggregated: true, Aggregates: []string{"COUNT DISTINCT"}},
					{Source: sqlanalysis.SourceColumn{Table: "acme.crm.users", Column: "id"}}}},
			{Name: "y", Position: 1, Via: sqlanalysis.ViaDirect, Sources: []sqlanalysis.SourceColumn{{Table: "acme.crm.users", Column: "id"}}},
			// Sources without flows (an older analysis) count as revealed directly.
			{Name: "z", Position: 2, Via: sqlanalysis.ViaAggregate, Sources: []sqlanalysis.SourceColumn{{Table: "acme.crm.users", Column: "ssn"}}},
		}}
	m, err := NewBuilder(nil).Query(a, rules, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := show(m), []string{"[0]:email-domain", "[2]:redact"}; !reflect.DeepEqual(got, want) {
		t.Errorf("rules = %q, want %q", got, want)
	}
	// Incomplete lineage over a masked table is refused, not guessed.
	a.LineageComplete, a.LineageGaps = false, []string{"WITH RECURSIVE"}
	if _, err := NewBuilder(nil).Query(a, rules, nil, false); err == nil || !strings.Contains(err.Error(), "WITH RECURSIVE") {
		t.Errorf("incomplete lineage: %v", err)
	}
}

func TestTable(t *testing.T) {
	schema := SchemaOf(usersColumns)
	m, err := NewBuilder(testKey).Table("acme.crm.users", schema, rules, []policies.Detector{"phone"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"[2]:email-domain", "[3]:redact", "[5 0]:hash", "[6]:last4", "[7]:null"}
	if got := show(m); !reflect.DeepEqual(got, want) {
		t.Errorf("rules = %q, want %q", got, want)
	}
	if m.Schema != schema || m.HashKey == "" || !reflect.DeepEqual(m.Detectors, []string{"phone"}) {
		t.Errorf("masking = %+v", m)
	}
	if schema.Fields[0].Mode != "REQUIRED" || schema.Fields[6].Mode != "REPEATED" || schema.Fields[5].Fields[1].Name != "zip" {
		t.Errorf("schema = %+v", schema.Fields)
	}
	// The engine accepts the plan against that schema.
	p, err := m.Plan()
	if err != nil {
		t.Fatal(err)
	}
	page := `{"rows":[{"f":[{"v":"1"},{"v":"Ann"},{"v":"ann@x.example"},{"v":"123-45-6789"},{"v":"FR"},{"v":{"f":[{"v":"Paris"},{"v":"75001"}]}},{"v":[{"v":"a@b.example"}]},{"v":"12.5"}]}]}`
	out, _, _, err := masking.MaskResponse([]byte(page), schema, p)
	if err != nil {
		t.Fatalf("engine: %v", err)
	}
	for _, canary := range []string{"123-45-6789", "ann@", "Paris", "a@b.example", "12.5"} {
		if strings.Contains(string(out), canary) {
			t.Errorf("masked page still has %q: %s", canary, out)
		}
	}
	// A wildcard column pattern and a table without masks.
	m, err = NewBuilder(nil).Table("acme.crm.other", schema, policies.MaskPlan{{Columns: "acme.*.users.ssn", Action: policies.MaskRedact}}, nil)
	if m != nil || err != nil {
		t.Errorf("table without masks: %+v, %v", m, err)
	}
}

func TestFollowUp(t *testing.T) {
	b := NewBuilder(testKey)
	basis := Basis(rules, []policies.Detector{"ssn"})
	if basis == "" || basis != Basis(append(policies.MaskPlan{}, rules...), []policies.Detector{"ssn"}) {
		t.Fatalf("basis %q not stable", basis)
	}
	st := &Stored{Rules: []masking.Rule{{Path: []int{1}, Action: masking.Hash}}, Detectors: []string{"ssn"}, Basis: basis}
	schema := SchemaOf(usersColumns)
	m, err := b.FollowUp(st, basis, schema)
	if err != nil || m == nil || show(m)[0] != "[1]:hash" || m.HashKey == "" || m.Schema != schema {
		t.Fatalf("follow-up: %+v, %v", m, err)
	}
	// Rules changed since the job ran (tightened or relaxed): refused.
	changed := Basis(rules[:1], []policies.Detector{"ssn"})
	if _, err := b.FollowUp(st, changed, schema); err == nil || !strings.Contains(err.Error(), ReasonMaskingChanged) {
		t.Errorf("changed rules: %v", err)
	}
	// A job recorded without masking, now under masking rules: refused.
	if _, err := b.FollowUp(nil, basis, schema); err == nil {
		t.Error("job without a plan under masking rules: want a refusal")
	}
	// Nothing to mask then and now.
	if m, err := b.FollowUp(nil, "", nil); m != nil || err != nil {
		t.Errorf("no masking: %+v, %v", m, err)
	}
}

// TestAggregatedMaskedReadWithholdsMessages: a query whose masked values all fold into
// allowed aggregates masks no cell, but still gets an (empty) instruction, so the filter
// withholds BigQuery's error messages (SUM(CAST(ssn AS INT64)) quotes the ssn); a query
// reading no masked table gets none.
func TestAggregatedMaskedReadWithholdsMessages(t *testing.T) {
	b := NewBuilder(testKey)
	for sql, want := range map[string]bool{
		"SELECT country, COUNT(DISTINCT email) AS n FROM crm.users GROUP BY country": true,
		"SELECT SUM(amount) AS s FROM crm.users":                                     true,
		"SELECT 1 AS one":                                                            false,
	} {
		m, err := b.Query(analyse(t, sql), rules, nil, false)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		if (m != nil) != want {
			t.Errorf("%s: instruction %+v, want one = %v", sql, m, want)
		}
		if m != nil && (len(m.Rules) > 0 || m.HashKey != "") {
			t.Errorf("%s: rules %+v (key sent: %v), want none", sql, m.Rules, m.HashKey != "")
		}
	}
}

// TestAnonymousDatasetRefused: another query's results (an anonymous "_" dataset) hold
// unmasked values no rule names; an agent with masking rules may not read them with SQL.
func TestAnonymousDatasetRefused(t *testing.T) {
	a := &sqlanalysis.Analysis{StatementKind: "SELECT", LineageComplete: true,
		ReferencedTables: []string{"acme._0f3a9b.anon7c1d"}}
	m, err := NewBuilder(testKey).Query(a, rules, nil, false)
	r, ok := errors.AsType[*Refusal](err)
	if !ok || m != nil || r.Reason != ReasonUnresolvable || !strings.Contains(r.Message, "acme._0f3a9b.anon7c1d") {
		t.Fatalf("Query = %+v, %v; want refusal %s naming the table", m, err, ReasonUnresolvable)
	}
	if m, err := NewBuilder(testKey).Query(a, nil, nil, false); err != nil || m != nil {
		t.Errorf("without masking rules: %+v, %v; want no instruction and no refusal", m, err)
	}
}

// TestStoredWithholdOnly: a job answered with an instruction without rules (its masked
// values folded into allowed aggregates) keeps withholding error messages on jobs.get and
// later pages; a job answered without any instruction gets none.
func TestStoredWithholdOnly(t *testing.T) {
	b := NewBuilder(testKey)
	schema := &masking.Schema{Fields: []masking.Field{{Name: "n", Type: "INTEGER"}}}
	withhold := &Stored{Basis: "b1", Withhold: true}
	if m, err := b.Job(withhold); err != nil || m == nil || len(m.Rules) != 0 {
		t.Errorf("Job(withhold) = %+v, %v; want an empty instruction", m, err)
	}
	if m, err := b.FollowUp(withhold, "b1", schema); err != nil || m == nil || len(m.Rules) != 0 || m.Schema != schema {
		t.Errorf("FollowUp(withhold) = %+v, %v; want an empty instruction with the schema", m, err)
	}
	plain := &Stored{Basis: "b1"}
	if m, err := b.Job(plain); err != nil || m != nil {
		t.Errorf("Job(plain) = %+v, %v; want none", m, err)
	}
	if m, err := b.FollowUp(plain, "b1", schema); err != nil || m != nil {
		t.Errorf("FollowUp(plain) = %+v, %v; want none", m, err)
	}
}
