package credentials

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// fakeIAM implements the IAM credentials API's generateAccessToken wire format on loopback.
// It verifies the caller's bearer JWT with the base key's public key (from the key file)
// and the request body, and answers with a fresh opaque token that expires after the
// requested lifetime on the shared fake clock.
type fakeIAM struct {
	t      *testing.T
	srv    *httptest.Server
	pub    *rsa.PublicKey
	clock  *fakeClock
	calls  atomic.Int32
	gate   chan struct{} // when set, each call waits for it to close
	mu     sync.Mutex
	reqs   []iamCall
	answer func(w http.ResponseWriter, r *http.Request, bearer string) bool // true: answered
}

type iamCall struct {
	Account  string
	Scope    []string
	Lifetime string
}

var pathRE = regexp.MustCompile(`^/v1/projects/-/serviceAccounts/([^/:]+):generateAccessToken$`)

func newFakeIAM(t *testing.T, keyPath string, clock *fakeClock) *fakeIAM {
	f := &fakeIAM{t: t, pub: publicKeyFromFile(t, keyPath), clock: clock}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeIAM) fail(w http.ResponseWriter, code int, status, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"code": code, "message": msg, "status": status}})
}

func (f *fakeIAM) serve(w http.ResponseWriter, r *http.Request) {
	n := f.calls.Add(1)
	if f.gate != nil {
		<-f.gate
	}
	m := pathRE.FindStringSubmatch(r.URL.EscapedPath())
	if r.Method != http.MethodPost || m == nil {
		f.fail(w, 404, "NOT_FOUND", "no such method "+r.Method+" "+r.URL.Path)
		return
	}
	bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		f.fail(w, 401, "UNAUTHENTICATED", "missing bearer")
		return
	}
	if f.answer != nil && f.answer(w, r, bearer) {
		return
	}
	tok, err := jwt.ParseSigned(bearer, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		f.fail(w, 401, "UNAUTHENTICATED", "bad JWT: "+err.Error())
		return
	}
	var c jwtClaims
	if err := tok.Claims(f.pub, &c); err != nil {
		f.fail(w, 401, "UNAUTHENTICATED", "JWT signature: "+err.Error())
		return
	}
	if tok.Headers[0].KeyID != testKeyID || c.Subject != testEmail || c.Scope != ScopeCloudPlatform ||
		c.Claims.ValidateWithLeeway(jwt.Expected{Issuer: testEmail, Time: f.clock.Now()}, 0) != nil ||
		c.Expiry.Time().Sub(c.IssuedAt.Time()) > time.Hour {
		f.fail(w, 401, "UNAUTHENTICATED", "JWT claims rejected")
		return
	}
	if r.Header.Get("Content-Type") != "application/json" {
		f.fail(w, 400, "INVALID_ARGUMENT", "content type")
		return
	}
	var body struct {
		Scope    []string `json:"scope"`
		Lifetime string   `json:"lifetime"`
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || len(body.Scope) == 0 {
		f.fail(w, 400, "INVALID_ARGUMENT", "body")
		return
	}
	lifetime, err := time.ParseDuration(body.Lifetime)
	if err != nil || !strings.HasSuffix(body.Lifetime, "s") || lifetime <= 0 || lifetime > time.Hour {
		f.fail(w, 400, "INVALID_ARGUMENT", "lifetime "+body.Lifetime)
		return
	}
	f.mu.Lock()
	f.reqs = append(f.reqs, iamCall{Account: m[1], Scope: body.Scope, Lifetime: body.Lifetime})
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{
		"accessToken": fmt.Sprintf("ya29.fake-%d-%s", n, c.ID),
		"expireTime":  f.clock.Now().Add(lifetime).Format(time.RFC3339),
	})
}

func (f *fakeIAM) lastCall() iamCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reqs[len(f.reqs)-1]
}

func newImpersonating(t *testing.T, cfg Config) (*ImpersonatingMinter, *fakeIAM, *fakeClock) {
	t.Helper()
	key, path := loadTestKey(t)
	clock := newFakeClock()
	iam := newFakeIAM(t, path, clock)
	cfg.Impersonation.Endpoint = iam.srv.URL
	m, err := NewImpersonatingMinter(key, cfg, WithClock(clock.Now), WithLogger(discardLogger()))
	if err != nil {
		t.Fatal(err)
	}
	return m, iam, clock
}

