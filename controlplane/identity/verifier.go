// Package identity owns agent authentication: it verifies the OIDC ID tokens agents present
// as bearer tokens against the configured issuers (GitHub Actions, Kubernetes
// service-account issuers, corporate IdPs) with github.com/coreos/go-oidc/v3 — discovery,
// remote key sets with rotation, signature, issuer, audience, time and algorithm checks —
// and maps the verified claims to an agent id and groups. Every rejection wraps one
// sentinel error with a stable Reason code for audit.
package identity

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// Defaults for Options.
const (
	DefaultHTTPTimeout         = 10 * time.Second
	DefaultDiscoveryBackoffMin = time.Second
	DefaultDiscoveryBackoffMax = time.Minute
	DefaultKeyRefreshInterval  = 10 * time.Second
	DefaultKeyMaxAge           = 5 * time.Minute
)

// Options tune a Verifier; the zero value is right for production.
type Options struct {
	// HTTPClient fetches discovery documents and key sets (e.g. to trust a private CA).
	// Default: a client with a 10s timeout; a client without a timeout gets 10s, because
	// go-oidc fetches keys on a context that is never cancelled. The client is copied and
	// its Transport wrapped, never modified.
	HTTPClient *http.Client
	// Now is the clock for exp, nbf and iat, and for KeyRefreshInterval and KeyMaxAge.
	// Default time.Now.
	Now func() time.Time
	// Logger receives discovery failures and recoveries; nil discards them.
	Logger *slog.Logger
	// DiscoveryBackoffMin and DiscoveryBackoffMax bound the exponential wait between
	// discovery attempts for an unreachable issuer. Defaults 1s and 1m.
	DiscoveryBackoffMin, DiscoveryBackoffMax time.Duration
	// KeyRefreshInterval is the least time between two JWKS fetches for one issuer
	// (unknown kids trigger refetches); within it the last key set answers. So a token
	// signed with a key the issuer has just rotated in is rejected as ErrUnknownKey until
	// KeyRefreshInterval has passed since the previous fetch, then accepted. Default 10s.
	KeyRefreshInterval time.Duration
	// KeyMaxAge bounds how long a key the issuer stopped publishing keeps verifying
	// tokens. go-oidc caches keys until an unknown kid or a failed signature forces a
	// refetch, so on its own a removed key would be trusted indefinitely. After a token's
	// signature verifies, if the issuer's last successful JWKS fetch is older than
	// KeyMaxAge the JWKS is fetched again (still at most once per KeyRefreshInterval), and
	// the token is rejected with ErrUnknownKey unless its kid is in the latest key set (a
	// token without kid must verify with a key of the latest set). Tokens signed with a
	// removed key are thus accepted for at most about max(KeyMaxAge, KeyRefreshInterval)
	// after the removal, and not at all once any later fetch has seen the new set. If the
	// refetch fails, the last key set fetched stays in use (a warning is logged) so an
	// IdP outage does not lock every agent out. Default 5m; zero or negative means the
	// default.
	KeyMaxAge time.Duration
}

// Identity is a verified agent.
type Identity struct {
	// AgentID is the value of the issuer's agentClaim (default sub).
	AgentID string
	// Issuer is the configured issuer that verified the token (its iss claim).
	Issuer string
	// Groups are the values of the issuer's groupsClaim; nil when absent.
	Groups []string
	// Subject is the sub claim (equal to AgentID with the default agentClaim).
	Subject string
	// ExpiresAt is the token's exp.
	ExpiresAt time.Time
}

// Verifier verifies agent ID tokens against a fixed set of issuers. It is safe for
// concurrent use. It does no network I/O until a token from an issuer arrives (or Warm is
// called), so an unreachable issuer never prevents start-up; tokens from it then fail
// with ErrIssuerUnavailable until discovery succeeds.
type Verifier struct {
	now     func() time.Time
	issuers map[string]*issuer
	order   []string
}

