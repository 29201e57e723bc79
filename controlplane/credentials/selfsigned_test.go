package credentials

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

type jwtClaims struct {
	jwt.Claims
	Scope string `json:"scope"`
}

// verifyJWT checks the signature with the key file's public key and returns the header's
// kid and typ with the claims.
func verifyJWT(t *testing.T, token, keyPath string) (kid, typ string, c jwtClaims) {
	t.Helper()
	parsed, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatalf("parse JWT: %v", err)
	}
	if err := parsed.Claims(publicKeyFromFile(t, keyPath), &c); err != nil {
		t.Fatalf("verify JWT with the key file's public key: %v", err)
	}
	h := parsed.Headers[0]
	typ, _ = h.ExtraHeaders["typ"].(string)
	return h.KeyID, typ, c
}

func newSelfSigned(t *testing.T, cfg Config, clock *fakeClock) (*SelfSignedJWTMinter, string) {
	t.Helper()
	key, path := loadTestKey(t)
	m, err := NewSelfSignedJWTMinter(key, cfg, WithClock(clock.Now), WithLogger(discardLogger()))
	if err != nil {
		t.Fatal(err)
	}
	return m, path
}

func TestSelfSignedJWTAudience(t *testing.T) {
	clock := newFakeClock()
	m, path := newSelfSigned(t, Config{}, clock)
	cred, err := m.Mint(context.Background(), Request{RequestID: "req-1", DecisionID: "dec-1"})
	if err != nil {
		t.Fatal(err)
	}
	kid, typ, c := verifyJWT(t, cred.Token.Reveal(), path)
	if kid != testKeyID || typ != "JWT" {
		t.Errorf("header kid=%q typ=%q", kid, typ)
	}
	now := clock.Now()
	if c.Issuer != testEmail || c.Subject != testEmail || len(c.Audience) != 1 || c.Audience[0] != "https://bigquery.googleapis.com/" || c.Scope != "" {
		t.Errorf("claims = %+v", c)
	}
	if !c.IssuedAt.Time().Equal(now) || !c.Expiry.Time().Equal(now.Add(5*time.Minute)) {
		t.Errorf("iat=%v exp=%v, want %v and +5m", c.IssuedAt.Time(), c.Expiry.Time(), now)
	}
	if err := c.Claims.ValidateWithLeeway(jwt.Expected{Issuer: testEmail, AnyAudience: jwt.Audience{DefaultAudience}, Time: now}, 0); err != nil {
		t.Errorf("claims do not validate: %v", err)
	}
	if cred.ID == "" || cred.ID != c.ID || cred.Mode != ModeSelfSignedJWT || cred.ServiceAccount != testEmail ||
		!cred.IssuedAt.Equal(now) || !cred.ExpiresAt.Equal(c.Expiry.Time()) || cred.Cached || cred.Scopes != nil {
		t.Errorf("credential = %+v", cred)
	}
	if got := cred.AuthorizationHeader().Reveal(); got != "Bearer "+cred.Token.Reveal() {
		t.Errorf("AuthorizationHeader = %q", got)
	}
}

