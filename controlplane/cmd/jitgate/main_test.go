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

// TestEnvoyBootstrapTLSFlags: the ADS cluster names jitgated's generated files by
// default (--tls-dir), single files override them, and a non-loopback admin address
// needs --allow-non-loopback-admin.
func TestEnvoyBootstrapTLSFlags(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"envoy", "bootstrap", "--tls-dir", "/var/lib/jitgate/tls", "--tls-key", "/etc/envoy/key.pem"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{`filename: "/var/lib/jitgate/tls/ca.pem"`, `filename: "/var/lib/jitgate/tls/envoy.pem"`,
		`filename: "/etc/envoy/key.pem"`, "san_type: IP_ADDRESS", `exact: "127.0.0.1"`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("bootstrap lacks %s:\n%s", want, out.String())
		}
	}
	out.Reset()
	errb.Reset()
	if code := run([]string{"envoy", "bootstrap", "--admin", "0.0.0.0:9901"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "not loopback") {
		t.Errorf("non-loopback admin: exit %d %s", code, errb.String())
	}
	out.Reset()
	if code := run([]string{"envoy", "bootstrap", "--admin", "0.0.0.0:9901", "--allow-non-loopback-admin"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "0.0.0.0") {
		t.Errorf("allowed non-loopback admin: exit %d", code)
	}
}
