package identity_test

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jitgate/jitgate/controlplane/devissuer"
	"github.com/jitgate/jitgate/controlplane/identity"
)

const audience = "jitgate"

func startIssuer(t testing.TB, opts devissuer.Options) *devissuer.Issuer {
	t.Helper()
	iss, err := devissuer.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = iss.Close() })
	return iss
}

func issuerConfig(iss *devissuer.Issuer) identity.IssuerConfig {
	return identity.IssuerConfig{Issuer: iss.URL(), Audiences: []string{audience}}
}

// fastOptions keep the retry and refresh intervals short enough for tests.
var fastOptions = identity.Options{
	DiscoveryBackoffMin: 10 * time.Millisecond,
	DiscoveryBackoffMax: 50 * time.Millisecond,
	KeyRefreshInterval:  time.Millisecond,
}

func newVerifier(t testing.TB, opts identity.Options, issuers ...identity.IssuerConfig) *identity.Verifier {
	t.Helper()
	v, err := identity.NewVerifier(identity.Config{Issuers: issuers}, opts)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func mint(t testing.TB, iss *devissuer.Issuer, c devissuer.Claims, o devissuer.MintOptions) string {
	t.Helper()
	token, err := iss.MintWith(c, o)
	if err != nil {
		t.Fatal(err)
	}
	return token
}

func mustVerify(t testing.TB, v *identity.Verifier, token string) identity.Identity {
	t.Helper()
	id, err := v.Verify(context.Background(), token)
	if err != nil {
		t.Fatalf("Verify: %v (reason %s)", err, identity.Reason(err))
	}
	return id
}

func wantRejected(t testing.TB, v *identity.Verifier, token string, want error, reason string) {
	t.Helper()
	id, err := v.Verify(context.Background(), token)
	if !errors.Is(err, want) || identity.Reason(err) != reason {
		t.Fatalf("Verify = %+v, %v (reason %q); want %v (reason %q)", id, err, identity.Reason(err), want, reason)
	}
	if id.AgentID != "" {
		t.Errorf("rejected token still produced identity %+v", id)
	}
	// Neither the token nor its signature may appear in an error message.
	if token != "" {
		sig := token[strings.LastIndexByte(token, '.')+1:]
		if strings.Contains(err.Error(), token) || (len(sig) > 8 && strings.Contains(err.Error(), sig)) {
			t.Errorf("error message contains the token: %v", err)
		}
	}
}

func TestVerifyValidToken(t *testing.T) {
	iss := startIssuer(t, devissuer.Options{})
	v := newVerifier(t, identity.Options{}, issuerConfig(iss))
	token, err := iss.Mint("agent-42", []string{"analysts", "pii-readers"}, 5*time.Minute, audience)
	if err != nil {
		t.Fatal(err)
	}
	id := mustVerify(t, v, token)
	if id.AgentID != "agent-42" || id.Subject != "agent-42" || id.Issuer != iss.URL() ||
		!slices.Equal(id.Groups, []string{"analysts", "pii-readers"}) {
		t.Fatalf("identity = %+v", id)
	}
	if d := time.Until(id.ExpiresAt); d < 4*time.Minute || d > 5*time.Minute {
		t.Fatalf("ExpiresAt = %v", id.ExpiresAt)
	}
}

func TestVerifyClaimShapes(t *testing.T) {
	iss := startIssuer(t, devissuer.Options{Algorithm: devissuer.ES256})
	base := issuerConfig(iss)
	base.Algorithms = []string{"ES256"}
	custom := base
	custom.AgentClaim, custom.GroupsClaim = "repository", "roles"
	other := devissuer.Claims{Subject: "repo:org/app:ref:refs/heads/main", Audience: []string{"sts.amazonaws.com", audience}}

	tests := []struct {
		name       string
		cfg        identity.IssuerConfig
		claims     devissuer.Claims
		wantAgent  string
		wantGroups []string
	}{
		{"groups as list", base, devissuer.Claims{Subject: "a1", Audience: []string{audience}, Groups: []string{"g1", "g2"}}, "a1", []string{"g1", "g2"}},
		{"groups as string", base, devissuer.Claims{Subject: "a1", Audience: []string{audience}, Extra: map[string]any{"groups": "g1"}}, "a1", []string{"g1"}},
		{"no groups", base, devissuer.Claims{Subject: "a1", Audience: []string{audience}}, "a1", nil},
		{"empty groups dropped", base, devissuer.Claims{Subject: "a1", Audience: []string{audience}, Groups: []string{"", "g2"}}, "a1", []string{"g2"}},
		{"custom agent and groups claims", custom, devissuer.Claims{
			Subject: other.Subject, Audience: other.Audience,
			Extra: map[string]any{"repository": "org/app", "roles": []string{"ci"}, "groups": []string{"ignored"}},
		}, "org/app", []string{"ci"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := newVerifier(t, identity.Options{}, tc.cfg)
			id := mustVerify(t, v, mint(t, iss, tc.claims, devissuer.MintOptions{}))
			if id.AgentID != tc.wantAgent || !slices.Equal(id.Groups, tc.wantGroups) || id.Subject != tc.claims.Subject {
				t.Fatalf("identity = %+v, want agent %q groups %q", id, tc.wantAgent, tc.wantGroups)
			}
		})
	}
}

func TestRejections(t *testing.T) {
	iss := startIssuer(t, devissuer.Options{})
	v := newVerifier(t, fastOptions, issuerConfig(iss))
	now := time.Now()
	good := devissuer.Claims{Subject: "agent", Audience: []string{audience}, Groups: []string{"g"}}
	with := func(f func(*devissuer.Claims)) devissuer.Claims {
		c := good
		f(&c)
		return c
	}
	valid := mint(t, iss, good, devissuer.MintOptions{})
	parts := strings.Split(valid, ".")

	tests := []struct {
		name   string
		token  func() string
		want   error
		reason string
	}{
		{"missing", func() string { return "" }, identity.ErrMissing, identity.ReasonMissing},
		{"not a JWT", func() string { return "not-a-token" }, identity.ErrMalformed, identity.ReasonMalformed},
		{"garbage parts", func() string { return "a.b.c" }, identity.ErrMalformed, identity.ReasonMalformed},
		{"JWE-shaped", func() string { return strings.Join(append(parts, "x", "y"), ".") }, identity.ErrMalformed, identity.ReasonMalformed},
		{"payload not JSON", func() string { return parts[0] + ".bm90LWpzb24." + parts[2] }, identity.ErrMalformed, identity.ReasonMalformed},
		{"oversized", func() string { return parts[0] + "." + strings.Repeat("A", 40<<10) + "." + parts[2] }, identity.ErrMalformed, identity.ReasonMalformed},
		{"expired beyond skew", func() string {
			return mint(t, iss, with(func(c *devissuer.Claims) {
				c.IssuedAt, c.NotBefore, c.Expiry = now.Add(-10*time.Minute), now.Add(-10*time.Minute), now.Add(-time.Minute)
			}), devissuer.MintOptions{})
		}, identity.ErrExpired, identity.ReasonExpired},
		{"nbf beyond skew", func() string {
			return mint(t, iss, with(func(c *devissuer.Claims) { c.NotBefore = now.Add(2 * time.Minute) }), devissuer.MintOptions{})
		}, identity.ErrNotYetValid, identity.ReasonNotYetValid},
		// go-oidc alone would accept this one: its nbf leeway is a fixed 5 minutes.
		{"nbf 4m ahead with 30s skew", func() string {
			return mint(t, iss, with(func(c *devissuer.Claims) { c.NotBefore = now.Add(4 * time.Minute) }), devissuer.MintOptions{})
		}, identity.ErrNotYetValid, identity.ReasonNotYetValid},
		{"iat beyond skew", func() string {
			return mint(t, iss, with(func(c *devissuer.Claims) { c.IssuedAt = now.Add(2 * time.Minute) }), devissuer.MintOptions{})
		}, identity.ErrNotYetValid, identity.ReasonNotYetValid},
		{"wrong audience", func() string {
			return mint(t, iss, with(func(c *devissuer.Claims) { c.Audience = []string{"someone-else"} }), devissuer.MintOptions{})
		}, identity.ErrWrongAudience, identity.ReasonWrongAudience},
		{"no audience", func() string {
			return mint(t, iss, good, devissuer.MintOptions{Omit: []string{"aud"}})
		}, identity.ErrWrongAudience, identity.ReasonWrongAudience},
		{"unknown issuer", func() string {
			return mint(t, iss, with(func(c *devissuer.Claims) { c.Issuer = "https://evil.example" }), devissuer.MintOptions{})
		}, identity.ErrUnknownIssuer, identity.ReasonUnknownIssuer},
		{"no issuer", func() string {
			return mint(t, iss, good, devissuer.MintOptions{Omit: []string{"iss"}})
		}, identity.ErrUnknownIssuer, identity.ReasonUnknownIssuer},
		{"corrupted signature", func() string {
			return mint(t, iss, good, devissuer.MintOptions{CorruptSignature: true})
		}, identity.ErrBadSignature, identity.ReasonBadSignature},
		{"other key, published kid", func() string {
			return mint(t, iss, good, devissuer.MintOptions{UnpublishedKey: true, KeyID: iss.KeyIDs()[0]})
		}, identity.ErrBadSignature, identity.ReasonBadSignature},
		{"other key, no kid", func() string {
			return mint(t, iss, good, devissuer.MintOptions{UnpublishedKey: true, OmitKeyID: true})
		}, identity.ErrBadSignature, identity.ReasonBadSignature},
		{"payload swapped", func() string {
			other := strings.Split(mint(t, iss, with(func(c *devissuer.Claims) { c.Subject = "admin" }), devissuer.MintOptions{}), ".")
			return parts[0] + "." + other[1] + "." + parts[2]
		}, identity.ErrBadSignature, identity.ReasonBadSignature},
		{"alg none", func() string {
			return mint(t, iss, good, devissuer.MintOptions{Algorithm: "none"})
		}, identity.ErrAlgorithmNotAllowed, identity.ReasonAlgorithmNotAllowed},
		{"HS256 keyed with the public key", func() string {
			return mint(t, iss, good, devissuer.MintOptions{Algorithm: "HS256", HMACSecret: iss.PublicKeyPEM()})
		}, identity.ErrAlgorithmNotAllowed, identity.ReasonAlgorithmNotAllowed},
		{"unknown kid", func() string {
			return mint(t, iss, good, devissuer.MintOptions{KeyID: "no-such-key"})
		}, identity.ErrUnknownKey, identity.ReasonUnknownKey},
		{"unpublished key", func() string {
			return mint(t, iss, good, devissuer.MintOptions{UnpublishedKey: true})
		}, identity.ErrUnknownKey, identity.ReasonUnknownKey},
		{"no exp", func() string {
			return mint(t, iss, good, devissuer.MintOptions{Omit: []string{"exp"}})
		}, identity.ErrInvalidClaims, identity.ReasonInvalidClaims},
		{"no agent claim", func() string {
			return mint(t, iss, good, devissuer.MintOptions{Omit: []string{"sub"}})
		}, identity.ErrInvalidClaims, identity.ReasonInvalidClaims},
		{"groups not strings", func() string {
			return mint(t, iss, with(func(c *devissuer.Claims) { c.Extra = map[string]any{"groups": []any{"g", 7}} }), devissuer.MintOptions{})
		}, identity.ErrInvalidClaims, identity.ReasonInvalidClaims},
		{"nbf not a number", func() string {
			return mint(t, iss, with(func(c *devissuer.Claims) { c.Extra = map[string]any{"nbf": "soon"} }), devissuer.MintOptions{})
		}, identity.ErrInvalidClaims, identity.ReasonInvalidClaims},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantRejected(t, v, tc.token(), tc.want, tc.reason)
		})
	}
	// The valid token still verifies after all of that (no poisoned cache).
	mustVerify(t, v, valid)
}

