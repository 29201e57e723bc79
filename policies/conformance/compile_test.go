package conformance_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/jitgate/jitgate/policies"
	"github.com/jitgate/jitgate/policies/conformance"
	"github.com/jitgate/jitgate/policies/source"
)

var update = flag.Bool("update", false, "recompile policies/testdata/conformance/*.yaml into vectors/*.json")

// sourceSuite is the hand-written form of a vector file.
type sourceSuite struct {
	Description string `yaml:"description"`
	Policies    string `yaml:"policies"`
	// PoliciesDir, relative to policies/, loads a directory instead (e.g. examples).
	PoliciesDir string      `yaml:"policiesDir"`
	Cases       []yaml.Node `yaml:"cases"`
}

// TestCompileVectors compiles the YAML vectors with the strict decoder and compares the
// result with the embedded vectors/*.json (-update rewrites them, removing stale ones).
func TestCompileVectors(t *testing.T) {
	inputs, _ := filepath.Glob(filepath.Join("..", "testdata", "conformance", "*.yaml"))
	if len(inputs) == 0 {
		t.Fatal("no conformance vectors")
	}
	want := map[string]bool{}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".yaml")
		out := filepath.Join("vectors", name+".json")
		want[out] = true
		data, err := os.ReadFile(in)
		if err != nil {
			t.Fatal(err)
		}
		var src sourceSuite
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&src); err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		var r *source.Result
		if src.PoliciesDir != "" {
			r, err = source.Load(filepath.Join("..", src.PoliciesDir))
		} else {
			r, err = source.Parse(source.File{Name: in + "#policies", Data: []byte(src.Policies)})
		}
		if err != nil {
			t.Fatalf("%s: policies: %v", in, err)
		}
		bundle, _ := r.Bundle.Encode()
		suite := conformance.Suite{Name: name, Description: src.Description, Bundle: bundle}
		for i, c := range src.Cases {
			var generic any
			if err := c.Decode(&generic); err != nil {
				t.Fatalf("%s: case %d: %v", in, i, err)
			}
			raw, _ := json.Marshal(generic)
			var v conformance.Vector
			jd := json.NewDecoder(bytes.NewReader(raw))
			jd.DisallowUnknownFields()
			if err := jd.Decode(&v); err != nil {
				t.Fatalf("%s:%d: case: %v", in, c.Line, err)
			}
			if v.Name == "" || v.Expect.Rule == "" {
				t.Fatalf("%s:%d: a case needs a name and expect.rule", in, c.Line)
			}
			suite.Cases = append(suite.Cases, v)
		}
		got, _ := json.MarshalIndent(suite, "", "  ")
		got = append(got, '\n')
		if *update {
			if err := os.WriteFile(out, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		old, err := os.ReadFile(out)
		if err != nil || !bytes.Equal(old, got) {
			t.Errorf("%s is stale; run go test ./policies/conformance -run Compile -update", out)
		}
	}
	outs, _ := filepath.Glob(filepath.Join("vectors", "*.json"))
	for _, out := range outs {
		if !want[out] {
			if *update {
				os.Remove(out)
			} else {
				t.Errorf("%s has no source vector; run with -update", out)
			}
		}
	}
}

// TestVectorsNative runs every embedded vector through the native evaluator.
func TestVectorsNative(t *testing.T) {
	fails, n := conformance.Run()
	for _, f := range fails {
		t.Error(f)
	}
	if n < 20 {
		t.Errorf("only %d conformance cases", n)
	}
	t.Logf("%d conformance cases", n)
}

// TestCheckCatchesADifferentDecision: the harness must notice a wrong evaluator.
func TestCheckCatchesADifferentDecision(t *testing.T) {
	suites, err := conformance.Suites()
	if err != nil || len(suites) == 0 {
		t.Fatal(err)
	}
	v := suites[0].Cases[0]
	wrong := policies.Decision{Allow: !v.Expect.Allow, Rule: "something_else"}
	if v.Check(wrong) == nil {
		t.Error("Check accepted a wrong decision")
	}
}

// TestCheckCallOnlyCatchesAStricterFilter: a filter-side decision that denies what the
// vector allows, or differs on a call it can decide alone, is a failure.
func TestCheckCallOnlyCatchesAStricterFilter(t *testing.T) {
	suites, err := conformance.Suites()
	if err != nil {
		t.Fatal(err)
	}
	decidable, allowed := 0, 0
	for _, s := range suites {
		for _, v := range s.Cases {
			if conformance.CallDecidable(v.Input) {
				decidable++
			}
			if !v.Expect.Allow {
				continue
			}
			allowed++
			if v.CheckCallOnly(policies.Decision{CallOnly: true, Rule: policies.RuleProjectNotAllowed}) == nil {
				t.Errorf("%s/%s: CheckCallOnly accepted a denial of an allowed call", s.Name, v.Name)
			}
			if v.CheckCallOnly(policies.Decision{Allow: true, Rule: policies.RuleAllow}) == nil {
				t.Errorf("%s/%s: CheckCallOnly accepted a decision not made by EvaluateCall", s.Name, v.Name)
			}
		}
	}
	if decidable == 0 || allowed == 0 {
		t.Fatalf("vectors exercise too little: %d decidable without analysis, %d allowed", decidable, allowed)
	}
	t.Logf("%d vectors decidable without SQL analysis or job ledger, %d allowed", decidable, allowed)
}
