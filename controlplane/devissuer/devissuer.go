// Package devissuer is a small but real OpenID Connect issuer for `make run`, local
// development and tests: it serves /.well-known/openid-configuration and a JWKS on a
// loopback listener and mints agent ID tokens signed with go-jose, so the control plane's
// identity package can be exercised end to end without a cloud identity provider. It also
// serves POST /dev/token, which mints a token for any agent to any loopback caller (what
// `jitgate dev token` calls).
//
// It must never be enabled in production configs. Anyone who can reach its listener or read
// its key file can mint tokens for any agent; that is why it only listens on loopback,
// never starts by itself, and deliberately offers hooks (MintWith, MintOptions) that mint
// broken tokens (expired, wrong audience, alg none, bad signature, unknown kid) for tests.
package devissuer

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Paths served below the issuer URL.
const (
	DiscoveryPath = "/.well-known/openid-configuration"
	JWKSPath      = "/jwks.json"
	// TokenPath mints agent tokens: POST a TokenRequest, get a TokenResponse.
	TokenPath = "/dev/token"
)

// Algorithms the issuer signs with.
const (
	RS256 = "RS256"
	ES256 = "ES256"
)

// DefaultTTL is the lifetime of a token minted by MintWith when Claims.Expiry is zero.
const DefaultTTL = 5 * time.Minute

// Defaults and limits of the TokenPath endpoint.
const (
	DefaultAudience = "jitgate"
	DefaultTokenTTL = 10 * time.Minute
	MaxTokenTTL     = 24 * time.Hour
)

// ErrNotLoopback is returned by Start when asked to listen on anything but loopback.
var ErrNotLoopback = errors.New("devissuer listens on loopback only")

// Options configure Start.
type Options struct {
	// Addr is the host:port to listen on; the host must be a loopback IP or "localhost".
	// Default 127.0.0.1:0 (a free port).
	Addr string
	// KeyFile, when set, holds the signing key as a PKCS#8 PEM "PRIVATE KEY" so tokens
	// survive restarts: it is loaded when it exists and generated (mode 0600) when it does
	// not. Empty keeps a generated key in memory only. Rotate never writes the file.
	KeyFile string
	// Algorithm is RS256 (default) or ES256. With an existing KeyFile it must match the
	// file's key type, or be empty to follow it.
	Algorithm string
	// Now is the clock for iat/nbf/exp. Default time.Now.
	Now func() time.Time
	// Audience is the aud of tokens minted at TokenPath when the request names none.
	// Default "jitgate".
	Audience string
}

// Issuer is a running development OIDC issuer. Its methods are safe for concurrent use.
type Issuer struct {
	url      string
	alg      string
	audience string
	now      func() time.Time
	ln       net.Listener
	server   *http.Server

	mu   sync.RWMutex
	keys []*signingKey // published keys, oldest first; the last one signs

	discoveryRequests atomic.Int64
	jwksRequests      atomic.Int64
}

// Start loads or generates the signing key, listens on opts.Addr and serves discovery and
// the JWKS until Close.
func Start(opts Options) (*Issuer, error) {
	addr := opts.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	if err := checkLoopback(addr); err != nil {
		return nil, err
	}
	key, alg, err := loadOrCreateKey(opts.KeyFile, opts.Algorithm)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("devissuer: listen %s: %w", addr, err)
	}
	iss := &Issuer{
		url:      "http://" + ln.Addr().String(),
		alg:      alg,
		audience: opts.Audience,
		now:      opts.Now,
		ln:       ln,
		keys:     []*signingKey{key},
	}
	if iss.now == nil {
		iss.now = time.Now
	}
	if iss.audience == "" {
		iss.audience = DefaultAudience
	}
	iss.server = &http.Server{Handler: iss.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = iss.server.Serve(ln) }()
	return iss, nil
}

func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("devissuer: address %q: %w", addr, err)
	}
	if isLoopbackHost(host) {
		return nil
	}
	return fmt.Errorf("%w: %q", ErrNotLoopback, addr)
}

// Close stops serving. Tokens already minted stay verifiable only by verifiers that cached
// the keys.
func (i *Issuer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return i.server.Shutdown(ctx)
}

// URL is the issuer identifier ("http://127.0.0.1:port"), the iss of every token.
func (i *Issuer) URL() string { return i.url }

// Algorithm is the signing algorithm (RS256 or ES256).
func (i *Issuer) Algorithm() string { return i.alg }

