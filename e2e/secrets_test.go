package e2e

import (
	"strings"
	"testing"
)

// TestNoSecretLeftTheGateway runs last (file order): it scans everything the agents
// received in this run, and Envoy's and jitgated's logs, for any upstream credential
// the upstream saw and for the agents' tokens.
func TestNoSecretLeftTheGateway(t *testing.T) {
	var creds []string
	for _, r := range gw.Tap.Requests() {
		if c, ok := strings.CutPrefix(r.Authorization, "Bearer "); ok && c != "" {
			creds = append(creds, c)
			// The signature alone is enough to be a leak of this credential.
			if i := strings.LastIndexByte(c, '.'); i > 0 && len(c)-i > 16 {
				creds = append(creds, c[i+1:])
			}
		}
	}
	if len(creds) == 0 {
		t.Fatal("no upstream credential was seen in this run; nothing to check against")
	}
	responses := agentSaw.all()
	if len(responses) < 10 {
		t.Fatalf("only %d agent responses recorded", len(responses))
	}
	for i, resp := range responses {
		for _, c := range creds {
			if strings.Contains(resp, c) {
				t.Fatalf("agent response %d contains an upstream credential:\n%s", i, resp)
			}
		}
	}
	logs := map[string]string{"envoy": gw.Log("envoy"), "jitgated": gw.Log("jitgated")}
	for name, log := range logs {
		if len(log) == 0 {
			t.Fatalf("%s log is empty", name)
		}
		for _, c := range creds {
			if strings.Contains(log, c) {
				t.Fatalf("%s log contains an upstream credential", name)
			}
		}
		if strings.Contains(log, agentToken) {
			t.Fatalf("%s log contains the agent's token", name)
		}
		// The key file's path is configuration, not telemetry (lines starting "--- " are
		// the harness's own record of the command line, not the process's output).
		for _, line := range strings.Split(log, "\n") {
			if !strings.HasPrefix(line, "--- ") && strings.Contains(line, gw.ServiceAccountKey) {
				t.Fatalf("%s logged the service-account key file path: %s", name, line)
			}
		}
	}
}
