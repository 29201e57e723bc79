package identity_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jitgate/jitgate/controlplane/identity"
	"gopkg.in/yaml.v3"
)

func TestConfigValidate(t *testing.T) {
	ok := func() identity.IssuerConfig {
		return identity.IssuerConfig{Issuer: "https://token.actions.githubusercontent.com", Audiences: []string{"jitgate"}}
	}
	with := func(f func(*identity.IssuerConfig)) identity.Config {
		ic := ok()
		f(&ic)
		return identity.Config{Issuers: []identity.IssuerConfig{ic}}
	}
	tests := []struct {
		name    string
		cfg     identity.Config
		wantErr []string // substrings; empty means valid
	}{
		{"minimal", with(func(*identity.IssuerConfig) {}), nil},
		{"everything set", with(func(ic *identity.IssuerConfig) {
			ic.AgentClaim, ic.GroupsClaim = "repository", "roles"
			ic.Algorithms = []string{"RS256", "PS256", "EdDSA"}
			ic.MaxClockSkew = identity.Duration(5 * time.Minute)
			ic.JWKSURL = "https://kubernetes.default.svc/openid/v1/jwks"
		}), nil},
		{"loopback http", with(func(ic *identity.IssuerConfig) { ic.Issuer = "http://127.0.0.1:5556/dex" }), nil},
		{"localhost http", with(func(ic *identity.IssuerConfig) { ic.Issuer = "http://localhost:5556" }), nil},
		{"several issuers", identity.Config{Issuers: []identity.IssuerConfig{
			ok(), {Issuer: "https://kubernetes.default.svc.cluster.local", Audiences: []string{"jitgate", "bigquery"}},
		}}, nil},

		{"no issuers", identity.Config{}, []string{"issuers: at least one issuer"}},
		{"no issuer URL", with(func(ic *identity.IssuerConfig) { ic.Issuer = "" }), []string{"issuers[0].issuer: is required"}},
		{"relative issuer", with(func(ic *identity.IssuerConfig) { ic.Issuer = "token.actions.githubusercontent.com" }), []string{"issuer:", "absolute https URL"}},
		{"plain http issuer", with(func(ic *identity.IssuerConfig) { ic.Issuer = "http://idp.example.com" }), []string{"must use https"}},
		{"issuer with query", with(func(ic *identity.IssuerConfig) { ic.Issuer = "https://idp.example.com?tenant=1" }), []string{"query or fragment"}},
		{"issuer with credentials", with(func(ic *identity.IssuerConfig) { ic.Issuer = "https://u:secret@idp.example.com" }), []string{"credentials"}},
		{"duplicate issuer", identity.Config{Issuers: []identity.IssuerConfig{ok(), ok()}}, []string{"issuers[1].issuer:", "already issuers[0]"}},
		{"no audiences", with(func(ic *identity.IssuerConfig) { ic.Audiences = nil }), []string{"audiences: at least one"}},
		{"empty audience", with(func(ic *identity.IssuerConfig) { ic.Audiences = []string{"jitgate", " "} }), []string{"audiences[1]: is empty"}},
		{"duplicate audience", with(func(ic *identity.IssuerConfig) { ic.Audiences = []string{"a", "a"} }), []string{"audiences[1]", "twice"}},
		{"alg none", with(func(ic *identity.IssuerConfig) { ic.Algorithms = []string{"RS256", "none"} }), []string{"algorithms[1]", "never accepted"}},
		{"alg None", with(func(ic *identity.IssuerConfig) { ic.Algorithms = []string{"None"} }), []string{"algorithms[0]", "never accepted"}},
		{"alg HS256", with(func(ic *identity.IssuerConfig) { ic.Algorithms = []string{"HS256"} }), []string{"algorithms[0]", "HMAC"}},
		{"alg unknown", with(func(ic *identity.IssuerConfig) { ic.Algorithms = []string{"RS1"} }), []string{"not supported"}},
		{"negative skew", with(func(ic *identity.IssuerConfig) { ic.MaxClockSkew = identity.Duration(-time.Second) }), []string{"maxClockSkew", "negative"}},
		{"skew too large", with(func(ic *identity.IssuerConfig) { ic.MaxClockSkew = identity.Duration(6 * time.Minute) }), []string{"maxClockSkew", "maximum 5m0s"}},
		{"http jwksURL", with(func(ic *identity.IssuerConfig) { ic.JWKSURL = "http://idp.example.com/keys" }), []string{"jwksURL", "https"}},
		{"agent claim = groups claim", with(func(ic *identity.IssuerConfig) { ic.AgentClaim = "groups" }), []string{"groupsClaim: must differ"}},
		{"claim with space", with(func(ic *identity.IssuerConfig) { ic.AgentClaim = "my claim" }), []string{"agentClaim", "without whitespace"}},
		{"every problem reported", with(func(ic *identity.IssuerConfig) {
			ic.Issuer, ic.Audiences, ic.Algorithms = "", nil, []string{"none"}
		}), []string{"issuer: is required", "audiences: at least one", "algorithms[0]"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				if _, err := identity.NewVerifier(tc.cfg, identity.Options{}); err != nil {
					t.Fatalf("NewVerifier: %v", err)
				}
				return
			}
			if !errors.Is(err, identity.ErrInvalidConfig) {
				t.Fatalf("Validate() = %v, want ErrInvalidConfig", err)
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Validate() = %q, want it to mention %q", err, want)
				}
			}
			if _, err := identity.NewVerifier(tc.cfg, identity.Options{}); !errors.Is(err, identity.ErrInvalidConfig) {
				t.Errorf("NewVerifier accepted an invalid config: %v", err)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	got := identity.IssuerConfig{Issuer: "https://idp.example.com", Audiences: []string{"jitgate"}}.WithDefaults()
	if got.AgentClaim != "sub" || got.GroupsClaim != "groups" || !slices.Equal(got.Algorithms, []string{"RS256", "ES256"}) ||
		time.Duration(got.MaxClockSkew) != 30*time.Second || got.JWKSURL != "" {
		t.Fatalf("defaults = %+v", got)
	}
}

const yamlConfig = `
issuers:
  - issuer: https://token.actions.githubusercontent.com
    audiences: [jitgate]
    agentClaim: repository
  - issuer: https://kubernetes.default.svc.cluster.local
    audiences: [jitgate, bigquery-gateway]
    groupsClaim: roles
    algorithms: [RS256]
    maxClockSkew: 1m
    jwksURL: https://kubernetes.default.svc/openid/v1/jwks
`

func TestConfigDecodesStrictYAMLAndJSON(t *testing.T) {
	var cfg identity.Config
	dec := yaml.NewDecoder(strings.NewReader(yamlConfig))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	k8s := cfg.Issuers[1]
	if cfg.Issuers[0].AgentClaim != "repository" || k8s.GroupsClaim != "roles" || time.Duration(k8s.MaxClockSkew) != time.Minute ||
		k8s.JWKSURL != "https://kubernetes.default.svc/openid/v1/jwks" || len(k8s.Audiences) != 2 {
		t.Fatalf("decoded = %+v", cfg)
	}

	// JSON round trip keeps the same field names and the duration as a string.
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(`"maxClockSkew":"1m0s"`)) || !bytes.Contains(b, []byte(`"jwksURL":`)) {
		t.Fatalf("JSON = %s", b)
	}
	var back identity.Config
	jd := json.NewDecoder(bytes.NewReader(b))
	jd.DisallowUnknownFields()
	if err := jd.Decode(&back); err != nil {
		t.Fatal(err)
	}
	if time.Duration(back.Issuers[1].MaxClockSkew) != time.Minute {
		t.Fatalf("round trip = %+v", back)
	}

	for _, bad := range []string{
		"issuers: [{issuer: https://a.example, audiences: [x], maxClockSkew: 30}]", // no unit
		"issuers: [{issuer: https://a.example, audiences: [x], clockSkew: 30s}]",   // unknown field
	} {
		var c identity.Config
		d := yaml.NewDecoder(strings.NewReader(bad))
		d.KnownFields(true)
		if err := d.Decode(&c); err == nil {
			t.Errorf("decoding %q succeeded", bad)
		}
	}
}

func TestKeyMaxAgeBounds(t *testing.T) {
	base := identity.Config{Issuers: []identity.IssuerConfig{{Issuer: "https://issuer.example", Audiences: []string{"a"}}}}
	for _, tc := range []struct {
		age time.Duration
		ok  bool
	}{{0, true}, {2 * time.Second, true}, {time.Hour, true}, {-time.Second, false}, {2 * time.Hour, false}} {
		c := base
		c.KeyMaxAge = identity.Duration(tc.age)
		err := c.WithDefaults().Validate()
		if (err == nil) != tc.ok {
			t.Errorf("keyMaxAge %s: err = %v, want ok=%v", tc.age, err, tc.ok)
		}
		if got := c.WithDefaults().KeyMaxAge; got != c.KeyMaxAge {
			t.Errorf("WithDefaults dropped keyMaxAge: %s", time.Duration(got))
		}
	}
}
