package identity

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/jitgate/jitgate/controlplane/credentials"
)

// Defaults and limits for IssuerConfig.
const (
	DefaultAgentClaim   = "sub"
	DefaultGroupsClaim  = "groups"
	DefaultMaxClockSkew = 30 * time.Second
	MaxMaxClockSkew     = 5 * time.Minute
)

// DefaultAlgorithms are accepted when an issuer lists none.
var DefaultAlgorithms = []string{"RS256", "ES256"}

// supportedAlgorithms are the asymmetric JWS algorithms go-oidc verifies. "none" and the
// HMAC family are absent on purpose: a verifier holding only public keys must never accept
// them (alg none forgeries, RS256→HS256 key confusion).
var supportedAlgorithms = []string{
	"RS256", "RS384", "RS512",
	"ES256", "ES384", "ES512",
	"PS256", "PS384", "PS512",
	"EdDSA",
}

// ErrInvalidConfig wraps every problem Config.Validate reports.
var ErrInvalidConfig = errors.New("invalid identity config")

// Config lists the OIDC issuers whose ID tokens identify agents.
type Config struct {
	// Issuers are tried by the token's iss claim; at least one is required.
	Issuers []IssuerConfig `yaml:"issuers" json:"issuers"`
	// KeyMaxAge bounds how long a signing key that an issuer has removed from its JWKS
	// keeps verifying tokens (Options.KeyMaxAge; 0 means the 5 minute default).
	KeyMaxAge Duration `yaml:"keyMaxAge,omitempty" json:"keyMaxAge,omitempty"`
}

// IssuerConfig is one trusted OIDC issuer (GitHub Actions, a Kubernetes service-account
// issuer, a corporate IdP).
type IssuerConfig struct {
	// Issuer is the issuer identifier; it must equal the tokens' iss claim and the
	// discovery document's issuer exactly (a trailing slash matters). https, or http on
	// a loopback host for development.
	Issuer string `yaml:"issuer" json:"issuer"`
	// Audiences accepted in the aud claim; a token must carry at least one of them.
	Audiences []string `yaml:"audiences" json:"audiences"`
	// AgentClaim names the string claim that becomes the agent id. Default "sub".
	AgentClaim string `yaml:"agentClaim,omitempty" json:"agentClaim,omitempty"`
	// GroupsClaim names the claim holding the agent's groups, a string or a list of
	// strings; absent means no groups. Default "groups".
	GroupsClaim string `yaml:"groupsClaim,omitempty" json:"groupsClaim,omitempty"`
	// Algorithms allowed for the token signature. Default RS256, ES256. "none" and HS*
	// are never accepted.
	Algorithms []string `yaml:"algorithms,omitempty" json:"algorithms,omitempty"`
	// MaxClockSkew tolerated on exp, nbf and iat, e.g. "30s". Default 30s, at most 5m.
	MaxClockSkew Duration `yaml:"maxClockSkew,omitempty" json:"maxClockSkew,omitempty"`
	// JWKSURL, when set, is used instead of discovery: the key set is fetched from here
	// and /.well-known/openid-configuration is never requested (for issuers whose
	// discovery document is unreachable from the gateway, e.g. some Kubernetes clusters).
	JWKSURL string `yaml:"jwksURL,omitempty" json:"jwksURL,omitempty"`
}

// Duration is a time.Duration written as a Go duration string ("30s", "2m") in YAML and
// JSON.
type Duration time.Duration

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("duration %q: want a value like \"30s\" or \"2m\"", b)
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(time.Duration(d).String()), nil
}

// WithDefaults returns a copy with every unset field of every issuer defaulted.
func (c Config) WithDefaults() Config {
	out := Config{Issuers: make([]IssuerConfig, len(c.Issuers)), KeyMaxAge: c.KeyMaxAge}
	for n, ic := range c.Issuers {
		out.Issuers[n] = ic.WithDefaults()
	}
	return out
}

// WithDefaults returns a copy with every unset field defaulted.
func (ic IssuerConfig) WithDefaults() IssuerConfig {
	ic.Audiences = slices.Clone(ic.Audiences)
	if ic.AgentClaim == "" {
		ic.AgentClaim = DefaultAgentClaim
	}
	if ic.GroupsClaim == "" {
		ic.GroupsClaim = DefaultGroupsClaim
	}
	if len(ic.Algorithms) == 0 {
		ic.Algorithms = slices.Clone(DefaultAlgorithms)
	} else {
		ic.Algorithms = slices.Clone(ic.Algorithms)
	}
	if ic.MaxClockSkew == 0 {
		ic.MaxClockSkew = Duration(DefaultMaxClockSkew)
	}
	return ic
}

