package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jitgate/jitgate/controlplane/credentials"
	"github.com/jitgate/jitgate/controlplane/devissuer"
	"github.com/jitgate/jitgate/controlplane/mtls"
	"github.com/jitgate/jitgate/filter/authorize"
	"github.com/jitgate/jitgate/tools/freeport"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "jitgated.yaml")
	if err := os.WriteFile(p, []byte("apiVersion: jitgate.dev/v1\nkind: ControlPlaneConfig\n"+body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// writeSAKey writes a throwaway service-account key the way an operator would.
func writeSAKey(t *testing.T) string {
	t.Helper()
	data, err := credentials.GenerateServiceAccountKey("dev-gateway@jitgate-dev.iam.gserviceaccount.com")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "sa-key.json")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheckConfig(t *testing.T) {
	key := writeSAKey(t)
	identity := "identity:\n  issuers:\n  - issuer: https://token.actions.githubusercontent.com\n    audiences: [jitgate]\n"
	good := writeConfig(t, "upstream:\n  bigquery:\n    url: http://127.0.0.1:9050\n"+identity+"credentials:\n  keyFile: "+key+"\n")
	noKey := writeConfig(t, identity)
	bad := writeConfig(t, "upstream:\n  bigquery:\n    url: http://127.0.0.1:9050\n    tls: true\n")
	dev := []string{"--dev-issuer", "--credentials-key-file", key}
	tlsFiles := writeConfig(t, "upstream:\n  bigquery:\n    url: http://127.0.0.1:9050\n"+identity+"credentials:\n  keyFile: "+key+"\n"+
		"tls:\n  caFile: /nonexistent/ca.pem\n  serverCertFile: /nonexistent/s.pem\n  serverKeyFile: /nonexistent/s-key.pem\n"+
		"  envoyCertFile: /nonexistent/e.pem\n  envoyKeyFile: /nonexistent/e-key.pem\n")
	goodPolicies := writePolicies(t, t.TempDir(), "datasets.list")
	badPolicies := writePolicies(t, t.TempDir(), "datasets.list")
	writePolicyFile(t, badPolicies, strings.Replace(policyDoc("datasets.list"), "apis:", "apiz:", 1))
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
	}{
		{"valid file", []string{"--config", good, "--check-config"}, 0, "issuers https://token.actions.githubusercontent.com, credentials self-signed-jwt (key loaded, ttl 5m0s)"},
		{"unknown field names file and line", []string{"--config", bad, "--check-config"}, 1, bad + ":6: field tls not found"},
		{"bad flag value names the flag", []string{"--config", good, "--upstream", "ftp://x", "--check-config"}, 1, "--upstream: invalid config value"},
		{"defaults need an issuer", []string{"--check-config"}, 1, "at least one OIDC issuer is required"},
		{"missing key file", []string{"--config", noKey, "--check-config"}, 1, "credentials.keyFile is required"},
		{"key file does not exist", []string{"--config", noKey, "--credentials-key-file", "/nonexistent/sa.json", "--check-config"}, 1,
			"--credentials-key-file: invalid config value: credentials.keyFile: invalid service-account key file: open /nonexistent/sa.json"},
		{"dev issuer and flags only", append(dev, "--check-config"), 0, "upstream https://bigquery.googleapis.com"},
		{"dev issuer is announced", append(dev, "--check-config"), 0, "warning: the development issuer is enabled (http://127.0.0.1:18002)"},
		{"dev issuer off loopback", append(dev, "--dev-issuer-listen", "0.0.0.0:18002", "--check-config"), 1, "--dev-issuer-listen: invalid config value"},
		{"stray argument", []string{"--check-config", "extra"}, 2, "unexpected arguments"},
		{"no policies is announced", []string{"--config", good, "--check-config"}, 0, "every call is denied (403 no_policy)"},
		{"identity-only is announced", []string{"--config", good, "--identity-only", "--check-config"}, 0, "warning: IDENTITY-ONLY MODE"},
		{"identity-only with policies", []string{"--config", good, "--identity-only", "--policies", goodPolicies, "--check-config"}, 1,
			"--identity-only: invalid config value: policies.identityOnly: identity-only mode applies only without a policy directory"},
		{"good policies", []string{"--config", good, "--policies", goodPolicies, "--check-config"}, 0, "policies OK: " + goodPolicies + ", 1 policies, version sha256:"},
		{"bad policies name file:line:col", []string{"--config", good, "--policies", badPolicies, "--check-config"}, 1,
			filepath.Join(badPolicies, "p.yaml") + `:10:5: unknown field "apiz" in where (did you mean "apis"?)`},
		{"bad log format", []string{"--log-format", "xml", "--check-config"}, 2, "--log-format"},
		{"two issuers need who.issuers", append(append([]string{"--config", good}, dev...), "--policies", goodPolicies, "--check-config"), 1,
			filepath.Join(goodPolicies, "p.yaml") + `:7:5: policy "etl" has no who.issuers, which is required because the gateway trusts 2 issuers (https://token.actions.githubusercontent.com, http://127.0.0.1:18002)`},
		{"listeners and tls are described", []string{"--config", good, "--tls-dir", "/var/lib/jitgate/tls", "--check-config"}, 0,
			"api 127.0.0.1:18001, filter callouts 127.0.0.1:18003 (mTLS), tls generated in /var/lib/jitgate/tls"},
		{"plain api off loopback", []string{"--config", good, "--api-listen", "0.0.0.0:18001", "--check-config"}, 1,
			"--api-listen: invalid config value: api.listen: \"0.0.0.0:18001\" is not a loopback address"},
		{"tls files missing", []string{"--config", tlsFiles, "--check-config"}, 1, "invalid config value: tls: read ca file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(t.Context(), tt.args, nil, &stdout, &stderr)
			out := stdout.String() + stderr.String()
			if code != tt.wantCode || !strings.Contains(out, tt.wantOut) {
				t.Errorf("run(%q) = %d, output:\n%s\nwant %d and %q", tt.args, code, out, tt.wantCode, tt.wantOut)
			}
			// The service-account key's path is configuration, never output or logs.
			if code == 0 && strings.Contains(out, key) {
				t.Errorf("run(%q) printed the key file path:\n%s", tt.args, out)
			}
		})
	}
}

