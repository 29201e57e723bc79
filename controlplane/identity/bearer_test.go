package identity_test

import (
	"errors"
	"net/http"
	"testing"

	"github.com/jitgate/jitgate/controlplane/identity"
)

func TestBearerToken(t *testing.T) {
	const tok = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"
	tests := []struct {
		header string
		want   string
		err    error
	}{
		{"Bearer " + tok, tok, nil},
		{"bearer " + tok, tok, nil},
		{"BEARER " + tok, tok, nil},
		{"  Bearer   " + tok + "  ", tok, nil},
		{"Bearer abc+/~_-.==", "abc+/~_-.==", nil},
		{"", "", identity.ErrMissing},
		{"   ", "", identity.ErrMissing},
		{"Bearer", "", identity.ErrMissing},
		{"Bearer    ", "", identity.ErrMissing},
		{"Basic dXNlcjpwYXNz", "", identity.ErrMalformed},
		{"Bearer" + tok, "", identity.ErrMalformed},
		{tok, "", identity.ErrMalformed},
		{"Bearer a b", "", identity.ErrMalformed},
		{"Bearer a, Bearer b", "", identity.ErrMalformed},
		{"Bearer a,b", "", identity.ErrMalformed},
		{"Bearer ===", "", identity.ErrMalformed},
		{"Bearer a\tb", "", identity.ErrMalformed},
	}
	for _, tc := range tests {
		got, err := identity.BearerToken(tc.header)
		if got != tc.want || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("BearerToken(%q) = %q, %v; want %q, %v", tc.header, got, err, tc.want, tc.err)
		}
	}
}

func TestBearerTokenFromHeader(t *testing.T) {
	h := http.Header{}
	if _, err := identity.BearerTokenFromHeader(h); !errors.Is(err, identity.ErrMissing) {
		t.Errorf("no header: %v", err)
	}
	h.Add("Authorization", "Bearer one")
	if got, err := identity.BearerTokenFromHeader(h); got != "one" || err != nil {
		t.Errorf("one header: %q, %v", got, err)
	}
	h.Add("Authorization", "Bearer two")
	if _, err := identity.BearerTokenFromHeader(h); !errors.Is(err, identity.ErrMalformed) || identity.Reason(err) != identity.ReasonMalformed {
		t.Errorf("two headers: %v", err)
	}
}