// Validate reports every problem in the config at once; each wraps ErrInvalidConfig and
// names the field ("issuers[1].audiences: ...").
func (c Config) Validate() error {
	if len(c.Issuers) == 0 {
		return fmt.Errorf("%w: issuers: at least one issuer is required", ErrInvalidConfig)
	}
	var errs []error
	if c.KeyMaxAge < 0 || time.Duration(c.KeyMaxAge) > time.Hour {
		errs = append(errs, fmt.Errorf("%w: keyMaxAge: %s outside 0..1h", ErrInvalidConfig, time.Duration(c.KeyMaxAge)))
	}
	seen := map[string]int{}
	for n, ic := range c.Issuers {
		for _, err := range ic.problems() {
			errs = append(errs, fmt.Errorf("%w: issuers[%d].%v", ErrInvalidConfig, n, err))
		}
		if first, dup := seen[ic.Issuer]; dup && ic.Issuer != "" {
			errs = append(errs, fmt.Errorf("%w: issuers[%d].issuer: %q is already issuers[%d]", ErrInvalidConfig, n, ic.Issuer, first))
		} else {
			seen[ic.Issuer] = n
		}
	}
	return errors.Join(errs...)
}

// Validate checks one issuer; see Config.Validate.
func (ic IssuerConfig) Validate() error {
	var errs []error
	for _, err := range ic.problems() {
		errs = append(errs, fmt.Errorf("%w: %v", ErrInvalidConfig, err))
	}
	return errors.Join(errs...)
}

// problems lists what is wrong, each message starting with the field name.
func (ic IssuerConfig) problems() []error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}

	if ic.Issuer == "" {
		add("issuer", "is required")
	} else if err := checkURL(ic.Issuer); err != nil {
		add("issuer", "%v", err)
	}

	if len(ic.Audiences) == 0 {
		add("audiences", "at least one accepted audience is required")
	}
	for n, aud := range ic.Audiences {
		switch {
		case strings.TrimSpace(aud) == "":
			add(fmt.Sprintf("audiences[%d]", n), "is empty")
		case strings.TrimSpace(aud) != aud:
			add(fmt.Sprintf("audiences[%d]", n), "%q has surrounding whitespace", aud)
		case slices.Index(ic.Audiences, aud) != n:
			add(fmt.Sprintf("audiences[%d]", n), "%q is listed twice", aud)
		}
	}

	for _, f := range []struct{ field, value string }{{"agentClaim", ic.AgentClaim}, {"groupsClaim", ic.GroupsClaim}} {
		if f.value != "" && (strings.TrimSpace(f.value) != f.value || strings.ContainsAny(f.value, " \t\r\n")) {
			add(f.field, "%q must be a claim name without whitespace", f.value)
		}
	}
	if agent, groups := ic.WithDefaults().AgentClaim, ic.WithDefaults().GroupsClaim; agent == groups {
		add("groupsClaim", "must differ from agentClaim (%q)", agent)
	}

	for n, alg := range ic.Algorithms {
		field := fmt.Sprintf("algorithms[%d]", n)
		switch {
		case strings.EqualFold(alg, "none"):
			add(field, `"none" (unsigned tokens) is never accepted`)
		case strings.HasPrefix(strings.ToUpper(alg), "HS"):
			add(field, "%q is never accepted: HMAC algorithms would let anyone holding the issuer's public key forge tokens", alg)
		case !slices.Contains(supportedAlgorithms, alg):
			add(field, "%q is not supported (want one of %s)", alg, strings.Join(supportedAlgorithms, ", "))
		case slices.Index(ic.Algorithms, alg) != n:
			add(field, "%q is listed twice", alg)
		}
	}

	switch skew := time.Duration(ic.MaxClockSkew); {
	case skew < 0:
		add("maxClockSkew", "%s is negative", skew)
	case skew > MaxMaxClockSkew:
		add("maxClockSkew", "%s is more than the maximum %s", skew, MaxMaxClockSkew)
	}

	if ic.JWKSURL != "" {
		if err := checkURL(ic.JWKSURL); err != nil {
			add("jwksURL", "%v", err)
		}
	}
	return errs
}

// checkURL accepts https URLs, and http only on loopback so a development issuer works
// while a production config can never fetch keys in the clear.
func checkURL(raw string) error {
	u, err := url.Parse(raw)
	raw = credentials.RedactURL(raw) // every message quotes it
	if err != nil {
		return fmt.Errorf("%q is not a URL", raw)
	}
	switch {
	case u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		return fmt.Errorf("%q must be an absolute https URL", raw)
	case u.Scheme == "http" && !isLoopback(u.Hostname()):
		return fmt.Errorf("%q must use https (http is allowed on loopback only)", raw)
	case u.User != nil:
		return fmt.Errorf("%q must not contain credentials", raw)
	case u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(raw, "?") || strings.HasSuffix(raw, "#"):
		return fmt.Errorf("%q must not have a query or fragment", raw)
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
