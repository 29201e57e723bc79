package policies_test

import (
	"strings"
	"testing"

	"github.com/jitgate/jitgate/policies"
)

// Policies name base tables. A decorated table id ("t$20250101" is a partition of t,
// "t@-3600000" is t an hour ago) reads the base table's rows, so it is refused wherever
// a call names it: the path of tabledata.list / tables.get, a query's destination, the
// tables the SQL analysis reports. Otherwise a deny list or a column mask on t would
// not apply to it. (The filter refuses these calls before they get here too.)

var crmReader = policy("crm-reader", `  who: {agents: [agent-1]}
  where:
    projects: [acme]
    tables: {allow: ["acme.crm.*"], deny: [acme.crm.salaries]}
    apis: [tabledata.list, tables.get, jobs.query]
  what:
    statementKinds: [SELECT]
    masking: [{columns: acme.crm.customers.ssn, action: redact}]
`)

var decoratedIDs = []string{"$20250101", "$__UNPARTITIONED__", "@-3600000", "@1700000000000"}

func TestDecoratedTableInPathIsNotDecided(t *testing.T) {
	b := compile(t, crmReader)
	for _, api := range []string{"tabledata.list", "tables.get"} {
		for _, base := range []string{"salaries", "customers"} { // denied, and masked
			for _, dec := range decoratedIDs {
				in := policies.Input{Identity: policies.Identity{AgentID: "agent-1", Issuer: "https://issuer.example"},
					Call: policies.Call{API: api, Project: "acme", Dataset: "crm", Table: base + dec}}
				for name, d := range map[string]policies.Decision{"Evaluate": policies.Evaluate(b, in), "EvaluateCall": policies.EvaluateCall(b, in)} {
					if d.Allow || d.Rule != policies.RuleInvalidInput || !strings.Contains(strings.Join(d.Reasons, "; "), "decorator") {
						t.Errorf("%s %s %s: allow=%v rule=%s %q, want %s naming the decorator", name, api, base+dec, d.Allow, d.Rule, strings.Join(d.Reasons, "; "), policies.RuleInvalidInput)
					}
				}
			}
		}
	}
	// Anonymous result datasets are job-scoped, and still not decorated.
	in := policies.Input{Identity: policies.Identity{AgentID: "agent-1", Issuer: "https://issuer.example"},
		Call: policies.Call{API: "tabledata.list", Project: "acme", Dataset: "_abc", Table: "anon$1"},
		Job:  &policies.Job{OwnerAgentID: "agent-1"}}
	if d := policies.Evaluate(b, in); d.Allow {
		t.Errorf("anonymous result table with a decorator allowed (%s)", d.Rule)
	}
	// The undecorated masked table is allowed with its mask, the denied one denied.
	base := policies.Input{Identity: policies.Identity{AgentID: "agent-1", Issuer: "https://issuer.example"},
		Call: policies.Call{API: "tabledata.list", Project: "acme", Dataset: "crm", Table: "customers"}}
	if d := policies.Evaluate(b, base); !d.Allow {
		t.Errorf("customers: %s %s", d.Rule, strings.Join(d.Reasons, "; "))
	} else if _, masked := d.MaskPlan.For("acme.crm.customers.ssn"); !masked {
		t.Error("customers.ssn is not masked")
	}
	base.Call.Table = "salaries"
	if d := policies.Evaluate(b, base); d.Allow || d.Rule != policies.RuleTableDenied {
		t.Errorf("salaries: allow=%v %s", d.Allow, d.Rule)
	}
}

func TestDecoratedDestinationIsNotDecided(t *testing.T) {
	b := compile(t, policy("writer", `  who: {agents: [etl]}
  where: {projects: [acme], writeTables: [acme.scratch.*], tables: {allow: [acme.scratch.*], deny: [acme.scratch.locked]}, apis: [jobs.insert]}
  what: {statementKinds: [SELECT, INSERT]}
`))
	in := func(dest string) policies.Input {
		return policies.Input{Identity: policies.Identity{AgentID: "etl", Issuer: "https://issuer.example"},
			Call:     policies.Call{API: "jobs.insert", Project: "acme"},
			Query:    &policies.Query{Destination: dest, WriteDisposition: "WRITE_TRUNCATE"},
			Analysis: &policies.Analysis{StatementKind: "SELECT", ReferencedTables: []string{"acme.scratch.src"}}}
	}
	if d := policies.Evaluate(b, in("acme.scratch.open")); !d.Allow {
		t.Fatalf("plain destination: %s %s", d.Rule, strings.Join(d.Reasons, "; "))
	}
	for _, dec := range decoratedIDs {
		for _, table := range []string{"locked", "open"} {
			dest := "acme.scratch." + table + dec
			if d := policies.Evaluate(b, in(dest)); d.Allow || d.Rule != policies.RuleNotDecidable || !strings.Contains(strings.Join(d.Reasons, "; "), "decorator") {
				t.Errorf("destination %s: allow=%v %s %q", dest, d.Allow, d.Rule, strings.Join(d.Reasons, "; "))
			}
		}
	}
}

func TestDecoratedTableFromSQLAnalysisIsNotDecided(t *testing.T) {
	b := compile(t, crmReader)
	for _, dec := range decoratedIDs {
		for _, table := range []string{"acme.crm.salaries" + dec, "acme.crm.customers" + dec} {
			in := query("agent-1", "SELECT", table)
			if d := policies.Evaluate(b, in); d.Allow || d.Rule != policies.RuleNotDecidable {
				t.Errorf("SQL reading %s: allow=%v %s %q", table, d.Allow, d.Rule, strings.Join(d.Reasons, "; "))
			}
			in = query("agent-1", "INSERT", "acme.crm.customers")
			in.Analysis.WrittenTables = []string{table}
			if d := policies.Evaluate(b, in); d.Allow || d.Rule != policies.RuleNotDecidable {
				t.Errorf("SQL writing %s: allow=%v %s %q", table, d.Allow, d.Rule, strings.Join(d.Reasons, "; "))
			}
		}
	}
}
