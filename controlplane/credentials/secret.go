package credentials

import (
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
)

// Redacted is what a Secret prints instead of its value.
const Redacted = "[REDACTED]"

// Secret holds a credential (an upstream token, a private key in text form) and redacts it
// in every printing path: String, GoString, Format (every verb and flag), MarshalJSON,
// MarshalText and slog.LogValuer. Reveal is the only way to read the value.
//
// The value sits behind a pointer in an unexported field so that even when a Secret is an
// unexported field of another struct (where fmt cannot call its methods), fmt prints an
// address rather than the value, and no conversion such as string(s) compiles. The zero
// Secret is empty.
type Secret struct {
	v *string
}

// NewSecret wraps s.
func NewSecret(s string) Secret { return Secret{v: &s} }

// Reveal returns the secret value. Call it only where the value leaves the process on
// purpose (an Authorization header for BigQuery), never to log or compare.
func (s Secret) Reveal() string {
	if s.v == nil {
		return ""
	}
	return *s.v
}

// IsZero reports whether the secret is empty.
func (s Secret) IsZero() bool { return s.v == nil || *s.v == "" }

// Equal compares two secrets in constant time (for the value's length).
func (s Secret) Equal(o Secret) bool {
	return subtle.ConstantTimeCompare([]byte(s.Reveal()), []byte(o.Reveal())) == 1
}

// String implements fmt.Stringer.
func (s Secret) String() string { return Redacted }

// GoString implements fmt.GoStringer (%#v).
func (s Secret) GoString() string { return `credentials.Secret("` + Redacted + `")` }

// Format implements fmt.Formatter so that every verb and flag (%v %+v %#v %s %q %x %10s ...)
// formats the redaction marker, never the value.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = f.Write([]byte(s.GoString()))
		return
	}
	_, _ = fmt.Fprintf(f, fmt.FormatString(f, verb), Redacted)
}

// MarshalJSON implements json.Marshaler.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }

// MarshalText implements encoding.TextMarshaler (used by JSON map keys, YAML, slog text).
func (s Secret) MarshalText() ([]byte, error) { return []byte(Redacted), nil }

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(Redacted) }

// RedactURL replaces the user info of a URL (user:password, a token) with "redacted", for
// error messages and logs; it does so even when raw does not parse.
func RedactURL(raw string) string {
	if u, err := url.Parse(strings.TrimSpace(raw)); err == nil {
		if u.User == nil {
			return raw
		}
		u.User = url.User("redacted")
		return u.String()
	}
	// Unparseable: drop everything between "//" and the last "@" of the authority.
	start := strings.Index(raw, "//")
	if start < 0 {
		start = -2
	}
	rest := raw[start+2:]
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	if at := strings.LastIndex(rest[:end], "@"); at >= 0 {
		return raw[:start+2] + "redacted" + rest[at:]
	}
	return raw
}
