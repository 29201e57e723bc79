package identity

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"
)

// maxTokenBytes bounds the work spent on one presented token; real ID tokens, even with
// many groups, are a few KiB.
const maxTokenBytes = 32 << 10

// unverifiedToken is what is read from a token before its signature is checked: only
// enough to choose the issuer's verifier and to explain a rejection. Nothing here is
// trusted; go-oidc checks all of it again.
type unverifiedToken struct {
	alg, kid, iss string
}

// peek decodes the header and the iss claim of a compact JWS without verifying it.
func peek(raw string) (unverifiedToken, error) {
	if len(raw) > maxTokenBytes {
		return unverifiedToken{}, newError(ErrMalformed, "", "token is longer than %d bytes", maxTokenBytes)
	}
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return unverifiedToken{}, newError(ErrMalformed, "", "not a signed JWT (want 3 dot-separated parts, got %d)", len(parts))
	}
	var header struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	if err := decodeSegment(parts[0], &header); err != nil {
		return unverifiedToken{}, newError(ErrMalformed, "", "header: %v", err)
	}
	var claims struct {
		Iss string `json:"iss"`
	}
	if err := decodeSegment(parts[1], &claims); err != nil {
		return unverifiedToken{}, newError(ErrMalformed, "", "claims: %v", err)
	}
	return unverifiedToken{alg: header.Alg, kid: header.Kid, iss: claims.Iss}, nil
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return fmt.Errorf("not unpadded base64url")
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("not a JSON object of the expected shape")
	}
	return nil
}

// verifiedClaims holds the claims of a token whose signature and issuer go-oidc checked.
type verifiedClaims map[string]json.RawMessage

// time reads a NumericDate claim; ok is false when it is absent.
func (c verifiedClaims) time(name string) (t time.Time, ok bool, err error) {
	raw, present := c[name]
	if !present || string(raw) == "null" {
		return time.Time{}, false, nil
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil {
		return time.Time{}, false, fmt.Errorf("claim %q is not a number", name)
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 1<<53 {
		return time.Time{}, false, fmt.Errorf("claim %q is not a valid time", name)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true, nil
}

// string reads a string claim; ok is false when it is absent.
func (c verifiedClaims) string(name string) (s string, ok bool, err error) {
	raw, present := c[name]
	if !present || string(raw) == "null" {
		return "", false, nil
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false, fmt.Errorf("claim %q is not a string", name)
	}
	return s, true, nil
}

// strings reads a claim that is either one string or a list of strings (both shapes occur
// for groups across IdPs); absent means nil.
func (c verifiedClaims) strings(name string) ([]string, error) {
	raw, present := c[name]
	if !present || string(raw) == "null" {
		return nil, nil
	}
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		if one == "" {
			return nil, nil
		}
		return []string{one}, nil
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("claim %q is neither a string nor a list of strings", name)
	}
	out := list[:0]
	for _, s := range list {
		if s != "" {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}