func TestAlgorithmNotInIssuerList(t *testing.T) {
	iss := startIssuer(t, devissuer.Options{Algorithm: devissuer.RS256})
	cfg := issuerConfig(iss)
	cfg.Algorithms = []string{"ES256"}
	v := newVerifier(t, identity.Options{}, cfg)
	token, err := iss.Mint("agent", nil, time.Minute, audience)
	if err != nil {
		t.Fatal(err)
	}
	wantRejected(t, v, token, identity.ErrAlgorithmNotAllowed, identity.ReasonAlgorithmNotAllowed)
	if iss.DiscoveryRequests() != 0 {
		t.Error("a token with a disallowed algorithm caused discovery")
	}
}

func TestClockSkew(t *testing.T) {
	iss := startIssuer(t, devissuer.Options{})
	now := time.Now()
	c := devissuer.Claims{Subject: "agent", Audience: []string{audience}}

	v := newVerifier(t, identity.Options{}, issuerConfig(iss)) // default 30s
	for name, mod := range map[string]func(*devissuer.Claims){
		"nbf 10s ahead": func(c *devissuer.Claims) { c.NotBefore = now.Add(10 * time.Second) },
		"iat 10s ahead": func(c *devissuer.Claims) { c.IssuedAt = now.Add(10 * time.Second) },
		"expired 10s ago": func(c *devissuer.Claims) {
			c.IssuedAt, c.NotBefore, c.Expiry = now.Add(-time.Minute), now.Add(-time.Minute), now.Add(-10*time.Second)
		},
	} {
		t.Run("within 30s: "+name, func(t *testing.T) {
			cc := c
			mod(&cc)
			mustVerify(t, v, mint(t, iss, cc, devissuer.MintOptions{}))
		})
	}

	cfg := issuerConfig(iss)
	cfg.MaxClockSkew = identity.Duration(2 * time.Second)
	strict := newVerifier(t, identity.Options{}, cfg)
	cc := c
	cc.NotBefore = now.Add(10 * time.Second)
	wantRejected(t, strict, mint(t, iss, cc, devissuer.MintOptions{}), identity.ErrNotYetValid, identity.ReasonNotYetValid)

	// Options.Now moves the verifier's clock: the same token is expired an hour later.
	later := newVerifier(t, identity.Options{Now: func() time.Time { return time.Now().Add(time.Hour) }}, issuerConfig(iss))
	wantRejected(t, later, mint(t, iss, c, devissuer.MintOptions{}), identity.ErrExpired, identity.ReasonExpired)
}

