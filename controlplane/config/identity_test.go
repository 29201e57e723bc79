package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jitgate/jitgate/controlplane/credentials"
)

// writeSAKey writes a throwaway service-account key and returns its path.
func writeSAKey(t *testing.T) string {
	t.Helper()
	data, err := credentials.GenerateServiceAccountKey("dev-gateway@jitgate-dev.iam.gserviceaccount.com")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "sa-key.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestIdentityAndCredentialsSchema(t *testing.T) {
	doc := header + `identity:
  issuers:
  - issuer: https://token.actions.githubusercontent.com
    audiences: [jitgate]
    agentClaim: repository
    maxClockSkew: 45s
credentials:
  mode: self-signed-jwt
  keyFile: secrets/sa-key.json
  ttl: 2m
devIssuer:
  enabled: true
  listen: 127.0.0.1:28002
  keyFile: dev/issuer.pem
  audience: gw-local
`
	c, err := Parse("/etc/jitgate/jitgated.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	iss := c.Identity.Issuers[0]
	if iss.Issuer != "https://token.actions.githubusercontent.com" || iss.AgentClaim != "repository" || time.Duration(iss.MaxClockSkew) != 45*time.Second {
		t.Errorf("issuer = %+v", iss)
	}
	if c.Credentials.TTL != 2*time.Minute || c.Credentials.Mode != credentials.ModeSelfSignedJWT ||
		c.Credentials.KeyFile != "/etc/jitgate/secrets/sa-key.json" {
		t.Errorf("credentials = %+v", c.Credentials)
	}
	if !c.DevIssuer.Enabled || c.DevIssuer.KeyFile != "/etc/jitgate/dev/issuer.pem" || c.DevIssuer.URL() != "http://127.0.0.1:28002" {
		t.Errorf("devIssuer = %+v", c.DevIssuer)
	}
	ic := c.IdentityConfig(c.DevIssuer.URL())
	if len(ic.Issuers) != 2 || ic.Issuers[1].Issuer != "http://127.0.0.1:28002" || ic.Issuers[1].Audiences[0] != "gw-local" {
		t.Errorf("effective issuers = %+v", ic.Issuers)
	}
}

func TestDevIssuerDefaults(t *testing.T) {
	c, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	cwd, _ := os.Getwd()
	if c.DevIssuer.Enabled || c.DevIssuer.Listen != "127.0.0.1:18002" || c.DevIssuer.Audience != "jitgate" ||
		c.DevIssuer.KeyFile != filepath.Join(cwd, ".jitgate/dev-issuer-key.pem") {
		t.Errorf("devIssuer defaults = %+v", c.DevIssuer)
	}
	if len(c.IdentityConfig(c.DevIssuer.URL()).Issuers) != 0 {
		t.Error("a disabled dev issuer is trusted")
	}
	if c.Credentials.TTL != credentials.DefaultTTL || c.Credentials.KeyFile != "" {
		t.Errorf("credentials defaults = %+v", c.Credentials)
	}
}

func TestIdentityParseErrors(t *testing.T) {
	tests := []struct {
		name, doc, want string
		wantErr         error
	}{
		{"unknown issuer field", header + "identity:\n  issuers:\n  - issuer: https://idp.example\n    audiences: [x]\n    audience: y\n", "jitgated.yaml:7: field audience not found", ErrSyntax},
		{"unknown credentials field", header + "credentials:\n  keyfile: a.json\n", "jitgated.yaml:4: field keyfile not found", ErrSyntax},
		{"unknown devIssuer field", header + "devIssuer:\n  enable: true\n", "jitgated.yaml:4: field enable not found", ErrSyntax},
		{"bad ttl", header + "credentials:\n  ttl: soon\n", "jitgated.yaml:4:", ErrSyntax},
		{"ttl out of range", header + "credentials:\n  ttl: 2h\n", "jitgated.yaml:3: invalid config value: credentials:", ErrInvalid},
		{"bad mode", header + "credentials:\n  mode: oauth\n", "mode \"oauth\"", ErrInvalid},
		{"http issuer off loopback", header + "identity:\n  issuers:\n  - issuer: http://idp.example\n    audiences: [x]\n", "jitgated.yaml:4: invalid config value: identity.issuers", ErrInvalid},
		{"issuer without audience", header + "identity:\n  issuers:\n  - issuer: https://idp.example\n", "issuers[0].audiences", ErrInvalid},
		{"dev issuer on all interfaces", header + "devIssuer:\n  listen: 0.0.0.0:18002\n", "jitgated.yaml:4: invalid config value: devIssuer.listen", ErrInvalid},
		{"dev issuer on a hostname", header + "devIssuer:\n  listen: localhost:18002\n", "devIssuer.listen", ErrInvalid},
		{"dev issuer audience with space", header + "devIssuer:\n  audience: \"a b\"\n", "devIssuer.audience", ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("jitgated.yaml", []byte(tt.doc))
			if err == nil || !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse error %v, want %v containing %q", err, tt.wantErr, tt.want)
			}
		})
	}
}