func TestSelfSignedJWTScopeClaim(t *testing.T) {
	clock := newFakeClock()
	m, path := newSelfSigned(t, Config{SelfSignedJWT: SelfSignedJWTConfig{Claim: ClaimScope}}, clock)
	cred, err := m.Mint(context.Background(), Request{Scopes: []string{ScopeCloudPlatformReadOnly, ScopeBigQuery, ScopeBigQuery}})
	if err != nil {
		t.Fatal(err)
	}
	_, _, c := verifyJWT(t, cred.Token.Reveal(), path)
	if len(c.Audience) != 0 {
		t.Errorf("scope-style JWT has aud %v", c.Audience)
	}
	if want := ScopeBigQuery + " " + ScopeCloudPlatformReadOnly; c.Scope != want || strings.Join(cred.Scopes, " ") != want {
		t.Errorf("scope claim %q, credential scopes %v, want %q", c.Scope, cred.Scopes, want)
	}
	// Default scopes apply when the request names none.
	cred, err = m.Mint(context.Background(), Request{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, c := verifyJWT(t, cred.Token.Reveal(), path); c.Scope != ScopeBigQuery {
		t.Errorf("default scope claim %q", c.Scope)
	}
	if _, err := m.Mint(context.Background(), Request{Scopes: []string{"https://x y"}}); !errors.Is(err, ErrRequest) {
		t.Errorf("bad scope: %v", err)
	}
}

func TestSelfSignedJWTEveryCallIsUnique(t *testing.T) {
	m, path := newSelfSigned(t, Config{}, newFakeClock()) // a frozen clock: only jti can differ
	tokens, ids := map[string]bool{}, map[string]bool{}
	for range 50 {
		cred, err := m.Mint(context.Background(), Request{})
		if err != nil {
			t.Fatal(err)
		}
		_, _, c := verifyJWT(t, cred.Token.Reveal(), path)
		if tokens[cred.Token.Reveal()] || ids[c.ID] || len(c.ID) < 20 {
			t.Fatalf("token or jti %q repeated or short", c.ID)
		}
		tokens[cred.Token.Reveal()], ids[c.ID] = true, true
	}
}

func TestSelfSignedJWTLifetime(t *testing.T) {
	clock := newFakeClock()
	m, path := newSelfSigned(t, Config{TTL: 2 * time.Minute}, clock)
	for _, tt := range []struct {
		ttl, want time.Duration
	}{
		{0, 2 * time.Minute}, // the configured default
		{90 * time.Second, 90 * time.Second},
		{1500 * time.Millisecond * 10, 15 * time.Second},
		{MaxTTL, time.Hour},
	} {
		cred, err := m.Mint(context.Background(), Request{TTL: tt.ttl})
		if err != nil {
			t.Fatalf("ttl %v: %v", tt.ttl, err)
		}
		_, _, c := verifyJWT(t, cred.Token.Reveal(), path)
		if got := c.Expiry.Time().Sub(c.IssuedAt.Time()); got != tt.want || cred.ExpiresAt.Sub(cred.IssuedAt) != tt.want {
			t.Errorf("ttl %v: lifetime %v, want %v", tt.ttl, got, tt.want)
		}
	}
	// Sub-second clocks never stretch exp past now+TTL.
	clock.Advance(700 * time.Millisecond)
	cred, _ := m.Mint(context.Background(), Request{})
	if cred.ExpiresAt.After(clock.Now().Add(2 * time.Minute)) {
		t.Errorf("exp %v later than now+ttl", cred.ExpiresAt)
	}
	for _, bad := range []time.Duration{-time.Minute, time.Second, MaxTTL + time.Second} {
		if _, err := m.Mint(context.Background(), Request{TTL: bad}); !errors.Is(err, ErrRequest) {
			t.Errorf("ttl %v: err = %v, want ErrRequest", bad, err)
		}
	}
}

func TestSelfSignedJWTOnlyActsAsItsOwnAccount(t *testing.T) {
	m, _ := newSelfSigned(t, Config{}, newFakeClock())
	if _, err := m.Mint(context.Background(), Request{ServiceAccount: testEmail}); err != nil {
		t.Errorf("own account: %v", err)
	}
	_, err := m.Mint(context.Background(), Request{ServiceAccount: "other@p.iam.gserviceaccount.com"})
	if !errors.Is(err, ErrRequest) || !strings.Contains(err.Error(), "impersonate") {
		t.Errorf("other account: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.Mint(ctx, Request{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled ctx: %v", err)
	}
}

func TestNewFromConfig(t *testing.T) {
	path := writeKeyFile(t, nil)
	m, err := New(Config{KeyFile: path}, WithLogger(discardLogger()))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m.(*SelfSignedJWTMinter); !ok {
		t.Errorf("mode self-signed-jwt gave %T", m)
	}
	m, err = New(Config{KeyFile: path, Mode: ModeImpersonate}, WithLogger(discardLogger()))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m.(*ImpersonatingMinter); !ok {
		t.Errorf("mode impersonate gave %T", m)
	}
	if _, err := New(Config{KeyFile: path + ".missing"}); !errors.Is(err, ErrKeyFile) || !strings.Contains(err.Error(), path+".missing") {
		t.Errorf("missing key file: %v", err)
	}
	if _, err := New(Config{KeyFile: path, TTL: 2 * time.Hour}); !errors.Is(err, ErrConfig) {
		t.Errorf("bad config: %v", err)
	}
}

func BenchmarkSelfSignedJWTMint(b *testing.B) {
	path := writeKeyFile(b, nil)
	key, err := LoadServiceAccountKey(path)
	if err != nil {
		b.Fatal(err)
	}
	m, err := NewSelfSignedJWTMinter(key, Config{}, WithLogger(discardLogger()))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Mint(ctx, Request{RequestID: "bench"}); err != nil {
			b.Fatal(err)
		}
	}
}