func TestKeyRotationWithoutRestart(t *testing.T) {
	iss := startIssuer(t, devissuer.Options{})
	v := newVerifier(t, fastOptions, issuerConfig(iss))
	oldToken, err := iss.Mint("agent", nil, time.Hour, audience)
	if err != nil {
		t.Fatal(err)
	}
	mustVerify(t, v, oldToken)

	if _, err := iss.Rotate(); err != nil {
		t.Fatal(err)
	}
	newToken, err := iss.Mint("agent", nil, time.Hour, audience)
	if err != nil {
		t.Fatal(err)
	}
	fetches := iss.JWKSRequests()
	mustVerify(t, v, newToken) // unknown kid → key set refetched
	if iss.JWKSRequests() != fetches+1 {
		t.Fatalf("JWKS fetched %d times for the rotated key, want 1", iss.JWKSRequests()-fetches)
	}
	mustVerify(t, v, oldToken) // old key still published

	// Once the old key is dropped and the verifier refetches (any unknown kid triggers
	// it), tokens signed with the old key stop verifying.
	iss.DropOldKeys()
	time.Sleep(5 * time.Millisecond) // past KeyRefreshInterval
	wantRejected(t, v, mint(t, iss, devissuer.Claims{Subject: "x", Audience: []string{audience}}, devissuer.MintOptions{KeyID: "trigger-refresh"}),
		identity.ErrUnknownKey, identity.ReasonUnknownKey)
	time.Sleep(5 * time.Millisecond)
	wantRejected(t, v, oldToken, identity.ErrUnknownKey, identity.ReasonUnknownKey)
	mustVerify(t, v, newToken)
}

