package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestFilterDependencies keeps the module small and wasm-safe: everything compiled into
// it must be the standard library, the proxy-wasm SDK, the filter's own packages or the
// wasm-safe policies and policies/conformance (but not policies/source, which needs YAML), and
// a few standard packages that have no business in a proxy filter are refused too.
func TestFilterDependencies(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", "-f", "{{if .Standard}}std {{end}}{{.ImportPath}}", "./...")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	forbiddenStd := map[string]string{
		"net":        "sockets do not exist in the proxy-wasm sandbox",
		"net/http":   "use proxy-wasm callouts, not net/http",
		"crypto/tls": "Envoy terminates TLS",
		"os/exec":    "no processes in the sandbox",
		"plugin":     "no dynamic loading in wasm",
	}
	allowedPrefixes := []string{
		"github.com/jitgate/jitgate/filter",
		"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm",
	}
	// The policy model, evaluator and conformance vectors: standard library only
	// (policies/deps_test.go keeps them so).
	allowedExact := map[string]bool{
		"github.com/jitgate/jitgate/policies":             true,
		"github.com/jitgate/jitgate/policies/conformance": true,
	}
	var seen int
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		seen++
		if pkg, ok := strings.CutPrefix(line, "std "); ok {
			if why, bad := forbiddenStd[pkg]; bad {
				t.Errorf("filter depends on %s: %s", pkg, why)
			}
			continue
		}
		if !hasAnyPrefix(line, allowedPrefixes) && !allowedExact[line] {
			t.Errorf("filter depends on %s: only the standard library, the proxy-wasm SDK and filter packages may be compiled into the module", line)
		}
	}
	if seen < 10 {
		t.Fatalf("go list returned suspiciously few packages:\n%s", out)
	}
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if s == p || strings.HasPrefix(s, p+"/") {
			return true
		}
	}
	return false
}
