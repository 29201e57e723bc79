package policies_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/jitgate/jitgate/policies"
	"github.com/jitgate/jitgate/policies/source"
)

// compile builds a bundle from YAML documents (the test may use the YAML decoder; the
// package itself may not).
func compile(t testing.TB, docs ...string) *policies.Bundle {
	t.Helper()
	r, err := source.Parse(source.File{Name: "test.yaml", Data: []byte(strings.Join(docs, "\n---\n"))})
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return r.Bundle
}

func policy(name, spec string) string {
	return "apiVersion: jitgate.dev/v1\nkind: AgentPolicy\nmetadata: {name: " + name + "}\nspec:\n" + spec
}

const owners = "apiVersion: jitgate.dev/v1\nkind: ApproverGroup\nmetadata: {name: owners}\nspec: {groups: [owners]}"

func query(agent, kind string, reads ...string) policies.Input {
	return policies.Input{
		Identity: policies.Identity{AgentID: agent, Issuer: "https://issuer.example"},
		Call:     policies.Call{API: "jobs.query", Project: "acme"},
		Query:    &policies.Query{},
		Analysis: &policies.Analysis{StatementKind: kind, ReferencedTables: reads},
	}
}

var reader = policy("reader", `  who: {agents: [agent-1, "bot-*"]}
  where:
    projects: [acme]
    datasets: {allow: [acme.crm], deny: [acme.hr]}
    tables: {allow: ["acme.*.events_*"], deny: ["acme.*.users"]}
    apis: [jobs.query, jobs.get, tabledata.list, tables.get, tables.list]
  what:
    statementKinds: [SELECT]
    masking:
      - {columns: acme.crm.customers.email, action: email-domain, allowAggregates: [COUNT, COUNT_DISTINCT]}
    detectors: [email]
  limits: {maxRows: 500, maxResponseBodyBytes: 10MiB}
`)