// Handler serves the discovery document, the JWKS and TokenPath. Start already serves it; it is
// exported so tests can put it behind their own server or wrap it (e.g. to simulate an
// outage), as long as that server answers at URL.
func (i *Issuer) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+DiscoveryPath, i.serveDiscovery)
	mux.HandleFunc("GET "+JWKSPath, i.serveJWKS)
	mux.HandleFunc("POST "+TokenPath, i.serveToken)
	return mux
}

func (i *Issuer) serveDiscovery(w http.ResponseWriter, _ *http.Request) {
	i.discoveryRequests.Add(1)
	writeJSON(w, map[string]any{
		"issuer":                                i.url,
		"jwks_uri":                              i.url + JWKSPath,
		"id_token_signing_alg_values_supported": []string{i.alg},
		"response_types_supported":              []string{"id_token"},
		"subject_types_supported":               []string{"public"},
		"claims_supported":                      []string{"iss", "sub", "aud", "iat", "nbf", "exp", "groups"},
	})
}

func (i *Issuer) serveJWKS(w http.ResponseWriter, _ *http.Request) {
	i.jwksRequests.Add(1)
	writeJSON(w, i.JWKS())
}

func writeJSON(w http.ResponseWriter, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(body)
}

// JWKS is the published key set: every key not yet dropped, public parts only.
func (i *Issuer) JWKS() jose.JSONWebKeySet {
	i.mu.RLock()
	defer i.mu.RUnlock()
	set := jose.JSONWebKeySet{}
	for _, k := range i.keys {
		set.Keys = append(set.Keys, k.publicJWK())
	}
	return set
}

// KeyIDs lists the published key ids, oldest first; the last one signs new tokens.
func (i *Issuer) KeyIDs() []string {
	i.mu.RLock()
	defer i.mu.RUnlock()
	ids := make([]string, len(i.keys))
	for n, k := range i.keys {
		ids[n] = k.kid
	}
	return ids
}

// PublicKeyPEM is the current signing key's public key as PEM ("PUBLIC KEY", PKIX). Tests
// use it as an HMAC secret for the classic RS256 → HS256 key-confusion attack.
func (i *Issuer) PublicKeyPEM() []byte {
	return i.current().publicPEM()
}

// DiscoveryRequests and JWKSRequests count the requests served, so tests can assert that
// a verifier caches keys and does not hammer the issuer.
func (i *Issuer) DiscoveryRequests() int64 { return i.discoveryRequests.Load() }

// JWKSRequests counts the JWKS documents served.
func (i *Issuer) JWKSRequests() int64 { return i.jwksRequests.Load() }

