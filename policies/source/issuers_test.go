package source_test

import (
	"strings"
	"testing"

	"github.com/jitgate/jitgate/policies"
	"github.com/jitgate/jitgate/policies/source"
)

const (
	prodIssuer = "https://login.prod.example"
	devIssuer  = "http://127.0.0.1:18002" // jitgated's development issuer mints any agent id
)

const etlPolicy = `apiVersion: jitgate.dev/v1
kind: AgentPolicy
metadata: {name: etl}
spec:
  who:
    agents: [etl-agent]
  where:
    projects: [acme]
    apis: [datasets.list, jobs.getQueryResults]
---
apiVersion: jitgate.dev/v1
kind: ApproverGroup
metadata: {name: owners}
spec:
  members: [dana@acme.example]
`

// Review finding: an agent id is unique only within its issuer. With several issuers
// trusted, a policy (or approver group) that does not name its issuers does not load,
// and the error names the document and its position.
func TestSeveralIssuersRequireWhoIssuers(t *testing.T) {
	file := source.File{Name: "etl.yaml", Data: []byte(etlPolicy)}
	// One trusted issuer (or none known, as in `jitgate policy check`): nothing required.
	for _, trusted := range [][]string{nil, {prodIssuer}} {
		if _, err := source.ParseWith(source.Options{TrustedIssuers: trusted}, file); err != nil {
			t.Fatalf("trusted %v: %v", trusted, err)
		}
	}
	_, err := source.ParseWith(source.Options{TrustedIssuers: []string{prodIssuer, devIssuer}}, file)
	list, ok := err.(source.ErrorList)
	if !ok || len(list) != 2 {
		t.Fatalf("two issuers trusted: err = %v, want two errors", err)
	}
	for _, want := range []string{
		`etl.yaml:6:5: policy "etl" has no who.issuers, which is required because the gateway trusts 2 issuers (` + prodIssuer + ", " + devIssuer + ")",
		`etl.yaml:15:3: approver group "owners" has no spec.issuers`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("errors\n%v\nlack %q", err, want)
		}
	}

	// Naming the production issuer loads, and the same agent id from the development
	// issuer no longer matches the policy.
	scoped := strings.Replace(strings.Replace(etlPolicy, "    agents: [etl-agent]\n", "    issuers: ["+prodIssuer+"]\n    agents: [etl-agent]\n", 1),
		"  members: [dana@acme.example]\n", "  issuers: ["+prodIssuer+"]\n  members: [dana@acme.example]\n", 1)
	res, err := source.ParseWith(source.Options{TrustedIssuers: []string{prodIssuer, devIssuer}}, source.File{Name: "etl.yaml", Data: []byte(scoped)})
	if err != nil {
		t.Fatal(err)
	}
	if g := res.Bundle.ApproverGroups; len(g) != 1 || len(g[0].Spec.Issuers) != 1 || g[0].Spec.Issuers[0] != prodIssuer {
		t.Fatalf("approver group issuers not compiled: %+v", g)
	}
	call := policies.Call{API: "datasets.list", Project: "acme"}
	if d := policies.Evaluate(res.Bundle, policies.Input{Identity: policies.Identity{AgentID: "etl-agent", Issuer: prodIssuer}, Call: call}); !d.Allow {
		t.Errorf("etl-agent from the production issuer: %s %v", d.Rule, d.Reasons)
	}
	if d := policies.Evaluate(res.Bundle, policies.Input{Identity: policies.Identity{AgentID: "etl-agent", Issuer: devIssuer}, Call: call}); d.Allow || d.Rule != policies.RuleDefaultDeny {
		t.Errorf("etl-agent from the development issuer: allow=%v %s", d.Allow, d.Rule)
	}
}
