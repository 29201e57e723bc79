package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"google.golang.org/api/googleapi"

	"github.com/jitgate/jitgate/controlplane/credentials"
	"github.com/jitgate/jitgate/controlplane/devissuer"
	"github.com/jitgate/jitgate/e2e/stack"
)

const datasetsPath = "/bigquery/v2/projects/jitgate-demo/datasets"

// upstreamSince returns what the upstream received after the first n requests.
func upstreamSince(n int64) []stack.Seen {
	all := gw.Tap.Requests()
	if int64(len(all)) < n {
		return nil
	}
	return all[n:]
}

func corpToken(t *testing.T, agent string) string {
	t.Helper()
	tok, err := corpIssuer.Mint(agent, []string{"analysts"}, 10*time.Minute, corpAudience)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestUpstreamReceivesOnlyAMintedCredential(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	key, err := credentials.LoadServiceAccountKey(gw.ServiceAccountKey)
	if err != nil {
		t.Fatal(err)
	}
	// Two agents from two issuers: the gateway's dev issuer and the corporate one.
	for _, tc := range []struct{ name, token string }{{"dev issuer", agentToken}, {"corporate issuer", corpToken(t, "corp-agent")}} {
		t.Run(tc.name, func(t *testing.T) {
			before := upstreamRequests(t)
			it, err := goClientWithToken(t, tc.token).Query(customersSQL).Read(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got := readAll(t, it); !reflect.DeepEqual(got, wantCustomers) {
				t.Fatalf("rows = %v", got)
			}
			seen := upstreamSince(before)
			if len(seen) == 0 {
				t.Fatal("nothing reached the upstream")
			}
			jtis := map[string]bool{}
			for _, r := range seen {
				for name, vs := range r.Header {
					if strings.Contains(strings.Join(vs, " "), tc.token) {
						t.Fatalf("the agent's token reached the upstream in header %s", name)
					}
				}
				raw, ok := strings.CutPrefix(r.Authorization, "Bearer ")
				if !ok {
					t.Fatalf("upstream Authorization %q is not a bearer credential", r.Authorization)
				}
				tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256})
				if err != nil {
					t.Fatalf("upstream credential is not an RS256 JWT: %v", err)
				}
				if len(tok.Headers) != 1 || tok.Headers[0].KeyID != key.PrivateKeyID {
					t.Fatalf("credential kid = %v, want the service account's key id", tok.Headers)
				}
				var c jwt.Claims
				if err := tok.Claims(key.Public(), &c); err != nil {
					t.Fatalf("credential does not verify with the service account's public key: %v", err)
				}
				if c.Issuer != key.ClientEmail || c.Subject != key.ClientEmail || !c.Audience.Contains("https://bigquery.googleapis.com/") {
					t.Fatalf("credential claims iss=%q sub=%q aud=%v", c.Issuer, c.Subject, c.Audience)
				}
				if life := c.Expiry.Time().Sub(c.IssuedAt.Time()); life <= 0 || life > 5*time.Minute {
					t.Fatalf("credential lives %s; want at most the 5 minute default TTL", life)
				}
				if c.Expiry.Time().After(time.Now().Add(5*time.Minute + 5*time.Second)) {
					t.Fatalf("credential expires at %s, beyond now + TTL", c.Expiry.Time())
				}
				if jtis[c.ID] {
					t.Fatalf("credential %s was used for two upstream requests", c.ID)
				}
				jtis[c.ID] = true
			}
		})
	}
}

