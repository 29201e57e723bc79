package credentials

import (
	"errors"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestConfigDefaults(t *testing.T) {
	c := Config{KeyFile: "/etc/jitgate/sa.json"}.WithDefaults()
	if c.Mode != ModeSelfSignedJWT || c.TTL != 5*time.Minute || c.SelfSignedJWT.Claim != ClaimAudience ||
		c.SelfSignedJWT.Audience != "https://bigquery.googleapis.com/" ||
		c.Impersonation.Endpoint != "https://iamcredentials.googleapis.com" ||
		c.Impersonation.Timeout != 10*time.Second || len(c.Scopes) != 1 || c.Scopes[0] != ScopeBigQuery {
		t.Errorf("defaults = %+v", c)
	}
	if err := (Config{KeyFile: "k.json"}).Validate(); err != nil {
		t.Errorf("minimal config: %v", err)
	}
}

func TestConfigFromYAML(t *testing.T) {
	doc := `
mode: impersonate
keyFile: /etc/jitgate/sa.json
ttl: 2m
scopes: [https://www.googleapis.com/auth/cloud-platform.read-only]
selfSignedJWT:
  claim: scope
impersonation:
  endpoint: https://iamcredentials.googleapis.com/
  serviceAccount: reader@p.iam.gserviceaccount.com
  timeout: 5s
`
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	var c Config
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c = c.WithDefaults()
	if c.Mode != ModeImpersonate || c.TTL != 2*time.Minute || c.Impersonation.Timeout != 5*time.Second ||
		c.Impersonation.Endpoint != "https://iamcredentials.googleapis.com" ||
		c.Impersonation.ServiceAccount != "reader@p.iam.gserviceaccount.com" || c.Scopes[0] != ScopeCloudPlatformReadOnly {
		t.Errorf("decoded = %+v", c)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Config{KeyFile: "k.json"}
	tests := []struct {
		name string
		mut  func(*Config)
		want string
	}{
		{"unknown mode", func(c *Config) { c.Mode = "oauth" }, "mode"},
		{"no key file", func(c *Config) { c.KeyFile = "" }, "keyFile"},
		{"ttl too long", func(c *Config) { c.TTL = 61 * time.Minute }, "ttl"},
		{"ttl too short", func(c *Config) { c.TTL = time.Second }, "ttl"},
		{"negative ttl", func(c *Config) { c.TTL = -time.Minute }, "ttl"},
		{"scope not a URL", func(c *Config) { c.Scopes = []string{"bigquery"} }, "scopes"},
		{"scope with space", func(c *Config) { c.Scopes = []string{"https://a b"} }, "scopes"},
		{"unknown claim", func(c *Config) { c.SelfSignedJWT.Claim = "both" }, "selfSignedJWT.claim"},
		{"http audience", func(c *Config) { c.SelfSignedJWT.Audience = "http://bigquery.googleapis.com/" }, "selfSignedJWT.audience"},
		{"http endpoint", func(c *Config) {
			c.Mode = ModeImpersonate
			c.Impersonation.Endpoint = "http://iamcredentials.googleapis.com"
		}, "impersonation.endpoint"},
		{"endpoint with credentials", func(c *Config) {
			c.Mode = ModeImpersonate
			c.Impersonation.Endpoint = "https://u:p@iam.example"
		}, "impersonation.endpoint"},
		{"bad service account", func(c *Config) {
			c.Mode = ModeImpersonate
			c.Impersonation.ServiceAccount = "reader/../x@p"
		}, "impersonation.serviceAccount"},
		{"timeout too long", func(c *Config) {
			c.Mode = ModeImpersonate
			c.Impersonation.Timeout = time.Hour
		}, "impersonation.timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mut(&c)
			err := c.Validate()
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate() = %v, want ErrConfig naming %s", err, tt.want)
			}
		})
	}
	loop := Config{KeyFile: "k", Mode: ModeImpersonate, Impersonation: ImpersonationConfig{Endpoint: "http://127.0.0.1:8080"}}
	if err := loop.Validate(); err != nil {
		t.Errorf("loopback http endpoint: %v", err)
	}
}