const reader = "bq-reader@test-project.iam.gserviceaccount.com"

func TestImpersonateMintsThroughGenerateAccessToken(t *testing.T) {
	m, iam, clock := newImpersonating(t, Config{})
	cred, err := m.Mint(context.Background(), Request{
		ServiceAccount: reader,
		Scopes:         []string{ScopeCloudPlatformReadOnly, ScopeBigQuery},
		RequestID:      "req-1", DecisionID: "dec-1",
	})
	if err != nil {
		t.Fatal(err)
	}
	call := iam.lastCall()
	if call.Account != reader || call.Lifetime != "300s" || !slices.Equal(call.Scope, []string{ScopeBigQuery, ScopeCloudPlatformReadOnly}) {
		t.Errorf("upstream call = %+v", call)
	}
	now := clock.Now()
	if !strings.HasPrefix(cred.Token.Reveal(), "ya29.fake-1-") || cred.Mode != ModeImpersonate || cred.ServiceAccount != reader ||
		!cred.IssuedAt.Equal(now) || !cred.ExpiresAt.Equal(now.Add(5*time.Minute)) || cred.Cached ||
		!regexp.MustCompile(`^iam-[0-9a-f]{16}$`).MatchString(cred.ID) {
		t.Errorf("credential = %+v", cred)
	}
}

func TestImpersonateDefaultAccountAndRequiredAccount(t *testing.T) {
	m, iam, _ := newImpersonating(t, Config{Impersonation: ImpersonationConfig{ServiceAccount: reader}})
	if _, err := m.Mint(context.Background(), Request{}); err != nil {
		t.Fatal(err)
	}
	if call := iam.lastCall(); call.Account != reader || !slices.Equal(call.Scope, DefaultScopes) {
		t.Errorf("upstream call = %+v", call)
	}
	m2, _, _ := newImpersonating(t, Config{})
	if _, err := m2.Mint(context.Background(), Request{}); !errors.Is(err, ErrRequest) {
		t.Errorf("no account: %v", err)
	}
	if _, err := m2.Mint(context.Background(), Request{ServiceAccount: "../../x@y"}); !errors.Is(err, ErrRequest) {
		t.Errorf("path-like account: %v", err)
	}
}

