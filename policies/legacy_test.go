package policies_test

import (
	"strings"
	"testing"

	"github.com/jitgate/jitgate/policies"
	"github.com/jitgate/jitgate/policies/source"
)

// legacyPolicies: a legacy grant without table lists, one whose table lists are accepted
// (legacySqlAnyTable), one whose are not, one that writes, a policy without the grant, and
// overlays whose rules legacy SQL would escape.
func legacyPolicies(t *testing.T) *policies.Bundle {
	return compile(t, owners,
		policy("legacy-plain", `  who: {agents: [plain]}
  where: {projects: [acme], apis: [jobs.query, jobs.insert]}
  what: {statementKinds: [SELECT], legacySql: true, detectors: [email]}
  limits: {maxRows: 10}
`),
		policy("legacy-any-table", `  who: {agents: [any-table, overlaid-*]}
  where: {projects: [acme], datasets: {allow: [acme.crm]}, writeTables: [acme.scratch.*], apis: [jobs.query, jobs.insert]}
  what: {statementKinds: [SELECT, INSERT], legacySql: true, legacySqlAnyTable: true}
`),
		policy("legacy-bounded", `  who: {agents: [bounded]}
  where: {projects: [acme], tables: {allow: [acme.crm.customers]}, apis: [jobs.query]}
  what: {statementKinds: [SELECT], legacySql: true}
`),
		policy("no-grant", `  who: {agents: [standard]}
  where: {projects: [acme], datasets: {allow: [acme.crm]}, apis: [jobs.query]}
  what: {statementKinds: [SELECT]}
`),
		policy("overlay-mask", `  who: {agents: [overlaid-mask]}
  what:
    masking: [{columns: acme.crm.customers.email, action: redact}]
`),
		policy("overlay-deny", `  who: {agents: [overlaid-deny]}
  where: {datasets: {deny: [acme.hr]}}
`),
		policy("overlay-tdeny", `  who: {agents: [overlaid-tdeny]}
  where: {tables: {deny: [acme.crm.secrets]}}
`),
		policy("overlay-rule", `  who: {agents: [overlaid-rule]}
  what: {denyRules: [{name: no-star, kind: selectStar}]}
`),
		policy("overlay-dry-rule", `  who: {agents: [overlaid-dry]}
  what: {denyRules: [{name: star-report, kind: selectStar, dryRun: true}]}
`),
		policy("overlay-approval", `  who: {agents: [overlaid-approval]}
  what:
    approvals:
      - {name: crm-reads, when: {tables: [acme.crm.*]}, approverGroups: [owners], mode: reject}
      - {name: big, when: {minBytes: 1TB}, approverGroups: [owners]}
      - {name: writes, when: {statementKinds: [DML]}, approverGroups: [owners]}
`))
}

func legacyQuery(agent, api string) policies.Input {
	return policies.Input{
		Identity: policies.Identity{AgentID: agent, Issuer: "https://issuer.example"},
		Call:     policies.Call{API: api, Project: "acme"},
		Query:    &policies.Query{LegacySQL: true},
	}
}