func TestEvaluatePrecedence(t *testing.T) {
	b := compile(t, reader, owners,
		policy("overlay", `  who: {agents: ["agent-*", "bot-*"]}
  what:
    masking:
      - {columns: acme.crm.customers.email, action: hash, allowAggregates: [COUNT]}
      - {columns: "acme.*.*.ssn", action: redact}
    detectors: [ssn, email]
    denyRules:
      - {name: no-star, kind: selectStar, dryRun: true}
      - {name: no-jobs, kind: informationSchemaJobs}
    approvals:
      - {name: big, when: {minBytes: 1GB}, approverGroups: [owners]}
  limits: {maxRows: 100, maxRequestBodyBytes: 1MiB}
`),
		policy("writer", `  who: {agents: [agent-1], groups: {all: [etl]}}
  where:
    projects: [acme]
    datasets: {allow: [acme.scratch]}
    writeTables: [acme.scratch.*]
    apis: [jobs.query, jobs.insert]
  what:
    statementKinds: [SELECT, DML]
    approvals:
      - {name: writes, when: {statementKinds: [DML], tables: [acme.scratch.*]}, approverGroups: [owners], mode: reject}
  credential: {mode: impersonate, serviceAccount: w@acme.iam.gserviceaccount.com, ttl: 10m}
`))
	etl := func(in policies.Input) policies.Input { in.Identity.Groups = []string{"etl"}; return in }
	gb := int64(5e9)
	cases := []struct {
		name      string
		in        policies.Input
		allow     bool
		rule      string
		policy    string
		ruleName  string
		reasonHas string
	}{
		{"default deny names the agent", query("stranger", "SELECT", "acme.crm.a"), false, policies.RuleDefaultDeny, "", "", "no policy matches agent stranger"},
		{"dataset grant", query("agent-1", "SELECT", "acme.crm.customers"), true, policies.RuleAllow, "reader", "", "granted by policy reader"},
		{"agent wildcard", query("bot-7", "SELECT", "acme.crm.customers"), true, policies.RuleAllow, "reader", "", ""},
		{"table wildcard inside a segment", query("agent-1", "SELECT", "acme.web.events_2026"), true, policies.RuleAllow, "reader", "", ""},
		{"not granted", query("agent-1", "SELECT", "acme.web.pages"), false, policies.RuleTableNotAllowed, "reader", "where.tables.allow", "acme.web.pages"},
		{"table deny wildcard wins over dataset allow", query("agent-1", "SELECT", "acme.crm.users"), false, policies.RuleTableDenied, "reader", "where.tables.deny", `"acme.*.users"`},
		{"deny is case-insensitive", query("agent-1", "SELECT", "acme.crm.USERS"), false, policies.RuleTableDenied, "reader", "where.tables.deny", ""},
		{"dataset deny", query("agent-1", "SELECT", "acme.hr.events_1"), false, policies.RuleDatasetDenied, "reader", "where.datasets.deny", ""},
		{"deny rule in another policy wins", func() policies.Input {
			in := query("agent-1", "SELECT", "acme.crm.a")
			in.Analysis.Findings = []policies.DenyRuleKind{policies.DenyInformationSchemaJobs}
			return in
		}(), false, policies.RuleDenyRule, "overlay", "no-jobs", ""},
		{"statement kind", query("agent-1", "DELETE", "acme.crm.a"), false, policies.RuleStatementKindNotAllowed, "reader", "what.statementKinds", "DELETE"},
		{"grants never combine across policies", func() policies.Input {
			return etl(query("agent-1", "SELECT", "acme.crm.a", "acme.scratch.b"))
		}(), false, policies.RuleTableNotAllowed, "reader", "", ""},
		{"write needs writeTables", func() policies.Input {
			in := etl(query("agent-1", "INSERT", "acme.scratch.a"))
			in.Analysis.WrittenTables = []string{"acme.crm.a"}
			return in
		}(), false, policies.RuleWriteNotAllowed, "writer", "where.writeTables", ""},
		{"destination needs DML", func() policies.Input {
			in := query("agent-1", "SELECT", "acme.crm.a")
			in.Query.Destination = "acme.crm.copy"
			return in
		}(), false, policies.RuleStatementKindNotAllowed, "reader", "", "destination"},
		{"no analysis is not decidable", func() policies.Input {
			in := query("agent-1", "SELECT")
			in.Analysis = nil
			return in
		}(), false, policies.RuleNotDecidable, "", "", "SQL analysis"},
		{"legacy SQL", func() policies.Input {
			in := query("agent-1", "SELECT", "acme.crm.a")
			in.Query.LegacySQL = true
			return in
		}(), false, policies.RuleLegacySQL, "", "", ""},
		{"unknown statement kind", query("agent-1", "SELECT_MAGIC", "acme.crm.a"), false, policies.RuleUnknownStatementKind, "", "", ""},
		{"unqualified table", query("agent-1", "SELECT", "crm.a"), false, policies.RuleNotDecidable, "", "", "fully qualified"},
		{"unknown API", policies.Input{Identity: policies.Identity{AgentID: "agent-1"}, Call: policies.Call{API: "jobs.upload", Project: "acme"}}, false, policies.RuleUnknownAPI, "", "", ""},
		{"API not granted", policies.Input{Identity: policies.Identity{AgentID: "agent-1"}, Call: policies.Call{API: "datasets.list", Project: "acme"}}, false, policies.RuleAPINotAllowed, "reader", "where.apis", ""},
		{"project not granted", func() policies.Input {
			in := query("agent-1", "SELECT", "acme.crm.a")
			in.Call.Project = "other"
			return in
		}(), false, policies.RuleProjectNotAllowed, "reader", "", ""},
		{"job of unknown owner", policies.Input{Identity: policies.Identity{AgentID: "agent-1"}, Call: policies.Call{API: "jobs.get", Project: "acme", JobID: "j"}}, false, policies.RuleNotDecidable, "", "", "job ledger"},
		{"job of another agent", policies.Input{Identity: policies.Identity{AgentID: "agent-1"}, Call: policies.Call{API: "jobs.get", Project: "acme", JobID: "j"}, Job: &policies.Job{OwnerAgentID: "bot-1"}}, false, policies.RuleJobNotOwned, "", "", ""},
		{"own job", policies.Input{Identity: policies.Identity{AgentID: "agent-1", Issuer: "https://prod.example"}, Call: policies.Call{API: "jobs.get", Project: "acme", JobID: "j"}, Job: &policies.Job{OwnerAgentID: "agent-1", OwnerIssuer: "https://prod.example"}}, true, policies.RuleAllow, "reader", "", ""},
		{"job of the same agent id from another issuer", policies.Input{Identity: policies.Identity{AgentID: "agent-1", Issuer: "https://dev.example"}, Call: policies.Call{API: "jobs.get", Project: "acme", JobID: "j"}, Job: &policies.Job{OwnerAgentID: "agent-1", OwnerIssuer: "https://prod.example"}}, false, policies.RuleJobNotOwned, "", "", ""},
		{"tabledata.list is a read", policies.Input{Identity: policies.Identity{AgentID: "agent-1"}, Call: policies.Call{API: "tabledata.list", Project: "acme", Dataset: "hr", Table: "x"}}, false, policies.RuleDatasetDenied, "reader", "", ""},
		{"tables.list in a dataset with a granted table", policies.Input{Identity: policies.Identity{AgentID: "agent-1"}, Call: policies.Call{API: "tables.list", Project: "acme", Dataset: "web"}}, true, policies.RuleAllow, "reader", "", ""},
		{"writer allowed with approval", func() policies.Input {
			in := etl(query("agent-1", "MERGE", "acme.scratch.a"))
			in.Analysis.WrittenTables = []string{"acme.scratch.a"}
			in.Analysis.EstimatedBytes = &gb
			return in
		}(), true, policies.RuleAllow, "writer", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := policies.Evaluate(b, tc.in)
			if d.Allow != tc.allow || d.Rule != tc.rule {
				t.Fatalf("got allow=%v rule=%s, want allow=%v rule=%s; reasons: %v", d.Allow, d.Rule, tc.allow, tc.rule, d.Reasons)
			}
			gotPolicy := ""
			if d.Policy != nil {
				gotPolicy = d.Policy.Name
				if !strings.HasPrefix(d.Policy.Version, "sha256:") {
					t.Errorf("policy version %q", d.Policy.Version)
				}
			}
			if gotPolicy != tc.policy {
				t.Errorf("policy %q, want %q", gotPolicy, tc.policy)
			}
			if tc.ruleName != "" && d.RuleName != tc.ruleName {
				t.Errorf("ruleName %q, want %q", d.RuleName, tc.ruleName)
			}
			if tc.reasonHas != "" && !strings.Contains(strings.Join(d.Reasons, "\n"), tc.reasonHas) {
				t.Errorf("reasons %q do not mention %q", d.Reasons, tc.reasonHas)
			}
			if d.BundleVersion != b.Version {
				t.Errorf("bundle version %q", d.BundleVersion)
			}
			if !d.Allow && (d.Credential != nil || d.MaskPlan != nil || d.Approvals != nil) {
				t.Errorf("a denial carries allow-only fields: %+v", d)
			}
		})
	}
}