func TestBadTokensAre401AndReachNothing(t *testing.T) {
	expired := mustMint(t, devissuer.Claims{Subject: "a", Audience: []string{corpAudience}, IssuedAt: time.Now().Add(-time.Hour),
		NotBefore: time.Now().Add(-time.Hour), Expiry: time.Now().Add(-10 * time.Minute)}, devissuer.MintOptions{})
	for _, tc := range []struct {
		name, authorization, reason string
	}{
		{"missing", "", "required"},
		{"malformed", "Bearer not-a-jwt", "authError"},
		{"expired", "Bearer " + expired, "authError"},
		{"not yet valid", "Bearer " + mustMint(t, devissuer.Claims{Subject: "a", Audience: []string{corpAudience},
			IssuedAt: time.Now(), NotBefore: time.Now().Add(10 * time.Minute), Expiry: time.Now().Add(20 * time.Minute)}, devissuer.MintOptions{}), "authError"},
		{"wrong audience", "Bearer " + mustMint(t, devissuer.Claims{Subject: "a", Audience: []string{"someone-else"}}, devissuer.MintOptions{}), "authError"},
		{"unknown issuer", "Bearer " + mustMint(t, devissuer.Claims{Issuer: "https://evil.example", Subject: "a", Audience: []string{corpAudience}}, devissuer.MintOptions{}), "authError"},
		{"bad signature", "Bearer " + mustMint(t, devissuer.Claims{Subject: "a", Audience: []string{corpAudience}}, devissuer.MintOptions{CorruptSignature: true}), "authError"},
		{"alg none", "Bearer " + mustMint(t, devissuer.Claims{Subject: "a", Audience: []string{corpAudience}}, devissuer.MintOptions{Algorithm: "none"}), "authError"},
		{"unknown kid", "Bearer " + mustMint(t, devissuer.Claims{Subject: "a", Audience: []string{corpAudience}}, devissuer.MintOptions{UnpublishedKey: true}), "authError"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := upstreamRequests(t)
			resp, body := rawCallAs(t, tc.authorization, "GET", datasetsPath, nil, nil)
			e := assertBQError(t, resp, body, 401, tc.reason)
			if e.Error.Status != "UNAUTHENTICATED" || !strings.HasPrefix(resp.Header.Get("Www-Authenticate"), "Bearer") {
				t.Fatalf("status %q, www-authenticate %q", e.Error.Status, resp.Header.Get("Www-Authenticate"))
			}
			if tc.authorization != "" && strings.Contains(string(body), strings.TrimPrefix(tc.authorization, "Bearer ")) {
				t.Fatal("the error echoes the token")
			}
			if after := upstreamRequests(t); after != before {
				t.Fatalf("a call with a bad token reached the upstream (%d -> %d)", before, after)
			}
		})
	}
	// The standard client surfaces it as a 401 googleapi error.
	_, err := goClientWithToken(t, expired).Query("SELECT 1").Read(context.Background())
	var gerr *googleapi.Error
	if !errors.As(err, &gerr) || gerr.Code != 401 {
		t.Fatalf("Go client with an expired token: %v, want a 401 googleapi error", err)
	}
}

func mustMint(t *testing.T, c devissuer.Claims, o devissuer.MintOptions) string {
	t.Helper()
	tok, err := corpIssuer.MintWith(c, o)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestIssuerKeyRotationNeedsNoRestart(t *testing.T) {
	oldToken := corpToken(t, "rotating-agent")
	if resp, body := rawCallAs(t, "Bearer "+oldToken, "GET", datasetsPath, nil, nil); resp.StatusCode != 200 {
		t.Fatalf("before rotation: %d %s", resp.StatusCode, body)
	}
	if _, err := corpIssuer.Rotate(); err != nil {
		t.Fatal(err)
	}
	newToken := corpToken(t, "rotating-agent")
	// The gateway refetches the issuer's keys when it sees the new kid (at most one
	// fetch per refresh interval), without a restart.
	eventually(t, 30*time.Second, "a token signed with the rotated-in key is accepted", func() bool {
		resp, _ := rawCallAs(t, "Bearer "+newToken, "GET", datasetsPath, nil, nil)
		return resp.StatusCode == 200
	})
	if resp, body := rawCallAs(t, "Bearer "+oldToken, "GET", datasetsPath, nil, nil); resp.StatusCode != 200 {
		t.Fatalf("the old key is still published, so its token must still work: %d %s", resp.StatusCode, body)
	}
	corpIssuer.DropOldKeys()
	eventually(t, 30*time.Second, "a token signed with the removed key is rejected", func() bool {
		resp, _ := rawCallAs(t, "Bearer "+oldToken, "GET", datasetsPath, nil, nil)
		return resp.StatusCode == 401
	})
	if resp, body := rawCallAs(t, "Bearer "+newToken, "GET", datasetsPath, nil, nil); resp.StatusCode != 200 {
		t.Fatalf("the current key's token stopped working: %d %s", resp.StatusCode, body)
	}
}

func TestControlPlaneDownFailsClosedAndRecovers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	gw.StopJitgated()
	before := upstreamRequests(t)
	start := time.Now()
	resp, body := rawCall(t, "GET", datasetsPath, nil, nil)
	elapsed := time.Since(start)
	assertBQError(t, resp, body, 503, "backendError")
	// Bounded by the callout timeout (2s by default), not by a client or route timeout.
	if elapsed > 5*time.Second {
		t.Fatalf("the 503 took %s; want it within the callout timeout", elapsed)
	}
	if after := upstreamRequests(t); after != before {
		t.Fatalf("with the control plane down a call reached the upstream (%d -> %d)", before, after)
	}
	if err := gw.StartJitgated(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "queries work again once the control plane is back", func() bool {
		resp, _ := rawCall(t, "GET", datasetsPath, nil, nil)
		return resp.StatusCode == 200
	})
}

