package identity

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error Verify and BearerToken return wraps exactly one of them
// (test with errors.Is); Reason maps them to stable codes. None of them, and no message
// built on them, ever contains the raw token.
var (
	// ErrMissing: no token was presented.
	ErrMissing = errors.New("no bearer token")
	// ErrMalformed: the credential is not a compact JWS carrying a JSON claim set.
	ErrMalformed = errors.New("malformed token")
	// ErrExpired: exp is in the past by more than the allowed clock skew.
	ErrExpired = errors.New("token expired")
	// ErrNotYetValid: nbf or iat is in the future by more than the allowed clock skew.
	ErrNotYetValid = errors.New("token not yet valid")
	// ErrWrongAudience: aud holds none of the issuer's accepted audiences.
	ErrWrongAudience = errors.New("token audience not accepted")
	// ErrUnknownIssuer: iss names no configured issuer.
	ErrUnknownIssuer = errors.New("token issuer not trusted")
	// ErrBadSignature: the signature does not verify with the key the token names (or,
	// without a kid, with any of the issuer's keys).
	ErrBadSignature = errors.New("token signature invalid")
	// ErrAlgorithmNotAllowed: alg is none, HMAC, or not in the issuer's algorithms.
	ErrAlgorithmNotAllowed = errors.New("token algorithm not allowed")
	// ErrUnknownKey: the kid is not in the issuer's key set, even after refetching it, or
	// the token was signed with a cached key the issuer no longer publishes (see
	// Options.KeyMaxAge).
	ErrUnknownKey = errors.New("token signing key unknown")
	// ErrInvalidClaims: a required claim (exp, the agent claim) is missing or a claim has
	// the wrong type (e.g. groups that are not strings).
	ErrInvalidClaims = errors.New("token claims invalid")
	// ErrIssuerUnavailable: the issuer's discovery document or key set cannot be fetched
	// right now. Verification fails closed; retrying later may succeed.
	ErrIssuerUnavailable = errors.New("token issuer unavailable")
)

// Reason codes, stable for audit records, logs and metrics labels.
const (
	ReasonMissing             = "missing_token"
	ReasonMalformed           = "malformed_token"
	ReasonExpired             = "token_expired"
	ReasonNotYetValid         = "token_not_yet_valid"
	ReasonWrongAudience       = "wrong_audience"
	ReasonUnknownIssuer       = "unknown_issuer"
	ReasonBadSignature        = "bad_signature"
	ReasonAlgorithmNotAllowed = "algorithm_not_allowed"
	ReasonUnknownKey          = "unknown_key"
	ReasonInvalidClaims       = "invalid_claims"
	ReasonIssuerUnavailable   = "issuer_unavailable"
	// ReasonInternal is for an error that wraps none of the sentinels (a bug).
	ReasonInternal = "internal_error"
)

var reasons = []struct {
	err    error
	reason string
}{
	{ErrMissing, ReasonMissing},
	{ErrMalformed, ReasonMalformed},
	{ErrExpired, ReasonExpired},
	{ErrNotYetValid, ReasonNotYetValid},
	{ErrWrongAudience, ReasonWrongAudience},
	{ErrUnknownIssuer, ReasonUnknownIssuer},
	{ErrBadSignature, ReasonBadSignature},
	{ErrAlgorithmNotAllowed, ReasonAlgorithmNotAllowed},
	{ErrUnknownKey, ReasonUnknownKey},
	{ErrInvalidClaims, ReasonInvalidClaims},
	{ErrIssuerUnavailable, ReasonIssuerUnavailable},
}

// Reason returns the short stable code for err ("token_expired", "unknown_key", ...), ""
// for nil, and "internal_error" for an error that is not one of this package's.
func Reason(err error) string {
	if err == nil {
		return ""
	}
	for _, r := range reasons {
		if errors.Is(err, r.err) {
			return r.reason
		}
	}
	return ReasonInternal
}

// Error is the error Verify returns: a sentinel (Kind) plus context safe to log.
type Error struct {
	// Kind is one of the sentinel errors above.
	Kind error
	// Issuer is the configured issuer the token was checked against; empty when the token
	// was rejected before an issuer was chosen.
	Issuer string
	// Detail says what exactly was wrong. It never holds the token; claim values taken
	// from an unverified token are quoted and truncated.
	Detail string
}

func (e *Error) Error() string {
	msg := "identity: " + e.Kind.Error()
	if e.Issuer != "" {
		msg += fmt.Sprintf(" (issuer %q)", e.Issuer)
	}
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return msg
}

// Unwrap returns Kind, so errors.Is(err, ErrExpired) works.
func (e *Error) Unwrap() error { return e.Kind }

func newError(kind error, issuer, format string, args ...any) *Error {
	return &Error{Kind: kind, Issuer: issuer, Detail: fmt.Sprintf(format, args...)}
}

// untrusted quotes a value read from an unverified token for an error message, capped so
// an attacker cannot flood logs.
func untrusted(s string) string {
	const max = 80
	if len(s) > max {
		s = s[:max] + "..."
	}
	return fmt.Sprintf("%q", s)
}
