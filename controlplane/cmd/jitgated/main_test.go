package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
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
	"github.com/jitgate/jitgate/filter/authorize"
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
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
	}{
		{"valid file", []string{"--config", good, "--check-config"}, 0, "issuers https://token.actions.githubusercontent.com, credentials self-signed-jwt (key " + key + ", ttl 5m0s)"},
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
		{"bad log format", []string{"--log-format", "xml", "--check-config"}, 2, "--log-format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(t.Context(), tt.args, nil, &stdout, &stderr)
			out := stdout.String() + stderr.String()
			if code != tt.wantCode || !strings.Contains(out, tt.wantOut) {
				t.Errorf("run(%q) = %d, output:\n%s\nwant %d and %q", tt.args, code, out, tt.wantCode, tt.wantOut)
			}
		})
	}
}

// TestServeAndShutdown starts the whole daemon on free ports with embedded NATS, the
// development issuer and a generated service-account key, waits for readiness, authorizes a
// call with a token from `POST /dev/token`, reloads a broken config (the last good snapshot
// must stay), and shuts down.
func TestServeAndShutdown(t *testing.T) {
	xdsPort, apiPort, devPort := freePort(t), freePort(t), freePort(t)
	dir := t.TempDir()
	key := writeSAKey(t)
	keyJSON, _ := os.ReadFile(key)
	cfgPath := filepath.Join(dir, "jitgated.yaml")
	doc := fmt.Sprintf("apiVersion: jitgate.dev/v1\nkind: ControlPlaneConfig\nxds: {listen: \"127.0.0.1:%d\"}\napi: {listen: \"127.0.0.1:%d\"}\nnats: {storeDir: nats, maxMemoryBytes: 16777216, maxStoreBytes: 67108864}\ndevIssuer: {keyFile: dev/issuer-key.pem}\n", xdsPort, apiPort)
	if err := os.WriteFile(cfgPath, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	reload := make(chan os.Signal, 1)
	done := make(chan int)
	var stderr syncWriter
	go func() {
		done <- run(ctx, []string{"--config", cfgPath, "--log-format", "text", "--dev-issuer",
			"--dev-issuer-listen", fmt.Sprintf("127.0.0.1:%d", devPort), "--credentials-key-file", key}, reload, &bytes.Buffer{}, &stderr)
	}()

	api := fmt.Sprintf("http://127.0.0.1:%d", apiPort)
	waitFor(t, func() bool { code, _ := get(api + "/readyz"); return code == 200 })
	if _, err := os.Stat(filepath.Join(dir, "nats")); err != nil {
		t.Errorf("embedded NATS store not created next to the config file: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "dev", "issuer-key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("dev issuer key not created (0600) next to the config file: %v", err)
	}
	if !strings.Contains(stderr.String(), "level=WARN msg=\"DEVELOPMENT ISSUER ENABLED") {
		t.Errorf("no loud warning about the development issuer:\n%s", stderr.String())
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
	code, body := post(api+authorize.Path, reqDoc)
	decision, err := authorize.ParseResponse([]byte(body))
	if code != 200 || err != nil || decision.Decision != authorize.Allow || decision.Identity.AgentID != "etl-bot" || decision.Identity.Issuer != devURL {
		t.Fatalf("POST %s = %d %s (%v)", authorize.Path, code, body, err)
	}
	reqDoc, _ = authorize.Request{RequestID: "r-2", Call: authorize.Call{API: "jobs.query", Method: "POST"}}.Marshal()
	if code, body := post(api+authorize.Path, reqDoc); code != 200 || !strings.Contains(body, `"status":401`) {
		t.Errorf("no token: %d %s", code, body)
	}
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

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
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
