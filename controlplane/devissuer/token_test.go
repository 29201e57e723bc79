package devissuer_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jitgate/jitgate/controlplane/devissuer"
)

func postToken(t *testing.T, url, contentType, body string) (int, []byte) {
	t.Helper()
	resp, err := http.Post(url+devissuer.TokenPath, contentType, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.Bytes()
}

func TestTokenEndpointMints(t *testing.T) {
	iss := start(t, devissuer.Options{Audience: "gw-test"})
	code, body := postToken(t, iss.URL(), "application/json", `{"agent":"etl-bot","groups":["analysts","etl"],"ttl":"90s"}`)
	if code != 200 {
		t.Fatalf("POST %s = %d %s", devissuer.TokenPath, code, body)
	}
	var tr devissuer.TokenResponse
	if err := json.Unmarshal(body, &tr); err != nil {
		t.Fatal(err)
	}
	claims, err := verifyWithJWKS(t, iss, tr.Token)
	if err != nil {
		t.Fatal(err)
	}
	groups, _ := claims["groups"].([]any)
	if claims["sub"] != "etl-bot" || claims["aud"] != "gw-test" || claims["iss"] != iss.URL() || len(groups) != 2 {
		t.Errorf("claims = %v", claims)
	}
	if exp := int64(claims["exp"].(float64)); exp != tr.ExpiresAt.Unix() || time.Until(tr.ExpiresAt) > 90*time.Second {
		t.Errorf("exp %d, expiresAt %s", exp, tr.ExpiresAt)
	}

	_, body = postToken(t, iss.URL(), "application/json", `{"agent":"a","audience":"other"}`)
	_ = json.Unmarshal(body, &tr)
	if claims, err := verifyWithJWKS(t, iss, tr.Token); err != nil || claims["aud"] != "other" {
		t.Errorf("audience override: %v %v", claims, err)
	}
}

func TestTokenEndpointRejects(t *testing.T) {
	iss := start(t, devissuer.Options{})
	tests := []struct {
		name, contentType, body string
		want                    int
	}{
		{"no agent", "application/json", `{"groups":["x"]}`, 400},
		{"bad ttl", "application/json", `{"agent":"a","ttl":"forever"}`, 400},
		{"ttl too long", "application/json", `{"agent":"a","ttl":"48h"}`, 400},
		{"unknown field", "application/json", `{"agent":"a","admin":true}`, 400},
		{"form post from a browser", "text/plain", `{"agent":"a"}`, 415},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code, body := postToken(t, iss.URL(), tt.contentType, tt.body); code != tt.want {
				t.Errorf("= %d %s, want %d", code, body, tt.want)
			}
		})
	}
	if code, _ := func() (int, []byte) {
		req, _ := http.NewRequest("GET", iss.URL()+devissuer.TokenPath, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}(); code != http.StatusMethodNotAllowed {
		t.Errorf("GET %s = %d", devissuer.TokenPath, code)
	}
}

// TestTokenEndpointLoopbackOnly: the handler refuses non-loopback callers and rebinding
// Host headers even when mounted behind another server.
func TestTokenEndpointLoopbackOnly(t *testing.T) {
	iss := start(t, devissuer.Options{})
	for _, tc := range []struct{ remote, host string }{
		{"192.0.2.7:4000", "127.0.0.1:18002"},
		{"127.0.0.1:4000", "evil.example:18002"},
	} {
		req := httptest.NewRequest("POST", devissuer.TokenPath, strings.NewReader(`{"agent":"a"}`))
		req.RemoteAddr, req.Host = tc.remote, tc.host
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		iss.Handler().ServeHTTP(rec, req)
		if rec.Code != http.StatusForbidden {
			t.Errorf("remote %s host %s = %d %s, want 403", tc.remote, tc.host, rec.Code, rec.Body)
		}
	}
}