// NewVerifier validates cfg and builds a Verifier. It does not contact any issuer.
func NewVerifier(cfg Config, opts Options) (*Verifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: DefaultHTTPTimeout}
	}
	if opts.DiscoveryBackoffMin <= 0 {
		opts.DiscoveryBackoffMin = DefaultDiscoveryBackoffMin
	}
	if opts.DiscoveryBackoffMax < opts.DiscoveryBackoffMin {
		opts.DiscoveryBackoffMax = max(DefaultDiscoveryBackoffMax, opts.DiscoveryBackoffMin)
	}
	if opts.KeyRefreshInterval <= 0 {
		opts.KeyRefreshInterval = DefaultKeyRefreshInterval
	}
	if opts.KeyMaxAge <= 0 {
		opts.KeyMaxAge = DefaultKeyMaxAge
	}
	v := &Verifier{now: opts.Now, issuers: map[string]*issuer{}}
	for _, ic := range cfg.WithDefaults().Issuers {
		v.issuers[ic.Issuer] = newIssuer(ic, opts)
		v.order = append(v.order, ic.Issuer)
	}
	return v, nil
}

// Verify checks rawToken and returns the agent it identifies. The token's unverified iss
// only selects which configured issuer checks it; that issuer then checks the algorithm
// allowlist, signature (refetching the key set for an unknown kid), that the signing key
// is still published (refetching a key set older than Options.KeyMaxAge), iss, aud (any
// accepted audience), exp, nbf and iat (within the issuer's clock skew), and the agent and
// groups claims. Errors wrap one sentinel (see Reason) and never contain the token.
func (v *Verifier) Verify(ctx context.Context, rawToken string) (Identity, error) {
	if rawToken == "" {
		return Identity{}, &Error{Kind: ErrMissing, Detail: "empty token"}
	}
	tok, err := peek(rawToken)
	if err != nil {
		return Identity{}, err
	}
	if !slices.Contains(supportedAlgorithms, tok.alg) {
		return Identity{}, newError(ErrAlgorithmNotAllowed, "", "alg %s is never accepted", untrusted(tok.alg))
	}
	iss, ok := v.issuers[tok.iss]
	if !ok {
		if tok.iss == "" {
			return Identity{}, newError(ErrUnknownIssuer, "", "token has no iss claim")
		}
		return Identity{}, newError(ErrUnknownIssuer, "", "iss %s is not a configured issuer", untrusted(tok.iss))
	}
	return iss.verify(ctx, rawToken, tok, v.now())
}

