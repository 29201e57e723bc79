package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestEnvoyBootstrapCommand(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"envoy", "bootstrap", "--node-id", "gw-7", "--xds", "127.0.0.1:18123"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{`id: "gw-7"`, "port_value: 18123", "cluster_name: jitgate_xds"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("bootstrap lacks %q:\n%s", want, out.String())
		}
	}
}

func TestEnvoyBootstrapBadAddressFails(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"envoy", "bootstrap", "--xds", "xds.internal:18000"}, &out, &errb); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if out.Len() != 0 || !strings.Contains(errb.String(), "literal IP") {
		t.Fatalf("stdout %q stderr %q", out.String(), errb.String())
	}
}

func TestUnknownCommandPrintsUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"nope"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "envoy bootstrap") {
		t.Fatalf("exit %d stderr %q", code, errb.String())
	}
}
