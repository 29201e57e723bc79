package main

import (
	"strings"
	"testing"

	"github.com/jitgate/jitgate/controlplane/approvals"
)

const cliLegacyPolicy = `apiVersion: jitgate.dev/v1
kind: AgentPolicy
metadata: {name: legacy-reports}
spec:
  who: {agents: [reports]}
  where: {projects: [acme], datasets: {allow: [acme.sales]}, apis: [jobs.query, jobs.insert]}
  what: {statementKinds: [SELECT], legacySql: true, legacySqlAnyTable: true}
`

// TestPolicyExplainLegacySQL: explain decides legacy SQL as jitgated does (the flag or a
// #legacySQL prefix) and says, for an allow, that the SQL was not analysed.
func TestPolicyExplainLegacySQL(t *testing.T) {
	dir := policyDir(t, map[string]string{"a.yaml": cliPolicy, "b.yaml": cliLegacyPolicy})
	tests := []struct {
		name      string
		args      []string
		stdout    []string
		notStdout []string
	}{
		{"granted, by the flag", []string{"--agent", "reports", "--project", "acme", "--legacy-sql", "--sql", "SELECT x FROM [acme:hr.people]"}, []string{
			"decision:   allow", "analysis:   not analysed: legacy SQL (what.legacySql): the tables it reads, deny rules and masking were NOT checked",
			"policy:     legacy-reports@sha256:", "not analysed: legacy SQL (what.legacySql)"}, nil},
		{"granted, by the #legacySQL prefix", []string{"--agent", "reports", "--project", "acme", "--sql", "#legacySQL\nSELECT x FROM [acme:hr.people]"}, []string{
			"decision:   allow", "analysis:   not analysed: legacy SQL"}, nil},
		{"json says notAnalysed", []string{"--agent", "reports", "--project", "acme", "--legacy-sql", "--sql", "SELECT 1", "--json"}, []string{
			`"allow": true`, `"notAnalysed": "legacy SQL"`}, nil},
		{"not granted", []string{"--agent", "reporting-agent", "--groups", "analysts", "--project", "acme", "--legacy-sql", "--sql", "SELECT 1"}, []string{
			"decision:   deny", "rule:       legacy_sql", "agent sees: 403 legacy_sql"}, []string{"analysis:   not analysed"}},
		{"standard SQL under the grant is not decidable without analysis", []string{"--agent", "reports", "--project", "acme", "--sql", "SELECT 1"}, []string{
			"rule:       not_decidable"}, []string{"analysis:   not analysed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := runCLI(append([]string{"policy", "explain", "--policies", dir}, tt.args...)...)
			if code != 0 {
				t.Fatalf("exit %d\nstdout %s\nstderr %s", code, out, errs)
			}
			for _, s := range tt.stdout {
				if !strings.Contains(out, s) {
					t.Errorf("stdout lacks %q:\n%s", s, out)
				}
			}
			for _, s := range tt.notStdout {
				if strings.Contains(out, s) {
					t.Errorf("stdout has %q:\n%s", s, out)
				}
			}
		})
	}
}

// TestApprovalLineLegacySQL: an approver listing pending approvals sees that a legacy
// query was not analysed (what.legacySql with an approval rule: the human is the check).
func TestApprovalLineLegacySQL(t *testing.T) {
	a := &approvals.Approval{ID: "ap-1", Binding: approvals.Binding{API: "jobs.query", Project: "acme", SQL: "SELECT 1", LegacySQL: true}}
	if line := approvalLine(a); !strings.Contains(line, "NOT ANALYSED: legacy SQL") {
		t.Errorf("approval line %q does not say the SQL was not analysed", line)
	}
	a.Binding.LegacySQL = false
	if line := approvalLine(a); strings.Contains(line, "NOT ANALYSED") {
		t.Errorf("approval line %q claims a standard query was not analysed", line)
	}
}
