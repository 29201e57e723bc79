package policies_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/jitgate/jitgate/policies"
)

// TestEvaluateCall pins the filter's part of the evaluation: what it still decides
// without SQL analysis and job ledger, and what it leaves to the control plane.
func TestEvaluateCall(t *testing.T) {
	b := compile(t, reader, owners,
		policy("writer", `  who: {agents: [etl]}
  where: {projects: [acme], writeTables: [acme.scratch.*], tables: {deny: [acme.scratch.locked]}, apis: [jobs.query, jobs.insert, jobs.get]}
  what:
    statementKinds: [SELECT, INSERT]
    denyRules: [{name: no-star, kind: selectStar}]
    approvals: [{name: all-writes, approverGroups: [owners]}]
  credential: {mode: impersonate, serviceAccount: a@acme.iam.gserviceaccount.com}
  limits: {maxRequestBodyBytes: 1KiB}
`),
		policy("writer-2", `  who: {agents: [etl]}
  where: {projects: [acme], tables: {allow: [acme.other.t]}, apis: [jobs.query]}
  what: {statementKinds: [SELECT]}
  credential: {mode: impersonate, serviceAccount: b@acme.iam.gserviceaccount.com}
`))
	id := func(agent string) policies.Identity {
		return policies.Identity{AgentID: agent, Issuer: "https://issuer.example"}
	}
	queryCall := func(agent, project string, q policies.Query) policies.Input {
		return policies.Input{Identity: id(agent), Call: policies.Call{API: "jobs.query", Project: project}, Query: &q}
	}
	for _, c := range []struct {
		name     string
		in       policies.Input
		allow    bool
		rule     string
		ruleName string
	}{
		{"query without analysis: API and project granted", queryCall("agent-1", "acme", policies.Query{}), true, policies.RuleAllow, ""},
		{"query in another project", queryCall("agent-1", "other", policies.Query{}), false, policies.RuleProjectNotAllowed, "where.projects"},
		{"legacy SQL", queryCall("agent-1", "acme", policies.Query{LegacySQL: true}), false, policies.RuleLegacySQL, ""},
		{"no decoded body", policies.Input{Identity: id("agent-1"), Call: policies.Call{API: "jobs.query", Project: "acme"}}, false, policies.RuleNotDecidable, ""},
		{"unknown agent", queryCall("nobody", "acme", policies.Query{}), false, policies.RuleDefaultDeny, ""},
		{"API not granted", policies.Input{Identity: id("agent-1"), Call: policies.Call{API: "jobs.cancel", Project: "acme", JobID: "j"}}, false, policies.RuleAPINotAllowed, "where.apis"},
		{"destination without a DML grant", queryCall("agent-1", "acme", policies.Query{Destination: "acme.crm.out"}), false, policies.RuleStatementKindNotAllowed, "what.statementKinds"},
		{"destination in writeTables", queryCall("etl", "acme", policies.Query{Destination: "acme.scratch.out"}), true, policies.RuleAllow, ""},
		{"destination outside writeTables", queryCall("etl", "acme", policies.Query{Destination: "acme.crm.out"}), false, policies.RuleWriteNotAllowed, "where.writeTables"},
		{"destination denied", queryCall("etl", "acme", policies.Query{Destination: "acme.scratch.locked"}), false, policies.RuleTableDenied, "where.tables.deny"},
		{"job follow-up without ledger", policies.Input{Identity: id("agent-1"), Call: policies.Call{API: "jobs.get", Project: "acme", JobID: "j"}}, true, policies.RuleAllow, ""},
		{"anonymous result table without ledger", policies.Input{Identity: id("agent-1"), Call: policies.Call{API: "tabledata.list", Project: "acme", Dataset: "_abc", Table: "anon"}}, true, policies.RuleAllow, ""},
		{"tabledata.list of a denied dataset", policies.Input{Identity: id("agent-1"), Call: policies.Call{API: "tabledata.list", Project: "acme", Dataset: "hr", Table: "people"}}, false, policies.RuleDatasetDenied, "where.datasets.deny"},
		{"tables.get not granted", policies.Input{Identity: id("agent-1"), Call: policies.Call{API: "tables.get", Project: "acme", Dataset: "web", Table: "pages"}}, false, policies.RuleTableNotAllowed, "where.tables.allow"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := policies.EvaluateCall(b, c.in)
			if d.Allow != c.allow || d.Rule != c.rule || d.RuleName != c.ruleName || !d.CallOnly {
				t.Fatalf("EvaluateCall = allow %v rule %s ruleName %q callOnly %v (%s), want %v %s %q", d.Allow, d.Rule, d.RuleName, d.CallOnly, strings.Join(d.Reasons, " | "), c.allow, c.rule, c.ruleName)
			}
			if full := policies.Evaluate(b, c.in); full.Allow && !d.Allow {
				t.Errorf("Evaluate allows what EvaluateCall denies")
			}
		})
	}

	// What it leaves out: findings, approvals and credentials (two granting policies with
	// different credentials conflict only once the analysis says which one grants).
	in := queryCall("etl", "acme", policies.Query{})
	in.Analysis = &policies.Analysis{StatementKind: "SELECT", Findings: []policies.DenyRuleKind{policies.DenySelectStar}}
	if d := policies.Evaluate(b, in); d.Allow || d.RuleName != "no-star" {
		t.Fatalf("Evaluate: %+v", d)
	}
	d := policies.EvaluateCall(b, in)
	if !d.Allow || d.Credential != nil || d.Approvals != nil || len(d.Granting) != 2 {
		t.Fatalf("EvaluateCall ignores the analysis, approvals and credentials: %+v", d)
	}
	if d.Limits.MaxRequestBodyBytes != 1<<10 || d.Limits.MaxRows != 0 {
		t.Errorf("limits %+v, want the matched policies' minimum", d.Limits)
	}
	if d := policies.EvaluateCall(nil, in); d.Allow || d.Rule != policies.RuleInvalidBundle {
		t.Errorf("no bundle: %+v", d)
	}
}

// TestValidNameMatchesTheDocumentedPattern: the written-out name check is the regexp the
// README documents.
func TestValidNameMatchesTheDocumentedPattern(t *testing.T) {
	re := regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)
	for _, name := range []string{"", "a", "-", "a-", "-a", "a-b", "ab9", "A", "a_b", "a.b", "9", "a--b", "é", "a b", "reference", "x-"} {
		set := policies.Set{Policies: []policies.AgentPolicy{{APIVersion: policies.APIVersion, Kind: policies.KindAgentPolicy,
			Metadata: policies.Metadata{Name: name}, Spec: policies.PolicySpec{Who: policies.Who{Agents: []string{"a"}}}}}}
		errs := policies.Validate(set)
		nameErr := false
		for _, e := range errs {
			if strings.Contains(e.Error(), "name") {
				nameErr = true
			}
		}
		if nameErr == re.MatchString(name) {
			t.Errorf("name %q: validation error %v, pattern match %v (%v)", name, nameErr, re.MatchString(name), errs)
		}
	}
}
