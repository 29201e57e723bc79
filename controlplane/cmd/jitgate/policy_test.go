package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jitgate/jitgate/tools/testemu"
)

const cliPolicy = `apiVersion: jitgate.dev/v1
kind: AgentPolicy
metadata:
  name: analysts
spec:
  who:
    agents: [reporting-agent]
    groups:
      any: [analysts]
  where:
    projects: [acme]
    datasets:
      allow: [acme.sales]
      deny: [acme.hr]
    apis: [jobs.query, tables.get]
  what:
    statementKinds: [SELECT]
    masking:
      - columns: acme.sales.*.email
        action: hash
  credential:
    mode: self-signed-jwt
    ttl: 2m
`

func policyDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func runCLI(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestPolicyCheck(t *testing.T) {
	good := policyDir(t, map[string]string{"a.yaml": cliPolicy})
	bad := policyDir(t, map[string]string{"a.yaml": strings.Replace(cliPolicy, "ttl: 2m", "ttl: 2 minutes", 1),
		"b.yaml": strings.Replace(strings.Replace(cliPolicy, "datasets:", "datasetz:", 1), "name: analysts", "name: other", 1)})
	tests := []struct {
		name    string
		args    []string
		code    int
		stdout  []string
		stderr  []string
		noStdio bool
	}{
		{"good", []string{"policy", "check", good}, 0, []string{good + ": OK: 1 policies, 0 approver groups, bundle sha256:", "analysts@sha256:", "a.yaml:1:1"}, nil, false},
		{"quiet", []string{"policy", "check", "-q", good}, 0, nil, nil, true},
		{"bad: every error with file:line:col", []string{"policy", "check", bad}, 1, nil, []string{
			filepath.Join(bad, "a.yaml") + `:23:10: bad duration "2 minutes" for ttl (use a Go duration such as 30s, 5m or 1h)`,
			filepath.Join(bad, "b.yaml") + `:12:5: unknown field "datasetz" in where (did you mean "datasets"?)`,
			"2 error(s); nothing compiled"}, false},
		{"one issuer: who.issuers optional", []string{"policy", "check", "--issuer", "https://idp.example", good}, 0, []string{good + ": OK: 1 policies"}, nil, false},
		{"two issuers: who.issuers required", []string{"policy", "check", "--issuer", "https://idp.example", "--issuer", "http://127.0.0.1:18002", good}, 1, nil,
			[]string{`policy "analysts" has no who.issuers, which is required because the gateway trusts 2 issuers (https://idp.example, http://127.0.0.1:18002)`}, false},
		{"missing dir", []string{"policy", "check", filepath.Join(good, "nope")}, 1, nil, []string{"no such file or directory"}, false},
		{"no dir", []string{"policy", "check"}, 2, nil, []string{"want 1 argument(s)"}, false},
		{"help", []string{"policy", "check", "-h"}, 0, nil, []string{"Usage: jitgate policy check"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := runCLI(tt.args...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout %s\nstderr %s", code, tt.code, out, errs)
			}
			for _, s := range tt.stdout {
				if !strings.Contains(out, s) {
					t.Errorf("stdout lacks %q:\n%s", s, out)
				}
			}
			for _, s := range tt.stderr {
				if !strings.Contains(errs, s) {
					t.Errorf("stderr lacks %q:\n%s", s, errs)
				}
			}
			if tt.noStdio && out+errs != "" {
				t.Errorf("quiet printed %q %q", out, errs)
			}
		})
	}
}

func TestPolicyExplain(t *testing.T) {
	dir := policyDir(t, map[string]string{"a.yaml": cliPolicy})
	base := []string{"policy", "explain", "--policies", dir, "--agent", "reporting-agent", "--groups", "analysts"}
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout []string
	}{
		{"allowed query with a mask plan", []string{"--sql", "SELECT email FROM acme.sales.people", "--statement-kind", "SELECT", "--tables", "acme.sales.people"}, 0, []string{
			"note: the SQL was NOT analysed (no --bigquery-endpoint given)", "decision:   allow", "rule:       allow", "policy:     analysts@sha256:",
			"acme.sales.*.email → hash", "credential: self-signed-jwt as the control plane's account, ttl 2m0s"}},
		{"denied table names policy and rule", []string{"--api", "tables.get", "--project", "acme", "--dataset", "hr", "--table", "salaries"}, 0, []string{
			"decision:   deny", "rule:       dataset_denied (where.datasets.deny)",
			"agent sees: 403 dataset_denied: Denied by policy analysts@sha256:"}},
		{"SQL without analysis is not decidable", []string{"--project", "acme", "--sql", "SELECT 1"}, 0, []string{
			"the SQL was NOT analysed", "no --statement-kind/--tables were given", "rule:       not_decidable"}},
		{"write not granted", []string{"--statement-kind", "INSERT", "--written-tables", "acme.sales.orders", "--project", "acme"}, 0, []string{
			"decision:   deny", "statement_kind_not_allowed"}},
		{"unknown agent", []string{"--agent", "stranger", "--api", "tables.get", "--project", "acme", "--dataset", "sales", "--table", "t"}, 0, []string{
			"rule:       default_deny", "policy:     (none)"}},
		{"json", []string{"--json", "--api", "tables.get", "--project", "acme", "--dataset", "sales", "--table", "t"}, 0, []string{`"allow": true`, `"rule": "allow"`}},
		{"no api", nil, 2, nil},
		{"endpoint with a static analysis", []string{"--bigquery-endpoint", "http://127.0.0.1:1", "--sql", "SELECT 1", "--statement-kind", "SELECT"}, 2, nil},
		{"endpoint not a URL", []string{"--bigquery-endpoint", "127.0.0.1:9050", "--sql", "SELECT 1", "--project", "acme"}, 2, nil},
		{"https endpoint without a key", []string{"--bigquery-endpoint", "https://bigquery.googleapis.com", "--sql", "SELECT 1", "--project", "acme"}, 2, nil},
		{"endpoint without a project", []string{"--bigquery-endpoint", "http://127.0.0.1:1", "--sql", "SELECT 1"}, 2, nil},
		{"bad default dataset", []string{"--sql", "SELECT 1", "--default-dataset", "a.b.c"}, 2, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := runCLI(append(append([]string{}, base...), tt.args...)...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout %s\nstderr %s", code, tt.code, out, errs)
			}
			for _, s := range tt.stdout {
				if !strings.Contains(out, s) {
					t.Errorf("stdout lacks %q:\n%s", s, out)
				}
			}
		})
	}
	if code, _, errs := runCLI("policy", "explain", "--policies", dir); code != 2 || !strings.Contains(errs, "--agent are required") {
		t.Errorf("missing --agent: %d %s", code, errs)
	}
	if code, _, errs := runCLI("policy", "explain", "-h"); code != 0 || !strings.Contains(errs, "Without --bigquery-endpoint the CLI has no SQL analyser") {
		t.Errorf("help: %d %s", code, errs)
	}
}