// TestServeAndShutdown starts the whole daemon on free ports with embedded NATS, the
// development issuer and a generated service-account key, in the explicit identity-only
// mode, waits for readiness, authorizes a call with a token from `POST /dev/token`,
// reloads a broken config (the last good snapshot must stay), and shuts down.
func TestServeAndShutdown(t *testing.T) {
	xdsPort, apiPort, devPort, filterPort := freeport.For(t), freeport.For(t), freeport.For(t), freeport.For(t)
	dir := t.TempDir()
	key := writeSAKey(t)
	keyJSON, _ := os.ReadFile(key)
	cfgPath := filepath.Join(dir, "jitgated.yaml")
	doc := fmt.Sprintf("apiVersion: jitgate.dev/v1\nkind: ControlPlaneConfig\nxds: {listen: \"127.0.0.1:%d\"}\napi: {listen: \"127.0.0.1:%d\", filterListen: \"127.0.0.1:%d\"}\nnats: {storeDir: nats, maxMemoryBytes: 16777216, maxStoreBytes: 67108864}\ndevIssuer: {keyFile: dev/issuer-key.pem}\n", xdsPort, apiPort, filterPort)
	if err := os.WriteFile(cfgPath, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	reload := make(chan os.Signal, 1)
	done := make(chan int)
	var stderr syncWriter
	go func() {
		done <- run(ctx, []string{"--config", cfgPath, "--log-format", "text", "--dev-issuer",
			"--dev-issuer-listen", fmt.Sprintf("127.0.0.1:%d", devPort), "--credentials-key-file", key, "--identity-only"}, reload, &bytes.Buffer{}, &stderr)
	}()

	api := fmt.Sprintf("http://127.0.0.1:%d", apiPort)
	waitFor(t, func() bool { code, _ := get(api + "/readyz"); return code == 200 })
	cp := newCallouts(t, dir, filterPort)
	if _, err := os.Stat(filepath.Join(dir, "nats")); err != nil {
		t.Errorf("embedded NATS store not created next to the config file: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "dev", "issuer-key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("dev issuer key not created (0600) next to the config file: %v", err)
	}
	if !strings.Contains(stderr.String(), "level=WARN msg=\"DEVELOPMENT ISSUER ENABLED") {
		t.Errorf("no loud warning about the development issuer:\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), "level=WARN msg=\"IDENTITY-ONLY MODE") {
		t.Errorf("no loud warning about identity-only mode:\n%s", stderr.String())
	}

	// An agent token from the dev issuer's mint endpoint buys an upstream credential.
	devURL := fmt.Sprintf("http://127.0.0.1:%d", devPort)
	resp, err := http.Post(devURL+devissuer.TokenPath, "application/json", strings.NewReader(`{"agent":"etl-bot","groups":["analysts"]}`))
	if err != nil {
		t.Fatal(err)
	}
	var tr devissuer.TokenResponse
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil || resp.StatusCode != 200 {
		t.Fatalf("POST /dev/token = %d %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	reqDoc, _ := authorize.Request{RequestID: "r-1", Token: tr.Token, Call: authorize.Call{API: "jobs.query", Method: "POST", Project: "p"}}.Marshal()
	code, body := cp.post(authorize.Path, reqDoc)
	decision, err := authorize.ParseResponse([]byte(body))
	if code != 200 || err != nil || decision.Decision != authorize.Allow || decision.Identity.AgentID != "etl-bot" || decision.Identity.Issuer != devURL {
		t.Fatalf("POST %s = %d %s (%v)", authorize.Path, code, body, err)
	}
	reqDoc, _ = authorize.Request{RequestID: "r-2", Call: authorize.Call{API: "jobs.query", Method: "POST"}}.Marshal()
	if code, body := cp.post(authorize.Path, reqDoc); code != 200 || !strings.Contains(body, `"status":401`) {
		t.Errorf("no token: %d %s", code, body)
	}
	checkOnlyEnvoyGetsCredentials(t, api, cp, fmt.Sprintf("127.0.0.1:%d", xdsPort), filepath.Join(dir, "tls"), tr.Token)
	logs := stderr.String()
	for _, secret := range []string{tr.Token, strings.TrimPrefix(decision.Credential.Authorization, "Bearer "), string(keyJSON[len(keyJSON)/2 : len(keyJSON)/2+40])} {
		if strings.Contains(logs, secret) {
			t.Errorf("jitgated logged a secret (%.10s...)", secret)
		}
	}
	if !strings.Contains(logs, "msg=\"authorize decision\"") {
		t.Errorf("no decision log line:\n%s", logs)
	}

	if err := os.WriteFile(cfgPath, []byte(doc+"bogus: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	reload <- syscall.SIGHUP
	waitFor(t, func() bool { return strings.Contains(stderr.String(), "config reload failed") })
	code, body = get(api + "/v1/status")
	var st struct {
		Ready bool `json:"ready"`
		XDS   struct {
			SnapshotVersion string `json:"snapshotVersion"`
		} `json:"xds"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil || code != 200 || !st.Ready || st.XDS.SnapshotVersion != "1" {
		t.Errorf("status after bad reload = %d %s", code, body)
	}

	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit code %d, log:\n%s", code, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("jitgated did not shut down")
	}
}

// reportResponse posts the filter's report of a response naming a job (POST
// /v1/responses, as the filter sends it before releasing an empty 200) and returns the
// answer.
func (c callouts) reportResponse(t *testing.T, rep authorize.ResponseReport) (int, string) {
	t.Helper()
	empty := sha256.Sum256(nil)
	rep.Response = authorize.ResponseSummary{Status: 200, Digest: "sha256:" + hex.EncodeToString(empty[:])}
	body, err := rep.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return c.post(authorize.ResponsesPath, body)
}

// TestNoPoliciesDeniesByDefault: jitgated without a policy directory and without
// --identity-only denies every call 403 no_policy, naming the agent, and mints nothing.
func TestNoPoliciesDeniesByDefault(t *testing.T) {
	xdsPort, apiPort, filterPort, devPort := freeport.For(t), freeport.For(t), freeport.For(t), freeport.For(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "jitgated.yaml")
	if err := os.WriteFile(cfgPath, []byte("apiVersion: jitgate.dev/v1\nkind: ControlPlaneConfig\ndevIssuer: {keyFile: dev/issuer-key.pem}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan int)
	var stderr syncWriter
	go func() {
		// A config file in the test's directory keeps the dev issuer's key out of the source tree.
		done <- run(ctx, []string{"--config", cfgPath, "--log-format", "text", "--xds-listen", fmt.Sprintf("127.0.0.1:%d", xdsPort),
			"--api-listen", fmt.Sprintf("127.0.0.1:%d", apiPort), "--filter-listen", fmt.Sprintf("127.0.0.1:%d", filterPort),
			"--nats-store-dir", filepath.Join(dir, "nats"), "--dev-issuer", "--dev-issuer-listen", fmt.Sprintf("127.0.0.1:%d", devPort), "--credentials-key-file", writeSAKey(t)},
			nil, &bytes.Buffer{}, &stderr)
	}()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("jitgated did not shut down")
		}
	}()
	api := fmt.Sprintf("http://127.0.0.1:%d", apiPort)
	waitFor(t, func() bool { code, _ := get(api + "/readyz"); return code == 200 })
	if !strings.Contains(stderr.String(), "level=WARN msg=\"no policies are loaded (policies.dir / --policies is empty): every call is denied") {
		t.Errorf("no warning that every call is denied:\n%s", stderr.String())
	}
	cp := newCallouts(t, dir, filterPort)
	devURL := fmt.Sprintf("http://127.0.0.1:%d", devPort)
	resp, err := http.Post(devURL+devissuer.TokenPath, "application/json", strings.NewReader(`{"agent":"etl-bot","groups":["admins"]}`))
	if err != nil {
		t.Fatal(err)
	}
	var tr devissuer.TokenResponse
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil || resp.StatusCode != 200 {
		t.Fatalf("POST /dev/token = %d %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	for _, call := range []authorize.Call{
		{API: "jobs.query", Method: "POST", Project: "p"},
		{API: "tabledata.list", Method: "GET", Project: "p", Dataset: "crm", Table: "customers"},
		{API: "datasets.list", Method: "GET", Project: "p"},
	} {
		req := authorize.Request{RequestID: "r-1", Token: tr.Token, Call: call}
		if call.API == "jobs.query" {
			req.Query = &authorize.Query{SQL: "DELETE FROM crm.customers WHERE true"}
		}
		reqDoc, _ := req.Marshal()
		code, body := cp.post(authorize.Path, reqDoc)
		d, err := authorize.ParseResponse([]byte(body))
		if code != 200 || err != nil || d.Decision != authorize.Deny || d.Status != 403 || d.Reason != "no_policy" || d.Credential != nil ||
			!strings.Contains(d.Message, "no policy applies to agent etl-bot (issuer "+devURL+")") {
			t.Errorf("%s without policies: %d %s (%v)", call.API, code, body, err)
		}
	}
}

// callouts posts to jitgated's filter listener as Envoy does: mutual TLS with the client
// certificate jitgated generated in <dir>/tls (next to the NATS store "nats").
type callouts struct {
	base   string
	client *http.Client
}

func newCallouts(t *testing.T, dir string, port int) callouts {
	t.Helper()
	f := mtls.Paths(filepath.Join(dir, "tls")).Envoy
	pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		t.Fatalf("envoy client certificate: %v", err)
	}
	pool, err := mtls.LoadCAPool(f.CA)
	if err != nil {
		t.Fatal(err)
	}
	return callouts{base: fmt.Sprintf("https://127.0.0.1:%d", port), client: &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool}}}}
}

func (c callouts) post(path string, body []byte) (int, string) {
	resp, err := c.client.Post(c.base+path, "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

func post(url string, body []byte) (int, string) {
	resp, err := http.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

func get(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 15s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type syncWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func policyDoc(apis string) string {
	return `apiVersion: jitgate.dev/v1
kind: AgentPolicy
metadata:
  name: etl
spec:
  who:
    agents: [etl-bot]
  where:
    projects: [p]
    apis: [` + apis + `]
`
}

func writePolicyFile(t *testing.T, dir, doc string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "p.yaml"), []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
}

func writePolicies(t *testing.T, dir, apis string) string {
	t.Helper()
	writePolicyFile(t, dir, policyDoc(apis))
	return dir
}

type serveStatus struct {
	Ready bool `json:"ready"`
	XDS   struct {
		SnapshotVersion string `json:"snapshotVersion"`
		PolicyVersion   string `json:"policyVersion"`
	} `json:"xds"`
	Policies struct {
		Enforcing   bool      `json:"enforcing"`
		Dir         string    `json:"dir"`
		Version     string    `json:"version"`
		LoadedAt    time.Time `json:"loadedAt"`
		Policies    []string  `json:"policies"`
		LastError   string    `json:"lastError"`
		LastErrorAt time.Time `json:"lastErrorAt"`
	} `json:"policies"`
}

func status(t *testing.T, api string) serveStatus {
	t.Helper()
	code, body := get(api + "/v1/status")
	var st serveStatus
	if err := json.Unmarshal([]byte(body), &st); err != nil || code != 200 {
		t.Fatalf("status %d %s: %v", code, body, err)
	}
	return st
}

// TestServeWithPolicies runs jitgated with a policy directory: decisions name the policy,
// an edit is picked up by the watcher and pushed to the xDS snapshot, an invalid edit
// keeps the last good bundle and shows in /v1/status and /metrics, SIGHUP reloads.
func TestServeWithPolicies(t *testing.T) {
	xdsPort, apiPort, devPort, filterPort := freeport.For(t), freeport.For(t), freeport.For(t), freeport.For(t)
	dir := t.TempDir()
	// policies.dir is relative to the config file.
	pdir := filepath.Join(dir, "policies")
	if err := os.Mkdir(pdir, 0o700); err != nil {
		t.Fatal(err)
	}
	writePolicies(t, pdir, "datasets.list")
	key := writeSAKey(t)
	cfgPath := filepath.Join(dir, "jitgated.yaml")
	doc := fmt.Sprintf("apiVersion: jitgate.dev/v1\nkind: ControlPlaneConfig\nxds: {listen: \"127.0.0.1:%d\"}\napi: {listen: \"127.0.0.1:%d\", filterListen: \"127.0.0.1:%d\"}\nnats: {storeDir: nats, maxMemoryBytes: 16777216, maxStoreBytes: 67108864}\ndevIssuer: {keyFile: dev/issuer-key.pem}\npolicies: {dir: policies}\n", xdsPort, apiPort, filterPort)
	if err := os.WriteFile(cfgPath, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	reload := make(chan os.Signal, 1)
	done := make(chan int)
	var stderr syncWriter
	go func() {
		done <- run(ctx, []string{"--config", cfgPath, "--log-format", "text", "--dev-issuer",
			"--dev-issuer-listen", fmt.Sprintf("127.0.0.1:%d", devPort), "--credentials-key-file", key}, reload, &bytes.Buffer{}, &stderr)
	}()
	api := fmt.Sprintf("http://127.0.0.1:%d", apiPort)
	waitFor(t, func() bool { code, _ := get(api + "/readyz"); return code == 200 })
	cp := newCallouts(t, dir, filterPort)

	st := status(t, api)
	v1 := st.Policies.Version
	if !st.Policies.Enforcing || st.Policies.Dir != pdir || len(st.Policies.Policies) != 1 || !strings.HasPrefix(st.Policies.Policies[0], "etl@sha256:") ||
		st.XDS.PolicyVersion != v1 || v1 == "" {
		t.Fatalf("status = %+v", st)
	}
	if strings.Contains(stderr.String(), "no policies are loaded") {
		t.Error("warned about missing policies although a directory is configured")
	}

	resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d", devPort)+devissuer.TokenPath, "application/json", strings.NewReader(`{"agent":"etl-bot"}`))
	if err != nil {
		t.Fatal(err)
	}
	var tr devissuer.TokenResponse
	_ = json.NewDecoder(resp.Body).Decode(&tr)
	resp.Body.Close()
	decide := func(api2 string) authorize.Response {
		t.Helper()
		reqDoc, _ := authorize.Request{RequestID: "r", Token: tr.Token, Call: authorize.Call{API: api2, Method: "GET", Project: "p"}}.Marshal()
		code, body := cp.post(authorize.Path, reqDoc)
		r, err := authorize.ParseResponse([]byte(body))
		if code != 200 || err != nil {
			t.Fatalf("authorize %d %s %v", code, body, err)
		}
		return r
	}
	if r := decide("datasets.list"); r.Decision != authorize.Allow || r.Policy == nil || r.Policy.Name != "etl" || r.Policy.Bundle != v1 {
		t.Fatalf("granted call: %+v policy %+v", r, r.Policy)
	}
	if r := decide("jobs.list"); r.Decision != authorize.Deny || r.Status != 403 || r.Reason != "api_not_allowed" || !strings.Contains(r.Message, "Denied by policy etl@sha256:") {
		t.Fatalf("refused call: %+v", r)
	}

	// An edit is picked up by the watcher, decides the next call and reaches the snapshot.
	writePolicies(t, pdir, "datasets.list, jobs.list")
	waitFor(t, func() bool { return status(t, api).Policies.Version != v1 })
	st = status(t, api)
	v2 := st.Policies.Version
	if st.XDS.PolicyVersion != v2 || st.XDS.SnapshotVersion != "2" {
		t.Errorf("snapshot after the edit: %+v", st.XDS)
	}
	if r := decide("jobs.list"); r.Decision != authorize.Allow || r.Policy.Bundle != v2 {
		t.Errorf("call after the edit: %+v %+v", r, r.Policy)
	}

	// An invalid edit keeps v2 live and is reported with file:line:col.
	writePolicyFile(t, pdir, strings.Replace(policyDoc("datasets.list"), "apis:", "apiz:", 1))
	waitFor(t, func() bool { return status(t, api).Policies.LastError != "" })
	st = status(t, api)
	wantErr := filepath.Join(pdir, "p.yaml") + `:10:5: unknown field "apiz" in where (did you mean "apis"?)`
	if st.Policies.Version != v2 || st.Policies.LastError != wantErr || st.Policies.LastErrorAt.IsZero() || st.XDS.PolicyVersion != v2 {
		t.Errorf("status after a bad edit = %+v\nwant lastError %s", st, wantErr)
	}
	if r := decide("jobs.list"); r.Decision != authorize.Allow || r.Policy.Bundle != v2 {
		t.Errorf("the last good policies stopped deciding: %+v", r)
	}
	_, metrics := get(api + "/metrics")
	for _, want := range []string{`jitgate_policy_bundle_info{version="` + v2 + `"} 1`, `jitgate_policy_reload_total{result="error"} 1`,
		"jitgate_policy_reload_failing 1", "jitgate_policy_last_reload_success_timestamp_seconds "} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if !strings.Contains(stderr.String(), "p.yaml:10:5: unknown field") {
		t.Errorf("the error is not logged with its position:\n%s", stderr.String())
	}

	// SIGHUP reloads too.
	reload <- syscall.SIGHUP
	waitFor(t, func() bool { return strings.Contains(stderr.String(), "reason=SIGHUP") })

	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit code %d", code)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("jitgated did not shut down")
	}
}

// checkOnlyEnvoyGetsCredentials: an agent with a valid token that calls jitgated itself
// gets no credential: the plain API refuses the callouts (403), and the filter listener
// and ADS complete no TLS handshake without a client certificate from Envoy's CA (none,
// another CA's, or jitgated's own server certificate).
func checkOnlyEnvoyGetsCredentials(t *testing.T, api string, cp callouts, xdsAddr, tlsDir, token string) {
	t.Helper()
	reqDoc, _ := authorize.Request{RequestID: "r-direct", Token: token, Call: authorize.Call{API: "jobs.query", Method: "POST", Project: "p"},
		Query: &authorize.Query{SQL: "SELECT 1"}}.Marshal()
	for _, p := range []string{authorize.Path, authorize.ResponsesPath} {
		code, body := post(api+p, reqDoc)
		if code != 403 || strings.Contains(body, "Bearer") || !strings.Contains(body, "api.filterListen") {
			t.Errorf("plain API POST %s = %d %s, want 403 naming the filter listener", p, code, body)
		}
	}
	foreign, err := mtls.Ensure(t.TempDir(), []string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	own := mtls.Paths(tlsDir)
	pool, err := mtls.LoadCAPool(own.Envoy.CA)
	if err != nil {
		t.Fatal(err)
	}
	for name, certs := range map[string][]mtls.Files{"no certificate": nil, "another CA's certificate": {foreign.Envoy},
		"jitgated's own server certificate": {own.Server}} {
		cfg := &tls.Config{RootCAs: pool}
		for _, f := range certs {
			pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Certificates = append(cfg.Certificates, pair)
		}
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
		resp, err := c.Post(cp.base+authorize.Path, "application/json", bytes.NewReader(reqDoc))
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			t.Errorf("filter listener with %s: %d %s, want a refused TLS handshake", name, resp.StatusCode, b)
		}
		// ADS: the same handshake, refused the same way (h2 as Envoy offers it).
		adsCfg := cfg.Clone()
		adsCfg.NextProtos = []string{"h2"}
		conn, err := tls.Dial("tcp", xdsAddr, adsCfg)
		if err == nil {
			// TLS 1.3 reports the server's refusal on the first read.
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = conn.Read(make([]byte, 1))
			conn.Close()
		}
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("ADS with %s: %v, want the handshake refused for the certificate", name, err)
		}
	}
	// Envoy's certificate opens ADS (the handshake completes; the stream itself is
	// tested with real Envoy in e2e).
	pair, err := tls.LoadX509KeyPair(own.Envoy.Cert, own.Envoy.Key)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tls.Dial("tcp", xdsAddr, &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatalf("ADS with Envoy's certificate: %v", err)
	}
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Errorf("ADS ALPN = %q, want h2", p)
	}
	conn.Close()
}
