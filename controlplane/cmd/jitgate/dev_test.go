package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jitgate/jitgate/controlplane/credentials"
	"github.com/jitgate/jitgate/controlplane/devissuer"
	"github.com/jitgate/jitgate/controlplane/identity"
)

func TestDevTokenPrintsAVerifiableToken(t *testing.T) {
	iss, err := devissuer.Start(devissuer.Options{Audience: "gw-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer iss.Close()
	var out, errb bytes.Buffer
	code := run([]string{"dev", "token", "--agent", "etl-bot", "--groups", "analysts, etl", "--ttl", "3m", "--issuer", iss.URL()}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n"); len(lines) != 1 || errb.Len() != 0 {
		t.Fatalf("stdout must be just the token for $(...): %q, stderr %q", out.String(), errb.String())
	}
	v, err := identity.NewVerifier(identity.Config{Issuers: []identity.IssuerConfig{{Issuer: iss.URL(), Audiences: []string{"gw-test"}}}}, identity.Options{})
	if err != nil {
		t.Fatal(err)
	}
	id, err := v.Verify(t.Context(), strings.TrimSpace(out.String()))
	if err != nil {
		t.Fatal(err)
	}
	if id.AgentID != "etl-bot" || !slices.Equal(id.Groups, []string{"analysts", "etl"}) || time.Until(id.ExpiresAt) > 3*time.Minute {
		t.Errorf("identity = %+v", id)
	}
}

func TestDevTokenErrors(t *testing.T) {
	iss, err := devissuer.Start(devissuer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dead := iss.URL()
	live, err := devissuer.Start(devissuer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	_ = iss.Close()
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no agent", []string{"--issuer", live.URL()}, 2, "--agent is required"},
		{"issuer down", []string{"--agent", "a", "--issuer", dead}, 1, "is jitgated running with --dev-issuer"},
		{"ttl refused", []string{"--agent", "a", "--ttl", "100h", "--issuer", live.URL()}, 1, "400 Bad Request: ttl"},
		{"help", []string{"-h"}, 0, "TOKEN=$(jitgate dev token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(append([]string{"dev", "token"}, tt.args...), &out, &errb)
			if code != tt.code || !strings.Contains(errb.String(), tt.want) || out.Len() != 0 {
				t.Errorf("exit %d stdout %q stderr %q, want %d and %q", code, out.String(), errb.String(), tt.code, tt.want)
			}
		})
	}
}

func TestDevServiceAccountKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new-dir", "sa.json")
	var out, errb bytes.Buffer
	if code := run([]string{"dev", "service-account-key", "--out", path}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	key, err := credentials.LoadServiceAccountKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if key.ClientEmail != DefaultDevServiceAccount || key.ProjectID != "jitgate-dev" {
		t.Errorf("key = %v (project %q)", key, key.ProjectID)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %s, want 0600", fi.Mode().Perm())
	}
	before, _ := os.ReadFile(path)
	if strings.Contains(out.String()+errb.String(), "PRIVATE KEY") {
		t.Error("the key was printed")
	}

	errb.Reset()
	if code := run([]string{"dev", "service-account-key", "--out", path}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "--force") {
		t.Errorf("overwrite without --force: exit %d %q", code, errb.String())
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Error("the existing key was modified")
	}

	const email = "other@my-project.iam.gserviceaccount.com"
	if code := run([]string{"dev", "service-account-key", "--out", path, "--force", "--email", email}, &out, &errb); code != 0 {
		t.Fatalf("--force: exit %d %s", code, errb.String())
	}
	key2, err := credentials.LoadServiceAccountKey(path)
	if err != nil || key2.ClientEmail != email || key2.PrivateKeyID == key.PrivateKeyID {
		t.Errorf("after --force: %v %v", key2, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode after --force %s, want 0600", fi.Mode().Perm())
	}
	if code := run([]string{"dev", "service-account-key"}, &out, &errb); code != 2 {
		t.Errorf("without --out: exit %d", code)
	}
}

func TestUsageListsEveryCommand(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"--help"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, cmd := range []string{"envoy bootstrap", "dev token", "dev service-account-key"} {
		if !strings.Contains(out.String(), cmd) {
			t.Errorf("usage lacks %q", cmd)
		}
	}
}
