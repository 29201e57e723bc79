package devissuer

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// TokenRequest is the body of POST TokenPath.
type TokenRequest struct {
	// Agent becomes the token's sub (the agent id). Required.
	Agent string `json:"agent"`
	// Groups become the groups claim.
	Groups []string `json:"groups,omitempty"`
	// TTL is a Go duration ("10m"); default 10m, at most 24h.
	TTL string `json:"ttl,omitempty"`
	// Audience overrides the issuer's default audience (Options.Audience).
	Audience string `json:"audience,omitempty"`
}

// TokenResponse is the answer of POST TokenPath.
type TokenResponse struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// serveToken mints a token for whoever asks. That is only tolerable because the listener
// is loopback-only; the checks below also keep a web page in a local browser from using it
// (a JSON content type forces a CORS preflight we never answer; the Host check defeats DNS
// rebinding).
func (i *Issuer) serveToken(w http.ResponseWriter, r *http.Request) {
	fail := func(code int, format string, args ...any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": fmt.Sprintf(format, args...)})
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err != nil || !isLoopbackHost(host) {
		fail(http.StatusForbidden, "tokens are minted for loopback callers only")
		return
	}
	if host := hostOnly(r.Host); !isLoopbackHost(host) {
		fail(http.StatusForbidden, "Host %q is not a loopback address", r.Host)
		return
	}
	if ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";"); strings.TrimSpace(ct) != "application/json" {
		fail(http.StatusUnsupportedMediaType, "Content-Type must be application/json")
		return
	}
	var req TokenRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		fail(http.StatusBadRequest, "bad token request: %v", err)
		return
	}
	ttl := DefaultTokenTTL
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil || d <= 0 || d > MaxTokenTTL {
			fail(http.StatusBadRequest, "ttl %q: want a positive duration up to %s, like \"10m\"", req.TTL, MaxTokenTTL)
			return
		}
		ttl = d
	}
	aud := req.Audience
	if aud == "" {
		aud = i.audience
	}
	if strings.TrimSpace(req.Agent) == "" {
		fail(http.StatusBadRequest, "agent is required")
		return
	}
	for _, g := range req.Groups {
		if strings.TrimSpace(g) == "" {
			fail(http.StatusBadRequest, "groups must not contain empty names")
			return
		}
	}
	now := i.now()
	token, err := i.MintWith(Claims{
		Subject: req.Agent, Audience: []string{aud}, Groups: req.Groups,
		IssuedAt: now, NotBefore: now, Expiry: now.Add(ttl),
	}, MintOptions{})
	if err != nil {
		fail(http.StatusInternalServerError, "%v", err)
		return
	}
	writeJSON(w, TokenResponse{Token: token, ExpiresAt: now.Add(ttl).Truncate(time.Second).UTC()})
}

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.Trim(hostport, "[]")
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