func TestImpersonateCachesPerAccountScopesAndLifetime(t *testing.T) {
	m, iam, _ := newImpersonating(t, Config{})
	ctx := context.Background()
	mint := func(r Request) Credential {
		t.Helper()
		c, err := m.Mint(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	first := mint(Request{ServiceAccount: reader, Scopes: []string{ScopeBigQuery, ScopeCloudPlatformReadOnly}})
	again := mint(Request{ServiceAccount: reader, Scopes: []string{ScopeCloudPlatformReadOnly, ScopeBigQuery, ScopeBigQuery}})
	if iam.calls.Load() != 1 || !again.Cached || !again.Token.Equal(first.Token) || again.ID != first.ID {
		t.Fatalf("same account and scope set: %d upstream calls, cached=%v", iam.calls.Load(), again.Cached)
	}
	mint(Request{ServiceAccount: "bq-writer@test-project.iam.gserviceaccount.com", Scopes: first.Scopes})
	mint(Request{ServiceAccount: reader, Scopes: []string{ScopeBigQuery}})
	short := mint(Request{ServiceAccount: reader, Scopes: first.Scopes, TTL: time.Minute})
	if got := iam.calls.Load(); got != 4 {
		t.Errorf("distinct account, scopes, lifetime: %d upstream calls, want 4", got)
	}
	if short.ExpiresAt.Sub(short.IssuedAt) != time.Minute {
		t.Errorf("a 1m policy got a token living %v", short.ExpiresAt.Sub(short.IssuedAt))
	}
	// Callers cannot corrupt the cache through the returned slice.
	again.Scopes[0] = "https://evil"
	if c := mint(Request{ServiceAccount: reader, Scopes: first.Scopes}); c.Scopes[0] != ScopeBigQuery {
		t.Errorf("cache entry mutated: %v", c.Scopes)
	}
}

func TestImpersonateRemintsBeforeExpiry(t *testing.T) {
	for _, tt := range []struct {
		ttl, margin time.Duration
	}{
		{5 * time.Minute, time.Minute},       // max(1m, 20% = 1m)
		{time.Hour, 12 * time.Minute},        // 20%
		{2 * time.Minute, time.Minute},       // 1m floor
		{30 * time.Second, 30 * time.Second}, // margin >= lifetime: every call mints
	} {
		t.Run(tt.ttl.String(), func(t *testing.T) {
			m, iam, clock := newImpersonating(t, Config{TTL: tt.ttl, Impersonation: ImpersonationConfig{ServiceAccount: reader}})
			ctx := context.Background()
			first, err := m.Mint(ctx, Request{})
			if err != nil {
				t.Fatal(err)
			}
			if tt.margin < tt.ttl {
				clock.Advance(tt.ttl - tt.margin - time.Second) // a second more than the margin left
				c, err := m.Mint(ctx, Request{})
				if err != nil {
					t.Fatal(err)
				}
				if !c.Cached || c.ID != first.ID || iam.calls.Load() != 1 {
					t.Fatalf("with %v left: cached=%v calls=%d, want a cache hit", first.ExpiresAt.Sub(clock.Now()), c.Cached, iam.calls.Load())
				}
				clock.Advance(time.Second) // only the margin left: re-mint
			}
			c, err := m.Mint(ctx, Request{})
			if err != nil {
				t.Fatal(err)
			}
			if c.Cached || c.ID == first.ID || iam.calls.Load() != 2 {
				t.Fatalf("with %v left: cached=%v calls=%d, want a fresh mint", first.ExpiresAt.Sub(clock.Now()), c.Cached, iam.calls.Load())
			}
			if !c.ExpiresAt.Equal(clock.Now().Add(tt.ttl)) {
				t.Errorf("re-minted token expires %v, want now+%v", c.ExpiresAt, tt.ttl)
			}
		})
	}
}

func TestImpersonateConcurrentCallersShareOneMint(t *testing.T) {
	m, iam, _ := newImpersonating(t, Config{Impersonation: ImpersonationConfig{ServiceAccount: reader}})
	iam.gate = make(chan struct{})
	const callers = 32
	var started, done sync.WaitGroup
	creds := make([]Credential, callers)
	errs := make([]error, callers)
	for i := range callers {
		started.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			started.Done()
			creds[i], errs[i] = m.Mint(context.Background(), Request{RequestID: fmt.Sprint("req-", i)})
		}()
	}
	started.Wait()
	for iam.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // let the other callers join the flight
	close(iam.gate)
	done.Wait()
	if got := iam.calls.Load(); got != 1 {
		t.Fatalf("%d callers caused %d upstream calls, want 1", callers, got)
	}
	for i := range callers {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if !creds[i].Token.Equal(creds[0].Token) {
			t.Fatalf("caller %d got a different token", i)
		}
	}
}

func TestImpersonateCallerCancelDoesNotFailOthers(t *testing.T) {
	m, iam, _ := newImpersonating(t, Config{Impersonation: ImpersonationConfig{ServiceAccount: reader}})
	iam.gate = make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := m.Mint(ctx, Request{}); errc <- err }()
	for iam.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller: %v", err)
	}
	close(iam.gate) // the shared mint completes and fills the cache
	// This caller either joins the still-running flight or hits the cache it filled.
	if _, err := m.Mint(context.Background(), Request{}); err != nil {
		t.Fatal(err)
	}
	if got := iam.calls.Load(); got != 1 {
		t.Errorf("%d upstream calls, want the cancelled caller's mint to be reused", got)
	}
}

