// Package e2e tests jitgate end to end from real parts: the BigQuery emulator upstream,
// jitgated with embedded NATS, a real Envoy running the compiled filter, and the standard
// Go and Python BigQuery clients as agents. Run with `make test` (or `make e2e`), which
// installs Envoy, the emulator and the Python client first.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jitgate/jitgate/controlplane/approvals"
	"github.com/jitgate/jitgate/controlplane/devissuer"
	"github.com/jitgate/jitgate/e2e/stack"
	"github.com/jitgate/jitgate/tools/freeport"
)

const project = "jitgate-demo"

var (
	gw   *stack.Stack
	root string
	// agentToken is a valid token of the agent the tests act as, from the dev issuer.
	agentToken string
	// policiesDir is the policy directory jitgated enforces: a copy of tools/demo/policies
	// that tests edit.
	policiesDir string
	// corpIssuer is a second OIDC issuer the gateway trusts (a corporate IdP), run by the
	// tests so they can mint every kind of bad token and rotate its keys.
	corpIssuer *devissuer.Issuer
	// trustedIssuers are the issuers jitgated trusts: its development issuer and
	// corpIssuer. With two, every policy must name its issuers (scoped).
	trustedIssuers []string
)

// scoped makes the policy documents in doc name the gateway's trusted issuers: each
// AgentPolicy's who gets issuers (block style "  who:" or flow style "  who: {") and each
// ApproverGroup's spec (written "spec:\n  members:" in these tests) gets issuers. An agent
// id is unique only within its issuer, so jitgated refuses policies without issuers while
// it trusts two (policies.CheckIssuers).
func scoped(doc string) string {
	list := "[" + strings.Join(trustedIssuers, ", ") + "]"
	return strings.NewReplacer(
		"  who:\n", "  who:\n    issuers: "+list+"\n",
		"  who: {", "  who: {issuers: "+list+", ",
		"spec:\n  members:", "spec:\n  issuers: "+list+"\n  members:",
	).Replace(doc)
}

// corpAudience is the audience the gateway accepts from corpIssuer.
const corpAudience = "jitgate-e2e"

