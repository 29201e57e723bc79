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
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "jitgated.yaml")
	if err := os.WriteFile(p, []byte("apiVersion: jitgate.dev/v1\nkind: ControlPlaneConfig\n"+body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheckConfig(t *testing.T) {
	good := writeConfig(t, "upstream:\n  bigquery:\n    url: http://127.0.0.1:9050\n")
	bad := writeConfig(t, "upstream:\n  bigquery:\n    url: http://127.0.0.1:9050\n    tls: true\n")
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
	}{
		{"valid file", []string{"--config", good, "--check-config"}, 0, "config OK"},
		{"unknown field names file and line", []string{"--config", bad, "--check-config"}, 1, bad + ":6: field tls not found"},
		{"bad flag value names the flag", []string{"--config", good, "--upstream", "ftp://x", "--check-config"}, 1, "--upstream: invalid config value"},
		{"no file uses defaults", []string{"--check-config"}, 0, "upstream https://bigquery.googleapis.com"},
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

// TestServeAndShutdown starts the whole daemon on free ports with embedded NATS, waits for
// readiness, reloads a broken config (the last good snapshot must stay), and shuts down.
func TestServeAndShutdown(t *testing.T) {
	xdsPort, apiPort := freePort(t), freePort(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "jitgated.yaml")
	doc := fmt.Sprintf("apiVersion: jitgate.dev/v1\nkind: ControlPlaneConfig\nxds: {listen: \"127.0.0.1:%d\"}\napi: {listen: \"127.0.0.1:%d\"}\nnats: {storeDir: nats, maxMemoryBytes: 16777216, maxStoreBytes: 67108864}\n", xdsPort, apiPort)
	if err := os.WriteFile(cfgPath, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	reload := make(chan os.Signal, 1)
	done := make(chan int)
	var stderr syncWriter
	go func() {
		done <- run(ctx, []string{"--config", cfgPath, "--log-format", "text"}, reload, &bytes.Buffer{}, &stderr)
	}()

	api := fmt.Sprintf("http://127.0.0.1:%d", apiPort)
	waitFor(t, func() bool { code, _ := get(api + "/readyz"); return code == 200 })
	if _, err := os.Stat(filepath.Join(dir, "nats")); err != nil {
		t.Errorf("embedded NATS store not created next to the config file: %v", err)
	}

	if err := os.WriteFile(cfgPath, []byte(doc+"bogus: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	reload <- syscall.SIGHUP
	waitFor(t, func() bool { return strings.Contains(stderr.String(), "config reload failed") })
	code, body := get(api + "/v1/status")
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