func TestUnknownKidRefetchIsThrottled(t *testing.T) {
	iss := startIssuer(t, devissuer.Options{})
	v := newVerifier(t, identity.Options{}, issuerConfig(iss)) // default 10s interval
	token, err := iss.Mint("agent", nil, time.Minute, audience)
	if err != nil {
		t.Fatal(err)
	}
	mustVerify(t, v, token)
	for i := range 20 {
		junk := mint(t, iss, devissuer.Claims{Subject: "x", Audience: []string{audience}}, devissuer.MintOptions{KeyID: "junk-" + string(rune('a'+i))})
		wantRejected(t, v, junk, identity.ErrUnknownKey, identity.ReasonUnknownKey)
		wantRejected(t, v, mint(t, iss, devissuer.Claims{Subject: "x", Audience: []string{audience}}, devissuer.MintOptions{CorruptSignature: true}),
			identity.ErrBadSignature, identity.ReasonBadSignature)
	}
	if got := iss.JWKSRequests(); got != 1 {
		t.Fatalf("JWKS fetched %d times, want 1 (refetches within KeyRefreshInterval are served from the last key set)", got)
	}
}

func TestTwoIssuersAtOnce(t *testing.T) {
	ci := startIssuer(t, devissuer.Options{Algorithm: devissuer.RS256})
	k8s := startIssuer(t, devissuer.Options{Algorithm: devissuer.ES256})
	ciCfg := identity.IssuerConfig{Issuer: ci.URL(), Audiences: []string{"jitgate-ci"}, AgentClaim: "repository"}
	k8sCfg := identity.IssuerConfig{Issuer: k8s.URL(), Audiences: []string{"jitgate", "bigquery-gateway"}, Algorithms: []string{"ES256"}}
	v := newVerifier(t, identity.Options{}, ciCfg, k8sCfg)

	id := mustVerify(t, v, mint(t, ci, devissuer.Claims{
		Subject: "repo:org/etl:ref:refs/heads/main", Audience: []string{"jitgate-ci"},
		Extra: map[string]any{"repository": "org/etl"},
	}, devissuer.MintOptions{}))
	if id.AgentID != "org/etl" || id.Issuer != ci.URL() {
		t.Fatalf("CI identity = %+v", id)
	}
	id = mustVerify(t, v, mint(t, k8s, devissuer.Claims{
		Subject: "system:serviceaccount:agents:reporter", Audience: []string{"bigquery-gateway"}, Groups: []string{"agents"},
	}, devissuer.MintOptions{}))
	if id.AgentID != "system:serviceaccount:agents:reporter" || id.Issuer != k8s.URL() || !slices.Equal(id.Groups, []string{"agents"}) {
		t.Fatalf("k8s identity = %+v", id)
	}

	// Audiences are per issuer.
	wantRejected(t, v, mint(t, ci, devissuer.Claims{Subject: "s", Audience: []string{"jitgate"}, Extra: map[string]any{"repository": "r"}}, devissuer.MintOptions{}),
		identity.ErrWrongAudience, identity.ReasonWrongAudience)
	// A token claiming one issuer but signed by the other is checked against the claimed
	// issuer's keys and fails.
	wantRejected(t, v, mint(t, ci, devissuer.Claims{Issuer: k8s.URL(), Subject: "s", Audience: []string{"jitgate"}}, devissuer.MintOptions{}),
		identity.ErrAlgorithmNotAllowed, identity.ReasonAlgorithmNotAllowed) // RS256 is not in k8s's list
	ciAsK8s := devissuer.Claims{Issuer: ci.URL(), Subject: "s", Audience: []string{"jitgate-ci"}, Extra: map[string]any{"repository": "r"}}
	wantRejected(t, v, mint(t, k8s, ciAsK8s, devissuer.MintOptions{}),
		identity.ErrUnknownKey, identity.ReasonUnknownKey) // ES256 is allowed for ci, but k8s's kid is not ci's
}