func TestEvaluateMergesMasksApprovalsLimitsCredentials(t *testing.T) {
	b := compile(t, reader, owners, policy("overlay", `  who: {agents: ["*"]}
  what:
    masking:
      - {columns: acme.CRM.customers.email, action: hash, allowAggregates: [COUNT]}
      - {columns: "acme.*.*.ssn", action: redact}
    detectors: [ssn, email]
    denyRules: [{name: no-star, kind: selectStar, dryRun: true}]
    approvals:
      - {name: big, when: {minBytes: 1GB}, approverGroups: [owners]}
  limits: {maxRows: 100, maxRequestBodyBytes: 1MiB}
`))
	in := query("agent-1", "SELECT", "acme.crm.customers")
	in.Analysis.Findings = []policies.DenyRuleKind{policies.DenySelectStar}
	d := policies.Evaluate(b, in)
	if !d.Allow {
		t.Fatalf("denied: %v", d.Reasons)
	}
	var plan []map[string]any
	raw, _ := json.Marshal(d.MaskPlan)
	json.Unmarshal(raw, &plan)
	wantPlan := `[{"action":"redact","columns":"acme.*.*.ssn","policies":["overlay"]},{"action":"hash","allowAggregates":["COUNT"],"columns":"acme.crm.customers.email","policies":["overlay","reader"]}]`
	if got, _ := json.Marshal(plan); string(got) != wantPlan {
		t.Errorf("mask plan\n%s\nwant\n%s", got, wantPlan)
	}
	if e, ok := d.MaskPlan.For("acme.crm.customers.EMAIL"); !ok || e.Action != policies.MaskHash {
		t.Errorf("For(email) = %+v, %v", e, ok)
	}
	if e, ok := d.MaskPlan.For("acme.hr.people.ssn.last4"); !ok || e.Action != policies.MaskRedact {
		t.Errorf("nested field of a masked column: %+v, %v", e, ok)
	}
	if _, ok := d.MaskPlan.For("acme.crm.customers.name"); ok {
		t.Errorf("unmasked column matched")
	}
	if !reflect.DeepEqual(d.Detectors, []policies.Detector{"email", "ssn"}) {
		t.Errorf("detectors %v", d.Detectors)
	}
	if len(d.Approvals) != 1 || d.Approvals[0].Rule != "big" || d.Approvals[0].Mode != policies.ApprovalHold || d.Approvals[0].Uses != 1 {
		t.Errorf("approvals %+v (an unknown byte estimate must require approval)", d.Approvals)
	}
	if d.Limits != (policies.Limits{MaxRows: 100, MaxRequestBodyBytes: 1 << 20, MaxResponseBodyBytes: 10 << 20}) {
		t.Errorf("limits %+v", d.Limits)
	}
	if d.Credential == nil || d.Credential.Mode != policies.CredentialSelfSignedJWT || d.Credential.TTL != policies.DefaultCredentialTTL {
		t.Errorf("default credential %+v", d.Credential)
	}
	if len(d.DryRunWouldDeny) != 1 || d.DryRunWouldDeny[0].Rule != "no-star" {
		t.Errorf("dry run %+v", d.DryRunWouldDeny)
	}
	small := int64(10)
	in.Analysis.EstimatedBytes = &small
	if d := policies.Evaluate(b, in); len(d.Approvals) != 0 {
		t.Errorf("small query needs approval: %+v", d.Approvals)
	}
}

