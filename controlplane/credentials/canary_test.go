package credentials

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

// TestCanaryTokensNeverLeak mints in both modes, with the minters' own logs captured, then
// prints everything a careless caller might print (slog JSON and text, every fmt verb on
// the Credential, JSON of it, errors that wrap it) and asserts that no token, no part of a
// JWT signature and nothing of the private key appears anywhere (invariant 1).
func TestCanaryTokensNeverLeak(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	key, path := loadTestKey(t)
	clock := newFakeClock()
	iam := newFakeIAM(t, path, clock)

	selfSigned, err := NewSelfSignedJWTMinter(key, Config{}, WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	imp, err := NewImpersonatingMinter(key, Config{Impersonation: ImpersonationConfig{Endpoint: iam.srv.URL, ServiceAccount: reader}},
		WithLogger(log), WithClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	var bearers []string // the base JWTs the fake IAM server received
	iam.answer = func(_ http.ResponseWriter, _ *http.Request, bearer string) bool {
		bearers = append(bearers, bearer)
		return false
	}

	var creds []Credential
	req := Request{RequestID: "req-canary", DecisionID: "dec-canary"}
	for _, m := range []Minter{selfSigned, imp, imp} { // the second impersonated mint is a cache hit
		c, err := m.Mint(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		creds = append(creds, c)
	}
	if !creds[2].Cached {
		t.Fatal("second impersonated mint was not a cache hit")
	}
	// A failing mint logs and returns an error; its bearer must not show either.
	iam.answer = func(w http.ResponseWriter, _ *http.Request, bearer string) bool {
		bearers = append(bearers, bearer)
		iam.fail(w, 403, "PERMISSION_DENIED", "denied: "+bearer)
		return true
	}
	_, mintErr := imp.Mint(context.Background(), Request{ServiceAccount: "other@test-project.iam.gserviceaccount.com"})
	if mintErr == nil {
		t.Fatal("mint against a denying server succeeded")
	}

	text := slog.New(slog.NewTextHandler(&logs, nil))
	for _, c := range creds {
		log.Info("forwarding", "credential", c, "token", c.Token, "header", c.AuthorizationHeader(), "raw", fmt.Sprintf("%+v", c))
		text.Info("forwarding", "credential", c, "token", c.Token, "struct", struct{ C Credential }{c})
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
			fmt.Fprintf(&logs, verb+"\n", c)
			fmt.Fprintf(&logs, verb+"\n", &c)
		}
		j, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		logs.Write(j)
		wrapped := fmt.Errorf("forward request %s with %v: %w", req.RequestID, c, errors.New("upstream reset"))
		log.Error("forward failed", "err", wrapped, "credential_id", c.ID)
		fmt.Fprintf(&logs, "%v %+v\n", wrapped, wrapped)
	}
	log.Error("mint failed", "err", mintErr)
	fmt.Fprintf(&logs, "%v %+v %#v\n", mintErr, mintErr, mintErr)
	fmt.Fprintf(&logs, "%v %+v %#v\n", key, selfSigned, imp)
	log.Info("minters", "key", key, "selfSigned", fmt.Sprintf("%+v", selfSigned))

	out := logs.String()
	var secrets []string
	for _, c := range creds {
		secrets = append(secrets, c.Token.Reveal())
	}
	secrets = append(secrets, bearers...)
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Fatalf("a token appears in the output:\n%s", out)
		}
		if i := strings.LastIndexByte(s, '.'); i > 0 && strings.Contains(out, s[i+1:]) {
			t.Fatalf("a JWT signature appears in the output:\n%s", out)
		}
	}
	pk := testPrivateKey(t)
	for _, s := range []string{pk.D.String(), pk.Primes[0].String(), "PRIVATE KEY"} {
		if strings.Contains(out, s) {
			t.Fatalf("private key material appears in the output")
		}
	}
	// The output is useful: it names the credentials by id, without the token.
	for _, c := range creds {
		if !strings.Contains(out, c.ID) {
			t.Errorf("credential id %s missing from the logs", c.ID)
		}
	}
	for _, want := range []string{`"request_id":"req-canary"`, `"decision_id":"dec-canary"`, "upstream credential minted", "upstream credential reused", "PERMISSION_DENIED"} {
		if !strings.Contains(out, want) {
			t.Errorf("logs lack %s", want)
		}
	}
}
