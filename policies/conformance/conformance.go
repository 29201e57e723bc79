// Package conformance owns jitgate's policy conformance vectors: compiled policy bundles,
// inputs and the decisions every evaluator must reach. The same vectors run natively
// (go test ./policies/...), inside the compiled filter .wasm (the filter's harness calls
// Run), and through real Envoy in e2e (which reads Suites and compares with Vector.Check).
// Wasm-safe: standard library and policies only; the vectors are embedded.
//
// Vectors are written in policies/testdata/conformance/*.yaml (policy YAML + input +
// expected decision) and compiled into vectors/*.json by
// `go test ./policies/conformance -run Compile -update`.
package conformance

import (
	"embed"
	"encoding/json"
	"fmt"
	"path"
	"reflect"
	"sort"
	"strings"

	"github.com/jitgate/jitgate/policies"
)

//go:embed vectors/*.json
var files embed.FS

// Suite is one vector file: a compiled policy bundle and the cases decided against it.
type Suite struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Bundle is the compiled policy bundle (policies.Bundle JSON).
	Bundle json.RawMessage `json:"bundle"`
	Cases  []Vector        `json:"cases"`
}

// Vector is one conformance case.
type Vector struct {
	Name   string         `json:"name"`
	Input  policies.Input `json:"input"`
	Expect Expect         `json:"expect"`
}

// Expect is the part of a decision a vector pins. Allow and Rule are always compared;
// the other fields when present in the vector (an empty list pins "none").
type Expect struct {
	Allow           bool                 `json:"allow"`
	Rule            string               `json:"rule"`
	RuleName        *string              `json:"ruleName,omitempty"`
	Policy          *string              `json:"policy,omitempty"`
	ReasonContains  string               `json:"reasonContains,omitempty"`
	MaskPlan        *[]MaskEntry         `json:"maskPlan,omitempty"`
	Approvals       *[]string            `json:"approvals,omitempty"`
	Detectors       *[]policies.Detector `json:"detectors,omitempty"`
	Credential      *policies.Credential `json:"credential,omitempty"`
	Limits          *policies.Limits     `json:"limits,omitempty"`
	DryRunWouldDeny *[]string            `json:"dryRunWouldDeny,omitempty"`
}

// MaskEntry is a mask plan entry without the contributing policies.
type MaskEntry struct {
	Columns         string              `json:"columns"`
	Action          policies.MaskAction `json:"action"`
	AllowAggregates []string            `json:"allowAggregates,omitempty"`
}

