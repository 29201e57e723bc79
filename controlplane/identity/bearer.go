package identity

import (
	"net/http"
	"strings"
)

// BearerToken extracts the token from an Authorization header value ("Bearer <token>",
// scheme case-insensitive, RFC 6750). An empty value or an empty token is ErrMissing; any
// other scheme, several credentials ("Bearer a, Bearer b", "Bearer a b") or characters
// outside the b64token alphabet are ErrMalformed.
func BearerToken(value string) (string, error) {
	value = strings.TrimSpace(value)
	if value == "" {
		return "", &Error{Kind: ErrMissing, Detail: "empty Authorization header"}
	}
	scheme, token, _ := strings.Cut(value, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", &Error{Kind: ErrMalformed, Detail: "Authorization header is not a Bearer credential"}
	}
	token = strings.TrimLeft(token, " ")
	if token == "" {
		return "", &Error{Kind: ErrMissing, Detail: "empty bearer token"}
	}
	if !isB64Token(token) {
		return "", &Error{Kind: ErrMalformed, Detail: "bearer token has characters outside the b64token alphabet (several credentials?)"}
	}
	return token, nil
}

// BearerTokenFromHeader is BearerToken for the request's single Authorization header;
// more than one Authorization header is ErrMalformed.
func BearerTokenFromHeader(h http.Header) (string, error) {
	values := h.Values("Authorization")
	switch len(values) {
	case 0:
		return "", &Error{Kind: ErrMissing, Detail: "no Authorization header"}
	case 1:
		return BearerToken(values[0])
	default:
		return "", &Error{Kind: ErrMalformed, Detail: "more than one Authorization header"}
	}
}

// isB64Token reports whether s matches RFC 6750's b64token:
// 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func isB64Token(s string) bool {
	body := strings.TrimRight(s, "=")
	if body == "" {
		return false
	}
	for i := 0; i < len(body); i++ {
		c := body[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/':
		default:
			return false
		}
	}
	return true
}
