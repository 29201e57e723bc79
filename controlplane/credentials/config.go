package credentials

import (
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"strings"
	"time"
)

// Mode selects how upstream credentials are minted.
type Mode string

const (
	// ModeSelfSignedJWT signs a fresh service-account JWT per request with the base key.
	ModeSelfSignedJWT Mode = "self-signed-jwt"
	// ModeImpersonate asks the IAM credentials API for an access token of a (per-policy)
	// service account, authenticated as the base key's service account.
	ModeImpersonate Mode = "impersonate"
)

// Claim values for SelfSignedJWTConfig.Claim.
const (
	ClaimAudience = "aud"
	ClaimScope    = "scope"
)

// OAuth2 scopes jitgate commonly asks for.
const (
	ScopeBigQuery              = "https://www.googleapis.com/auth/bigquery"
	ScopeCloudPlatform         = "https://www.googleapis.com/auth/cloud-platform"
	ScopeCloudPlatformReadOnly = "https://www.googleapis.com/auth/cloud-platform.read-only"
)

// Defaults and limits. MaxTTL is Google's ceiling for both a self-signed JWT and a
// generateAccessToken lifetime (BIGQUERY.md "Upstream credentials"); MinTTL keeps a
// credential long enough to survive one request's round trip and clock skew.
const (
	DefaultTTL                   = 5 * time.Minute
	MinTTL                       = 10 * time.Second
	MaxTTL                       = time.Hour
	DefaultAudience              = "https://bigquery.googleapis.com/"
	DefaultImpersonationEndpoint = "https://iamcredentials.googleapis.com"
	DefaultImpersonationTimeout  = 10 * time.Second
	maxImpersonationTimeout      = time.Minute
)

// DefaultScopes are used when neither the config nor the request names scopes.
var DefaultScopes = []string{ScopeBigQuery}

// Config configures a Minter. The zero value of every field except KeyFile means its
// default; WithDefaults shows the effective values.
type Config struct {
	// Mode is self-signed-jwt (default) or impersonate.
	Mode Mode `yaml:"mode"`
	// KeyFile is the path of the base service account's Google JSON key file. The path may
	// be logged; the file's contents never are.
	KeyFile string `yaml:"keyFile"`
	// TTL is the lifetime of a credential when the request does not set one (default 5m,
	// between 10s and 1h).
	TTL time.Duration `yaml:"ttl"`
	// Scopes are the OAuth2 scopes used when the request names none (default: the BigQuery
	// scope). Used by impersonate mode and by self-signed-jwt mode with claim "scope".
	Scopes []string `yaml:"scopes"`
	// SelfSignedJWT shapes the JWT of mode self-signed-jwt.
	SelfSignedJWT SelfSignedJWTConfig `yaml:"selfSignedJWT"`
	// Impersonation configures mode impersonate.
	Impersonation ImpersonationConfig `yaml:"impersonation"`
}

// SelfSignedJWTConfig shapes a self-signed service-account JWT.
type SelfSignedJWTConfig struct {
	// Claim is "aud" (default: the JWT names the API in its aud claim) or "scope" (the JWT
	// carries a space-separated scope claim and no aud, which lets a policy ask for a
	// narrower scope such as cloud-platform.read-only).
	Claim string `yaml:"claim"`
	// Audience is the aud claim when Claim is "aud" (default https://bigquery.googleapis.com/).
	Audience string `yaml:"audience"`
}

// ImpersonationConfig configures the IAM credentials API client.
type ImpersonationConfig struct {
	// Endpoint is the IAM credentials API base URL (default
	// https://iamcredentials.googleapis.com). https, or plain http on loopback for tests.
	Endpoint string `yaml:"endpoint"`
	// ServiceAccount is the account impersonated when a request names none. Empty means
	// every request must name one.
	ServiceAccount string `yaml:"serviceAccount"`
	// Timeout bounds one generateAccessToken call (default 10s, at most 1m).
	Timeout time.Duration `yaml:"timeout"`
}

