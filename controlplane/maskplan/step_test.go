package maskplan

import (
	"context"
	"reflect"
	"testing"

	"github.com/jitgate/jitgate/controlplane/authz"
	"github.com/jitgate/jitgate/controlplane/jobs"
	"github.com/jitgate/jitgate/controlplane/policystep"
	"github.com/jitgate/jitgate/controlplane/sqlanalysis"
	"github.com/jitgate/jitgate/filter/authorize"
	"github.com/jitgate/jitgate/filter/masking"
	"github.com/jitgate/jitgate/policies"
)

// memJobs is an in-memory job ledger view.
type memJobs map[string]*jobs.Job

func (m memJobs) Job(_ context.Context, project, jobID string) (*jobs.Job, error) {
	return m["job:"+project+"."+jobID], nil
}

func (m memJobs) ResultTable(_ context.Context, project, dataset, table string) (*jobs.Job, error) {
	return m["table:"+project+"."+dataset+"."+table], nil
}

// TestStepMetadataCalls: tables.get gets the plan tabledata.list of the same table gets
// (a result table: the job's; a base table: SELECT *; a view: none), jobs.get and
// jobs.cancel of a masked job get the job's plan even after the rules changed, and
// jobs.list is refused while the agent's results are masked.
func TestStepMetadataCalls(t *testing.T) {
	basis := Basis(rules, nil)
	stored := []masking.Rule{{Path: []int{1}, Action: masking.Redact}, {Path: []int{2}, Action: masking.Hash}}
	job := &jobs.Job{Agent: "a", JobID: "j1", Project: "acme", ResultTable: "acme._anon.r1",
		Masking: &jobs.Masking{Rules: stored, Basis: basis}}
	plain := &jobs.Job{Agent: "a", JobID: "j2", Project: "acme"}
	led := memJobs{"job:acme.j1": job, "table:acme._anon.r1": job, "job:acme.j2": plain}
	cat := catalog()
	cat["acme._anon.r1"] = &sqlanalysis.TableMeta{Project: "acme", Dataset: "_anon", Table: "r1", Type: "TABLE", Columns: usersColumns[:3]}
	step, err := Step(StepOptions{Builder: NewBuilder(testKey), Tables: cat, Jobs: led})
	if err != nil {
		t.Fatal(err)
	}
	run := func(call authorize.Call, plan policies.MaskPlan) (*authz.Call, *authz.Denial) {
		call.Project = "acme"
		c := &authz.Call{Request: authorize.Request{Call: call}, Decision: &policies.Decision{Allow: true, MaskPlan: plan}}
		return c, step.Run(context.Background(), c)
	}
	// tables.get of the result table: the job's rules with the table's schema.
	c, d := run(authorize.Call{API: "tables.get", Dataset: "_anon", Table: "r1"}, rules)
	if d != nil || c.Masking == nil || !reflect.DeepEqual(show(c.Masking), []string{"[1]:redact", "[2]:hash"}) ||
		c.Masking.HashKey == "" || c.Masking.Schema == nil || len(c.Masking.Schema.Fields) != 3 {
		t.Errorf("tables.get of a result table: %+v %+v", c.Masking, d)
	}
	// tables.get of a base table: SELECT * of it, as tabledata.list.
	c, d = run(authorize.Call{API: "tables.get", Dataset: "crm", Table: "users"}, rules)
	want := []string{"[2]:email-domain", "[3]:redact", "[5 0]:hash", "[6]:last4", "[7]:null"}
	if d != nil || c.Masking == nil || !reflect.DeepEqual(show(c.Masking), want) || c.Masking.Schema == nil {
		t.Errorf("tables.get of a base table: %+v %+v", c.Masking, d)
	}
	c2, d2 := run(authorize.Call{API: "tabledata.list", Dataset: "crm", Table: "users"}, rules)
	if d2 != nil || !reflect.DeepEqual(show(c2.Masking), show(c.Masking)) {
		t.Errorf("tabledata.list and tables.get of a base table differ: %v vs %v", show(c2.Masking), show(c.Masking))
	}
	// A view's metadata: nothing to retype (its rows cannot be listed).
	if c, d := run(authorize.Call{API: "tables.get", Dataset: "pub", Table: "v_users"}, rules); d != nil || c.Masking != nil {
		t.Errorf("tables.get of a view: %+v %+v", c.Masking, d)
	}
	if _, d := run(authorize.Call{API: "tabledata.list", Dataset: "pub", Table: "v_users"}, rules); d == nil || d.Reason != ReasonUnresolvable {
		t.Errorf("tabledata.list of a view: %+v", d)
	}
	// A decorated table id: BigQuery serves the base table's metadata and rows (the
	// catalog below resolves it the same way), the rules name the base table: refused.
	cat["acme.crm.users$20250101"] = cat["acme.crm.users"]
	cat["acme.crm.users@-3600000"] = cat["acme.crm.users"]
	for _, api := range []string{"tables.get", "tabledata.list"} {
		for _, table := range []string{"users$20250101", "users@-3600000"} {
			if c, d := run(authorize.Call{API: api, Dataset: "crm", Table: table}, rules); d == nil || d.Reason != ReasonUnresolvable {
				t.Errorf("%s of %s: masking %v, denial %+v", api, table, show(c.Masking), d)
			}
		}
	}
	// A table the gateway cannot find: refused (fail closed), not passed unmasked.
	if _, d := run(authorize.Call{API: "tables.get", Dataset: "crm", Table: "nope"}, rules); d == nil || d.Status != 403 {
		t.Errorf("tables.get of an unknown table: %+v", d)
	}
	// jobs.get / jobs.cancel of a masked job: its rules, so the filter withholds messages;
	// also after the rules changed (polling keeps working).
	for _, api := range []string{"jobs.get", "jobs.cancel"} {
		for _, plan := range []policies.MaskPlan{rules, rules[:1]} {
			c, d := run(authorize.Call{API: api, JobID: "j1"}, plan)
			if d != nil || c.Masking == nil || !reflect.DeepEqual(show(c.Masking), []string{"[1]:redact", "[2]:hash"}) || c.Masking.HashKey == "" {
				t.Errorf("%s of a masked job (%d rules): %+v %+v", api, len(plan), c.Masking, d)
			}
		}
	}
	// jobs.get of a job that ran without masking: nothing to withhold.
	if c, d := run(authorize.Call{API: "jobs.get", JobID: "j2"}, rules); d != nil || c.Masking != nil {
		t.Errorf("jobs.get of an unmasked job: %+v %+v", c.Masking, d)
	}
	// jobs.list while results are masked: refused; without masking rules: not this step's business.
	if _, d := run(authorize.Call{API: "jobs.list"}, rules); d == nil || d.Status != 403 || d.Reason != ReasonUnresolvable {
		t.Errorf("jobs.list under masking: %+v", d)
	}
	if _, d := run(authorize.Call{API: "jobs.list"}, nil); d != nil {
		t.Errorf("jobs.list without masking: %+v", d)
	}
}

