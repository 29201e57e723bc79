package identity

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// maxMetadataBytes caps a discovery document or key set; go-oidc reads bodies unbounded.
const maxMetadataBytes = 1 << 20

// keySetTransport sits under go-oidc's RemoteKeySet for one issuer. go-oidc refetches the
// JWKS whenever a token names an unknown kid or fails to verify, with no rate limit, so a
// flood of junk tokens would become a flood of requests to the IdP. Within minInterval of
// the last fetch this transport answers with the last key set instead of going out. It
// also remembers the key ids it saw, so a failed verification can be reported as
// ErrUnknownKey rather than ErrBadSignature.
type keySetTransport struct {
	base        http.RoundTripper
	minInterval time.Duration

	mu          sync.Mutex
	lastAttempt time.Time
	lastBody    []byte // last key set fetched with 200 OK
	lastHeader  http.Header
	kids        map[string]bool
}

var errKeySetThrottled = errors.New("key set fetch failed recently; not retrying yet")

func (t *keySetTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.mu.Lock()
	if !t.lastAttempt.IsZero() && time.Since(t.lastAttempt) < t.minInterval {
		body, header := t.lastBody, t.lastHeader
		t.mu.Unlock()
		if body == nil {
			return nil, errKeySetThrottled
		}
		return &http.Response{
			Status: "200 OK", StatusCode: http.StatusOK,
			Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: header.Clone(), Body: io.NopCloser(bytes.NewReader(body)),
			ContentLength: int64(len(body)), Request: req,
		}, nil
	}
	t.lastAttempt = time.Now()
	t.mu.Unlock()

	resp, err := t.base.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	body, err := readCapped(resp.Body)
	if err != nil {
		return nil, err
	}
	if kids, ok := keyIDs(body); ok {
		t.mu.Lock()
		t.lastBody, t.lastHeader, t.kids = body, resp.Header.Clone(), kids
		t.mu.Unlock()
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	return resp, nil
}

// knownKey reports whether kid was in the last key set fetched.
func (t *keySetTransport) knownKey(kid string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.kids[kid]
}

func keyIDs(jwks []byte) (map[string]bool, bool) {
	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(jwks, &set); err != nil {
		return nil, false
	}
	kids := make(map[string]bool, len(set.Keys))
	for _, k := range set.Keys {
		kids[k.Kid] = true
	}
	return kids, true
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
