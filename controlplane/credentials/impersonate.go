package credentials

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/sync/singleflight"
)

const (
	// baseJWTLifetime is the life of the self-signed JWT that authenticates one
	// generateAccessToken call: long enough for the call, short if it leaks.
	baseJWTLifetime = 2 * time.Minute
	// maxResponseBytes bounds what is read from the IAM API.
	maxResponseBytes = 1 << 20
	// maxErrorMessage bounds how much of an API error message is kept.
	maxErrorMessage = 512
)

// ImpersonatingMinter mints access tokens for (per-policy) service accounts through the IAM
// credentials API's generateAccessToken (mode impersonate). Tokens are cached per (service
// account, sorted scopes, lifetime) and re-minted when less than max(1m, 20% of their
// lifetime) remains; concurrent callers missing the cache share one upstream call.
//
// The lifetime is part of the cache key so that a request never receives a token that
// lives longer than its own TTL (invariant 2), even when another policy asks for longer.
type ImpersonatingMinter struct {
	key      *ServiceAccountKey
	signer   jose.Signer
	cfg      Config
	endpoint string
	client   *http.Client
	now      func() time.Time
	log      *slog.Logger

	flight singleflight.Group
	mu     sync.Mutex
	cache  map[string]cacheEntry
}

type cacheEntry struct {
	cred     Credential
	lifetime time.Duration
}

// NewImpersonatingMinter returns a Minter that impersonates service accounts, authenticating
// to the IAM credentials API with a self-signed JWT of key. cfg.KeyFile is not read.
func NewImpersonatingMinter(key *ServiceAccountKey, cfg Config, opts ...Option) (*ImpersonatingMinter, error) {
	cfg.Mode = ModeImpersonate
	if err := cfg.validate(false); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	signer, err := newSigner(key)
	if err != nil {
		return nil, err
	}
	o := buildOptions(cfg, opts)
	return &ImpersonatingMinter{
		key:      key,
		signer:   signer,
		cfg:      cfg,
		endpoint: cfg.Impersonation.Endpoint,
		client:   o.client,
		now:      o.now,
		log:      o.log,
		cache:    make(map[string]cacheEntry),
	}, nil
}

// refreshMargin is how much life a cached token must have left to be handed out.
func refreshMargin(lifetime time.Duration) time.Duration { return max(time.Minute, lifetime/5) }

// Mint returns a cached token for req's (account, scopes, lifetime) while it is fresh, and
// otherwise mints one, sharing the upstream call with concurrent callers. If ctx ends first
// Mint returns ctx's error; the shared mint goes on for the others (bounded by
// impersonation.timeout) and fills the cache.
func (m *ImpersonatingMinter) Mint(ctx context.Context, req Request) (Credential, error) {
	if err := ctx.Err(); err != nil {
		return Credential{}, err
	}
	account := req.ServiceAccount
	if account == "" {
		account = m.cfg.Impersonation.ServiceAccount
	}
	if account == "" {
		return Credential{}, fmt.Errorf("%w: no service account to impersonate (set impersonation.serviceAccount or Request.ServiceAccount)", ErrRequest)
	}
	if err := checkServiceAccount(account); err != nil {
		return Credential{}, fmt.Errorf("%w: %w", ErrRequest, err)
	}
	ttl, err := resolveTTL(req.TTL, m.cfg.TTL)
	if err != nil {
		return Credential{}, err
	}
	lifetime := ttl.Truncate(time.Second)
	scopes, err := requestScopes(req.Scopes, m.cfg.Scopes)
	if err != nil {
		return Credential{}, err
	}
	key := account + "\x00" + strings.Join(scopes, " ") + "\x00" + strconv.FormatInt(int64(lifetime/time.Second), 10)

	if cred, ok := m.lookup(key); ok {
		m.logIssued(ctx, req, cred)
		return cred, nil
	}
	ch := m.flight.DoChan(key, func() (any, error) {
		// A flight that finished just before this one started has filled the cache.
		if cred, ok := m.lookup(key); ok {
			return cred, nil
		}
		// Detached from the first caller's cancellation: the result is shared.
		callCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.cfg.Impersonation.Timeout)
		defer cancel()
		cred, err := m.generate(callCtx, account, scopes, lifetime)
		if err != nil {
			m.log.LogAttrs(ctx, slog.LevelWarn, "upstream credential mint failed",
				slog.String("service_account", account), slog.String("error", err.Error()))
			return nil, err
		}
		m.store(key, cacheEntry{cred: cred, lifetime: lifetime})
		m.log.LogAttrs(ctx, slog.LevelInfo, "upstream credential minted",
			slog.String("request_id", req.RequestID), slog.String("decision_id", req.DecisionID),
			slog.Any("credential", cred))
		return cred, nil
	})
	select {
	case <-ctx.Done():
		return Credential{}, ctx.Err()
	case res := <-ch:
		if res.Err != nil {
			return Credential{}, res.Err
		}
		cred := res.Val.(Credential)
		cred.Scopes = slices.Clone(cred.Scopes)
		if res.Shared {
			cred.Cached = true
			m.logIssued(ctx, req, cred)
		}
		return cred, nil
	}
}

