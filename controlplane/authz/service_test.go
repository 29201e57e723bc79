package authz_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/jitgate/jitgate/controlplane/authz"
	"github.com/jitgate/jitgate/controlplane/credentials"
	"github.com/jitgate/jitgate/controlplane/devissuer"
	"github.com/jitgate/jitgate/controlplane/identity"
	"github.com/jitgate/jitgate/filter/authorize"
	"github.com/jitgate/jitgate/policies"
)

const (
	audience = "jitgate"
	saEmail  = "dev-gateway@jitgate-dev.iam.gserviceaccount.com"
	credTTL  = 2 * time.Minute
)

var (
	keyOnce sync.Once
	keyJSON []byte
)

// keyFile writes a throwaway service-account key (generated once per test binary).
func keyFile(t *testing.T) string {
	t.Helper()
	keyOnce.Do(func() {
		var err error
		if keyJSON, err = credentials.GenerateServiceAccountKey(saEmail); err != nil {
			panic(err)
		}
	})
	path := filepath.Join(t.TempDir(), "sa-key.json")
	if err := os.WriteFile(path, keyJSON, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// gateway is an authz.Service on a loopback HTTP server with a real dev issuer, a real
// go-oidc verifier and a real self-signed-JWT minter.
type gateway struct {
	url     string
	issuer  *devissuer.Issuer
	key     *credentials.ServiceAccountKey
	logs    *syncBuffer
	metrics http.Handler
}

type options struct {
	minter    credentials.Minter
	steps     []authz.Step
	audit     authz.Auditor
	auditMode authz.AuditMode
	// defaultDeny builds the service without IdentityOnly, as jitgated runs it. The other
	// tests here check identity, steps, minting and audit with steps that set no policy
	// decision, so they run in the explicit identity-only mode.
	defaultDeny bool
}

func newGateway(t *testing.T, o options) *gateway {
	t.Helper()
	iss, err := devissuer.Start(devissuer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = iss.Close() })
	g := &gateway{issuer: iss, logs: &syncBuffer{}}
	// Debug level: the canary must not leak even where the minter logs its mints.
	log := slog.New(slog.NewJSONHandler(g.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	verifier, err := identity.NewVerifier(identity.Config{Issuers: []identity.IssuerConfig{
		{Issuer: iss.URL(), Audiences: []string{audience}},
	}}, identity.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	path := keyFile(t)
	if g.key, err = credentials.LoadServiceAccountKey(path); err != nil {
		t.Fatal(err)
	}
	minter := o.minter
	if minter == nil {
		if minter, err = credentials.New(credentials.Config{KeyFile: path}, credentials.WithLogger(log)); err != nil {
			t.Fatal(err)
		}
	}
	reg := prometheus.NewRegistry()
	g.metrics = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	svc, err := authz.New(authz.Options{
		Verifier: verifier, Minter: minter, CredentialTTL: credTTL, Steps: o.steps,
		Logger: log, Metrics: authz.NewMetrics(reg), Audit: o.audit, AuditMode: o.auditMode,
		IdentityOnly: !o.defaultDeny,
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(authorize.Path, svc)
	mux.Handle(authorize.AbandonPath, svc)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	g.url = srv.URL
	return g
}

func request(token string) authorize.Request {
	return authorize.Request{
		RequestID: "req-" + authz.NewDecisionID(time.Now()),
		Token:     token,
		Client:    authorize.Client{Address: "127.0.0.1:50000", UserAgent: "gcloud-python/3.27"},
		Call:      authorize.Call{API: "jobs.query", Method: "POST", Project: "demo-project"},
		Query:     &authorize.Query{SQL: "SELECT name FROM demo.people -- sql-canary"},
	}
}

// authorizeCall POSTs req and parses the answer the way the filter does.
func (g *gateway) authorizeCall(t *testing.T, req authorize.Request) authorize.Response {
	t.Helper()
	body, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	code, out := g.post(t, body)
	if code != http.StatusOK {
		t.Fatalf("POST %s = %d %s", authorize.Path, code, out)
	}
	resp, err := authorize.ParseResponse(out)
	if err != nil {
		t.Fatalf("response breaks the contract: %v\n%s", err, out)
	}
	return resp
}

func (g *gateway) post(t *testing.T, body []byte) (int, []byte) {
	t.Helper()
	resp, err := http.Post(g.url+authorize.Path, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

func (g *gateway) mint(t *testing.T, agent string, groups []string) string {
	t.Helper()
	tok, err := g.issuer.Mint(agent, groups, 5*time.Minute, audience)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

var decisionIDRE = regexp.MustCompile(`^dec_[0-9a-hjkmnp-tv-z]{26}$`)

func TestAllowMintsAVerifiableCredential(t *testing.T) {
	g := newGateway(t, options{})
	before := time.Now()
	resp := g.authorizeCall(t, request(g.mint(t, "etl-bot", []string{"analysts", "etl"})))

	if resp.Decision != authorize.Allow || !decisionIDRE.MatchString(resp.DecisionID) {
		t.Fatalf("response = %+v", resp)
	}
	want := authorize.Identity{AgentID: "etl-bot", Issuer: g.issuer.URL(), Groups: []string{"analysts", "etl"}}
	if resp.Identity == nil || resp.Identity.AgentID != want.AgentID || resp.Identity.Issuer != want.Issuer || !slices.Equal(resp.Identity.Groups, want.Groups) {
		t.Errorf("identity = %+v, want %+v", resp.Identity, want)
	}

	// The credential is a JWT signed by the service-account key, for BigQuery, living
	// exactly the configured TTL.
	raw := strings.TrimPrefix(resp.Credential.Authorization, "Bearer ")
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	var claims jwt.Claims
	if err := tok.Claims(g.key.Public(), &claims); err != nil {
		t.Fatalf("credential does not verify with the key's public half: %v", err)
	}
	if tok.Headers[0].KeyID != g.key.PrivateKeyID {
		t.Errorf("kid = %q, want %q", tok.Headers[0].KeyID, g.key.PrivateKeyID)
	}
	if claims.Issuer != saEmail || claims.Subject != saEmail || !slices.Equal([]string(claims.Audience), []string{credentials.DefaultAudience}) {
		t.Errorf("claims iss %q sub %q aud %v", claims.Issuer, claims.Subject, claims.Audience)
	}
	if claims.ID != resp.Credential.ID || claims.Expiry.Time().Unix() != resp.Credential.ExpiresAtUnix {
		t.Errorf("jti %q exp %d vs credential %+v", claims.ID, claims.Expiry.Time().Unix(), resp.Credential.ID)
	}
	if life := claims.Expiry.Time().Sub(claims.IssuedAt.Time()); life != credTTL {
		t.Errorf("credential lives %s, want %s", life, credTTL)
	}
	if exp := claims.Expiry.Time(); exp.Before(before.Add(credTTL-2*time.Second)) || exp.After(time.Now().Add(credTTL)) {
		t.Errorf("exp %s not about now+%s", exp, credTTL)
	}
	if err := claims.ValidateWithLeeway(jwt.Expected{Time: time.Now()}, 0); err != nil {
		t.Errorf("credential not valid now: %v", err)
	}

	line := g.logs.decisionLine(t, resp.DecisionID)
	for k, v := range map[string]any{
		"decision": "allow", "reason": "ok", "agent": "etl-bot", "issuer": g.issuer.URL(), "api": "jobs.query",
		"project": "demo-project", "credential_id": resp.Credential.ID, "client": "127.0.0.1:50000",
	} {
		if line[k] != v {
			t.Errorf("log %s = %v, want %v", k, line[k], v)
		}
	}
	for _, k := range []string{"request_id", "groups", "job_id", "latency_ms", "decision_id"} {
		if _, ok := line[k]; !ok {
			t.Errorf("log line lacks %s: %v", k, line)
		}
	}
}

func TestIdentityDenials(t *testing.T) {
	g := newGateway(t, options{})
	now := time.Now()
	mintWith := func(c devissuer.Claims, o devissuer.MintOptions) string {
		if c.Subject == "" {
			c.Subject = "etl-bot"
		}
		if c.Audience == nil {
			c.Audience = []string{audience}
		}
		tok, err := g.issuer.MintWith(c, o)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	tests := []struct {
		name, token, reason string
	}{
		{"missing", "", identity.ReasonMissing},
		{"malformed", "not-a-jwt", identity.ReasonMalformed},
		{"expired", mintWith(devissuer.Claims{IssuedAt: now.Add(-time.Hour), NotBefore: now.Add(-time.Hour), Expiry: now.Add(-10 * time.Minute)}, devissuer.MintOptions{}), identity.ReasonExpired},
		{"wrong audience", mintWith(devissuer.Claims{Audience: []string{"someone-else"}}, devissuer.MintOptions{}), identity.ReasonWrongAudience},
		{"unknown issuer", mintWith(devissuer.Claims{Issuer: "https://issuer.invalid"}, devissuer.MintOptions{}), identity.ReasonUnknownIssuer},
		{"bad signature", mintWith(devissuer.Claims{}, devissuer.MintOptions{CorruptSignature: true}), identity.ReasonBadSignature},
		{"alg none", mintWith(devissuer.Claims{}, devissuer.MintOptions{Algorithm: "none"}), identity.ReasonAlgorithmNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := g.authorizeCall(t, request(tt.token))
			if resp.Decision != authorize.Deny || resp.Status != 401 || resp.Reason != tt.reason {
				t.Errorf("= %s %d %q, want deny 401 %q", resp.Decision, resp.Status, resp.Reason, tt.reason)
			}
			if resp.Identity != nil || resp.Credential != nil {
				t.Errorf("denial carries identity %+v / credential", resp.Identity)
			}
			if !strings.HasSuffix(resp.Message, ".") || len(resp.Message) < 20 || (tt.token != "" && strings.Contains(resp.Message, tt.token)) {
				t.Errorf("message %q", resp.Message)
			}
			if line := g.logs.decisionLine(t, resp.DecisionID); line["reason"] != tt.reason || line["step"] != "identity" {
				t.Errorf("log line %v", line)
			}
		})
	}
}

func TestIssuerDownIsUnavailable(t *testing.T) {
	g := newGateway(t, options{})
	token := g.mint(t, "etl-bot", nil)
	_ = g.issuer.Close() // before the verifier ever discovered it
	resp := g.authorizeCall(t, request(token))
	if resp.Decision != authorize.Deny || resp.Status != 503 || resp.Reason != identity.ReasonIssuerUnavailable {
		t.Errorf("= %+v, want deny 503 issuer_unavailable", resp)
	}
}

type failingMinter struct{}

func (failingMinter) Mint(context.Context, credentials.Request) (credentials.Credential, error) {
	return credentials.Credential{}, errors.New("iam credentials api: 503")
}

func TestMinterFailureIsUnavailable(t *testing.T) {
	g := newGateway(t, options{minter: failingMinter{}})
	resp := g.authorizeCall(t, request(g.mint(t, "etl-bot", nil)))
	if resp.Decision != authorize.Deny || resp.Status != 503 || resp.Reason != "credential_unavailable" || resp.Credential != nil {
		t.Errorf("= %+v, want deny 503 credential_unavailable", resp)
	}
	if resp.Identity == nil || resp.Identity.AgentID != "etl-bot" {
		t.Errorf("identity = %+v, want the verified agent", resp.Identity)
	}
	if line := g.logs.decisionLine(t, resp.DecisionID); line["step"] != "credential" || !strings.Contains(line["error"].(string), "iam credentials api") {
		t.Errorf("log line %v", line)
	}
}

// TestStepsRunBetweenIdentityAndMinting: a later stage (here a stand-in policy) sees the
// verified agent, can narrow the credential, and a denial stops minting.
func TestStepsRunBetweenIdentityAndMinting(t *testing.T) {
	var minted atomic.Int64
	counting := mintCounter{&minted}
	policy := authz.NewStep("policy", func(_ context.Context, c *authz.Call) *authz.Denial {
		if c.Identity == nil {
			t.Error("step ran before identity")
		}
		if c.Identity.AgentID == "intruder" {
			return authz.Forbidden("rule:no-intruders", "Denied by rule no-intruders.", nil)
		}
		c.Mint.TTL = 30 * time.Second
		return nil
	})
	panicky := authz.NewStep("panicky", func(_ context.Context, c *authz.Call) *authz.Denial {
		if c.Identity.AgentID == "boom" {
			panic("bug")
		}
		return nil
	})
	g := newGateway(t, options{minter: counting, steps: []authz.Step{policy, panicky}})

	resp := g.authorizeCall(t, request(g.mint(t, "intruder", nil)))
	if resp.Status != 403 || resp.Reason != "rule:no-intruders" || minted.Load() != 0 {
		t.Errorf("= %+v, minted %d", resp, minted.Load())
	}
	resp = g.authorizeCall(t, request(g.mint(t, "boom", nil)))
	if resp.Status != 503 || resp.Reason != "internal_error" || minted.Load() != 0 {
		t.Errorf("panicking step = %+v, minted %d", resp, minted.Load())
	}
	resp = g.authorizeCall(t, request(g.mint(t, "etl-bot", nil)))
	if resp.Decision != authorize.Allow || minted.Load() != 1 || resp.Credential.ExpiresAtUnix-time.Now().Unix() > 30 {
		t.Errorf("= %+v, minted %d", resp, minted.Load())
	}
}

// Deny by default: without a policy's allow decision (no policy step, or one that decided
// nothing) a verified agent gets 403 no_policy and no credential is minted, unless the
// service runs in the explicit identity-only mode.
func TestNoPolicyDeniesByDefault(t *testing.T) {
	var minted atomic.Int64
	g := newGateway(t, options{minter: mintCounter{&minted}, defaultDeny: true})
	for _, req := range []authorize.Request{
		request(g.mint(t, "etl-agent", []string{"admins"})),
		{Token: g.mint(t, "etl-agent", nil), Call: authorize.Call{API: "tabledata.list", Method: "GET", Project: "demo-project", Dataset: "crm", Table: "customers"}},
		{Token: g.mint(t, "etl-agent", nil), Call: authorize.Call{API: "tables.get", Method: "GET", Project: "demo-project", Dataset: "d", Table: "t"}},
	} {
		resp := g.authorizeCall(t, req)
		if resp.Decision != authorize.Deny || resp.Status != 403 || resp.Reason != authz.ReasonNoPolicy || resp.Credential != nil {
			t.Fatalf("%s without policies = %+v", req.Call.API, resp)
		}
		if !strings.Contains(resp.Message, "no policy applies to agent etl-agent (issuer "+g.issuer.URL()+")") {
			t.Errorf("message %q does not say why", resp.Message)
		}
		if line := g.logs.decisionLine(t, resp.DecisionID); line["step"] != "default_deny" {
			t.Errorf("decision log %v does not name the default_deny step", line)
		}
	}
	if minted.Load() != 0 {
		t.Fatalf("%d credentials minted without a policy", minted.Load())
	}

	// A step that records a policy's allow decision lets the call through; one that
	// records a deny decision without denying (a bug) does not.
	decide := authz.NewStep("policy", func(_ context.Context, c *authz.Call) *authz.Denial {
		c.Decision = &policies.Decision{Allow: c.Identity.AgentID == "allowed-agent", Rule: "allow"}
		return nil
	})
	g = newGateway(t, options{minter: mintCounter{&minted}, defaultDeny: true, steps: []authz.Step{decide}})
	if resp := g.authorizeCall(t, request(g.mint(t, "allowed-agent", nil))); resp.Decision != authorize.Allow || minted.Load() != 1 {
		t.Fatalf("policy-allowed call = %+v, minted %d", resp, minted.Load())
	}
	if resp := g.authorizeCall(t, request(g.mint(t, "other-agent", nil))); resp.Reason != authz.ReasonNoPolicy || minted.Load() != 1 {
		t.Fatalf("call with a deny decision = %+v, minted %d", resp, minted.Load())
	}

	// The explicit switch restores identity-only mode.
	g = newGateway(t, options{minter: mintCounter{&minted}})
	if resp := g.authorizeCall(t, request(g.mint(t, "etl-agent", nil))); resp.Decision != authorize.Allow || minted.Load() != 2 {
		t.Fatalf("identity-only call = %+v, minted %d", resp, minted.Load())
	}
}

type mintCounter struct{ n *atomic.Int64 }

func (m mintCounter) Mint(_ context.Context, req credentials.Request) (credentials.Credential, error) {
	m.n.Add(1)
	return credentials.Credential{Token: credentials.NewSecret("upstream-token"), ID: "cred-1", Mode: "test",
		ExpiresAt: time.Now().Add(req.TTL)}, nil
}

func TestMalformedRequests(t *testing.T) {
	g := newGateway(t, options{})
	valid, _ := request("x").Marshal()
	tests := []struct {
		name string
		body []byte
		want int
	}{
		{"not JSON", []byte("{"), 400},
		{"empty", nil, 400},
		{"wrong version", bytes.Replace(valid, []byte(authorize.Version), []byte("jitgate.dev/authorize/v0"), 1), 400},
		{"unknown field", bytes.Replace(valid, []byte(`{"version"`), []byte(`{"bogus":1,"version"`), 1), 400},
		{"no call", []byte(`{"version":"` + authorize.Version + `","requestId":"r"}`), 400},
		{"trailing data", append(slices.Clone(valid), []byte("{}")...), 400},
		{"too large", bytes.Repeat([]byte(" "), authorize.MaxDocumentBytes+1), 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := g.post(t, tt.body)
			if code != tt.want {
				t.Errorf("= %d %s, want %d", code, out, tt.want)
			}
		})
	}
	resp, err := http.Get(g.url + authorize.Path)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET = %d", resp.StatusCode)
	}
	if !strings.Contains(g.logs.String(), `"msg":"authorize request rejected"`) {
		t.Error("malformed requests were not logged")
	}
}

func TestDecisionIDsAreUniqueAndSortable(t *testing.T) {
	g := newGateway(t, options{})
	seen := map[string]bool{}
	token := g.mint(t, "etl-bot", nil)
	for i := range 20 {
		tok := token
		if i%2 == 1 {
			tok = ""
		}
		id := g.authorizeCall(t, request(tok)).DecisionID
		if seen[id] || !decisionIDRE.MatchString(id) {
			t.Fatalf("decision id %q repeated or malformed", id)
		}
		seen[id] = true
	}
	t0 := time.Now()
	a, b := authz.NewDecisionID(t0), authz.NewDecisionID(t0.Add(time.Millisecond))
	if a >= b {
		t.Errorf("ids do not sort by time: %s >= %s", a, b)
	}
}

// TestSecretsNeverLeak is invariant 1's canary: the agent's token and the minted
// credential appear in no log line (at any level) and in no metric.
func TestSecretsNeverLeak(t *testing.T) {
	g := newGateway(t, options{})
	token := g.mint(t, "etl-bot", []string{"analysts"})
	var secrets []string
	for range 3 {
		resp := g.authorizeCall(t, request(token))
		secrets = append(secrets, strings.TrimPrefix(resp.Credential.Authorization, "Bearer "))
	}
	wrongAud, _ := g.issuer.MintWith(devissuer.Claims{Subject: "x", Audience: []string{"nope"}}, devissuer.MintOptions{})
	expired, _ := g.issuer.MintWith(devissuer.Claims{Subject: "x", Audience: []string{audience}, Expiry: time.Now().Add(-time.Hour)}, devissuer.MintOptions{})
	for _, tok := range []string{wrongAud, expired} {
		g.authorizeCall(t, request(tok))
	}
	secrets = append(secrets, token, wrongAud, expired)

	rec := httptest.NewRecorder()
	g.metrics.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	metrics := rec.Body.String()
	if !strings.Contains(metrics, `jitgate_authorize_decisions_total{decision="allow",reason="ok"} 3`) ||
		!strings.Contains(metrics, `jitgate_credentials_minted_total{mode="self-signed-jwt"} 3`) ||
		!strings.Contains(metrics, `jitgate_authorize_decisions_total{decision="deny",reason="token_expired"} 1`) ||
		!strings.Contains(metrics, "jitgate_authorize_duration_seconds_bucket") {
		t.Errorf("metrics missing decisions:\n%s", metrics)
	}
	logs := g.logs.String()
	if !strings.Contains(logs, `"level":"DEBUG","msg":"upstream credential minted"`) {
		t.Error("the canary saw no debug lines; it would not catch a leak there")
	}
	for _, s := range secrets {
		// Every JWT segment separately: a leak of the signature alone is still a leak.
		for _, part := range append(strings.Split(s, "."), s) {
			if len(part) < 16 {
				continue
			}
			if strings.Contains(logs, part) {
				t.Errorf("log output contains a secret segment %.12s...", part)
			}
			if strings.Contains(metrics, part) {
				t.Errorf("metrics contain a secret segment %.12s...", part)
			}
		}
	}
	if strings.Contains(logs, "sql-canary") {
		t.Error("SQL text was logged")
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// decisionLine returns the one "authorize decision" log line of id.
func (s *syncBuffer) decisionLine(t *testing.T, id string) map[string]any {
	t.Helper()
	var found []map[string]any
	for _, l := range strings.Split(s.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "authorize decision" && m["decision_id"] == id {
			found = append(found, m)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d decision lines for %s, want 1:\n%s", len(found), id, s.String())
	}
	return found[0]
}

// A decision that requires approval is never minted for unless a step obtained one: a
// pipeline without an approval step fails closed.
func TestApprovalRequiredWithoutApprovalStepIsRefused(t *testing.T) {
	var minted atomic.Int64
	needsApproval := authz.NewStep("policy", func(_ context.Context, c *authz.Call) *authz.Denial {
		c.Approvals = []policies.ApprovalRequirement{{Rule: "every-query", ApproverGroups: []string{"owners"}}}
		if c.Identity.AgentID == "approved-bot" {
			c.Approved, c.ApprovalID, c.Approver = true, "apr-0123456789abcdef", "dana"
		}
		return nil
	})
	g := newGateway(t, options{minter: mintCounter{&minted}, steps: []authz.Step{needsApproval}})
	resp := g.authorizeCall(t, request(g.mint(t, "etl-bot", nil)))
	if resp.Status != 403 || resp.Reason != "approval_required" || resp.Credential != nil || minted.Load() != 0 {
		t.Fatalf("unapproved call = %+v, minted %d", resp, minted.Load())
	}
	resp = g.authorizeCall(t, request(g.mint(t, "approved-bot", nil)))
	if resp.Decision != authorize.Allow || minted.Load() != 1 {
		t.Fatalf("approved call = %+v", resp)
	}
	if line := g.logs.decisionLine(t, resp.DecisionID); line["approval_id"] != "apr-0123456789abcdef" || line["approver"] != "dana" {
		t.Fatalf("decision log %v lacks the approval", line)
	}
}