// WithDefaults returns a copy of c with every unset field set to its default.
func (c Config) WithDefaults() Config {
	if c.Mode == "" {
		c.Mode = ModeSelfSignedJWT
	}
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if len(c.Scopes) == 0 {
		c.Scopes = append([]string(nil), DefaultScopes...)
	}
	if c.SelfSignedJWT.Claim == "" {
		c.SelfSignedJWT.Claim = ClaimAudience
	}
	if c.SelfSignedJWT.Audience == "" {
		c.SelfSignedJWT.Audience = DefaultAudience
	}
	if c.Impersonation.Endpoint == "" {
		c.Impersonation.Endpoint = DefaultImpersonationEndpoint
	}
	c.Impersonation.Endpoint = strings.TrimRight(c.Impersonation.Endpoint, "/")
	if c.Impersonation.Timeout == 0 {
		c.Impersonation.Timeout = DefaultImpersonationTimeout
	}
	return c
}

// Validate reports the first field that a Minter could not use, by its YAML name. Unset
// fields are checked as their defaults.
func (c Config) Validate() error { return c.validate(true) }

func (c Config) validate(requireKeyFile bool) error {
	c = c.WithDefaults()
	switch c.Mode {
	case ModeSelfSignedJWT, ModeImpersonate:
	default:
		return fmt.Errorf("%w: mode %q: want %q or %q", ErrConfig, c.Mode, ModeSelfSignedJWT, ModeImpersonate)
	}
	if requireKeyFile && c.KeyFile == "" {
		return fmt.Errorf("%w: keyFile is required", ErrConfig)
	}
	if err := checkTTL(c.TTL); err != nil {
		return fmt.Errorf("%w: ttl: %w", ErrConfig, err)
	}
	if _, err := normalizeScopes(c.Scopes); err != nil {
		return fmt.Errorf("%w: scopes: %w", ErrConfig, err)
	}
	switch c.Mode {
	case ModeSelfSignedJWT:
		switch c.SelfSignedJWT.Claim {
		case ClaimAudience:
			if err := checkURL(c.SelfSignedJWT.Audience, false); err != nil {
				return fmt.Errorf("%w: selfSignedJWT.audience: %w", ErrConfig, err)
			}
		case ClaimScope:
		default:
			return fmt.Errorf("%w: selfSignedJWT.claim %q: want %q or %q", ErrConfig, c.SelfSignedJWT.Claim, ClaimAudience, ClaimScope)
		}
	case ModeImpersonate:
		if err := checkURL(c.Impersonation.Endpoint, true); err != nil {
			return fmt.Errorf("%w: impersonation.endpoint: %w", ErrConfig, err)
		}
		if sa := c.Impersonation.ServiceAccount; sa != "" {
			if err := checkServiceAccount(sa); err != nil {
				return fmt.Errorf("%w: impersonation.serviceAccount: %w", ErrConfig, err)
			}
		}
		if t := c.Impersonation.Timeout; t < 0 || t > maxImpersonationTimeout {
			return fmt.Errorf("%w: impersonation.timeout %s: want between 0 and %s", ErrConfig, t, maxImpersonationTimeout)
		}
	}
	return nil
}

func checkTTL(ttl time.Duration) error {
	if ttl < MinTTL || ttl > MaxTTL {
		return fmt.Errorf("%s is outside [%s, %s]", ttl, MinTTL, MaxTTL)
	}
	return nil
}

// checkURL accepts absolute https URLs without credentials, query or fragment; with
// allowLoopbackHTTP, plain http to a loopback address too (tests, a local fake).
func checkURL(raw string, allowLoopbackHTTP bool) error {
	u, err := url.Parse(raw)
	raw = RedactURL(raw) // every message quotes it
	if err != nil {
		return fmt.Errorf("%q is not a URL", raw)
	}
	if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%q must be an absolute URL without credentials, query or fragment", raw)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if allowLoopbackHTTP && isLoopbackHost(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("%q: plain http is allowed only to a loopback address", raw)
	default:
		return fmt.Errorf("%q: scheme must be https", raw)
	}
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func checkServiceAccount(sa string) error {
	a, err := mail.ParseAddress(sa)
	if err != nil || a.Address != sa || strings.ContainsAny(sa, "/?#%") {
		return fmt.Errorf("%q is not a service-account email", sa)
	}
	return nil
}

// ValidateSettings is Validate without requiring KeyFile, for a Config whose key file is
// supplied later (by a command-line flag) and checked when the Minter is built.
func (c Config) ValidateSettings() error { return c.validate(false) }