func (m *ImpersonatingMinter) logIssued(ctx context.Context, req Request, cred Credential) {
	m.log.LogAttrs(ctx, slog.LevelDebug, "upstream credential reused",
		slog.String("request_id", req.RequestID), slog.String("decision_id", req.DecisionID),
		slog.Any("credential", cred))
}

// lookup returns a copy of the cached credential when it is still fresh.
func (m *ImpersonatingMinter) lookup(key string) (Credential, bool) {
	now := m.now()
	m.mu.Lock()
	e, ok := m.cache[key]
	m.mu.Unlock()
	if !ok || e.cred.ExpiresAt.Sub(now) <= refreshMargin(e.lifetime) {
		return Credential{}, false
	}
	cred := e.cred
	cred.Scopes = slices.Clone(cred.Scopes)
	cred.Cached = true
	return cred, true
}

// store caches e and drops entries that have expired, so a token is never kept longer
// than it lives.
func (m *ImpersonatingMinter) store(key string, e cacheEntry) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, old := range m.cache {
		if !old.cred.ExpiresAt.After(now) {
			delete(m.cache, k)
		}
	}
	m.cache[key] = e
}

// generateAccessTokenRequest and generateAccessTokenResponse are the IAM credentials API's
// wire format (projects.serviceAccounts.generateAccessToken).
type generateAccessTokenRequest struct {
	Scope    []string `json:"scope"`
	Lifetime string   `json:"lifetime"`
}

type generateAccessTokenResponse struct {
	AccessToken string `json:"accessToken"`
	ExpireTime  string `json:"expireTime"`
}

// APIError is a non-2xx answer from the IAM credentials API. Message is Google's message
// with any credential of ours removed, and truncated.
type APIError struct {
	ServiceAccount string
	StatusCode     int
	Status         string // Google's status, e.g. PERMISSION_DENIED; may be empty
	Message        string
}

