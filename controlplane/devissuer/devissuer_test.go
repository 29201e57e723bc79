package devissuer_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/jitgate/jitgate/controlplane/devissuer"
)

func start(t *testing.T, opts devissuer.Options) *devissuer.Issuer {
	t.Helper()
	iss, err := devissuer.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = iss.Close() })
	return iss
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func fetchJWKS(t *testing.T, iss *devissuer.Issuer) jose.JSONWebKeySet {
	t.Helper()
	var set jose.JSONWebKeySet
	getJSON(t, iss.URL()+devissuer.JWKSPath, &set)
	return set
}

// verifyWithJWKS checks a token the way a relying party would: parse, find the kid in the
// published key set, verify, decode the claims.
func verifyWithJWKS(t *testing.T, iss *devissuer.Issuer, token string) (map[string]any, error) {
	t.Helper()
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.RS256, jose.ES256})
	if err != nil {
		return nil, err
	}
	set := fetchJWKS(t, iss)
	keys := set.Key(jws.Signatures[0].Header.KeyID)
	if len(keys) != 1 {
		return nil, errors.New("kid not published")
	}
	payload, err := jws.Verify(keys[0])
	if err != nil {
		return nil, err
	}
	var claims map[string]any
	return claims, json.Unmarshal(payload, &claims)
}

func TestServesDiscoveryAndJWKS(t *testing.T) {
	for _, alg := range []string{devissuer.RS256, devissuer.ES256} {
		t.Run(alg, func(t *testing.T) {
			iss := start(t, devissuer.Options{Algorithm: alg})
			var doc struct {
				Issuer  string   `json:"issuer"`
				JWKSURI string   `json:"jwks_uri"`
				Algs    []string `json:"id_token_signing_alg_values_supported"`
			}
			getJSON(t, iss.URL()+devissuer.DiscoveryPath, &doc)
			if doc.Issuer != iss.URL() || doc.JWKSURI != iss.URL()+devissuer.JWKSPath || !slices.Equal(doc.Algs, []string{alg}) {
				t.Fatalf("discovery document = %+v", doc)
			}
			set := fetchJWKS(t, iss)
			if len(set.Keys) != 1 || set.Keys[0].KeyID != iss.KeyIDs()[0] || set.Keys[0].Algorithm != alg {
				t.Fatalf("JWKS = %+v", set)
			}
			if !set.Keys[0].IsPublic() {
				t.Fatal("JWKS publishes a private key")
			}
			if iss.DiscoveryRequests() != 1 || iss.JWKSRequests() != 1 {
				t.Fatalf("request counters = %d, %d", iss.DiscoveryRequests(), iss.JWKSRequests())
			}
		})
	}
}

func TestMintHasAgentClaims(t *testing.T) {
	iss := start(t, devissuer.Options{})
	token, err := iss.Mint("agent-7", []string{"analysts", "pii-readers"}, time.Minute, "jitgate")
	if err != nil {
		t.Fatal(err)
	}
	claims, err := verifyWithJWKS(t, iss, token)
	if err != nil {
		t.Fatal(err)
	}
	now := float64(time.Now().Unix())
	if claims["iss"] != iss.URL() || claims["sub"] != "agent-7" || claims["aud"] != "jitgate" {
		t.Fatalf("claims = %v", claims)
	}
	if g, _ := json.Marshal(claims["groups"]); string(g) != `["analysts","pii-readers"]` {
		t.Fatalf("groups = %s", g)
	}
	for name, want := range map[string]float64{"iat": now, "nbf": now, "exp": now + 60} {
		if got, _ := claims[name].(float64); got < want-2 || got > want+2 {
			t.Errorf("%s = %v, want about %v", name, claims[name], want)
		}
	}
	if _, err := iss.Mint("", nil, time.Minute, "jitgate"); err == nil {
		t.Error("Mint without agent succeeded")
	}
}

func TestKeyFileKeepsKidAcrossRestarts(t *testing.T) {
	for _, alg := range []string{devissuer.RS256, devissuer.ES256} {
		t.Run(alg, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "issuer.pem")
			first := start(t, devissuer.Options{KeyFile: path, Algorithm: alg})
			token, err := first.Mint("agent", nil, time.Hour, "jitgate")
			if err != nil {
				t.Fatal(err)
			}
			if err := first.Close(); err != nil {
				t.Fatal(err)
			}
			if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("key file: %v, %v", fi, err)
			}

			second := start(t, devissuer.Options{KeyFile: path}) // algorithm follows the file
			if second.Algorithm() != alg || !slices.Equal(second.KeyIDs(), first.KeyIDs()) {
				t.Fatalf("restarted issuer: alg %s kids %v, want %s %v", second.Algorithm(), second.KeyIDs(), alg, first.KeyIDs())
			}
			if _, err := verifyWithJWKS(t, second, token); err != nil {
				t.Fatalf("token from before the restart: %v", err)
			}
		})
	}
	t.Run("algorithm mismatch", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "issuer.pem")
		start(t, devissuer.Options{KeyFile: path, Algorithm: devissuer.ES256})
		if _, err := devissuer.Start(devissuer.Options{KeyFile: path, Algorithm: devissuer.RS256}); err == nil || !strings.Contains(err.Error(), "ES256") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("garbage file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "issuer.pem")
		if err := os.WriteFile(path, []byte("not a key"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := devissuer.Start(devissuer.Options{KeyFile: path}); err == nil {
			t.Fatal("started with a garbage key file")
		}
	})
}