func TestIssuerDownAtStartThenUp(t *testing.T) {
	// Reserve a loopback address and leave it closed: connection refused, as for an IdP
	// that is down while jitgated starts.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	issuerURL := "http://" + addr

	v := newVerifier(t, fastOptions, identity.IssuerConfig{Issuer: issuerURL, Audiences: []string{audience}})
	if err := v.Warm(context.Background()); !errors.Is(err, identity.ErrIssuerUnavailable) {
		t.Fatalf("Warm with the issuer down = %v", err)
	}
	if st := v.Status(); len(st) != 1 || st[0].Ready || st[0].LastError == "" || st[0].NextAttempt.IsZero() {
		t.Fatalf("Status = %+v", st)
	}

	// A well-formed token naming the down issuer fails closed.
	stranger := startIssuer(t, devissuer.Options{})
	early := mint(t, stranger, devissuer.Claims{Issuer: issuerURL, Subject: "agent", Audience: []string{audience}}, devissuer.MintOptions{})
	wantRejected(t, v, early, identity.ErrIssuerUnavailable, identity.ReasonIssuerUnavailable)

	var iss *devissuer.Issuer
	deadline := time.Now().Add(5 * time.Second)
	for iss == nil {
		if iss, err = devissuer.Start(devissuer.Options{Addr: addr}); err != nil {
			if time.Now().After(deadline) {
				t.Fatalf("restart issuer on %s: %v", addr, err)
			}
			time.Sleep(20 * time.Millisecond) // someone else grabbed the port briefly
		}
	}
	t.Cleanup(func() { _ = iss.Close() })
	token, err := iss.Mint("agent", []string{"g"}, time.Minute, audience)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		_, err := v.Verify(context.Background(), token)
		return err == nil
	})
	if st := v.Status(); !st[0].Ready || st[0].LastError != "" {
		t.Fatalf("Status after recovery = %+v", st)
	}
	// The stranger's key is not the issuer's: the early token is still rejected.
	wantRejected(t, v, early, identity.ErrUnknownKey, identity.ReasonUnknownKey)
}

