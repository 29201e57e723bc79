package sqlanalysis

import (
	"context"
	"sort"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/bigquery"
	"google.golang.org/api/option"

	"github.com/jitgate/jitgate/controlplane/identity"
	"github.com/jitgate/jitgate/controlplane/policystep"
	"github.com/jitgate/jitgate/e2e/sqlcorpus"
	"github.com/jitgate/jitgate/filter/authorize"
	"github.com/jitgate/jitgate/policies"
	"github.com/jitgate/jitgate/policies/source"
)

// corpusAnalyzer seeds the corpus fixture into the emulator and returns the control
// plane's own analyser over it (NewForUpstream, as jitgated builds it).
func corpusAnalyzer(t testing.TB, opts UpstreamOptions) *PolicyAnalyzer {
	t.Helper()
	emulatorSource(t)
	ctx := context.Background()
	client, err := bigquery.NewClient(ctx, sqlcorpus.Project, option.WithEndpoint(emu.url+"/bigquery/v2/"), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if err := sqlcorpus.Seed(ctx, client); err != nil {
		t.Fatal(err)
	}
	pa, err := NewForUpstream(ctx, emu.url, "", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pa.Close() })
	return pa
}

func corpusRequest(t testing.TB, c sqlcorpus.Case) authorize.Request {
	t.Helper()
	spec, err := c.Spec()
	if err != nil {
		t.Fatal(err)
	}
	return authorize.Request{Call: authorize.Call{API: c.API, Method: "POST", Project: sqlcorpus.Project}, Query: authorize.QueryFromSpec(spec)}
}

// TestSQLCorpus decides every corpus query with the control plane's policy step
// (policystep.Decide) and analyser over the emulator, as an agent in the case's groups,
// and checks the decision, the rule and that the agent's message names the rule; an
// allowed legacy query must be allowed unanalysed and say so.
func TestSQLCorpus(t *testing.T) {
	cases, err := sqlcorpus.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) < 60 {
		t.Fatalf("corpus has %d cases, want at least 60", len(cases))
	}
	files, err := sqlcorpus.PolicyFiles()
	if err != nil {
		t.Fatal(err)
	}
	var srcs []source.File
	for name, b := range files {
		srcs = append(srcs, source.File{Name: name, Data: b})
	}
	set, err := source.Parse(srcs...)
	if err != nil {
		t.Fatal(err)
	}
	pa := corpusAnalyzer(t, UpstreamOptions{})
	tally := sqlcorpus.Tallies{}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			id := identity.Identity{AgentID: "corpus-agent", Issuer: "https://issuer.test", Groups: c.Groups}
			out := policystep.Decide(context.Background(), set.Bundle, corpusRequest(t, c), id, pa, nil)
			allowed := out.Denial == nil
			rule, ruleName, msg := "", "", ""
			if out.Denial != nil {
				rule, msg = out.Denial.Reason, out.Denial.Message
			}
			if out.Decision != nil {
				ruleName = out.Decision.RuleName
			}
			tally.Add(c, allowed, rule, ruleName)
			if allowed != c.Allowed() {
				t.Fatalf("allowed = %v (%s %s: %s), want %s", allowed, rule, ruleName, msg, c.Expect)
			}
			if allowed {
				notAnalysed := out.Decision.NotAnalysed
				switch {
				case c.Legacy() && (notAnalysed != policies.NotAnalysedLegacySQL || out.Input.Analysis != nil):
					t.Errorf("legacy query allowed with notAnalysed %q and analysis %+v, want it unanalysed and said so", notAnalysed, out.Input.Analysis)
				case !c.Legacy() && (notAnalysed != "" || out.Input.Analysis == nil):
					t.Errorf("standard query allowed with notAnalysed %q and analysis %+v, want it analysed", notAnalysed, out.Input.Analysis)
				}
				return
			}
			t.Logf("%s: %s", rule, msg)
			if rule != c.Rule || (c.RuleName != "" && ruleName != c.RuleName) {
				t.Errorf("rule = %s (%s), want %s (%s); message: %s", rule, ruleName, c.Rule, c.RuleName, msg)
			}
			if name := firstNonEmpty(c.RuleName, c.Rule); !strings.Contains(msg, name) && rule != "unanalysable_sql" && rule != "legacy_sql" {
				t.Errorf("message %q does not name %s", msg, name)
			}
			if msg == "" {
				t.Error("denial without a message")
			}
		})
	}
	t.Logf("SQL corpus (unit, policystep.Decide):\n%s", tally)
}

// TestSQLCorpusLatency measures analysis latency over the corpus: cold (a new analyser
// and table-metadata cache: every table seen for the first time, tables.get against the
// emulator included), warm (metadata cached, result cache off: the analyser itself) and
// cached (result cache hit). Logged, never asserted (go test -run SQLCorpusLatency -v).
func TestSQLCorpusLatency(t *testing.T) {
	cases, err := sqlcorpus.Load()
	if err != nil {
		t.Fatal(err)
	}
	emulatorSource(t)
	ctx := context.Background()
	corpusAnalyzer(t, UpstreamOptions{}) // seed
	var reqs []authorize.Request
	for _, c := range cases {
		if !c.Legacy() { // never analysed
			reqs = append(reqs, corpusRequest(t, c))
		}
	}
	// Analyses the analyser refuses are never cached (a table may appear later), so they
	// are measured apart.
	measure := func(pa *PolicyAnalyzer) (ok, refused []time.Duration) {
		for _, r := range reqs {
			start := time.Now()
			_, err := pa.AnalyzeRequest(ctx, r)
			if err != nil {
				refused = append(refused, time.Since(start))
			} else {
				ok = append(ok, time.Since(start))
			}
		}
		return ok, refused
	}
	var cold, warm, cached, refused []time.Duration
	const rounds = 5
	for i := 0; i < rounds; i++ {
		fresh := corpusAnalyzer(t, UpstreamOptions{CacheSize: -1})
		c, _ := measure(fresh)
		cold = append(cold, c...)
		w, r := measure(fresh)
		warm, refused = append(warm, w...), append(refused, r...)
	}
	pa := corpusAnalyzer(t, UpstreamOptions{})
	measure(pa)
	for i := 0; i < rounds; i++ {
		c, _ := measure(pa)
		cached = append(cached, c...)
	}
	t.Logf("analysis latency over %d corpus queries (%d analysed, %d refused) x %d rounds:", len(reqs), len(cached)/rounds, len(refused)/rounds, rounds)
	for _, m := range []struct {
		name string
		d    []time.Duration
	}{
		{"cold (first sight of the tables, tables.get included)", cold},
		{"warm (metadata cached, no result cache)", warm},
		{"cached (result cache hit)", cached},
		{"refused (metadata cached; never cached)", refused},
	} {
		p50, p99 := percentiles(m.d)
		t.Logf("  %-55s p50 %v  p99 %v", m.name, p50, p99)
	}
}

func percentiles(d []time.Duration) (p50, p99 time.Duration) {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s) == 0 {
		return 0, 0
	}
	return s[len(s)*50/100], s[min(len(s)-1, len(s)*99/100)]
}