func TestEvaluateCredentialConflict(t *testing.T) {
	spec := func(sa string) string {
		return `  who: {agents: [a]}
  where: {projects: [acme], datasets: {allow: [acme.d]}, apis: [jobs.query]}
  what: {statementKinds: [SELECT]}
  credential: {mode: impersonate, serviceAccount: ` + sa + `, ttl: 30m}
`
	}
	b := compile(t, policy("one", spec("x@acme.iam.gserviceaccount.com")), policy("two", spec("y@acme.iam.gserviceaccount.com")))
	d := policies.Evaluate(b, query("a", "SELECT", "acme.d.t"))
	if d.Allow || d.Rule != policies.RuleCredentialConflict || !strings.Contains(d.Reasons[0], "one and two") {
		t.Fatalf("got %+v", d)
	}
	b = compile(t, policy("one", spec("x@acme.iam.gserviceaccount.com")), policy("two", strings.Replace(spec("x@acme.iam.gserviceaccount.com"), "30m", "2m", 1)))
	d = policies.Evaluate(b, query("a", "SELECT", "acme.d.t"))
	if !d.Allow || d.Credential.TTL.String() != "2m0s" || len(d.Granting) != 2 {
		t.Fatalf("agreeing credentials: %+v", d)
	}
}

func TestEvaluateWho(t *testing.T) {
	b := compile(t, policy("p", `  who:
    issuers: [https://issuer.example]
    groups: {any: [a, b], all: [core]}
  where: {projects: [acme], apis: [datasets.list]}
`))
	in := func(iss string, groups ...string) policies.Input {
		return policies.Input{Identity: policies.Identity{AgentID: "x", Issuer: iss, Groups: groups}, Call: policies.Call{API: "datasets.list", Project: "acme"}}
	}
	for _, tc := range []struct {
		in    policies.Input
		allow bool
	}{
		{in("https://issuer.example", "a", "core"), true},
		{in("https://issuer.example", "b", "core", "z"), true},
		{in("https://issuer.example", "a"), false},
		{in("https://issuer.example", "core"), false},
		{in("https://other.example", "a", "core"), false},
	} {
		if d := policies.Evaluate(b, tc.in); d.Allow != tc.allow {
			t.Errorf("%+v: allow=%v (%v)", tc.in.Identity, d.Allow, d.Reasons)
		}
	}
}

