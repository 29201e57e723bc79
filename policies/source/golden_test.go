package source

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jitgate/jitgate/policies"
)

var update = flag.Bool("update", false, "rewrite the golden bundle files in testdata/golden")

// TestGoldenBundles compiles every testdata/golden/*.yaml (and the examples directory) and
// compares the bundle JSON (indented) with the *.bundle.json beside it. With -update it
// rewrites them and removes stale outputs.
func TestGoldenBundles(t *testing.T) {
	dir := filepath.Join("testdata", "golden")
	inputs, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	want := map[string]bool{}
	check := func(name string, r *Result) {
		out := filepath.Join(dir, name+".bundle.json")
		want[out] = true
		raw, err := r.Bundle.Encode()
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := json.Indent(&buf, raw, "", "  "); err != nil {
			t.Fatal(err)
		}
		buf.WriteByte('\n')
		// The golden bytes must parse back into the same bundle (what the filter does).
		back, err := policies.ParseBundle(buf.Bytes())
		if err != nil {
			t.Fatalf("%s: ParseBundle: %v", name, err)
		}
		if back.Version != r.Bundle.Version {
			t.Errorf("%s: version changed through JSON: %s vs %s", name, back.Version, r.Bundle.Version)
		}
		if *update {
			if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatalf("%s: %v (run go test ./policies/source -run Golden -update)", name, err)
		}
		if !bytes.Equal(got, buf.Bytes()) {
			t.Errorf("%s is stale; run go test ./policies/source -run Golden -update\ngot:\n%s", out, buf.Bytes())
		}
	}
	for _, in := range inputs {
		data, err := os.ReadFile(in)
		if err != nil {
			t.Fatal(err)
		}
		r, err := Parse(File{Name: in, Data: data})
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		check(strings.TrimSuffix(filepath.Base(in), ".yaml"), r)
	}
	r, err := Load(filepath.Join("..", "examples"))
	if err != nil {
		t.Fatalf("examples: %v", err)
	}
	check("examples", r)

	outs, _ := filepath.Glob(filepath.Join(dir, "*.bundle.json"))
	for _, out := range outs {
		if want[out] {
			continue
		}
		if *update {
			os.Remove(out)
		} else {
			t.Errorf("%s has no input; run go test ./policies/source -run Golden -update", out)
		}
	}
}

// TestExamplesPassStrictDecoder keeps policies/examples honest: every example loads,
// and the three documented ones are there.
func TestExamplesPassStrictDecoder(t *testing.T) {
	r, err := Load(filepath.Join("..", "examples"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"analytics-readonly", "etl-scratch-writer", "break-glass"} {
		if _, ok := r.Bundle.Policy(name); !ok {
			t.Errorf("example policy %q is missing", name)
		}
		if _, ok := r.Sources[policies.KindAgentPolicy+"/"+name]; !ok {
			t.Errorf("no source position for %q", name)
		}
	}
}

// TestReadmeExampleParses checks the complete example in policies/README.md.
func TestReadmeExampleParses(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	const start, end = "<!-- reference-example -->\n```yaml\n", "```"
	i := bytes.Index(data, []byte(start))
	if i < 0 {
		t.Fatal("README.md has no reference example")
	}
	body := data[i+len(start):]
	body = body[:bytes.Index(body, []byte(end))]
	if _, err := Parse(File{Name: "README.md", Data: body}); err != nil {
		t.Fatalf("README reference example: %v", err)
	}
}

func TestSpellingsCompileToTheSameVersion(t *testing.T) {
	a := "apiVersion: jitgate.dev/v1\nkind: AgentPolicy\nmetadata: {name: p}\nspec:\n  who: {agents: [b, a]}\n  limits: {maxRows: 10, maxRequestBodyBytes: 1KiB}\n  credential: {mode: self-signed-jwt}\n"
	b := "apiVersion: jitgate.dev/v1\nkind: AgentPolicy\nmetadata:\n  name: p\nspec:\n  credential: {mode: self-signed-jwt, ttl: 5m}\n  limits:\n    maxRequestBodyBytes: 1024\n    maxRows: 10\n  who:\n    agents: [a, b, a]\n"
	ra, err := Parse(File{Name: "a.yaml", Data: []byte(a)})
	if err != nil {
		t.Fatal(err)
	}
	rb, err := Parse(File{Name: "b.yaml", Data: []byte(b)})
	if err != nil {
		t.Fatal(err)
	}
	if ra.Bundle.Version != rb.Bundle.Version {
		t.Errorf("versions differ: %s vs %s", ra.Bundle.Version, rb.Bundle.Version)
	}
}

func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("..", "examples", "*.yaml"))
	more, _ := filepath.Glob(filepath.Join("testdata", "golden", "*.yaml"))
	for _, s := range append(seeds, more...) {
		data, _ := os.ReadFile(s)
		f.Add(data)
	}
	f.Add([]byte("kind: AgentPolicy\nspec: &a [*a]\n"))
	f.Add([]byte("a: &a [*a, *a]\nkind: ApproverGroup\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Parse(File{Name: "fuzz.yaml", Data: data})
		if err != nil {
			if _, ok := err.(ErrorList); !ok {
				t.Fatalf("error is not an ErrorList: %v", err)
			}
			for _, e := range err.(ErrorList) {
				if e.Line < 1 || e.Column < 1 || strings.Contains(e.Error(), "\n") {
					t.Fatalf("bad error position or multi-line message: %q", e.Error())
				}
			}
			return
		}
		raw, err := r.Bundle.Encode()
		if err != nil {
			t.Fatal(err)
		}
		back, err := policies.ParseBundle(raw)
		if err != nil {
			t.Fatalf("a bundle the decoder accepted does not parse back: %v", err)
		}
		if back.Version != r.Bundle.Version {
			t.Fatalf("version changed through JSON")
		}
	})
}