const agentID = "e2e-agent"

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	_, file, _, _ := runtime.Caller(0)
	root = filepath.Dir(filepath.Dir(file))
	work, err := os.MkdirTemp("", "jitgate-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(work)

	// Build what we test from this tree, once, so a stale bin/ can never be what passes.
	jitgated := filepath.Join(work, "jitgated")
	cli := filepath.Join(work, "jitgate")
	wasm := filepath.Join(work, "jitgate.wasm")
	builds := []*exec.Cmd{
		exec.Command("go", "build", "-buildmode=c-shared", "-o", wasm, "./filter"),
		exec.Command("go", "build", "-o", jitgated, "./controlplane/cmd/jitgated"),
		exec.Command("go", "build", "-o", cli, "./controlplane/cmd/jitgate"),
	}
	builds[0].Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	for _, b := range builds {
		b.Dir = root
		if out, err := b.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: %v: %v\n%s", b.Args, err, out)
			return 1
		}
	}

	if corpIssuer, err = devissuer.Start(devissuer.Options{Addr: "127.0.0.1:0"}); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: corp issuer: %v\n", err)
		return 1
	}
	defer corpIssuer.Close()
	// The development issuer's address is chosen here, so the policies can name it.
	devPort, err := freeport.Get()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	devIssuerAddr := "127.0.0.1:" + strconv.Itoa(devPort)
	trustedIssuers = []string{"http://" + devIssuerAddr, corpIssuer.URL()}

	policiesDir = filepath.Join(work, "policies")
	if err := os.MkdirAll(policiesDir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	demoPolicy, err := os.ReadFile(filepath.Join(root, "tools", "demo", "policies", "demo-analysts.yaml"))
	if err == nil {
		err = os.WriteFile(filepath.Join(policiesDir, "demo-analysts.yaml"), []byte(scoped(string(demoPolicy))), 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}

	// A webhook receiver for approval notifications (approvals_test.go).
	hook := httptest.NewServer(http.HandlerFunc(receiveWebhook))
	defer hook.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	gw, err = stack.Start(ctx, stack.Options{
		ExtraConfig:   "approvals:\n  webhooks:\n  - name: e2e\n    url: " + hook.URL + "/hook\n    maxAttempts: 3\n",
		Issuers:       []stack.Issuer{{URL: corpIssuer.URL(), Audiences: []string{corpAudience}}},
		KeyMaxAge:     2 * time.Second,
		PoliciesDir:   policiesDir,
		DevIssuerAddr: devIssuerAddr,
		Root:          root,
		Jitgated:      jitgated,
		CLI:           cli,
		Wasm:          wasm,
		Data:          filepath.Join(root, "tools", "demo", "bigquery-data.yaml"),
		Project:       project,
		WorkDir:       work,
		Tap:           true,
		Progress:      os.Stderr,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	if gw.DevIssuer != trustedIssuers[0] {
		fmt.Fprintf(os.Stderr, "e2e: development issuer %s, want %s\n", gw.DevIssuer, trustedIssuers[0])
		gw.Close()
		return 1
	}
	if agentToken, err = gw.Token(ctx, agentID, "analysts"); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		gw.Close()
		return 1
	}
	code := m.Run()
	if code != 0 {
		for _, n := range []string{"envoy", "jitgated"} {
			fmt.Fprintf(os.Stderr, "--- %s log ---\n%s\n", n, tail(gw.Log(n), 6000))
		}
	}
	gw.Close()
	return code
}

// cliBinary is the jitgate CLI TestMain built.
func cliBinary() string { return filepath.Join(filepath.Dir(policiesDir), "jitgate") }

// ownStack starts a gateway of the test's own from the binaries TestMain built and the
// demo data, enforcing the demo policy plus the policy documents in extra (file name →
// YAML); o may set anything else (Tap, NATSURL ...). The gateway stops when the test
// ends, after printing its logs if the test failed.
func ownStack(ctx context.Context, t *testing.T, o stack.Options, extra map[string]string) *stack.Stack {
	t.Helper()
	work := filepath.Dir(policiesDir) // where TestMain built the binaries
	dir := t.TempDir()
	pol := filepath.Join(dir, "policies")
	if err := os.MkdirAll(pol, 0o755); err != nil {
		t.Fatal(err)
	}
	demo, err := os.ReadFile(filepath.Join(root, "tools", "demo", "policies", "demo-analysts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	docs := map[string]string{"demo-analysts.yaml": string(demo)}
	for name, doc := range extra {
		docs[name] = doc
	}
	for name, doc := range docs {
		if err := os.WriteFile(filepath.Join(pol, name), []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	o.PoliciesDir, o.Root, o.Project = pol, root, project
	o.Jitgated, o.CLI, o.Wasm = filepath.Join(work, "jitgated"), filepath.Join(work, "jitgate"), filepath.Join(work, "jitgate.wasm")
	o.Data, o.WorkDir = filepath.Join(root, "tools", "demo", "bigquery-data.yaml"), filepath.Join(dir, "stack")
	st, err := stack.Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- jitgated log ---\n%s\n--- envoy log ---\n%s", tail(st.Log("jitgated"), 8000), tail(st.Log("envoy"), 6000))
		}
		st.Close()
	})
	return st
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

var (
	webhookMu     sync.Mutex
	webhookEvents []approvals.Event
)

// receiveWebhook records the generic JSON payload jitgated posts for each new approval.
func receiveWebhook(w http.ResponseWriter, r *http.Request) {
	var ev approvals.Event
	if err := json.NewDecoder(r.Body).Decode(&ev); err != nil || r.Header.Get("Content-Type") != "application/json" {
		http.Error(w, "bad payload", http.StatusBadRequest)
		return
	}
	webhookMu.Lock()
	webhookEvents = append(webhookEvents, ev)
	webhookMu.Unlock()
}