// TestPolicyExplainAnalysesSQL runs explain with the control plane's SQL analyser against
// the real emulator and the demo policy.
func TestPolicyExplainAnalysesSQL(t *testing.T) {
	emulator, root := testemu.Start(t, "jitgate-demo"), testemu.Root()
	base := []string{"policy", "explain", "--policies", filepath.Join(root, "tools", "demo", "policies"),
		"--agent", "demo-agent", "--groups", "analysts", "--bigquery-endpoint", emulator, "--default-dataset", "jitgate-demo.crm"}
	tests := []struct {
		name   string
		sql    string
		stdout []string
		not    []string
	}{
		{"allowed SELECT", "SELECT name FROM crm.customers", []string{
			"analyser:   controlplane/sqlanalysis", "none (plain http upstream)",
			"statement:  SELECT", "reads:      jitgate-demo.crm.customers", "findings:   (none)",
			"lineage:    complete, 1 output column(s)", "name ← jitgate-demo.crm.customers.name (direct)",
			"decision:   allow", "policy:     demo-analysts@sha256:"}, []string{"NOT analysed"}},
		{"DML denied by statement kind", "DELETE FROM jitgate-demo.crm.orders WHERE TRUE", []string{
			"statement:  DELETE", "writes:     jitgate-demo.crm.orders", "decision:   deny",
			"rule:       statement_kind_not_allowed (what.statementKinds)",
			"agent sees: 403 statement_kind_not_allowed: Denied by policy demo-analysts@sha256:"}, nil},
		{"unknown table is unanalysable", "SELECT * FROM crm.no_such_table", []string{
			"analysis:   failed:", "no_such_table", "decision:   deny (status 403)", "rule:       unanalysable_sql",
			"message:    The gateway could not analyse this query's SQL, so it cannot be allowed: Table not found"}, []string{"decision:   allow"}},
		{"wildcard table", "SELECT name FROM `jitgate-demo.crm.cust*`", []string{
			"wildcards:  jitgate-demo.crm.cust*", "reads:      jitgate-demo.crm.customers", "decision:   allow"}, nil},
		{"legacy SQL is not analysed", "#legacySQL\nSELECT name FROM [jitgate-demo:crm.customers]", []string{
			"analysis:   not analysed: legacy SQL", "decision:   deny", "rule:       legacy_sql",
			"agent sees: 403 legacy_sql: Denied by policy bundle"}, []string{"decision:   allow", "statement:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := runCLI(append(append([]string{}, base...), "--sql", tt.sql)...)
			if code != 0 {
				t.Fatalf("exit %d\nstdout %s\nstderr %s", code, out, errs)
			}
			for _, s := range tt.stdout {
				if !strings.Contains(out, s) {
					t.Errorf("stdout lacks %q:\n%s", s, out)
				}
			}
			for _, s := range tt.not {
				if strings.Contains(out, s) {
					t.Errorf("stdout has %q:\n%s", s, out)
				}
			}
		})
	}
	// A masking policy: explain shows the plan by result position, or the refusal.
	mdir := t.TempDir()
	masked, err := os.ReadFile(filepath.Join(root, "tools", "demo", "policies", "demo-analysts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.Replace(string(masked), "  credential:", "    masking:\n      - columns: jitgate-demo.crm.customers.email\n        action: hash\n    detectors: [ssn]\n  credential:", 1)
	if err := os.WriteFile(filepath.Join(mdir, "p.yaml"), []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	mbase := append([]string{"policy", "explain", "--policies", mdir}, base[4:]...)
	for sql, want := range map[string][]string{
		"SELECT id, UPPER(email) AS e FROM crm.customers":    {"decision:   allow", "masking:    1 rule(s) by result position", "  - [1] e → hash", "masking detectors: ssn"},
		"SELECT id FROM crm.customers WHERE email LIKE 'a%'": {"masking:    refused", "agent sees: 403 masked_column_in_condition"},
		"SELECT name FROM crm.customers":                     {"masking:    no result column masked"},
	} {
		code, out, errs := runCLI(append(append([]string{}, mbase...), "--sql", sql)...)
		for _, s := range want {
			if code != 0 || !strings.Contains(out, s) {
				t.Errorf("%s: exit %d, stdout lacks %q:\n%s%s", sql, code, s, out, errs)
			}
		}
	}

	// --json keeps stdout the decision; the analysis goes to stderr.
	code, out, errs := runCLI(append(append([]string{}, base...), "--json", "--sql", "SELECT name FROM crm.customers")...)
	if code != 0 || !strings.Contains(out, `"allow": true`) || !strings.Contains(errs, "statement:  SELECT") {
		t.Errorf("json: %d\nstdout %s\nstderr %s", code, out, errs)
	}
}

func TestPolicyDiff(t *testing.T) {
	old := policyDir(t, map[string]string{"a.yaml": cliPolicy})
	same := policyDir(t, map[string]string{"renamed.yaml": cliPolicy})
	narrower := policyDir(t, map[string]string{"a.yaml": strings.Replace(cliPolicy, "deny: [acme.hr]", "deny: [acme.hr, acme.sales]", 1)})
	wider := policyDir(t, map[string]string{"a.yaml": cliPolicy, "etl.yaml": `apiVersion: jitgate.dev/v1
kind: AgentPolicy
metadata:
  name: etl
spec:
  who:
    groups:
      all: [etl]
  where:
    projects: [acme]
    writeTables: [acme.scratch.*]
    apis: [jobs.query]
  what:
    statementKinds: [INSERT]
`})
	broken := policyDir(t, map[string]string{"a.yaml": "kind: Nope\n"})
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout []string
		not    []string
	}{
		{"unchanged", []string{old, same}, 0, []string{"access: unchanged"}, []string{"policy changed"}},
		{"access lost", []string{old, narrower}, 1, []string{
			"policy changed: analysts@sha256:",
			"agent reporting-agent groups analysts:",
			"- tables.get acme.sales.any (now dataset_denied by analysts@sha256:",
			"- jobs.query SELECT reads acme.sales.any (now dataset_denied",
			"access: 0 gained, 2 lost"}, []string{"+ "}},
		{"access gained", []string{old, wider}, 1, []string{
			"policy added:   etl@sha256:",
			"agent * groups etl:",
			"+ jobs.query INSERT writes acme.scratch.any (granted by etl@sha256:",
			"access: 1 gained, 0 lost"}, []string{"- "}},
		{"access gained the other way round is lost", []string{wider, old}, 1, []string{"policy removed: etl@", "- jobs.query INSERT writes acme.scratch.any"}, nil},
		{"broken directory", []string{old, broken}, 2, nil, nil},
		{"one argument", []string{old}, 2, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := runCLI(append([]string{"policy", "diff"}, tt.args...)...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout %s\nstderr %s", code, tt.code, out, errs)
			}
			for _, s := range tt.stdout {
				if !strings.Contains(out, s) {
					t.Errorf("stdout lacks %q:\n%s", s, out)
				}
			}
			for _, s := range tt.not {
				if strings.Contains(out, s) {
					t.Errorf("stdout has %q:\n%s", s, out)
				}
			}
		})
	}
}
