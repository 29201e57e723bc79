package identity

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// maxMetadataBytes caps a discovery document or key set; go-oidc reads bodies unbounded.
const maxMetadataBytes = 1 << 20

// keySetTransport sits under go-oidc's RemoteKeySet for one issuer. go-oidc refetches the
// JWKS whenever a token names an unknown kid or fails to verify, with no rate limit, so a
// flood of junk tokens would become a flood of requests to the IdP. Within minInterval of
// the last fetch this transport answers with the last key set instead of going out. It
// also keeps the last key set it fetched (latest), so a failed verification can be
// reported as ErrUnknownKey rather than ErrBadSignature, and so a key go-oidc still caches
// but the issuer no longer publishes can be refused (see issuer.checkKeyPublished).
type keySetTransport struct {
	base        http.RoundTripper
	minInterval time.Duration
	now         func() time.Time

	mu          sync.Mutex
	lastAttempt time.Time

	latest atomic.Pointer[keySet] // last key set fetched with 200 OK; nil before that
}

// keySet is one JWKS document as fetched; it is never modified after it is stored.
type keySet struct {
	fetched time.Time
	body    []byte
	header  http.Header
	kids    map[string]bool
	// keys are the keys go-jose can parse (others are skipped, as go-oidc does); used to
	// check tokens without a kid.
	keys []jose.JSONWebKey
}

var errKeySetThrottled = errors.New("key set fetch failed recently; not retrying yet")

func (t *keySetTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.mu.Lock()
	if !t.dueLocked() {
		t.mu.Unlock()
		ks := t.latest.Load()
		if ks == nil {
			return nil, errKeySetThrottled
		}
		return &http.Response{
			Status: "200 OK", StatusCode: http.StatusOK,
			Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: ks.header.Clone(), Body: io.NopCloser(bytes.NewReader(ks.body)),
			ContentLength: int64(len(ks.body)), Request: req,
		}, nil
	}
	t.lastAttempt = t.now()
	t.mu.Unlock()

	resp, err := t.base.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	body, err := readCapped(resp.Body)
	if err != nil {
		return nil, err
	}
	if ks, err := parseKeySet(body); err == nil {
		ks.header, ks.fetched = resp.Header.Clone(), t.now()
		t.latest.Store(ks)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	return resp, nil
}

// due reports whether a request would go out to the issuer rather than be answered from
// the last key set.
func (t *keySetTransport) due() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.dueLocked()
}

func (t *keySetTransport) dueLocked() bool {
	return t.lastAttempt.IsZero() || t.now().Sub(t.lastAttempt) >= t.minInterval
}

// knownKey reports whether kid was in the last key set fetched.
func (t *keySetTransport) knownKey(kid string) bool {
	ks := t.latest.Load()
	return ks != nil && ks.kids[kid]
}

// refresh fetches the key set from jwksURL through client (whose transport is t, so the
// throttle applies and a good answer becomes latest). It reports why no new key set was
// stored; the previous one, if any, stays in use.
func (t *keySetTransport) refresh(ctx context.Context, client *http.Client, jwksURL string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, jwksURL, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	body, err := readCapped(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", jwksURL, resp.Status)
	}
	if _, err := parseKeySet(body); err != nil {
		return fmt.Errorf("GET %s: %w", jwksURL, err)
	}
	return nil
}

// parseKeySet reads a JWKS document. Every key's kid is recorded; keys go-jose cannot
// parse (unsupported kty or alg) are skipped rather than failing the set, like go-oidc.
func parseKeySet(jwks []byte) (*keySet, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(jwks, &set); err != nil {
		return nil, errors.New("response is not a JSON Web Key Set")
	}
	ks := &keySet{body: jwks, kids: make(map[string]bool, len(set.Keys))}
	for _, raw := range set.Keys {
		var meta struct {
			Kid string `json:"kid"`
		}
		if err := json.Unmarshal(raw, &meta); err != nil {
			return nil, errors.New("response is not a JSON Web Key Set")
		}
		ks.kids[meta.Kid] = true
		var key jose.JSONWebKey
		if err := json.Unmarshal(raw, &key); err == nil && key.Valid() && key.IsPublic() {
			ks.keys = append(ks.keys, key)
		}
	}
	return ks, nil
}

// verifies reports whether the compact JWS raw verifies with any key of the set (how
// go-oidc treats a token without a kid).
func (ks *keySet) verifies(raw string, algorithms []string) bool {
	algs := make([]jose.SignatureAlgorithm, len(algorithms))
	for n, a := range algorithms {
		algs[n] = jose.SignatureAlgorithm(a)
	}
	jws, err := jose.ParseSigned(raw, algs)
	if err != nil {
		return false
	}
	for n := range ks.keys {
		if _, err := jws.Verify(&ks.keys[n]); err == nil {
			return true
		}
	}
	return false
}

// cappedTransport refuses response bodies larger than maxMetadataBytes.
type cappedTransport struct{ base http.RoundTripper }

func (t cappedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := readCapped(resp.Body)
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	return resp, nil
}

func readCapped(rc io.ReadCloser) ([]byte, error) {
	defer rc.Close()
	body, err := io.ReadAll(io.LimitReader(rc, maxMetadataBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	if len(body) > maxMetadataBytes {
		return nil, fmt.Errorf("response larger than %d bytes", maxMetadataBytes)
	}
	return body, nil
}