func TestDiscoveryBackoffFailsFast(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuerURL := "http://" + ln.Addr().String()
	ln.Close()
	opts := identity.Options{DiscoveryBackoffMin: time.Hour, DiscoveryBackoffMax: time.Hour}
	v := newVerifier(t, opts, identity.IssuerConfig{Issuer: issuerURL, Audiences: []string{audience}})
	stranger := startIssuer(t, devissuer.Options{})
	token := mint(t, stranger, devissuer.Claims{Issuer: issuerURL, Subject: "a", Audience: []string{audience}}, devissuer.MintOptions{})
	wantRejected(t, v, token, identity.ErrIssuerUnavailable, identity.ReasonIssuerUnavailable)
	_, err = v.Verify(context.Background(), token)
	if !errors.Is(err, identity.ErrIssuerUnavailable) || !strings.Contains(err.Error(), "backoff") {
		t.Fatalf("second Verify within backoff = %v, want a fast issuer_unavailable", err)
	}
}

func TestConcurrentFirstUseDiscoversOnce(t *testing.T) {
	iss := startIssuer(t, devissuer.Options{})
	v := newVerifier(t, identity.Options{}, issuerConfig(iss))
	token, err := iss.Mint("agent", nil, time.Minute, audience)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			if _, err := v.Verify(context.Background(), token); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if iss.DiscoveryRequests() != 1 || iss.JWKSRequests() != 1 {
		t.Fatalf("discovery %d, JWKS %d requests; want 1 each", iss.DiscoveryRequests(), iss.JWKSRequests())
	}
}

func TestJWKSURLOverrideSkipsDiscovery(t *testing.T) {
	iss := startIssuer(t, devissuer.Options{})
	cfg := issuerConfig(iss)
	cfg.JWKSURL = iss.URL() + devissuer.JWKSPath
	v := newVerifier(t, identity.Options{}, cfg)
	if st := v.Status(); !st[0].Ready {
		t.Fatalf("Status = %+v", st)
	}
	token, err := iss.Mint("agent", nil, time.Minute, audience)
	if err != nil {
		t.Fatal(err)
	}
	mustVerify(t, v, token)
	if iss.DiscoveryRequests() != 0 {
		t.Fatalf("discovery requested %d times despite jwksURL", iss.DiscoveryRequests())
	}

	// A key set that cannot be fetched fails closed as issuer_unavailable.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.JWKSURL = "http://" + ln.Addr().String() + "/keys"
	ln.Close()
	down := newVerifier(t, identity.Options{}, cfg)
	wantRejected(t, down, token, identity.ErrIssuerUnavailable, identity.ReasonIssuerUnavailable)
}

func TestDiscoveryIssuerMismatchIsReported(t *testing.T) {
	iss := startIssuer(t, devissuer.Options{})
	// A trailing slash is a different issuer; go-oidc refuses the discovery document.
	v := newVerifier(t, fastOptions, identity.IssuerConfig{Issuer: iss.URL() + "/", Audiences: []string{audience}})
	err := v.Warm(context.Background())
	if !errors.Is(err, identity.ErrIssuerUnavailable) || !strings.Contains(err.Error(), "did not match") {
		t.Fatalf("Warm = %v", err)
	}
}

func TestReason(t *testing.T) {
	if identity.Reason(nil) != "" {
		t.Error("Reason(nil) is not empty")
	}
	if got := identity.Reason(errors.New("boom")); got != identity.ReasonInternal {
		t.Errorf("Reason(foreign) = %q", got)
	}
	wrapped := errors.Join(errors.New("context"), &identity.Error{Kind: identity.ErrExpired})
	if got := identity.Reason(wrapped); got != identity.ReasonExpired {
		t.Errorf("Reason(wrapped) = %q", got)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func BenchmarkVerify(b *testing.B) {
	for _, alg := range []string{devissuer.RS256, devissuer.ES256} {
		b.Run(alg, func(b *testing.B) {
			iss := startIssuer(b, devissuer.Options{Algorithm: alg})
			v := newVerifier(b, identity.Options{}, issuerConfig(iss))
			token, err := iss.Mint("agent", []string{"analysts", "pii-readers"}, time.Hour, audience)
			if err != nil {
				b.Fatal(err)
			}
			mustVerify(b, v, token) // discovery and key fetch outside the timed loop
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(ctx, token); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