// Warm runs discovery now for every issuer not yet discovered, ignoring backoff, and
// returns what failed. Failures are not fatal: Verify retries lazily. Call it at start-up
// to surface configuration mistakes (wrong issuer URL, trailing slash) early in the logs.
func (v *Verifier) Warm(ctx context.Context) error {
	var errs []error
	for _, name := range v.order {
		if _, err := v.issuers[name].load(ctx, true); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// IssuerStatus describes one issuer for health and status endpoints.
type IssuerStatus struct {
	Issuer string
	// Ready means discovery succeeded (or jwksURL is configured); key-set fetches can
	// still fail later.
	Ready bool
	// LastError is the last discovery failure while not Ready.
	LastError string
	// NextAttempt is when discovery will be retried while not Ready.
	NextAttempt time.Time
}

// Status reports every issuer in configuration order.
func (v *Verifier) Status() []IssuerStatus {
	out := make([]IssuerStatus, 0, len(v.order))
	for _, name := range v.order {
		out = append(out, v.issuers[name].status())
	}
	return out
}

// issuer is one configured issuer: its go-oidc verifier once discovery succeeded, and the
// retry state while it has not.
type issuer struct {
	cfg        IssuerConfig
	skew       time.Duration
	algorithms []string
	audiences  map[string]bool
	log        *slog.Logger
	now        func() time.Time
	backoffMin time.Duration
	backoffMax time.Duration
	keyMaxAge  time.Duration

	discoveryClient *http.Client
	keyClient       *http.Client
	keys            *keySetTransport

	ready atomic.Pointer[provider]
	// discovering admits one discovery at a time; waiters honour their context.
	discovering chan struct{}

	mu          sync.Mutex
	failures    int
	nextAttempt time.Time
	lastErr     error
}

func newIssuer(ic IssuerConfig, opts Options) *issuer {
	base := opts.HTTPClient.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	keys := &keySetTransport{base: base, minInterval: opts.KeyRefreshInterval, now: opts.Now}
	withTransport := func(rt http.RoundTripper) *http.Client {
		c := *opts.HTTPClient
		c.Transport = rt
		if c.Timeout <= 0 {
			// go-oidc fetches keys on a context that is never cancelled; without a client
			// timeout one hanging JWKS endpoint would stall every refetch for good.
			c.Timeout = DefaultHTTPTimeout
		}
		return &c
	}
	iss := &issuer{
		cfg:             ic,
		skew:            time.Duration(ic.MaxClockSkew),
		algorithms:      ic.Algorithms,
		audiences:       map[string]bool{},
		log:             opts.Logger.With("issuer", ic.Issuer),
		now:             opts.Now,
		backoffMin:      opts.DiscoveryBackoffMin,
		backoffMax:      opts.DiscoveryBackoffMax,
		keyMaxAge:       opts.KeyMaxAge,
		discoveryClient: withTransport(cappedTransport{base}),
		keyClient:       withTransport(keys),
		keys:            keys,
		discovering:     make(chan struct{}, 1),
	}
	for _, a := range ic.Audiences {
		iss.audiences[a] = true
	}
	if ic.JWKSURL != "" {
		// No discovery: the key set URL is configured, so the verifier exists from the
		// start and only the (lazy) key fetch can fail.
		p := (&oidc.ProviderConfig{IssuerURL: ic.Issuer, JWKSURL: ic.JWKSURL}).NewProvider(context.Background())
		iss.ready.Store(iss.newProvider(p, ic.JWKSURL))
	}
	return iss
}

// provider is an issuer's go-oidc verifier and the URL its keys come from.
type provider struct {
	verifier *oidc.IDTokenVerifier
	jwksURL  string
}

func (s *issuer) newProvider(p *oidc.Provider, jwksURL string) *provider {
	return &provider{verifier: s.newOIDCVerifier(p), jwksURL: jwksURL}
}

func (s *issuer) newOIDCVerifier(p *oidc.Provider) *oidc.IDTokenVerifier {
	return p.VerifierContext(oidc.ClientContext(context.Background(), s.keyClient), &oidc.Config{
		SupportedSigningAlgs: s.algorithms,
		// Audience and time checks are done below: go-oidc accepts a single client id,
		// has no leeway on exp, a fixed 5 minute leeway on nbf and no iat check.
		SkipClientIDCheck: true,
		SkipExpiryCheck:   true,
	})
}

// load returns the go-oidc verifier, running discovery when it is missing and the backoff
// has passed (or force is set).
func (s *issuer) load(ctx context.Context, force bool) (*provider, error) {
	if v := s.ready.Load(); v != nil {
		return v, nil
	}
	select {
	case s.discovering <- struct{}{}:
		defer func() { <-s.discovering }()
	case <-ctx.Done():
		return nil, newError(ErrIssuerUnavailable, s.cfg.Issuer, "waiting for discovery: %v", ctx.Err())
	}
	if v := s.ready.Load(); v != nil {
		return v, nil
	}

	s.mu.Lock()
	if !force && s.now().Before(s.nextAttempt) {
		err := s.lastErr
		s.mu.Unlock()
		return nil, newError(ErrIssuerUnavailable, s.cfg.Issuer, "discovery failed, retrying after backoff: %v", err)
	}
	s.mu.Unlock()

	// One request's short deadline should not fail discovery for everyone waiting; the
	// HTTP client's timeout bounds it instead.
	v, err := s.discover(context.WithoutCancel(ctx))

	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.failures++
		wait := min(s.backoffMax, s.backoffMin<<min(s.failures-1, 20))
		s.nextAttempt = s.now().Add(wait)
		s.lastErr = err
		s.log.Warn("OIDC discovery failed; tokens from this issuer are rejected until it succeeds",
			"error", err, "attempt", s.failures, "retry_in", wait)
		return nil, newError(ErrIssuerUnavailable, s.cfg.Issuer, "discovery: %v", err)
	}
	if s.failures > 0 {
		s.log.Info("OIDC discovery succeeded", "after_failures", s.failures)
	}
	s.failures, s.lastErr, s.nextAttempt = 0, nil, time.Time{}
	s.ready.Store(v)
	return v, nil
}

func (s *issuer) discover(ctx context.Context) (*provider, error) {
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, s.discoveryClient), s.cfg.Issuer)
	if err != nil {
		return nil, err
	}
	var meta struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := p.Claims(&meta); err != nil {
		return nil, err
	}
	// The discovery document decides where keys come from; hold it to the same rule as
	// configured URLs so keys are never fetched in the clear.
	if meta.JWKSURI == "" {
		return nil, errors.New("discovery document has no jwks_uri")
	}
	if err := checkURL(meta.JWKSURI); err != nil {
		return nil, fmt.Errorf("discovery document jwks_uri: %w", err)
	}
	return s.newProvider(p, meta.JWKSURI), nil
}