func (e *APIError) Error() string {
	s := fmt.Sprintf("generateAccessToken for %s: HTTP %d", e.ServiceAccount, e.StatusCode)
	if e.Status != "" {
		s += " " + e.Status
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Unwrap makes errors.Is(err, ErrUpstream) true.
func (e *APIError) Unwrap() error { return ErrUpstream }

func (m *ImpersonatingMinter) generate(ctx context.Context, account string, scopes []string, lifetime time.Duration) (Credential, error) {
	base, err := signJWT(m.signer, m.key.ClientEmail, "", []string{ScopeCloudPlatform}, m.now(), baseJWTLifetime)
	if err != nil {
		return Credential{}, err
	}
	body, err := json.Marshal(generateAccessTokenRequest{
		Scope:    scopes,
		Lifetime: strconv.FormatInt(int64(lifetime/time.Second), 10) + "s",
	})
	if err != nil {
		return Credential{}, fmt.Errorf("%w: encode request: %w", ErrUpstream, err)
	}
	u := m.endpoint + "/v1/projects/-/serviceAccounts/" + url.PathEscape(account) + ":generateAccessToken"
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return Credential{}, fmt.Errorf("%w: build request: %w", ErrUpstream, err)
	}
	hreq.Header.Set("Authorization", "Bearer "+base.Token.Reveal())
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", "application/json")

	issued := m.now()
	resp, err := m.client.Do(hreq)
	if err != nil {
		// *url.Error names the method and URL (account email, no credential) and the cause.
		return Credential{}, fmt.Errorf("%w: generateAccessToken for %s: %w", ErrUpstream, account, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return Credential{}, fmt.Errorf("%w: generateAccessToken for %s: read response: %w", ErrUpstream, account, err)
	}
	if resp.StatusCode != http.StatusOK {
		return Credential{}, newAPIError(account, resp.StatusCode, data, base.Token)
	}
	var out generateAccessTokenResponse
	if err := json.Unmarshal(data, &out); err != nil {
		// Never quote the body: on success it holds a token.
		return Credential{}, fmt.Errorf("%w: generateAccessToken for %s: response is not the expected JSON", ErrUpstream, account)
	}
	if out.AccessToken == "" {
		return Credential{}, fmt.Errorf("%w: generateAccessToken for %s: response has no accessToken", ErrUpstream, account)
	}
	expire, err := time.Parse(time.RFC3339Nano, out.ExpireTime)
	if err != nil {
		return Credential{}, fmt.Errorf("%w: generateAccessToken for %s: expireTime %q is not RFC 3339", ErrUpstream, account, out.ExpireTime)
	}
	// Never believe a token lives longer than we asked: the policy's TTL bounds it.
	expiresAt := issued.Add(lifetime)
	if expire.Before(expiresAt) {
		expiresAt = expire
	}
	if !expiresAt.After(m.now()) {
		return Credential{}, fmt.Errorf("%w: generateAccessToken for %s: token already expired at %s", ErrUpstream, account, expiresAt.Format(time.RFC3339))
	}
	sum := sha256.Sum256([]byte(out.AccessToken))
	return Credential{
		Token:          NewSecret(out.AccessToken),
		ID:             "iam-" + hex.EncodeToString(sum[:8]),
		Mode:           ModeImpersonate,
		ServiceAccount: account,
		Scopes:         scopes,
		IssuedAt:       issued,
		ExpiresAt:      expiresAt,
	}, nil
}

// newAPIError keeps Google's code, status and message, minus our bearer JWT should the
// message echo it. The raw body is never kept.
func newAPIError(account string, code int, body []byte, bearer Secret) error {
	e := &APIError{ServiceAccount: account, StatusCode: code}
	var g struct {
		Error struct {
			Message string `json:"message"`
			Status  string `json:"status"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &g) == nil {
		e.Status = g.Error.Status
		e.Message = g.Error.Message
	}
	if e.Message == "" {
		e.Message = http.StatusText(code)
	}
	e.Message = scrub(e.Message, bearer)
	e.Status = scrub(e.Status, bearer)
	return e
}

func scrub(s string, secrets ...Secret) string {
	for _, sec := range secrets {
		if v := sec.Reveal(); v != "" {
			s = strings.ReplaceAll(s, v, Redacted)
			// A JWT's signature alone is as good as the JWT to an attacker who holds the rest.
			if i := strings.LastIndexByte(v, '.'); i >= 0 && len(v)-i > 16 {
				s = strings.ReplaceAll(s, v[i+1:], Redacted)
			}
		}
	}
	if len(s) > maxErrorMessage {
		s = strings.ToValidUTF8(s[:maxErrorMessage], "") + "..."
	}
	return s
}

// String names the minter by its non-secret settings. It and Format keep fmt from walking
// into the key, the signer and the token cache (which would also race with Mint).
func (m *ImpersonatingMinter) String() string {
	return fmt.Sprintf("ImpersonatingMinter{base_service_account=%s kid=%s endpoint=%s ttl=%s}",
		m.key.ClientEmail, m.key.PrivateKeyID, m.endpoint, m.cfg.TTL)
}

// Format prints String for every verb.
func (m *ImpersonatingMinter) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(m.String())) }