// TestLegacySQLGrant pins what.legacySql: allowed unanalysed (and said so) with the grant,
// denied without it, refused where a rule needs the analysis; decided alike by Evaluate
// and by the filter's EvaluateCall.
func TestLegacySQLGrant(t *testing.T) {
	b := legacyPolicies(t)
	for _, c := range []struct {
		name      string
		in        policies.Input
		allow     bool
		rule      string
		ruleName  string
		policy    string
		approvals []string
	}{
		{"no grant: legacy_sql as before", legacyQuery("standard", "jobs.query"), false, policies.RuleLegacySQL, "", "", nil},
		{"grant without table lists", legacyQuery("plain", "jobs.query"), true, policies.RuleAllow, "", "legacy-plain", nil},
		{"grant on jobs.insert", legacyQuery("plain", "jobs.insert"), true, policies.RuleAllow, "", "legacy-plain", nil},
		{"grant accepting its table lists", legacyQuery("any-table", "jobs.query"), true, policies.RuleAllow, "", "legacy-any-table", nil},
		{"grant whose table lists are not accepted", legacyQuery("bounded", "jobs.query"), false, policies.RuleLegacySQLUnchecked, "what.legacySqlAnyTable", "legacy-bounded", nil},
		{"masking in an overlay", legacyQuery("overlaid-mask", "jobs.query"), false, policies.RuleLegacySQLUnchecked, "what.masking", "overlay-mask", nil},
		{"dataset deny in an overlay", legacyQuery("overlaid-deny", "jobs.query"), false, policies.RuleLegacySQLUnchecked, "where.datasets.deny", "overlay-deny", nil},
		{"table deny in an overlay", legacyQuery("overlaid-tdeny", "jobs.query"), false, policies.RuleLegacySQLUnchecked, "where.tables.deny", "overlay-tdeny", nil},
		{"deny rule in an overlay", legacyQuery("overlaid-rule", "jobs.query"), false, policies.RuleLegacySQLUnchecked, "what.denyRules", "overlay-rule", nil},
		{"dry-run rule does not refuse", legacyQuery("overlaid-dry", "jobs.query"), true, policies.RuleAllow, "", "legacy-any-table", nil},
		{"approvals on tables and bytes apply (unknown: fail closed), on DML do not", legacyQuery("overlaid-approval", "jobs.query"), true, policies.RuleAllow, "", "legacy-any-table",
			[]string{"overlay-approval/crm-reads", "overlay-approval/big"}},
		{"destination table in writeTables needs DML", func() policies.Input {
			in := legacyQuery("any-table", "jobs.insert")
			in.Query.Destination = "acme.scratch.out"
			return in
		}(), true, policies.RuleAllow, "", "legacy-any-table", nil},
		{"destination table outside writeTables", func() policies.Input {
			in := legacyQuery("any-table", "jobs.insert")
			in.Query.Destination = "acme.crm.out"
			return in
		}(), false, policies.RuleWriteNotAllowed, "where.writeTables", "legacy-any-table", nil},
		{"destination without a DML grant", func() policies.Input {
			in := legacyQuery("plain", "jobs.insert")
			in.Query.Destination = "acme.scratch.out"
			return in
		}(), false, policies.RuleStatementKindNotAllowed, "what.statementKinds", "legacy-plain", nil},
		{"session still needs what.sessions", func() policies.Input {
			in := legacyQuery("plain", "jobs.query")
			in.Query.Session = true
			return in
		}(), false, policies.RuleSessionNotAllowed, "what.sessions", "legacy-plain", nil},
		{"project still checked", func() policies.Input {
			in := legacyQuery("plain", "jobs.query")
			in.Call.Project = "other"
			return in
		}(), false, policies.RuleProjectNotAllowed, "where.projects", "legacy-plain", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := policies.Evaluate(b, c.in)
			if d.Allow != c.allow || d.Rule != c.rule || d.RuleName != c.ruleName {
				t.Fatalf("decision %v %s (%s), want %v %s (%s); reasons %q", d.Allow, d.Rule, d.RuleName, c.allow, c.rule, c.ruleName, d.Reasons)
			}
			got := ""
			if d.Policy != nil {
				got = d.Policy.Name
			}
			if got != c.policy {
				t.Errorf("policy %q, want %q", got, c.policy)
			}
			if d.Allow {
				if d.NotAnalysed != policies.NotAnalysedLegacySQL || !strings.Contains(strings.Join(d.Reasons, "\n"), "not analysed: legacy SQL") {
					t.Errorf("an allowed legacy query must say it was not analysed: notAnalysed %q, reasons %q", d.NotAnalysed, d.Reasons)
				}
			} else if d.NotAnalysed != "" {
				t.Errorf("a denial carries notAnalysed %q", d.NotAnalysed)
			}
			if !d.Allow && !strings.Contains(strings.Join(d.Reasons, "\n"), "legacy") && strings.HasPrefix(d.Rule, "legacy") {
				t.Errorf("reasons %q do not say legacy SQL", d.Reasons)
			}
			var approvals []string
			for _, a := range d.Approvals {
				approvals = append(approvals, a.Policy.Name+"/"+a.Rule)
			}
			if strings.Join(approvals, ",") != strings.Join(c.approvals, ",") {
				t.Errorf("approvals %q, want %q", approvals, c.approvals)
			}
			// Legacy queries need no analysis: the filter decides them the same way.
			dc := policies.EvaluateCall(b, c.in)
			if dc.Allow != d.Allow || dc.Rule != d.Rule || dc.RuleName != d.RuleName || dc.NotAnalysed != d.NotAnalysed {
				t.Errorf("EvaluateCall %v %s (%s) %q, Evaluate %v %s (%s) %q", dc.Allow, dc.Rule, dc.RuleName, dc.NotAnalysed, d.Allow, d.Rule, d.RuleName, d.NotAnalysed)
			}
		})
	}
	// Detectors and limits still apply to an allowed legacy query: they need no lineage.
	d := policies.Evaluate(b, legacyQuery("plain", "jobs.query"))
	if len(d.Detectors) != 1 || d.Detectors[0] != policies.DetectEmail || d.Limits.MaxRows != 10 {
		t.Errorf("detectors %v limits %+v, want [email] and maxRows 10", d.Detectors, d.Limits)
	}
	// Standard SQL under a legacy grant is analysed and judged as always.
	in := query("bounded", "SELECT", "acme.crm.orders")
	if d := policies.Evaluate(b, in); d.Allow || d.Rule != policies.RuleTableNotAllowed || d.NotAnalysed != "" {
		t.Errorf("standard SQL under a legacy grant: %v %s notAnalysed %q, want table_not_allowed", d.Allow, d.Rule, d.NotAnalysed)
	}
	if d := policies.Evaluate(b, query("bounded", "SELECT", "acme.crm.customers")); !d.Allow || d.NotAnalysed != "" {
		t.Errorf("standard SQL under a legacy grant: %v %s notAnalysed %q, want an analysed allow", d.Allow, d.Rule, d.NotAnalysed)
	}
}

