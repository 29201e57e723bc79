package credentials

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"
)

// Sentinel errors; every error this package returns wraps one of them (or is a context
// error from the caller's ctx).
var (
	// ErrConfig: the Config cannot be used.
	ErrConfig = errors.New("invalid credentials config")
	// ErrKeyFile: the service-account key file is missing, unreadable or malformed.
	ErrKeyFile = errors.New("invalid service-account key file")
	// ErrRequest: the Request asks for something this Minter cannot or may not mint.
	ErrRequest = errors.New("invalid credential request")
	// ErrUpstream: the IAM credentials API failed or answered something unusable. An
	// *APIError in the chain carries its HTTP status.
	ErrUpstream = errors.New("upstream credential mint failed")
)

// Minter mints the upstream credential for one forwarded request. Implementations are safe
// for concurrent use.
type Minter interface {
	Mint(ctx context.Context, req Request) (Credential, error)
}

// Request says what credential one forwarded request needs.
type Request struct {
	// ServiceAccount is the account to act as. In impersonate mode, empty means the
	// configured impersonation.serviceAccount; in self-signed-jwt mode it must be empty or
	// the key's own client_email.
	ServiceAccount string
	// Scopes are OAuth2 scopes; empty means the configured default. Order and duplicates do
	// not matter.
	Scopes []string
	// TTL is the longest the credential may live (the policy's TTL); zero means the
	// configured default. Must be within [MinTTL, MaxTTL].
	TTL time.Duration
	// RequestID and DecisionID tie the mint to the request and the policy decision in logs
	// and audit records.
	RequestID  string
	DecisionID string
}

// Credential is a minted upstream credential. Token is the only secret field; everything
// else is safe to log and to put in an audit record.
type Credential struct {
	// Token is the bearer token for BigQuery's Authorization header.
	Token Secret
	// ID identifies the credential in logs and audit records without revealing it: the jti
	// of a self-signed JWT, or "iam-" and a SHA-256 prefix of an access token (the same for
	// every request that shares a cached token).
	ID string
	// Mode is the mode that minted it.
	Mode Mode
	// ServiceAccount is the account the credential acts as.
	ServiceAccount string
	// Scopes are the scopes it was minted for (sorted; nil for an aud-style JWT, whose
	// reach is the whole API).
	Scopes []string
	// IssuedAt and ExpiresAt bound its life.
	IssuedAt  time.Time
	ExpiresAt time.Time
	// Cached is true when an impersonated token was reused from the cache or from another
	// caller's in-flight mint.
	Cached bool
}

// AuthorizationHeader returns the value of the Authorization header carrying the token.
func (c Credential) AuthorizationHeader() Secret { return NewSecret("Bearer " + c.Token.Reveal()) }

// LogValue implements slog.LogValuer: every field but the token.
func (c Credential) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("id", c.ID),
		slog.String("mode", string(c.Mode)),
		slog.String("service_account", c.ServiceAccount),
		slog.String("scopes", strings.Join(c.Scopes, " ")),
		slog.Time("issued_at", c.IssuedAt),
		slog.Time("expires_at", c.ExpiresAt),
		slog.Bool("cached", c.Cached),
	)
}

// Option adjusts a Minter.
type Option func(*options)

type options struct {
	now    func() time.Time
	client *http.Client
	log    *slog.Logger
}

// WithClock replaces time.Now (tests).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithHTTPClient replaces the client used for the IAM credentials API. The default client
// has the configured timeout and refuses redirects.
func WithHTTPClient(c *http.Client) Option { return func(o *options) { o.client = c } }

// WithLogger sets where mints are logged (default slog.Default()). Tokens are never logged.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

func buildOptions(cfg Config, opts []Option) options {
	o := options{now: time.Now, log: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	if o.client == nil {
		o.client = &http.Client{
			Timeout: cfg.Impersonation.Timeout,
			// A redirect from the IAM API is unexpected; following it would send our bearer
			// JWT's request body somewhere we did not configure.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return o
}

// New validates cfg, loads the key file and returns the Minter for cfg.Mode.
func New(cfg Config, opts ...Option) (Minter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	key, err := LoadServiceAccountKey(cfg.KeyFile)
	if err != nil {
		return nil, err
	}
	o := buildOptions(cfg, opts)
	if fi, err := os.Stat(cfg.KeyFile); err == nil && fi.Mode().Perm()&0o077 != 0 {
		// The path stays out of the log: the key's location is configuration, not telemetry.
		o.log.Warn("the service-account key file (credentials.keyFile) is readable by group or others; chmod 600 it",
			slog.String("perm", fi.Mode().Perm().String()))
	}
	switch cfg.Mode {
	case ModeImpersonate:
		return NewImpersonatingMinter(key, cfg, opts...)
	default:
		return NewSelfSignedJWTMinter(key, cfg, opts...)
	}
}

// resolveTTL applies the default and the limits to a requested TTL.
func resolveTTL(requested, def time.Duration) (time.Duration, error) {
	ttl := requested
	if ttl == 0 {
		ttl = def
	}
	if err := checkTTL(ttl); err != nil {
		return 0, fmt.Errorf("%w: ttl %w", ErrRequest, err)
	}
	return ttl, nil
}

// normalizeScopes sorts and deduplicates scopes and checks that each is an https URL, so
// equal sets share one cache entry and a scope cannot smuggle a separator into a claim.
func normalizeScopes(scopes []string) ([]string, error) {
	if len(scopes) == 0 {
		return nil, errors.New("no scopes")
	}
	out := slices.Clone(scopes)
	slices.Sort(out)
	out = slices.Compact(out)
	for _, s := range out {
		if !strings.HasPrefix(s, "https://") || strings.ContainsAny(s, " \t\r\n\x00") {
			return nil, fmt.Errorf("scope %q is not an https URL", s)
		}
	}
	return out, nil
}

func requestScopes(req, def []string) ([]string, error) {
	if len(req) == 0 {
		req = def
	}
	s, err := normalizeScopes(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRequest, err)
	}
	return s, nil
}
