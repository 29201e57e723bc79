package policies_test

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"testing"

	"github.com/jitgate/jitgate/policies"
)

// agentPolicies builds n realistic per-agent policies (one agent each, masks, deny
// rules, an approval, credential and limits) plus one group-wide overlay.
func agentPolicies(n int) policies.Set {
	s := policies.Set{ApproverGroups: []policies.ApproverGroup{{APIVersion: policies.APIVersion, Kind: policies.KindApproverGroup,
		Metadata: policies.Metadata{Name: "owners"}, Spec: policies.ApproverGroupSpec{Groups: []string{"owners"}}}}}
	for i := range n {
		proj := fmt.Sprintf("proj-%d", i%50)
		s.Policies = append(s.Policies, policies.AgentPolicy{
			APIVersion: policies.APIVersion, Kind: policies.KindAgentPolicy,
			Metadata: policies.Metadata{Name: fmt.Sprintf("agent-%04d", i), Description: "generated per-agent policy"},
			Spec: policies.PolicySpec{
				Who: policies.Who{Issuers: []string{"https://issuer.example"}, Agents: []string{fmt.Sprintf("agent-%d", i)}},
				Where: policies.Where{
					Projects: []string{proj},
					Datasets: policies.AllowDeny{Allow: []string{proj + ".analytics", proj + ".crm"}, Deny: []string{proj + ".hr"}},
					Tables:   policies.AllowDeny{Allow: []string{proj + ".web.events_*"}, Deny: []string{proj + ".*.users_raw"}},
					APIs:     []string{"jobs.query", "jobs.insert", "jobs.get", "jobs.getQueryResults", "tabledata.list"},
				},
				What: policies.What{
					StatementKinds: []string{"SELECT"},
					DenyRules: []policies.DenyRule{{Name: "no-jobs", Kind: policies.DenyInformationSchemaJobs},
						{Name: "no-star", Kind: policies.DenySelectStar, DryRun: true}},
					Masking: []policies.MaskRule{
						{Columns: proj + ".crm.customers.email", Action: policies.MaskEmailDomain, AllowAggregates: []string{"COUNT"}},
						{Columns: proj + ".crm.*.phone", Action: policies.MaskLast4},
						{Columns: proj + ".*.*.ssn", Action: policies.MaskRedact}},
					Detectors: []policies.Detector{policies.DetectEmail, policies.DetectSSN},
					Approvals: []policies.ApprovalRule{{Name: "big", When: policies.ApprovalWhen{MinBytes: 1 << 40}, ApproverGroups: []string{"owners"}}},
				},
				Credential: &policies.Credential{Mode: policies.CredentialSelfSignedJWT},
				Limits:     policies.Limits{MaxRows: 100000, MaxResponseBodyBytes: 64 << 20},
			},
		})
	}
	return s
}

func compileSet(tb testing.TB, s policies.Set) *policies.Bundle {
	b, errs := policies.Compile(s)
	if len(errs) > 0 {
		tb.Fatalf("compile: %v", errs[0])
	}
	return b
}

// TestBundleSize1000 reports the compiled bundle size for 1,000 agent policies.
func TestBundleSize1000(t *testing.T) {
	b := compileSet(t, agentPolicies(1000))
	raw, _ := b.Encode()
	if len(raw) > 4<<20 {
		t.Errorf("bundle of 1,000 policies is %d bytes", len(raw))
	}
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	w.Write(raw)
	w.Close()
	t.Logf("compiled bundle for 1,000 agent policies: %d bytes (%.1f KiB, %d bytes/policy; %d bytes gzipped)", len(raw), float64(len(raw))/1024, len(raw)/1000, gz.Len())
}

func BenchmarkEvaluate1000Policies(b *testing.B) {
	bundle := compileSet(b, agentPolicies(1000))
	bytesEst := int64(1 << 30)
	in := policies.Input{
		Identity: policies.Identity{AgentID: "agent-517", Issuer: "https://issuer.example"},
		Call:     policies.Call{API: "jobs.query", Project: "proj-17"},
		Query:    &policies.Query{},
		Analysis: &policies.Analysis{StatementKind: "SELECT", EstimatedBytes: &bytesEst,
			ReferencedTables: []string{"proj-17.crm.customers", "proj-17.web.events_2026", "proj-17.analytics.orders"}},
	}
	if d := policies.Evaluate(bundle, in); !d.Allow {
		b.Fatalf("benchmark input denied: %v", d.Reasons)
	}
	raw, _ := bundle.Encode()
	b.ReportMetric(float64(len(raw)), "bundle-bytes")
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		policies.Evaluate(bundle, in)
	}
}

func BenchmarkEvaluateDefaultDeny1000Policies(b *testing.B) {
	bundle := compileSet(b, agentPolicies(1000))
	in := policies.Input{Identity: policies.Identity{AgentID: "nobody"}, Call: policies.Call{API: "jobs.query", Project: "proj-1"}}
	b.ReportAllocs()
	for b.Loop() {
		policies.Evaluate(bundle, in)
	}
}

func BenchmarkParseBundle1000Policies(b *testing.B) {
	raw, _ := compileSet(b, agentPolicies(1000)).Encode()
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := policies.ParseBundle(raw); err != nil {
			b.Fatal(err)
		}
	}
}