// Suites returns the embedded vector suites, sorted by name.
func Suites() ([]Suite, error) {
	names, err := files.ReadDir("vectors")
	if err != nil {
		return nil, err
	}
	var out []Suite
	for _, e := range names {
		data, err := files.ReadFile(path.Join("vectors", e.Name()))
		if err != nil {
			return nil, err
		}
		var v Suite
		if err := json.Unmarshal(data, &v); err != nil {
			return nil, fmt.Errorf("conformance vector %s: %w", e.Name(), err)
		}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Failure is one vector whose decision differs from its expectation.
type Failure struct {
	Vector string
	Err    string
}

func (f Failure) String() string { return f.Vector + ": " + f.Err }

// Run evaluates every vector with policies.ParseBundle and policies.Evaluate and checks
// policies.EvaluateCall (the filter's part) against the same vector (CheckCallOnly). It
// returns the failures and the number of cases run. The filter calls it inside the
// compiled module when its configuration sets selfTest.
func Run() ([]Failure, int) {
	suites, err := Suites()
	if err != nil {
		return []Failure{{"(load)", err.Error()}}, 0
	}
	var fails []Failure
	n := 0
	for _, s := range suites {
		b, err := policies.ParseBundle(s.Bundle)
		if err != nil {
			fails = append(fails, Failure{s.Name, err.Error()})
			continue
		}
		for _, v := range s.Cases {
			n++
			if err := v.Check(policies.Evaluate(b, v.Input)); err != nil {
				fails = append(fails, Failure{s.Name + "/" + v.Name, err.Error()})
			}
			if err := v.CheckCallOnly(policies.EvaluateCall(b, v.Input)); err != nil {
				fails = append(fails, Failure{s.Name + "/" + v.Name + " (EvaluateCall)", err.Error()})
			}
		}
	}
	return fails, n
}

// Check compares a decision (from any evaluator: native, .wasm, or the control plane's
// answer through Envoy) with the vector's expectation.
func (v Vector) Check(d policies.Decision) error {
	var diffs []string
	e := v.Expect
	diff := func(what string, got, want any) {
		if !reflect.DeepEqual(got, want) {
			g, _ := json.Marshal(got)
			w, _ := json.Marshal(want)
			diffs = append(diffs, fmt.Sprintf("%s = %s, want %s", what, g, w))
		}
	}
	diff("allow", d.Allow, e.Allow)
	diff("rule", d.Rule, e.Rule)
	if e.RuleName != nil {
		diff("ruleName", d.RuleName, *e.RuleName)
	}
	if e.Policy != nil {
		got := ""
		if d.Policy != nil {
			got = d.Policy.Name
		}
		diff("policy", got, *e.Policy)
	}
	if e.ReasonContains != "" && !strings.Contains(strings.Join(d.Reasons, "\n"), e.ReasonContains) {
		diffs = append(diffs, fmt.Sprintf("reasons %q do not contain %q", d.Reasons, e.ReasonContains))
	}
	if e.MaskPlan != nil {
		got := []MaskEntry{}
		for _, m := range d.MaskPlan {
			got = append(got, MaskEntry{Columns: m.Columns, Action: m.Action, AllowAggregates: m.AllowAggregates})
		}
		diff("maskPlan", got, nonNil(*e.MaskPlan))
	}
	if e.Approvals != nil {
		got := []string{}
		for _, a := range d.Approvals {
			got = append(got, a.Policy.Name+"/"+a.Rule)
		}
		diff("approvals", got, nonNil(*e.Approvals))
	}
	if e.Detectors != nil {
		diff("detectors", nonNil(d.Detectors), nonNil(*e.Detectors))
	}
	if e.Credential != nil {
		diff("credential", d.Credential, e.Credential)
	}
	if e.Limits != nil {
		diff("limits", d.Limits, *e.Limits)
	}
	if e.DryRunWouldDeny != nil {
		got := []string{}
		for _, h := range d.DryRunWouldDeny {
			got = append(got, h.Policy.Name+"/"+h.Rule)
		}
		diff("dryRunWouldDeny", got, nonNil(*e.DryRunWouldDeny))
	}
	if len(diffs) > 0 {
		return fmt.Errorf("%s (reasons: %s)", strings.Join(diffs, "; "), strings.Join(d.Reasons, " | "))
	}
	return nil
}

// CheckCallOnly compares a decision of policies.EvaluateCall (the filter's part) with the
// vector: it must allow whatever the vector allows (the filter never denies a call the
// complete evaluation allows), and for a call that needs neither SQL analysis nor the job
// ledger it must match the vector entirely, approvals and credential aside (EvaluateCall
// leaves them to the control plane).
func (v Vector) CheckCallOnly(d policies.Decision) error {
	if !d.CallOnly {
		return fmt.Errorf("not an EvaluateCall decision")
	}
	if !CallDecidable(v.Input) {
		if v.Expect.Allow && !d.Allow {
			return fmt.Errorf("EvaluateCall denies (%s %s: %s) a call the complete evaluation allows", d.Rule, d.RuleName, strings.Join(d.Reasons, " | "))
		}
		return nil
	}
	e := v
	e.Expect.Approvals, e.Expect.Credential = nil, nil
	return e.Check(d)
}

// CallDecidable reports whether a call is decided without SQL analysis or the job ledger
// (not a standard-SQL query, not a follow-up on a job), so that EvaluateCall and Evaluate
// agree on it. Legacy-SQL queries are never analysed (what.legacySql), so they are.
func CallDecidable(in policies.Input) bool {
	switch in.Call.API {
	case "jobs.query", "jobs.insert":
		return in.Query != nil && in.Query.LegacySQL
	case "jobs.get", "jobs.getQueryResults", "jobs.cancel", "jobs.delete":
		return false
	case "tabledata.list":
		return !strings.HasPrefix(in.Call.Dataset, "_")
	}
	return true
}

func nonNil[T any](xs []T) []T {
	if xs == nil {
		return []T{}
	}
	return xs
}