// freshCatalog is a table source whose cache is stale: Table answers the old metadata,
// FreshTable the table as it is now.
type freshCatalog struct{ cached, now memCatalog }

func (f freshCatalog) Table(ctx context.Context, p, d, t string) (*sqlanalysis.TableMeta, error) {
	return f.cached.Table(ctx, p, d, t)
}

func (f freshCatalog) FreshTable(ctx context.Context, p, d, t string) (*sqlanalysis.TableMeta, error) {
	return f.now.Table(ctx, p, d, t)
}

// TestStepTabledataListReadsFreshSchema: tabledata.list rows carry no schema, so a base
// table's is read bypassing the cache: a column dropped and another added since the
// metadata was cached must not shift the masks onto other columns.
func TestStepTabledataListReadsFreshSchema(t *testing.T) {
	now := catalog()
	// ALTER TABLE users DROP COLUMN name, ADD COLUMN nick: email is now at 1, ssn at 2.
	altered := append(append([]sqlanalysis.Column{}, usersColumns[0]), usersColumns[2:]...)
	altered = append(altered, sqlanalysis.Column{Name: "nick", Type: "STRING"})
	now["acme.crm.users"] = &sqlanalysis.TableMeta{Project: "acme", Dataset: "crm", Table: "users", Type: "TABLE", Columns: altered}
	step, err := Step(StepOptions{Builder: NewBuilder(testKey), Tables: freshCatalog{cached: catalog(), now: now}, Jobs: memJobs{}})
	if err != nil {
		t.Fatal(err)
	}
	run := func(api string) *authz.Call {
		c := &authz.Call{Request: authorize.Request{Call: authorize.Call{API: api, Project: "acme", Dataset: "crm", Table: "users"}},
			Decision: &policies.Decision{Allow: true, MaskPlan: rules}}
		if d := step.Run(context.Background(), c); d != nil || c.Masking == nil {
			t.Fatalf("%s: %+v %+v", api, d, c.Masking)
		}
		return c
	}
	c := run("tabledata.list")
	if got, want := show(c.Masking), []string{"[1]:email-domain", "[2]:redact", "[4 0]:hash", "[5]:last4", "[6]:null"}; !reflect.DeepEqual(got, want) {
		t.Errorf("tabledata.list rules = %q, want %q (the table's current columns)", got, want)
	}
	if f := c.Masking.Schema.Fields; len(f) != 8 || f[7].Name != "nick" {
		t.Errorf("tabledata.list schema = %+v", f)
	}
	// tables.get answers with its own schema, which the filter compares with the plan's:
	// the cached metadata is used (a stale one fails closed there).
	if f := run("tables.get").Masking.Schema.Fields; len(f) != 8 || f[1].Name != "name" {
		t.Errorf("tables.get schema = %+v", f)
	}
}

