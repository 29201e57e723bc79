package identity_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jitgate/jitgate/controlplane/devissuer"
	"github.com/jitgate/jitgate/controlplane/identity"
)

// fakeClock is a clock tests move by hand; it drives token times, KeyRefreshInterval and
// KeyMaxAge alike.
type fakeClock struct {
	start  time.Time
	offset atomic.Int64
}

func newFakeClock() *fakeClock { return &fakeClock{start: time.Now()} }

func (c *fakeClock) Now() time.Time { return c.start.Add(time.Duration(c.offset.Load())) }

func (c *fakeClock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

// keyAgeOptions: KeyMaxAge 2m, KeyRefreshInterval 10s, on clock.
func keyAgeOptions(clock *fakeClock) identity.Options {
	return identity.Options{Now: clock.Now, KeyMaxAge: 2 * time.Minute, KeyRefreshInterval: 10 * time.Second}
}

func wantUnpublished(t *testing.T, v *identity.Verifier, token string) {
	t.Helper()
	wantRejected(t, v, token, identity.ErrUnknownKey, identity.ReasonUnknownKey)
	if _, err := v.Verify(context.Background(), token); !strings.Contains(err.Error(), "no longer published") {
		t.Fatalf("Verify = %v, want the detail to say the key is no longer published", err)
	}
}

// eventuallyVerify is mustVerify for a token go-oidc must first refetch keys for: go-oidc
// hands a refetch's result to its waiters before it updates its cache and lets the next
// refetch start, so a Verify right after another one's refetch can still see the older
// key set. Retry briefly.
func eventuallyVerify(t *testing.T, v *identity.Verifier, token string) {
	t.Helper()
	var err error
	for range 50 {
		if _, err = v.Verify(context.Background(), token); err == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("Verify: %v (reason %s)", err, identity.Reason(err))
}

func wantJWKSRequests(t *testing.T, iss *devissuer.Issuer, want int64) {
	t.Helper()
	if got := iss.JWKSRequests(); got != want {
		t.Fatalf("JWKS fetched %d times, want %d", got, want)
	}
}

// A key the issuer stopped publishing keeps verifying (from go-oidc's cache) only until
// the key set is older than KeyMaxAge; then the key set is refetched and the token is
// rejected, with no restart and no unknown kid needed to trigger it.
func TestRemovedKeyRejectedAfterKeyMaxAge(t *testing.T) {
	clock := newFakeClock()
	iss := startIssuer(t, devissuer.Options{Now: clock.Now})
	v := newVerifier(t, keyAgeOptions(clock), issuerConfig(iss)) // discovery: jwks_uri from the document
	claims := devissuer.Claims{Subject: "agent", Audience: []string{audience}, Expiry: clock.Now().Add(time.Hour)}
	oldToken := mint(t, iss, claims, devissuer.MintOptions{})
	oldNoKid := mint(t, iss, claims, devissuer.MintOptions{OmitKeyID: true})
	mustVerify(t, v, oldToken)
	mustVerify(t, v, oldNoKid)
	wantJWKSRequests(t, iss, 1)

	if _, err := iss.Rotate(); err != nil {
		t.Fatal(err)
	}
	iss.DropOldKeys()
	newToken := mint(t, iss, claims, devissuer.MintOptions{})
	newNoKid := mint(t, iss, claims, devissuer.MintOptions{OmitKeyID: true})

	// The bounded window: until the key set is KeyMaxAge old, the removed key still
	// verifies, and nothing is fetched.
	clock.Advance(2*time.Minute - time.Second)
	mustVerify(t, v, oldToken)
	mustVerify(t, v, oldNoKid)
	wantJWKSRequests(t, iss, 1)

	// Past KeyMaxAge the next token refetches the key set; the old key is gone.
	clock.Advance(time.Second)
	wantUnpublished(t, v, oldToken)
	wantJWKSRequests(t, iss, 2)
	wantUnpublished(t, v, oldNoKid) // without a kid, a key of the latest set must verify it
	wantJWKSRequests(t, iss, 2)

	// The new key: go-oidc's unknown-kid refetch is within KeyRefreshInterval of the
	// refresh above, so it is answered from that key set, which already has the new key.
	eventuallyVerify(t, v, newToken)
	mustVerify(t, v, newNoKid)
	wantJWKSRequests(t, iss, 2)

	// Once go-oidc's own cache holds the new key set it rejects the old tokens itself, as
	// for any key not in the set (a token without kid that no key verifies is a bad
	// signature); until then the check above does.
	clock.Advance(time.Minute)
	wantRejected(t, v, oldToken, identity.ErrUnknownKey, identity.ReasonUnknownKey)
	if _, err := v.Verify(context.Background(), oldNoKid); !errors.Is(err, identity.ErrBadSignature) && !errors.Is(err, identity.ErrUnknownKey) {
		t.Fatalf("Verify(old token without kid) = %v", err)
	}
	mustVerify(t, v, newToken)
	if n := iss.JWKSRequests(); n < 2 || n > 4 {
		t.Fatalf("JWKS fetched %d times, want 2 to 4 (go-oidc refetches for unknown kids, throttled)", n)
	}
}

// A key just rotated in is accepted once KeyRefreshInterval has passed since the last
// fetch; before that the unknown kid is answered from the throttled key set.
func TestNewKeyAcceptedAfterRotation(t *testing.T) {
	clock := newFakeClock()
	iss := startIssuer(t, devissuer.Options{Now: clock.Now})
	v := newVerifier(t, keyAgeOptions(clock), issuerConfig(iss))
	claims := devissuer.Claims{Subject: "agent", Audience: []string{audience}, Expiry: clock.Now().Add(time.Hour)}
	oldToken := mint(t, iss, claims, devissuer.MintOptions{})
	mustVerify(t, v, oldToken)

	if _, err := iss.Rotate(); err != nil {
		t.Fatal(err)
	}
	newToken := mint(t, iss, claims, devissuer.MintOptions{})
	clock.Advance(5 * time.Second)
	wantRejected(t, v, newToken, identity.ErrUnknownKey, identity.ReasonUnknownKey)
	wantJWKSRequests(t, iss, 1)

	clock.Advance(5 * time.Second)
	eventuallyVerify(t, v, newToken)
	wantJWKSRequests(t, iss, 2)
	mustVerify(t, v, oldToken) // still published
}

// syncBuffer collects log output from concurrent goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// When the refetch past KeyMaxAge fails, the last key set stays in use (with a warning)
// rather than rejecting every agent while the IdP is down; once the JWKS answers again,
// removed keys are rejected.
func TestKeyRefreshFailureKeepsLastKeySet(t *testing.T) {
	clock := newFakeClock()
	iss := startIssuer(t, devissuer.Options{Now: clock.Now})
	var mode atomic.Value // "", "down" or "garbage"
	mode.Store("")
	// The key set is served by a second loopback server (configured as jwksURL) that can
	// fail without taking the issuer down.
	keys := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch mode.Load() {
		case "down":
			http.Error(w, "maintenance", http.StatusServiceUnavailable)
		case "garbage":
			_, _ = w.Write([]byte("<html>login</html>"))
		default:
			r.URL.Path = devissuer.JWKSPath
			iss.Handler().ServeHTTP(w, r)
		}
	}))
	t.Cleanup(keys.Close)
	cfg := issuerConfig(iss)
	cfg.JWKSURL = keys.URL + "/keys"
	logs := &syncBuffer{}
	opts := keyAgeOptions(clock)
	opts.Logger = slog.New(slog.NewTextHandler(logs, nil))
	v := newVerifier(t, opts, cfg)

	claims := devissuer.Claims{Subject: "agent", Audience: []string{audience}, Expiry: clock.Now().Add(time.Hour)}
	oldToken := mint(t, iss, claims, devissuer.MintOptions{})
	mustVerify(t, v, oldToken)
	if _, err := iss.Rotate(); err != nil {
		t.Fatal(err)
	}
	iss.DropOldKeys()

	for _, m := range []string{"down", "garbage"} {
		mode.Store(m)
		clock.Advance(3 * time.Minute)
		mustVerify(t, v, oldToken) // refresh failed: the last key set (with the old key) stays
		if !strings.Contains(logs.String(), "JWKS refresh failed") {
			t.Fatalf("%s: no warning logged; logs:\n%s", m, logs.String())
		}
		mustVerify(t, v, oldToken) // within KeyRefreshInterval: no new attempt, no new warning
		if n := strings.Count(logs.String(), "JWKS refresh failed"); m == "down" && n != 1 {
			t.Fatalf("%d warnings, want 1 per KeyRefreshInterval; logs:\n%s", n, logs.String())
		}
	}

	mode.Store("")
	clock.Advance(10 * time.Second)
	wantUnpublished(t, v, oldToken)
	mustVerify(t, v, mint(t, iss, claims, devissuer.MintOptions{}))
	if iss.DiscoveryRequests() != 0 {
		t.Fatalf("discovery requested %d times despite jwksURL", iss.DiscoveryRequests())
	}
}

func TestKeyMaxAgeDefault(t *testing.T) {
	if identity.DefaultKeyMaxAge != 5*time.Minute {
		t.Fatalf("DefaultKeyMaxAge = %v", identity.DefaultKeyMaxAge)
	}
	// With the defaults a key set younger than 5 minutes is not refetched.
	clock := newFakeClock()
	iss := startIssuer(t, devissuer.Options{Now: clock.Now})
	v := newVerifier(t, identity.Options{Now: clock.Now}, issuerConfig(iss))
	claims := devissuer.Claims{Subject: "agent", Audience: []string{audience}, Expiry: clock.Now().Add(time.Hour)}
	token := mint(t, iss, claims, devissuer.MintOptions{})
	mustVerify(t, v, token)
	clock.Advance(4 * time.Minute)
	mustVerify(t, v, token)
	wantJWKSRequests(t, iss, 1)
	clock.Advance(time.Minute)
	mustVerify(t, v, token)
	wantJWKSRequests(t, iss, 2)
}
