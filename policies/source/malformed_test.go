package source

import (
	"errors"
	"strings"
	"testing"
)

// A valid approver group the cases below can reference.
const approvers = `apiVersion: jitgate.dev/v1
kind: ApproverGroup
metadata: {name: data-owners}
spec: {groups: [owners]}
`

func TestMalformedPolicies(t *testing.T) {
	cases := []struct {
		name string
		yaml string
		want []string
	}{
		{"unknown field with suggestion", `apiVersion: jitgate.dev/v1
kind: AgentPolicy
metadata: {name: a}
spec:
  who: {agents: [x]}
  where:
    tabels:
      allow: [p.d.t]
`, []string{`policies/a.yaml:7:5: unknown field "tabels" in where (did you mean "tables"?)`}},
		{"deny rule tables on a kind that cannot be scoped, and a bad table pattern", `apiVersion: jitgate.dev/v1
kind: AgentPolicy
metadata: {name: a}
spec:
  who: {agents: [x]}
  what:
    denyRules:
      - {name: r1, kind: exportData, tables: [p.d.t]}
      - {name: r2, kind: selectStar, tables: [p.d]}
`, []string{`policies/a.yaml:8:46: deny rule kind exportData cannot be scoped to tables (only selectStar and missingPartitionFilter rules take tables)`,
			`policies/a.yaml:9:47: bad pattern "p.d": has 2 segments, want 3 (write "project.dataset.table", e.g. "acme-prod.crm.*" or "acme-prod.*.users")`}},
		{"unknown field without suggestion", `apiVersion: jitgate.dev/v1
kind: AgentPolicy
metadata: {name: a}
spec:
  who: {agents: [x], color: red}
`, []string{`policies/a.yaml:5:22: unknown field "color" in who (valid fields: issuers, agents, groups)`}},
		{"wrong type: scalar for list", `apiVersion: jitgate.dev/v1
kind: AgentPolicy
metadata: {name: a}
spec:
  who:
    agents: reporting-agent
`, []string{`policies/a.yaml:6:13: agents must be a list, got the string "reporting-agent" (write agents: [reporting-agent])`}},
		{"wrong type: boolean for string", `apiVersion: jitgate.dev/v1
kind: AgentPolicy
metadata: {name: a}
spec:
  who: {agents: [yes, true]}
`, []string{`policies/a.yaml:5:23: agents[1] must be a string, got the boolean true (quote it: "true")`}},
		{"wrong type: string for bool", `apiVersion: jitgate.dev/v1
kind: AgentPolicy
metadata: {name: a}
spec:
  who: {agents: [x]}
  what:
    denyRules:
      - {name: r, kind: selectStar, dryRun: "maybe"}
`, []string{`policies/a.yaml:8:45: dryRun must be true or false, got the string "maybe"`}},
		{"bad table pattern", `apiVersion: jitgate.dev/v1
kind: AgentPolicy
metadata: {name: a}
spec:
  who: {agents: [x]}
  where:
    tables:
      allow: [acme.crm]
      deny: ["acme..users"]
`, []string{
			`policies/a.yaml:8:15: bad pattern "acme.crm": has 2 segments, want 3 (write "project.dataset.table", e.g. "acme-prod.crm.*" or "acme-prod.*.users")`,
			`policies/a.yaml:9:14: bad pattern "acme..users": empty segment (write "project.dataset.table", e.g. "acme-prod.crm.*" or "acme-prod.*.users")`,
		}},
		{"bad project pattern", `apiVersion: jitgate.dev/v1
kind: AgentPolicy
metadata: {name: a}
spec:
  who: {agents: [x]}
  where: {projects: [Acme_Prod]}
`, []string{`policies/a.yaml:6:22: bad pattern "Acme_Prod": project ids use lowercase letters, digits, hyphens (and domain: prefixes) (write a project id such as "acme-prod" or "acme-*")`}},
		{"bad duration", `apiVersion: jitgate.dev/v1
kind: AgentPolicy
metadata: {name: a}
spec:
  who: {agents: [x]}
  credential:
    mode: self-signed-jwt
    ttl: 5 minutes
`, []string{`policies/a.yaml:8:10: bad duration "5 minutes" for ttl (use a Go duration such as 30s, 5m or 1h)`}},
		{"credential ttl above 1h", `apiVersion: jitgate.dev/v1
kind: AgentPolicy
metadata: {name: a}
spec:
  who: {agents: [x]}
  credential: {mode: impersonate, serviceAccount: sa@p.iam.gserviceaccount.com, ttl: 2h}
`, []string{`policies/a.yaml:6:86: credential ttl 2h0m0s out of range (use a duration between 1m and 1h (default 5m))`}},
		{"impersonate without account, unknown mode", `apiVersion: jitgate.dev/v1
kind: AgentPolicy
metadata: {name: a}
spec:
  who: {agents: [x]}
  credential: {mode: impersonate}
---
apiVersion: jitgate.dev/v1
kind: AgentPolicy
metadata: {name: b}
spec:
  who: {agents: [x]}
  credential: {mode: self-signed}
`, []string{
			`policies/a.yaml:6:15: impersonate needs a service account (add serviceAccount: name@project.iam.gserviceaccount.com)`,
			`policies/a.yaml:13:22: unknown credential mode "self-signed" (one of: self-signed-jwt, impersonate)`,
		}},
		{"unknown API, detector, action, deny kind, statement kind", `apiVersion: jitgate.dev/v1
kind: AgentPolicy
metadata: {name: a}
spec:
  who: {agents: [x]}
  where: {apis: [jobs.querry]}
  what:
    statementKinds: [SELEKT]
    denyRules: [{name: r, kind: selectAll}]
    masking: [{columns: p.d.t.c, action: mask}]
    detectors: [emails]
`, []string{
			`policies/a.yaml:6:18: unknown API "jobs.querry" (did you mean "jobs.query"?)`,
			`policies/a.yaml:8:22: unknown statement kind "SELEKT" (did you mean "SELECT"?)`,
			`policies/a.yaml:9:33: unknown deny rule kind "selectAll" (one of: selectStar, missingPartitionFilter, informationSchemaJobs, externalQuery, exportData, executeImmediate, crossJoin, temporaryFunction, mlFunction)`,
			`policies/a.yaml:10:42: unknown mask action "mask" (one of: redact, null, hash, email-domain, last4)`,
			`policies/a.yaml:11:17: unknown detector "emails" (did you mean "email"?)`,
		}},
		{"leaky aggregate", `apiVersion: jitgate.dev/v1
kind: AgentPolicy
metadata: {name: a}
spec:
  who: {agents: [x]}
  what:
    masking:
      - {columns: p.d.t.email, action: hash, allowAggregates: [COUNT, MAX]}
`, []string{`policies/a.yaml:8:71: aggregate MAX returns a row's value (only COUNT, COUNT_DISTINCT, APPROX_COUNT_DISTINCT, SUM, AVG may see masked columns)`}},
		{"undefined approver group", approvers + `---
apiVersion: jitgate.dev/v1
kind: AgentPolicy
metadata: {name: a}
spec:
  who: {agents: [x]}
  what:
    approvals:
      - name: dml
        when: {statementKinds: [DML]}
        approverGroups: [data-owner, security]
        mode: later
`, []string{
			`policies/a.yaml:15:26: unknown approver group "data-owner" (did you mean "data-owners"?)`,
			`policies/a.yaml:15:38: unknown approver group "security" (define it with kind: ApproverGroup)`,
			`policies/a.yaml:16:15: unknown approval mode "later" (one of: hold, reject)`,
		}},
		{"hold timeout out of range and on reject", approvers + `---
apiVersion: jitgate.dev/v1
kind: AgentPolicy
metadata: {name: a}
spec:
  who: {agents: [x]}
  what:
    approvals:
      - {name: long, approverGroups: [data-owners], holdTimeout: 10m}
      - {name: rej, approverGroups: [data-owners], mode: reject, holdTimeout: 1m}
`, []string{
			`policies/a.yaml:13:66: hold timeout 10m0s out of range (use a duration between 1s and 4m (default 2m))`,
			`policies/a.yaml:14:79: holdTimeout is set on a reject-mode approval (remove it, or use mode: hold)`,
		}},
		{"duplicate policy names and rule names", `apiVersion: jitgate.dev/v1
kind: AgentPolicy
metadata: {name: a}
spec:
  who: {agents: [x]}
  what:
    denyRules:
      - {name: r, kind: selectStar}
      - {name: r, kind: exportData}
---
apiVersion: jitgate.dev/v1
kind: AgentPolicy
metadata:
  name: a
spec:
  who: {agents: [y]}
`, []string{
			`policies/a.yaml:9:16: duplicate rule name "r" (rule names must be unique within a policy)`,
			`policies/a.yaml:14:9: duplicate policy name "a" (already defined at policies/a.yaml:3:18; names must be unique across the directory; rename one)`,
		}},
		{"missing name, empty who, wrong apiVersion", `apiVersion: jitgate.dev/v2
kind: AgentPolicy
metadata: {description: nameless}
spec:
  who: {}
`, []string{
			`policies/a.yaml:1:13: unsupported apiVersion "jitgate.dev/v2" (use apiVersion: jitgate.dev/v1)`,
			`policies/a.yaml:3:11: metadata.name is required (add a name such as "analytics-readonly")`,
			`policies/a.yaml:5:8: who selects no agents (list issuers, agents or groups; to match every agent write agents: ["*"])`,
		}},
		{"unknown kind", `apiVersion: jitgate.dev/v1
kind: AgentPolicies
metadata: {name: a}
`, []string{`policies/a.yaml:2:7: unknown kind "AgentPolicies" (did you mean "AgentPolicy"?)`}},
		{"duplicate key", `apiVersion: jitgate.dev/v1
kind: AgentPolicy
metadata: {name: a}
spec:
  who: {agents: [x]}
  limits:
    maxRows: 10
    maxRows: 20
`, []string{`policies/a.yaml:8:5: duplicate field "maxRows" in limits (remove one; the first is on line 7)`}},
		{"bad byte size and negative rows", `apiVersion: jitgate.dev/v1
kind: AgentPolicy
metadata: {name: a}
spec:
  who: {agents: [x]}
  limits: {maxRequestBodyBytes: 10 megs, maxRows: -1, maxResponseBodyBytes: 1GiB}
`, []string{
			`policies/a.yaml:6:33: bad byte size "10 megs" for maxRequestBodyBytes (use a non-negative integer with an optional unit, e.g. 1048576, 10MiB or 5GB)`,
			`policies/a.yaml:6:51: maxRows is negative (use a positive number of rows)`,
		}},
		{"YAML syntax error", "apiVersion: jitgate.dev/v1\nkind: AgentPolicy\nmetadata: {name: a\n", []string{
			`policies/a.yaml:3:1: YAML syntax: did not find expected ',' or '}' (fix the indentation or quoting on this line)`,
		}},
		{"not a mapping", "- apiVersion: jitgate.dev/v1\n", []string{
			`policies/a.yaml:1:1: a policy document must be a mapping, got a list (start with apiVersion: jitgate.dev/v1)`,
		}},
		{"merge keys refused", `apiVersion: jitgate.dev/v1
kind: AgentPolicy
metadata: {name: a}
spec:
  who: &w {agents: [x]}
  where:
    <<: *w
`, []string{`policies/a.yaml:7:5: unsupported key in where (merge keys (<<) and complex keys are not supported; write the fields out)`}},
		{"issuer must be a URL, agent empty", `apiVersion: jitgate.dev/v1
kind: AgentPolicy
metadata: {name: Bad_Name}
spec:
  who: {issuers: [accounts.google.com], agents: [""]}
`, []string{
			`policies/a.yaml:3:18: bad name "Bad_Name" (use lowercase letters, digits and hyphens, at most 63 characters)`,
			`policies/a.yaml:5:19: bad issuer "accounts.google.com" (an issuer is the OIDC issuer URL, e.g. https://accounts.google.com)`,
			`policies/a.yaml:5:50: bad pattern "": empty (write an agent id, "*" matches any characters)`,
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(File{Name: "policies/a.yaml", Data: []byte(tc.yaml)})
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("want an ErrorList, got %v", err)
			}
			got := strings.Split(list.Error(), "\n")
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestErrorsAreSortedAcrossFiles(t *testing.T) {
	bad := func(field string) []byte {
		return []byte("apiVersion: jitgate.dev/v1\nkind: AgentPolicy\nmetadata: {name: n}\nspec:\n  who: {agents: [x]}\n  " + field + ": {}\n")
	}
	_, err := Parse(File{"b.yaml", bad("wher")}, File{"a.yaml", bad("whta")})
	want := `a.yaml:6:3: unknown field "whta" in spec (did you mean "what"?)
b.yaml:3:18: duplicate policy name "n" (already defined at a.yaml:3:18; names must be unique across the directory; rename one)
b.yaml:6:3: unknown field "wher" in spec (did you mean "where"?)`
	if err == nil || err.Error() != want {
		t.Errorf("got\n%v\nwant\n%s", err, want)
	}
}