// lineageFunc is a LineageAnalyzer counting its calls.
type lineageFunc func(context.Context, authorize.Request) (*sqlanalysis.Analysis, error)

func (f lineageFunc) AnalyzeRequest(ctx context.Context, r authorize.Request) (*sqlanalysis.Analysis, error) {
	return f(ctx, r)
}

// TestStepUnanalysedLegacySQL: a legacy query allowed unanalysed (what.legacySql) gets
// the detectors without asking for lineage (which legacy SQL cannot have); a mask rule
// that reached the step anyway is refused, never dropped.
func TestStepUnanalysedLegacySQL(t *testing.T) {
	asked := 0
	lin := lineageFunc(func(context.Context, authorize.Request) (*sqlanalysis.Analysis, error) {
		asked++
		return nil, &policystep.AnalysisError{Reason: policies.RuleLegacySQL, Message: "legacy"}
	})
	step, err := Step(StepOptions{Builder: NewBuilder(testKey), Lineage: lin})
	if err != nil {
		t.Fatal(err)
	}
	run := func(plan policies.MaskPlan) (*authz.Call, *authz.Denial) {
		c := &authz.Call{
			Request:     authorize.Request{Call: authorize.Call{API: "jobs.query", Project: "acme"}, Query: &authorize.Query{SQL: "SELECT x FROM [acme:crm.users]", LegacySQL: true}},
			Decision:    &policies.Decision{Allow: true, MaskPlan: plan, Detectors: []policies.Detector{policies.DetectEmail}, NotAnalysed: policies.NotAnalysedLegacySQL},
			NotAnalysed: policies.NotAnalysedLegacySQL,
		}
		return c, step.Run(context.Background(), c)
	}
	c, d := run(nil)
	if d != nil || c.Masking == nil || len(c.Masking.Rules) != 0 || !reflect.DeepEqual(c.Masking.Detectors, []string{"email"}) {
		t.Errorf("detectors only: %+v %+v", c.Masking, d)
	}
	if _, d := run(rules); d == nil || d.Status != 403 || d.Reason != ReasonUnresolvable {
		t.Errorf("mask rules on an unanalysed query: %+v, want 403 %s", d, ReasonUnresolvable)
	}
	if asked != 0 {
		t.Errorf("lineage asked %d times for an unanalysed legacy query", asked)
	}
}