func (s *issuer) status() IssuerStatus {
	st := IssuerStatus{Issuer: s.cfg.Issuer, Ready: s.ready.Load() != nil}
	if !st.Ready {
		s.mu.Lock()
		if s.lastErr != nil {
			st.LastError = s.lastErr.Error()
		}
		st.NextAttempt = s.nextAttempt
		s.mu.Unlock()
	}
	return st
}

func (s *issuer) verify(ctx context.Context, raw string, tok unverifiedToken, now time.Time) (Identity, error) {
	name := s.cfg.Issuer
	if !slices.Contains(s.algorithms, tok.alg) {
		return Identity{}, newError(ErrAlgorithmNotAllowed, name, "alg %s is not in this issuer's algorithms %v", untrusted(tok.alg), s.algorithms)
	}
	p, err := s.load(ctx, false)
	if err != nil {
		return Identity{}, err
	}
	idt, err := p.verifier.Verify(ctx, raw)
	if err != nil {
		return Identity{}, s.classify(err, tok)
	}
	if err := s.checkKeyPublished(ctx, p.jwksURL, raw, tok, now); err != nil {
		return Identity{}, err
	}

	var claims verifiedClaims
	if err := idt.Claims(&claims); err != nil {
		return Identity{}, newError(ErrMalformed, name, "claims are not a JSON object")
	}

	if idt.Expiry.IsZero() {
		return Identity{}, newError(ErrInvalidClaims, name, "token has no exp claim")
	}
	if !now.Before(idt.Expiry.Add(s.skew)) {
		return Identity{}, newError(ErrExpired, name, "expired at %s (now %s, skew %s)", idt.Expiry.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), s.skew)
	}
	for _, c := range []string{"nbf", "iat"} {
		t, ok, err := claims.time(c)
		if err != nil {
			return Identity{}, newError(ErrInvalidClaims, name, "%v", err)
		}
		if ok && t.After(now.Add(s.skew)) {
			return Identity{}, newError(ErrNotYetValid, name, "%s is %s (now %s, skew %s)", c, t.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), s.skew)
		}
	}

	if !slices.ContainsFunc(idt.Audience, func(a string) bool { return s.audiences[a] }) {
		return Identity{}, newError(ErrWrongAudience, name, "aud %s holds none of the accepted audiences", untrusted(strings.Join(idt.Audience, ",")))
	}

	agent, ok, err := claims.string(s.cfg.AgentClaim)
	if err != nil || !ok || agent == "" {
		return Identity{}, newError(ErrInvalidClaims, name, "agent claim %q is missing, empty or not a string", s.cfg.AgentClaim)
	}
	groups, err := claims.strings(s.cfg.GroupsClaim)
	if err != nil {
		return Identity{}, newError(ErrInvalidClaims, name, "%v", err)
	}
	return Identity{
		AgentID:   agent,
		Issuer:    idt.Issuer,
		Groups:    groups,
		Subject:   idt.Subject,
		ExpiresAt: idt.Expiry,
	}, nil
}