func TestImpersonateAPIErrorsCarryNoSecrets(t *testing.T) {
	m, iam, _ := newImpersonating(t, Config{Impersonation: ImpersonationConfig{ServiceAccount: reader}})
	var bearers []string
	iam.answer = func(w http.ResponseWriter, r *http.Request, bearer string) bool {
		bearers = append(bearers, bearer)
		sig := bearer[strings.LastIndexByte(bearer, '.')+1:]
		iam.fail(w, 403, "PERMISSION_DENIED", "Permission 'iam.serviceAccounts.getAccessToken' denied for token "+bearer+" sig="+sig)
		return true
	}
	for range 2 {
		_, err := m.Mint(context.Background(), Request{})
		if err == nil {
			t.Fatal("Mint succeeded")
		}
		var apiErr *APIError
		if !errors.Is(err, ErrUpstream) || !errors.As(err, &apiErr) || apiErr.StatusCode != 403 || apiErr.Status != "PERMISSION_DENIED" {
			t.Fatalf("error %v: want an *APIError 403 wrapping ErrUpstream", err)
		}
		if !strings.Contains(err.Error(), "iam.serviceAccounts.getAccessToken") || !strings.Contains(err.Error(), reader) {
			t.Errorf("error %q lost Google's message or the account", err)
		}
		for _, b := range bearers {
			if strings.Contains(fmt.Sprintf("%v %+v %#v", err, err, apiErr), b[strings.LastIndexByte(b, '.')+1:]) {
				t.Fatalf("error echoes the bearer JWT: %v", err)
			}
		}
	}
	if iam.calls.Load() != 2 {
		t.Errorf("failures were cached: %d upstream calls, want 2", iam.calls.Load())
	}
}

func TestImpersonateBadResponses(t *testing.T) {
	const canary = "ya29.CANARY-token-in-body"
	for _, tt := range []struct {
		name string
		code int
		body string
		want string
	}{
		{"not JSON", 200, "accessToken=" + canary, "not the expected JSON"},
		{"no token", 200, `{"expireTime":"2030-01-01T00:00:00Z"}`, "no accessToken"},
		{"bad expiry", 200, `{"accessToken":"` + canary + `","expireTime":"soon"}`, "not RFC 3339"},
		{"expired", 200, `{"accessToken":"` + canary + `","expireTime":"2020-01-01T00:00:00Z"}`, "already expired"},
		{"html 502", 502, "<html>" + canary + "</html>", "HTTP 502: Bad Gateway"},
		{"redirect", 302, "", "HTTP 302"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m, iam, _ := newImpersonating(t, Config{Impersonation: ImpersonationConfig{ServiceAccount: reader}})
			iam.answer = func(w http.ResponseWriter, r *http.Request, _ string) bool {
				if tt.code == 302 {
					http.Redirect(w, r, "/elsewhere", http.StatusFound)
					return true
				}
				w.WriteHeader(tt.code)
				_, _ = w.Write([]byte(tt.body))
				return true
			}
			_, err := m.Mint(context.Background(), Request{})
			if !errors.Is(err, ErrUpstream) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want ErrUpstream saying %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "CANARY") {
				t.Errorf("error quotes the response body: %v", err)
			}
			if tt.code == 302 && iam.calls.Load() != 1 {
				t.Errorf("redirect followed: %d calls", iam.calls.Load())
			}
		})
	}
}

func TestImpersonateNeverTrustsALongerExpiry(t *testing.T) {
	m, iam, clock := newImpersonating(t, Config{Impersonation: ImpersonationConfig{ServiceAccount: reader}})
	iam.answer = func(w http.ResponseWriter, _ *http.Request, _ string) bool {
		_ = json.NewEncoder(w).Encode(map[string]string{"accessToken": "ya29.x", "expireTime": clock.Now().Add(time.Hour).Format(time.RFC3339)})
		return true
	}
	c, err := m.Mint(context.Background(), Request{TTL: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if !c.ExpiresAt.Equal(clock.Now().Add(2 * time.Minute)) {
		t.Errorf("ExpiresAt %v, want now+2m (the requested lifetime)", c.ExpiresAt)
	}
}

func TestImpersonateUnreachableEndpoint(t *testing.T) {
	key, _ := loadTestKey(t)
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there now
	m, err := NewImpersonatingMinter(key, Config{Impersonation: ImpersonationConfig{Endpoint: url, ServiceAccount: reader, Timeout: 2 * time.Second}}, WithLogger(discardLogger()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Mint(context.Background(), Request{}); !errors.Is(err, ErrUpstream) {
		t.Errorf("unreachable endpoint: %v", err)
	}
}
