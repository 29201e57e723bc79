package plugin

import (
	"strings"
	"testing"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/jitgate/jitgate/filter/authorize"
	"github.com/jitgate/jitgate/policies"
	"github.com/jitgate/jitgate/policies/source"
)

// legacyPolicies: agent-7 of testPolicies (no legacy grant) and legacy-agent, whom a
// policy grants legacy SQL unanalysed.
const legacyPolicies = testPolicies + `---
apiVersion: jitgate.dev/v1
kind: AgentPolicy
metadata: {name: legacy}
spec:
  who: {agents: [legacy-agent]}
  where: {projects: [p], tables: {allow: [p.d.t]}, apis: [jobs.query, jobs.insert]}
  what: {statementKinds: [SELECT], legacySql: true, legacySqlAnyTable: true}
`

// TestLegacySQLNotAnalysed: the filter's own policy check allows a legacy query only for
// an agent whose policy grants it (what.legacySql), and the agent's response says the
// SQL was not analysed (x-jitgate-analysis), whether the control plane's answer said so
// or only the filter's evaluation of the bundle did; standard SQL carries no such header.
func TestLegacySQLNotAnalysed(t *testing.T) {
	r, err := source.Parse(source.File{Name: "test.yaml", Data: []byte(legacyPolicies)})
	if err != nil {
		t.Fatal(err)
	}
	b := r.Bundle
	cfg := bundleConfig(t, b, "")
	legacyAgent := authorize.Identity{AgentID: "legacy-agent", Issuer: "https://issuer.test"}
	agent7 := authorize.Identity{AgentID: "agent-7", Issuer: "https://issuer.test"}
	allowWith := func(id authorize.Identity, notAnalysed string) *answer {
		resp := allowResponse()
		resp.Identity = &id
		resp.Policy = &authorize.PolicyRef{Name: "legacy", Bundle: b.Version}
		resp.NotAnalysed = notAnalysed
		raw, err := resp.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return ok200(raw)
	}
	queryReq := func(body string, a *answer) request {
		return request{method: "POST", path: "/bigquery/v2/projects/p/queries", chunks: withBody(body), answer: a}
	}
	const legacyFlag = `{"query":"SELECT name FROM [p:d.t]","useLegacySql":true}`
	const legacyAbsent = `{"query":"SELECT name FROM d.t"}`
	const legacyPrefix = `{"query":"#legacySQL\nSELECT name FROM [p:d.t]","useLegacySql":false}`
	const standard = `{"query":"SELECT name FROM d.t","useLegacySql":false}`
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host, status := startHost(t, vm, cfg)
		if status != types.OnPluginStartStatusOK {
			t.Fatalf("plugin did not start: %q", host.GetCriticalLogs())
		}
		for _, c := range []struct {
			name    string
			req     request
			header  string // "" = none
			refused string // the filter's rule when it refuses
		}{
			{"flag, control plane says not analysed", queryReq(legacyFlag, allowWith(legacyAgent, policies.NotAnalysedLegacySQL)), "not analysed: legacy SQL", ""},
			{"absent flag", queryReq(legacyAbsent, allowWith(legacyAgent, policies.NotAnalysedLegacySQL)), "not analysed: legacy SQL", ""},
			{"#legacySQL prefix, only the filter's check says so", queryReq(legacyPrefix, allowWith(legacyAgent, "")), "not analysed: legacy SQL", ""},
			{"standard SQL", queryReq(standard, allowWith(legacyAgent, "")), "", ""},
			{"no grant: refused even when the control plane allowed", queryReq(legacyFlag, allowWith(agent7, policies.NotAnalysedLegacySQL)), "", policies.RuleLegacySQL},
		} {
			t.Run(c.name, func(t *testing.T) {
				o := send(t, host, c.req)
				if c.refused != "" {
					wantPolicyDisagreement(t, o, c.refused, "")
					return
				}
				wantAllowed(t, o)
				got := headerValue(o.responseHeaders, AnalysisHeader)
				if got != c.header {
					t.Errorf("%s = %q, want %q", AnalysisHeader, got, c.header)
				}
				line := o.logLine(t)
				if c.header != "" && !strings.Contains(line, ` analysis="not analysed: legacy SQL"`) {
					t.Errorf("log line %q does not say the SQL was not analysed", line)
				}
				if c.header == "" && strings.Contains(line, " analysis=") {
					t.Errorf("log line %q claims an unanalysed query", line)
				}
			})
		}
	})
}