// checkKeyPublished runs after go-oidc verified raw's signature with a key from its cache,
// which never expires keys by time. When the last key set fetched is older than keyMaxAge
// it is fetched again (the transport's throttle still applies), and the token must have
// been signed with a key of the latest set: its kid must be listed, or, without a kid, one
// of the set's keys must verify it. A failed refetch keeps the last set in use.
func (s *issuer) checkKeyPublished(ctx context.Context, jwksURL, raw string, tok unverifiedToken, now time.Time) error {
	ks := s.keys.latest.Load()
	if (ks == nil || now.Sub(ks.fetched) >= s.keyMaxAge) && s.keys.due() {
		if err := s.keys.refresh(ctx, s.keyClient, jwksURL); err != nil {
			attrs := []any{"error", err}
			if ks != nil {
				attrs = append(attrs, "key_set_age", now.Sub(ks.fetched).Round(time.Second))
			}
			s.log.Warn("JWKS refresh failed; still verifying against the last key set fetched", attrs...)
		}
		ks = s.keys.latest.Load()
	}
	if ks == nil {
		// go-oidc verified with keys this transport fetched, so this cannot happen; if it
		// does, nothing says the key is still published.
		return newError(ErrIssuerUnavailable, s.cfg.Issuer, "no key set fetched")
	}
	if tok.kid != "" {
		if !ks.kids[tok.kid] {
			return newError(ErrUnknownKey, s.cfg.Issuer, "signing key no longer published by the issuer (kid %s)", untrusted(tok.kid))
		}
		return nil
	}
	if !ks.verifies(raw, s.algorithms) {
		return newError(ErrUnknownKey, s.cfg.Issuer, "signing key no longer published by the issuer (token has no kid)")
	}
	return nil
}

// classify maps a go-oidc verification error to a sentinel. go-oidc v3.21.0 formats these
// errors with %v (only TokenExpiredError is typed), so matching its messages is the only
// way to tell them apart; TestRejections pins every case, so an upgrade that changes a
// message fails loudly instead of misreporting.
func (s *issuer) classify(err error, tok unverifiedToken) error {
	name, msg := s.cfg.Issuer, err.Error()
	switch {
	case strings.Contains(msg, "fetching keys"):
		return newError(ErrIssuerUnavailable, name, "key set: %v", err)
	case strings.Contains(msg, "failed to verify id token signature"):
		if tok.kid != "" && !s.keys.knownKey(tok.kid) {
			return newError(ErrUnknownKey, name, "kid %s is not in the issuer's key set", untrusted(tok.kid))
		}
		return newError(ErrBadSignature, name, "signature does not verify")
	case strings.Contains(msg, "malformed jwt"):
		return newError(ErrMalformed, name, "%v", err)
	case strings.Contains(msg, "failed to unmarshal claims"):
		// Signed by the issuer, but e.g. exp or aud has the wrong JSON type.
		return newError(ErrInvalidClaims, name, "a registered claim (iss, sub, aud, exp, iat, nbf) has the wrong type")
	case strings.Contains(msg, "issued by a different provider"):
		return newError(ErrUnknownIssuer, name, "%v", err)
	default:
		return newError(ErrMalformed, name, "%v", err)
	}
}