func eventually(t *testing.T, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestAgentIDsAreIssuerQualified: the gateway trusts two issuers, and the development one
// mints a token for any agent id. A policy for the corporate issuer's corp-etl must not
// match the development issuer's corp-etl; a policy that does not name its issuers is
// refused while two are trusted (the last good policies stay live).
func TestAgentIDsAreIssuerQualified(t *testing.T) {
	path := filepath.Join(policiesDir, "corp-etl.yaml")
	t.Cleanup(func() {
		os.Remove(path)
		waitPolicies(t, func(st cpStatus) bool { return len(st.Policies.Policies) == 1 && st.Policies.LastError == "" })
	})
	const doc = `apiVersion: jitgate.dev/v1
kind: AgentPolicy
metadata: {name: corp-etl}
spec:
  who: {%sagents: [corp-etl]}
  where: {projects: [jitgate-demo], apis: [datasets.list]}
`
	before := status(t).Policies.Version
	if err := os.WriteFile(path, []byte(fmt.Sprintf(doc, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	waitPolicies(t, func(st cpStatus) bool { return st.Policies.LastError != "" })
	if st := status(t); st.Policies.Version != before || !strings.Contains(st.Policies.LastError, `policy "corp-etl" has no who.issuers`) {
		t.Fatalf("unscoped policy: version %s (was %s), error %q", st.Policies.Version, before, st.Policies.LastError)
	}

	if err := os.WriteFile(path, []byte(fmt.Sprintf(doc, "issuers: ["+corpIssuer.URL()+"], ")), 0o644); err != nil {
		t.Fatal(err)
	}
	var version string
	waitPolicies(t, func(st cpStatus) bool {
		version = st.Policies.Version
		return len(st.Policies.Policies) == 2 && st.Policies.LastError == "" && st.XDS.PolicyVersion == version
	})
	waitFor(t, "Envoy holds the bundle", func() bool {
		dump, err := stack.ConfigDump(t.Context(), gw.Admin)
		return err == nil && strings.Contains(dump, `\"policyVersion\":\"`+version+`\"`)
	})

	corp, err := corpIssuer.Mint("corp-etl", nil, 10*time.Minute, corpAudience)
	if err != nil {
		t.Fatal(err)
	}
	if resp, body := rawCallAs(t, "Bearer "+corp, "GET", datasetsPath, nil, nil); resp.StatusCode != 200 {
		t.Fatalf("corp-etl from the corporate issuer: %d %s", resp.StatusCode, body)
	}
	before2 := upstreamRequests(t)
	resp, body := rawCallAs(t, "Bearer "+tokenFor(t, "corp-etl"), "GET", datasetsPath, nil, nil)
	e := assertBQError(t, resp, body, 403, "accessDenied")
	if got := resp.Header.Get("x-jitgate-deny-reason"); got != "default_deny" || !strings.Contains(e.Error.Message, "no policy matches agent corp-etl") {
		t.Fatalf("corp-etl from the development issuer: reason %q, message %q", got, e.Error.Message)
	}
	if after := upstreamRequests(t); after != before2 {
		t.Fatalf("the denied call reached the upstream (%d -> %d)", before2, after)
	}
}