// TestLegacySQLValidation: combinations that could never allow a legacy query, and
// legacySqlAnyTable alone, are refused at load with the field's position.
func TestLegacySQLValidation(t *testing.T) {
	for _, c := range []struct{ name, spec, want string }{
		{"anyTable alone", `  who: {agents: [a]}
  what: {legacySqlAnyTable: true}
`, "legacySqlAnyTable without legacySql"},
		{"no SELECT", `  who: {agents: [a]}
  what: {statementKinds: [INSERT], legacySql: true}
`, "statementKinds has no SELECT"},
		{"masking", `  who: {agents: [a]}
  what:
    statementKinds: [SELECT]
    legacySql: true
    masking: [{columns: acme.crm.t.c, action: redact}]
`, "masking rules"},
		{"dataset deny", `  who: {agents: [a]}
  where: {datasets: {deny: [acme.hr]}}
  what: {statementKinds: [SELECT], legacySql: true}
`, "where.datasets.deny"},
		{"table deny", `  who: {agents: [a]}
  where: {tables: {deny: [acme.hr.t]}}
  what: {statementKinds: [SELECT], legacySql: true}
`, "where.tables.deny"},
		{"deny rule", `  who: {agents: [a]}
  what: {statementKinds: [SELECT], legacySql: true, denyRules: [{name: no-star, kind: selectStar}]}
`, "deny rule no-star"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := source.Parse(source.File{Name: "p.yaml", Data: []byte(policy("p", c.spec))})
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "p.yaml:") {
				t.Fatalf("error %v, want one at p.yaml:line:col containing %q", err, c.want)
			}
		})
	}
	// Accepted: the grant alone, with accepted table lists, with a dry-run rule.
	compile(t, policy("ok", `  who: {agents: [a]}
  where: {datasets: {allow: [acme.crm]}}
  what:
    statementKinds: [SELECT]
    legacySql: true
    legacySqlAnyTable: true
    denyRules: [{name: star-report, kind: selectStar, dryRun: true}]
`))
}