func TestBundleIntegrity(t *testing.T) {
	if d := policies.Evaluate(&policies.Bundle{}, query("a", "SELECT")); d.Allow || d.Rule != policies.RuleInvalidBundle {
		t.Errorf("a hand-made bundle was used: %+v", d)
	}
	if d := policies.Evaluate(nil, query("a", "SELECT")); d.Allow {
		t.Errorf("nil bundle allowed")
	}
	b := compile(t, reader)
	raw, _ := b.Encode()
	if _, err := policies.ParseBundle(raw); err != nil {
		t.Fatal(err)
	}
	for _, tamper := range []struct{ from, to string }{
		{`"acme.crm"`, `"acme.hr"`}, // content changed, version not
		{`"apiVersion":"jitgate.dev/bundle/v1"`, `"apiVersion":"v0"`},
		{`"statementKinds":["SELECT"]`, `"statementKinds":["SELECT"],"extra":1`},
		{`"statementKinds":["SELECT"]`, `"statementKinds":["SELEKT"]`},
	} {
		bad := strings.Replace(string(raw), tamper.from, tamper.to, 1)
		if bad == string(raw) {
			t.Fatalf("tamper %q did not apply", tamper.from)
		}
		if _, err := policies.ParseBundle([]byte(bad)); err == nil {
			t.Errorf("ParseBundle accepted a bundle with %s -> %s", tamper.from, tamper.to)
		}
	}
}

func TestPatterns(t *testing.T) {
	for _, tc := range []struct {
		pat   string
		kind  policies.PatternKind
		name  string
		match bool
	}{
		{"acme.crm.*", policies.TablePattern, "acme.crm.users", true},
		{"acme.crm.*", policies.TablePattern, "acme.crm2.users", false},
		{"acme.*.users", policies.TablePattern, "acme.hr.users", true},
		{"acme.*.users", policies.TablePattern, "acme.hr.users_v2", false},
		{"acme-*.d.t", policies.TablePattern, "acme-dev.d.t", true},
		{"*.*.*", policies.TablePattern, "a.b.c", true},
		{"*.*.*", policies.TablePattern, "a.b", false},
		{"example.com:acme.crm.*", policies.TablePattern, "example.com:acme.crm.t", true},
		{"a.b.t.addr", policies.ColumnPattern, "a.b.t.addr.city", true},
		{"a.b.t.addr", policies.ColumnPattern, "a.b.t.address", false},
		{"etl-*-prod", policies.AgentPattern, "etl-x.y-prod", true},
	} {
		p, err := policies.ParsePattern(tc.pat, tc.kind)
		if err != nil {
			t.Fatalf("%s: %v", tc.pat, err)
		}
		if got := p.Match(tc.name, false); got != tc.match {
			t.Errorf("%s ~ %s = %v, want %v", tc.pat, tc.name, got, tc.match)
		}
	}
}

// A deny rule whose finding is present names itself even when the call is also
// undecidable (e.g. INFORMATION_SCHEMA's region-qualified four-part names).
func TestNamedDenyRuleBeatsNotDecidable(t *testing.T) {
	b := compile(t, policy("jobs-history", `  who: {agents: [agent-1]}
  where: {projects: [acme], apis: [jobs.query]}
  what:
    statementKinds: [SELECT]
    denyRules: [{name: no-jobs-history, kind: informationSchemaJobs}]
`))
	in := query("agent-1", "SELECT", "acme.region-us.INFORMATION_SCHEMA.JOBS_BY_PROJECT")
	in.Analysis.Findings = []policies.DenyRuleKind{"informationSchemaJobs"}
	d := policies.Evaluate(b, in)
	if d.Allow || d.Rule != policies.RuleDenyRule || d.RuleName != "no-jobs-history" {
		t.Fatalf("decision %+v, want deny by rule no-jobs-history", d)
	}
	in.Analysis.Findings = nil
	if d := policies.Evaluate(b, in); d.Allow || d.Rule != policies.RuleNotDecidable {
		t.Fatalf("without the finding: %+v, want not_decidable", d)
	}
}