// Rotate generates a new signing key with a new kid and signs with it from now on. Older
// keys stay published (so tokens they signed still verify) until DropOldKeys.
func (i *Issuer) Rotate() (kid string, err error) {
	key, err := generateKey(i.alg)
	if err != nil {
		return "", err
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	i.keys = append(i.keys, key)
	return key.kid, nil
}

// DropOldKeys unpublishes every key but the current signing key.
func (i *Issuer) DropOldKeys() {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.keys = i.keys[len(i.keys)-1:]
}

func (i *Issuer) current() *signingKey {
	i.mu.RLock()
	defer i.mu.RUnlock()
	return i.keys[len(i.keys)-1]
}

// Mint returns a valid agent ID token: iss, sub=agent, aud=audience, iat=nbf=now,
// exp=now+ttl, groups, signed by the current key with its kid.
func (i *Issuer) Mint(agent string, groups []string, ttl time.Duration, audience string) (string, error) {
	if agent == "" {
		return "", errors.New("devissuer: agent is required")
	}
	if audience == "" {
		return "", errors.New("devissuer: audience is required")
	}
	if ttl <= 0 {
		return "", errors.New("devissuer: ttl must be positive")
	}
	now := i.now()
	return i.MintWith(Claims{
		Subject:   agent,
		Audience:  []string{audience},
		Groups:    groups,
		IssuedAt:  now,
		NotBefore: now,
		Expiry:    now.Add(ttl),
	}, MintOptions{})
}

// Claims are the claims of a token minted by MintWith. Zero values get defaults; use
// MintOptions.Omit to leave a registered claim out entirely.
type Claims struct {
	// Issuer defaults to the issuer's URL.
	Issuer string
	// Subject is the sub claim.
	Subject string
	// Audience is the aud claim: a single value is written as a string, several as a list.
	Audience []string
	// Groups is written as a JSON list when non-nil. For other shapes (a single string,
	// numbers) set Extra["groups"].
	Groups []string
	// IssuedAt, NotBefore default to now; Expiry to now+DefaultTTL.
	IssuedAt, NotBefore, Expiry time.Time
	// Extra claims are added last and override anything above.
	Extra map[string]any
}

// MintOptions produce deliberately invalid tokens for tests. The zero value mints a valid,
// correctly signed token.
type MintOptions struct {
	// Algorithm overrides the signing algorithm: "none" (unsigned, empty signature) or
	// "HS256"/"HS384"/"HS512" (HMAC with HMACSecret). Empty signs with the current key.
	Algorithm string
	// HMACSecret is the HMAC key for HS* algorithms, e.g. PublicKeyPEM() for the
	// key-confusion attack.
	HMACSecret []byte
	// KeyID overrides the kid header (e.g. a kid the JWKS does not have).
	KeyID string
	// OmitKeyID leaves the kid header out.
	OmitKeyID bool
	// UnpublishedKey signs with a freshly generated key that the JWKS never publishes; with
	// KeyID unset the header carries that key's own (unknown) kid.
	UnpublishedKey bool
	// CorruptSignature flips bits in the signature after signing.
	CorruptSignature bool
	// Omit lists registered claims to leave out: "iss", "sub", "aud", "iat", "nbf", "exp".
	Omit []string
}

// MintWith mints a token with exactly these claims and options. It exists for tests of
// token verification; production code has no reason to call it.
func (i *Issuer) MintWith(c Claims, o MintOptions) (string, error) {
	payload, err := json.Marshal(i.claimSet(c, o.Omit))
	if err != nil {
		return "", fmt.Errorf("devissuer: encode claims: %w", err)
	}

	var token string
	switch o.Algorithm {
	case "none":
		header := map[string]any{"alg": "none", "typ": "JWT"}
		if kid := o.kid(i.current().kid); kid != "" {
			header["kid"] = kid
		}
		h, err := json.Marshal(header)
		if err != nil {
			return "", err
		}
		token = b64(h) + "." + b64(payload) + "."
	case "HS256", "HS384", "HS512":
		if len(o.HMACSecret) == 0 {
			return "", errors.New("devissuer: HMACSecret is required for " + o.Algorithm)
		}
		token, err = sign(jose.SignatureAlgorithm(o.Algorithm), o.HMACSecret, o.kid(i.current().kid), payload)
	case "":
		key := i.current()
		if o.UnpublishedKey {
			if key, err = generateKey(i.alg); err != nil {
				return "", err
			}
		}
		token, err = sign(jose.SignatureAlgorithm(key.alg), key.private, o.kid(key.kid), payload)
	default:
		return "", fmt.Errorf("devissuer: unsupported MintOptions.Algorithm %q", o.Algorithm)
	}
	if err != nil {
		return "", err
	}
	if o.CorruptSignature {
		token, err = corruptSignature(token)
	}
	return token, err
}

func (o MintOptions) kid(def string) string {
	switch {
	case o.OmitKeyID:
		return ""
	case o.KeyID != "":
		return o.KeyID
	default:
		return def
	}
}

func (i *Issuer) claimSet(c Claims, omit []string) map[string]any {
	now := i.now()
	m := map[string]any{
		"iss": c.Issuer,
		"sub": c.Subject,
		"iat": unixOr(c.IssuedAt, now),
		"nbf": unixOr(c.NotBefore, now),
		"exp": unixOr(c.Expiry, now.Add(DefaultTTL)),
		"jti": randomID(),
	}
	if c.Issuer == "" {
		m["iss"] = i.url
	}
	switch len(c.Audience) {
	case 0:
	case 1:
		m["aud"] = c.Audience[0]
	default:
		m["aud"] = c.Audience
	}
	if c.Groups != nil {
		m["groups"] = c.Groups
	}
	for k, v := range c.Extra {
		m[k] = v
	}
	for _, k := range omit {
		delete(m, k)
	}
	return m
}

func unixOr(t, def time.Time) int64 {
	if t.IsZero() {
		t = def
	}
	return t.Unix()
}

func sign(alg jose.SignatureAlgorithm, key any, kid string, payload []byte) (string, error) {
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader(jose.HeaderKey("kid"), kid)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		return "", fmt.Errorf("devissuer: signer for %s: %w", alg, err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("devissuer: sign: %w", err)
	}
	return jws.CompactSerialize()
}

func corruptSignature(token string) (string, error) {
	dot := strings.LastIndexByte(token, '.')
	sig, err := base64.RawURLEncoding.DecodeString(token[dot+1:])
	if err != nil || len(sig) == 0 {
		return "", errors.New("devissuer: no signature to corrupt")
	}
	sig = slices.Clone(sig)
	sig[len(sig)/2] ^= 0xff
	return token[:dot+1] + b64(sig), nil
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func randomID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