func TestValidateForServe(t *testing.T) {
	key := writeSAKey(t)
	garbage := filepath.Join(t.TempDir(), "garbage.json")
	if err := os.WriteFile(garbage, []byte(`{"type":"service_account","private_key":"TOP-SECRET-BYTES"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	issuer := "identity:\n  issuers:\n  - issuer: https://idp.example\n    audiences: [jitgate]\n"
	tests := []struct {
		name      string
		doc       string
		overrides Overrides
		want      string // "" means valid
	}{
		{"nothing configured", header, Overrides{}, "at least one OIDC issuer is required"},
		{"issuer but no key", header + issuer, Overrides{}, "credentials.keyFile is required"},
		{"key file missing", header + issuer + "credentials:\n  keyFile: /nonexistent/sa.json\n", Overrides{}, "jitgated.yaml:8: invalid config value: credentials.keyFile: invalid service-account key file: open /nonexistent/sa.json: no such file"},
		{"key file not a key", header + issuer, Overrides{CredentialsKeyFile: &garbage}, "--credentials-key-file: invalid config value: credentials.keyFile"},
		{"configured issuer and key", header + issuer, Overrides{CredentialsKeyFile: &key}, ""},
		{"dev issuer alone", header, Overrides{DevIssuer: ptr(true), CredentialsKeyFile: &key}, ""},
		{"dev issuer clashes with a configured one", header + "identity:\n  issuers:\n  - issuer: http://127.0.0.1:18002\n    audiences: [x]\n",
			Overrides{DevIssuer: ptr(true), CredentialsKeyFile: &key}, "is already issuers[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("jitgated.yaml", []byte(tt.doc))
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Apply(tt.overrides); err != nil {
				t.Fatal(err)
			}
			err = c.ValidateForServe()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("ValidateForServe() = %v", err)
			case tt.want != "" && (err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("ValidateForServe() = %v, want ErrInvalid containing %q", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), "TOP-SECRET") {
				t.Errorf("error quotes the key file: %v", err)
			}
		})
	}
}

func TestDevIssuerOverrides(t *testing.T) {
	c, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	listen, rel := "127.0.0.1:28002", "keys/sa.json"
	if err := c.Apply(Overrides{DevIssuer: ptr(true), DevIssuerListen: &listen, CredentialsKeyFile: &rel}); err != nil {
		t.Fatal(err)
	}
	cwd, _ := os.Getwd()
	if !c.DevIssuer.Enabled || c.DevIssuer.Listen != listen || c.Credentials.KeyFile != filepath.Join(cwd, rel) {
		t.Errorf("after overrides: %+v %q", c.DevIssuer, c.Credentials.KeyFile)
	}
	bad := "192.0.2.1:18002"
	if err := c.Apply(Overrides{DevIssuerListen: &bad}); err == nil || !strings.HasPrefix(err.Error(), "--dev-issuer-listen: ") {
		t.Errorf("non-loopback --dev-issuer-listen: %v", err)
	}
	if ic := c.IdentityConfig("http://" + listen); len(ic.Issuers) != 1 || ic.Issuers[0].Audiences[0] != DefaultDevIssuerAudience {
		t.Errorf("enabling the dev issuer trusts %+v", ic.Issuers)
	}
}

func ptr[T any](v T) *T { return &v }
