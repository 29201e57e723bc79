package policies_test

import (
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"

	"github.com/jitgate/jitgate/filter/bqapi"
	"github.com/jitgate/jitgate/policies"
)

// TestWasmSafeDependencies keeps the model, the evaluator and the conformance vectors
// importable by the filter: compiled for wasip1 they may depend on the standard library
// (minus what the proxy-wasm sandbox lacks) and on each other, nothing else.
func TestWasmSafeDependencies(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	cmd := exec.Command("go", "list", "-deps", "-f", "{{if .Standard}}std {{end}}{{.ImportPath}}",
		"github.com/jitgate/jitgate/policies", "github.com/jitgate/jitgate/policies/conformance")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	forbidden := map[string]bool{"net": true, "net/http": true, "crypto/tls": true, "os/exec": true, "plugin": true}
	own := map[string]bool{"github.com/jitgate/jitgate/policies": true, "github.com/jitgate/jitgate/policies/conformance": true}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if pkg, ok := strings.CutPrefix(line, "std "); ok {
			if forbidden[pkg] {
				t.Errorf("policies depends on %s, which the proxy-wasm sandbox does not have", pkg)
			}
			continue
		}
		if !own[line] {
			t.Errorf("policies depends on %s: the model and evaluator must stay standard-library only (wasm-safe)", line)
		}
	}
}

// TestAPINamesMatchBqapi: policies spells BigQuery methods exactly as filter/bqapi does
// (policies cannot import it and stay standard-library only).
func TestAPINamesMatchBqapi(t *testing.T) {
	var want []string
	for a := bqapi.API(1); a.String() != bqapi.Unknown.String(); a++ {
		want = append(want, a.String())
	}
	if !reflect.DeepEqual(policies.APINames, want) {
		t.Errorf("policies.APINames = %v\nbqapi names     = %v", policies.APINames, want)
	}
}
