package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jitgate/jitgate/e2e/stack"
	"github.com/jitgate/jitgate/policies"
	"github.com/jitgate/jitgate/policies/conformance"
	"github.com/jitgate/jitgate/policies/source"
)

// TestConformanceThroughEnvoy is a vector-style table decided three ways for the same
// policy bundle: by the gateway (real Envoy running the compiled filter, which checks
// the control plane's allow against the bundle pushed over ECDS, and jitgated), by
// policies.Evaluate natively, and by policies.EvaluateCall (the filter's part) natively.
// The calls need no SQL analysis or job ledger, so all three must agree exactly:
// allowed calls reach the upstream, denied ones are 403 with the rule as
// x-jitgate-deny-reason.
func TestConformanceThroughEnvoy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := source.Load(policiesDir)
	if err != nil {
		t.Fatal(err)
	}
	b := res.Bundle
	// The gateway decides with this bundle (another test may have just restored it).
	eventually(t, 10*time.Second, "jitgated and the xDS snapshot use bundle "+b.Version, func() bool {
		st := status(t)
		return st.Policies.Version == b.Version && st.XDS.PolicyVersion == b.Version
	})
	eventually(t, 10*time.Second, "Envoy holds the bundle in the filter configuration", func() bool {
		dump, err := stack.ConfigDump(ctx, gw.Admin)
		return err == nil && strings.Contains(dump, `\"policyVersion\":\"`+b.Version+`\",\"policyBundle\":{`)
	})

	type principal struct {
		agent  string
		groups []string
		token  string
	}
	principals := []*principal{
		{agent: agentID, groups: []string{"analysts"}, token: agentToken},
		{agent: "intern-agent", groups: []string{"interns"}},
		{agent: "lone-agent"},
		{agent: "analyst-2", groups: []string{"staff", "analysts"}},
	}
	for _, p := range principals {
		if p.token == "" {
			if p.token, err = gw.Token(ctx, p.agent, p.groups...); err != nil {
				t.Fatal(err)
			}
		}
	}
	const pp = "/bigquery/v2/projects/"
	calls := []struct {
		path string
		call policies.Call
	}{
		{pp + project + "/datasets/crm/tables/customers", policies.Call{API: "tables.get", Project: project, Dataset: "crm", Table: "customers"}},
		{pp + project + "/datasets/crm/tables/customers/data?maxResults=2", policies.Call{API: "tabledata.list", Project: project, Dataset: "crm", Table: "customers"}},
		{pp + project + "/datasets/crm/tables", policies.Call{API: "tables.list", Project: project, Dataset: "crm"}},
		{pp + project + "/datasets/crm", policies.Call{API: "datasets.get", Project: project, Dataset: "crm"}},
		{pp + project + "/datasets", policies.Call{API: "datasets.list", Project: project}},
		{pp + project + "/datasets/hr/tables/people", policies.Call{API: "tables.get", Project: project, Dataset: "hr", Table: "people"}},
		{pp + project + "/datasets/hr/tables/people/data", policies.Call{API: "tabledata.list", Project: project, Dataset: "hr", Table: "people"}},
		{pp + project + "/datasets/hr", policies.Call{API: "datasets.get", Project: project, Dataset: "hr"}},
		{pp + "other-project/datasets/crm/tables", policies.Call{API: "tables.list", Project: "other-project", Dataset: "crm"}},
		{pp + project + "/jobs", policies.Call{API: "jobs.list", Project: project}},
	}
	allowed, denied := 0, 0
	for _, p := range principals {
		for _, c := range calls {
			name := p.agent + " " + c.call.API + " " + strings.TrimPrefix(c.path, pp)
			t.Run(name, func(t *testing.T) {
				in := policies.Input{Identity: policies.Identity{AgentID: p.agent, Issuer: gw.DevIssuer, Groups: p.groups}, Call: c.call}
				if !conformance.CallDecidable(in) {
					t.Fatalf("%s needs SQL analysis or the ledger; not comparable here", c.call.API)
				}
				want := policies.Evaluate(b, in)
				v := conformance.Vector{Name: name, Input: in, Expect: conformance.Expect{Allow: want.Allow, Rule: want.Rule, RuleName: &want.RuleName}}
				if err := v.CheckCallOnly(policies.EvaluateCall(b, in)); err != nil {
					t.Errorf("the filter's part disagrees with Evaluate: %v", err)
				}
				before := upstreamRequests(t)
				resp, body := rawCallAs(t, "Bearer "+p.token, "GET", c.path, nil, nil)
				reason := resp.Header.Get("x-jitgate-deny-reason")
				reached := upstreamRequests(t) != before
				if want.Allow {
					allowed++
					if resp.StatusCode == 403 || reason != "" || !reached {
						t.Fatalf("Evaluate allows (%s); the gateway answered %d %q (reached upstream: %v): %s", strings.Join(want.Reasons, "; "), resp.StatusCode, reason, reached, body)
					}
					return
				}
				denied++
				if resp.StatusCode != 403 || reason != want.Rule || reached {
					t.Fatalf("Evaluate denies with %s (%s); the gateway answered %d %q (reached upstream: %v): %s", want.Rule, strings.Join(want.Reasons, "; "), resp.StatusCode, reason, reached, body)
				}
				var e bqError
				if err := json.Unmarshal(body, &e); err != nil || !strings.Contains(e.Error.Message, "("+want.Rule+")") {
					t.Errorf("denial message %q does not name rule %s", e.Error.Message, want.Rule)
				}
				if want.Policy != nil && !strings.Contains(e.Error.Message, want.Policy.Name+"@"+want.Policy.Version) {
					t.Errorf("denial message %q does not name policy %s@%s", e.Error.Message, want.Policy.Name, want.Policy.Version)
				}
			})
		}
	}
	if allowed == 0 || denied == 0 {
		t.Fatalf("table exercises %d allowed and %d denied calls; want both", allowed, denied)
	}
	// The filter parsed the bundle at start (V8, inside Envoy): its cost is in the log.
	for _, l := range strings.Split(gw.Log("envoy"), "\n") {
		if i := strings.Index(l, "policyVersion="+b.Version+" policies="); i >= 0 {
			t.Logf("filter start: %s", l[i:])
			break
		}
	}
}