func TestRotatePublishesOldKeyUntilDropped(t *testing.T) {
	iss := start(t, devissuer.Options{})
	old, err := iss.Mint("agent", nil, time.Hour, "jitgate")
	if err != nil {
		t.Fatal(err)
	}
	kid, err := iss.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	if ids := iss.KeyIDs(); len(ids) != 2 || ids[1] != kid || ids[0] == kid {
		t.Fatalf("kids after rotate = %v (new %s)", ids, kid)
	}
	fresh, err := iss.Mint("agent", nil, time.Hour, "jitgate")
	if err != nil {
		t.Fatal(err)
	}
	if got := headerOf(t, fresh)["kid"]; got != kid {
		t.Fatalf("new token kid = %v, want %s", got, kid)
	}
	if _, err := verifyWithJWKS(t, iss, old); err != nil {
		t.Fatalf("old token while its key is published: %v", err)
	}
	iss.DropOldKeys()
	if _, err := verifyWithJWKS(t, iss, old); err == nil {
		t.Fatal("old token verifies after its key was dropped")
	}
	if _, err := verifyWithJWKS(t, iss, fresh); err != nil {
		t.Fatal(err)
	}
}

func TestRefusesNonLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "192.0.2.1:0", "[::]:0"} {
		if _, err := devissuer.Start(devissuer.Options{Addr: addr}); !errors.Is(err, devissuer.ErrNotLoopback) {
			t.Errorf("Start(%q) err = %v, want ErrNotLoopback", addr, err)
		}
	}
}

func headerOf(t *testing.T, token string) map[string]any {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	return h
}

func TestMintWithBadTokens(t *testing.T) {
	iss := start(t, devissuer.Options{})
	current := iss.KeyIDs()[0]
	mint := func(c devissuer.Claims, o devissuer.MintOptions) string {
		t.Helper()
		token, err := iss.MintWith(c, o)
		if err != nil {
			t.Fatal(err)
		}
		return token
	}
	base := devissuer.Claims{Subject: "agent", Audience: []string{"jitgate"}}

	none := mint(base, devissuer.MintOptions{Algorithm: "none"})
	if h := headerOf(t, none); h["alg"] != "none" || !strings.HasSuffix(none, ".") {
		t.Errorf("alg none token: header %v, token ends %q", h, none[len(none)-1:])
	}
	hs := mint(base, devissuer.MintOptions{Algorithm: "HS256", HMACSecret: iss.PublicKeyPEM()})
	if h := headerOf(t, hs); h["alg"] != "HS256" || h["kid"] != current {
		t.Errorf("HS256 header = %v", h)
	}
	if _, err := iss.MintWith(base, devissuer.MintOptions{Algorithm: "HS256"}); err == nil {
		t.Error("HS256 without a secret succeeded")
	}
	if _, err := verifyWithJWKS(t, iss, mint(base, devissuer.MintOptions{CorruptSignature: true})); err == nil {
		t.Error("corrupted signature verifies")
	}
	if h := headerOf(t, mint(base, devissuer.MintOptions{KeyID: "nope"})); h["kid"] != "nope" {
		t.Errorf("KeyID override: header %v", h)
	}
	if h := headerOf(t, mint(base, devissuer.MintOptions{OmitKeyID: true})); h["kid"] != nil {
		t.Errorf("OmitKeyID: header %v", h)
	}
	unpublished := mint(base, devissuer.MintOptions{UnpublishedKey: true})
	if kid := headerOf(t, unpublished)["kid"]; kid == current || kid == "" {
		t.Errorf("unpublished key kid = %v", kid)
	}
	if _, err := verifyWithJWKS(t, iss, unpublished); err == nil {
		t.Error("token signed with an unpublished key verifies")
	}

	claims, err := verifyWithJWKS(t, iss, mint(devissuer.Claims{
		Subject: "agent", Audience: []string{"a", "b"},
		Extra: map[string]any{"groups": "solo", "repository": "org/repo"},
	}, devissuer.MintOptions{Omit: []string{"nbf", "exp"}}))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := claims["nbf"]; ok {
		t.Error("nbf not omitted")
	}
	if _, ok := claims["exp"]; ok {
		t.Error("exp not omitted")
	}
	if claims["groups"] != "solo" || claims["repository"] != "org/repo" || len(claims["aud"].([]any)) != 2 {
		t.Errorf("claims = %v", claims)
	}
}
