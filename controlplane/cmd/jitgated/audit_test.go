package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jitgate/jitgate/controlplane/audit"
	"github.com/jitgate/jitgate/controlplane/devissuer"
	"github.com/jitgate/jitgate/filter/authorize"
	"github.com/jitgate/jitgate/tools/freeport"
)

// TestAuditTrailReadableOverNATSListen starts jitgated with embedded NATS and a loopback
// client port (nats.listen), in identity-only mode (no policies, so SELECT 1 is allowed
// without SQL analysis), authorizes one allowed and one denied call, and reads both
// records back over that port the way `jitgate audit` does; /v1/status and /metrics show
// the audit trail.
func TestAuditTrailReadableOverNATSListen(t *testing.T) {
	xdsPort, apiPort, devPort, natsPort, filterPort := freeport.For(t), freeport.For(t), freeport.For(t), freeport.For(t), freeport.For(t)
	dir := t.TempDir()
	key := writeSAKey(t)
	cfgPath := filepath.Join(dir, "jitgated.yaml")
	doc := fmt.Sprintf(`apiVersion: jitgate.dev/v1
kind: ControlPlaneConfig
xds: {listen: "127.0.0.1:%d"}
api: {listen: "127.0.0.1:%d", filterListen: "127.0.0.1:%d"}
nats: {storeDir: nats, maxMemoryBytes: 16777216, maxStoreBytes: 67108864, listen: "127.0.0.1:%d"}
devIssuer: {keyFile: dev/issuer-key.pem}
audit: {maxAge: 24h, maxBytes: 33554432, maxExcerptBytes: 1024}
policies: {identityOnly: true}
`, xdsPort, apiPort, filterPort, natsPort)
	if err := os.WriteFile(cfgPath, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan int)
	var stderr syncWriter
	go func() {
		done <- run(ctx, []string{"--config", cfgPath, "--log-format", "text", "--dev-issuer",
			"--dev-issuer-listen", fmt.Sprintf("127.0.0.1:%d", devPort), "--credentials-key-file", key}, nil, &bytes.Buffer{}, &stderr)
	}()
	defer func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("exit code %d, log:\n%s", code, stderr.String())
			}
		case <-time.After(15 * time.Second):
			t.Error("jitgated did not shut down")
		}
	}()
	api := fmt.Sprintf("http://127.0.0.1:%d", apiPort)
	waitFor(t, func() bool { code, _ := get(api + "/readyz"); return code == 200 })
	cp := newCallouts(t, dir, filterPort)
	if !strings.Contains(stderr.String(), fmt.Sprintf("client_url=nats://127.0.0.1:%d", natsPort)) ||
		!strings.Contains(stderr.String(), `msg="audit trail ready" stream=JITGATE_AUDIT last_seq=0 mode=strict`) {
		t.Errorf("start-up log does not announce the NATS client port and the audit trail:\n%s", stderr.String())
	}

	resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d", devPort)+devissuer.TokenPath, "application/json",
		strings.NewReader(`{"agent":"etl-bot","groups":["analysts"]}`))
	if err != nil {
		t.Fatal(err)
	}
	var tr devissuer.TokenResponse
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	call := authorize.Call{API: "jobs.query", Method: "POST", Project: "p"}
	client := authorize.Client{Address: "10.1.2.3:4567", UserAgent: "audit-test/1"}
	query := &authorize.Query{SQL: "SELECT 1 AS audited"}
	reqDoc, _ := authorize.Request{RequestID: "r-audit-1", Token: tr.Token, Client: client, Call: call, Query: query}.Marshal()
	code, body := cp.post(authorize.Path, reqDoc)
	allow, err := authorize.ParseResponse([]byte(body))
	if code != 200 || err != nil || allow.Decision != authorize.Allow {
		t.Fatalf("allow: %d %s (%v)", code, body, err)
	}
	reqDoc, _ = authorize.Request{RequestID: "r-audit-2", Client: client, Call: call, Query: query}.Marshal()
	code, body = cp.post(authorize.Path, reqDoc)
	deny, err := authorize.ParseResponse([]byte(body))
	if code != 200 || err != nil || deny.Status != 401 {
		t.Fatalf("deny: %d %s (%v)", code, body, err)
	}

	// Read the trail over the loopback client port, as `jitgate audit --nats-url` does.
	nc, err := nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", natsPort), nats.Name("audit-test"))
	if err != nil {
		t.Fatalf("connect to nats.listen: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	r, err := audit.NewReader(ctx, js, "")
	if err != nil {
		t.Fatal(err)
	}
	entries, err := r.Show(ctx, allow.DecisionID)
	if err != nil || len(entries) != 1 {
		t.Fatalf("records of the allowed call = %d, %v", len(entries), err)
	}
	rec := entries[0].Record
	if rec.Seq != 1 || rec.RequestID != "r-audit-1" || rec.Agent.ID != "etl-bot" || rec.Decision != "allow" || rec.SQL != query.SQL ||
		rec.Client != (audit.Client{Address: client.Address, UserAgent: client.UserAgent}) || rec.CredentialID != allow.Credential.ID {
		t.Errorf("allow record = %+v", rec)
	}
	if raw := string(entries[0].Data); strings.Contains(raw, tr.Token) || strings.Contains(raw, strings.TrimPrefix(allow.Credential.Authorization, "Bearer ")) {
		t.Error("the audit record holds the agent's token or the credential")
	}
	entries, err = r.Show(ctx, deny.DecisionID)
	if err != nil || len(entries) != 1 || entries[0].Record.Decision != "deny" || entries[0].Record.Status != 401 || entries[0].Record.Agent.ID != "" {
		t.Fatalf("records of the denied call = %+v, %v", entries, err)
	}
	res, err := r.Verify(ctx)
	if err != nil || !res.OK() || res.Records != 2 {
		t.Errorf("verify = %+v, %v", res, err)
	}
	st, err := js.Stream(ctx, audit.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := st.Info(ctx); err != nil || info.Config.MaxAge != 24*time.Hour || info.Config.MaxBytes != 32<<20 || !info.Config.DenyDelete {
		t.Errorf("stream config = %+v, %v", info.Config, err)
	}

	_, body = get(api + "/v1/status")
	var status struct {
		Audit struct {
			Mode     string `json:"mode"`
			Stream   string `json:"stream"`
			LastSeq  uint64 `json:"lastSeq"`
			Appended uint64 `json:"appended"`
			Failed   uint64 `json:"failed"`
		} `json:"audit"`
	}
	if err := json.Unmarshal([]byte(body), &status); err != nil || status.Audit.Mode != "strict" || status.Audit.Stream != audit.DefaultStream ||
		status.Audit.LastSeq != 2 || status.Audit.Appended != 2 || status.Audit.Failed != 0 {
		t.Errorf("/v1/status audit = %+v (%v)\n%s", status.Audit, err, body)
	}
	if _, metrics := get(api + "/metrics"); !strings.Contains(metrics, `jitgate_audit_append_duration_seconds_count{result="ok"} 2`) {
		t.Errorf("audit metrics missing from jitgated's registry")
	}
}

func TestAuditAndNATSListenConfig(t *testing.T) {
	key := writeSAKey(t)
	relaxed := writeConfig(t, "audit: {mode: relaxed}\n")
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
	}{
		{"relaxed is announced", []string{"--config", relaxed, "--check-config"}, 0, "warning: audit.mode is relaxed"},
		{"listen is shown", []string{"--nats-listen", "127.0.0.1:4222", "--check-config"}, 0, "clients on 127.0.0.1:4222"},
		{"listen off loopback", []string{"--nats-listen", "0.0.0.0:4222", "--check-config"}, 1, "--nats-listen: invalid config value: nats.listen"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append([]string{"--dev-issuer", "--credentials-key-file", key}, tt.args...)
			code := run(t.Context(), args, nil, &stdout, &stderr)
			if out := stdout.String() + stderr.String(); code != tt.wantCode || !strings.Contains(out, tt.wantOut) {
				t.Errorf("run(%q) = %d, output:\n%s\nwant %d and %q", args, code, out, tt.wantCode, tt.wantOut)
			}
		})
	}
}
