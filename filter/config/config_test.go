package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseAppliesDefaults(t *testing.T) {
	c, err := Parse([]byte(`{"version":"jitgate.dev/filter/v1"}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxRequestBodyBytes != DefaultMaxRequestBodyBytes || c.MaxResponseBodyBytes != DefaultMaxResponseBodyBytes || c.ControlPlane.Cluster != DefaultControlPlaneCluster ||
		c.ControlPlane.Authority != DefaultControlPlaneAuthority || c.ControlPlane.TimeoutMillis != DefaultControlPlaneTimeout ||
		c.ControlPlane.AuthorizeTimeoutMillis != DefaultControlPlaneTimeout {
		t.Fatalf("defaults not applied: %+v", c)
	}
	c, err = Parse([]byte(`{"version":"jitgate.dev/filter/v1","controlPlane":{"timeoutMillis":3000}}`))
	if err != nil || c.ControlPlane.AuthorizeTimeoutMillis != 3000 {
		t.Fatalf("the authorize timeout defaults to the callout timeout: %+v %v", c.ControlPlane, err)
	}
}

func TestParseRoundTripsMarshal(t *testing.T) {
	in := Config{Version: Version, MaxRequestBodyBytes: 1234, MaxResponseBodyBytes: 5678, ControlPlane: ControlPlane{Cluster: "cp", Authority: "a", TimeoutMillis: 50, AuthorizeTimeoutMillis: 70},
		PolicyVersion: "sha256:0123456789abcdef", PolicyBundle: []byte(`{"apiVersion":"jitgate.dev/bundle/v1","version":"sha256:0123456789abcdef","policies":[]}`)}
	b, err := in.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	out, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out, in) {
		t.Fatalf("round trip: %+v != %+v", out, in)
	}
}

func TestParseRejects(t *testing.T) {
	for _, tc := range []struct{ name, doc, want string }{
		{"empty", ``, "empty"},
		{"not JSON", `version: x`, "invalid character"},
		{"unknown field", `{"version":"jitgate.dev/filter/v1","maxBodyBytes":1}`, "unknown field"},
		{"wrong version", `{"version":"jitgate.dev/filter/v2"}`, "version"},
		{"no version", `{"maxRequestBodyBytes":10}`, "version"},
		{"negative limit", `{"version":"jitgate.dev/filter/v1","maxRequestBodyBytes":-1}`, "maxRequestBodyBytes"},
		{"limit too large", `{"version":"jitgate.dev/filter/v1","maxRequestBodyBytes":1000000000}`, "maxRequestBodyBytes"},
		{"negative response limit", `{"version":"jitgate.dev/filter/v1","maxResponseBodyBytes":-1}`, "maxResponseBodyBytes"},
		{"response limit too large", `{"version":"jitgate.dev/filter/v1","maxResponseBodyBytes":1073741825}`, "maxResponseBodyBytes"},
		{"response limit not an integer", `{"version":"jitgate.dev/filter/v1","maxResponseBodyBytes":1.5}`, "maxResponseBodyBytes"},
		{"timeout too long", `{"version":"jitgate.dev/filter/v1","controlPlane":{"timeoutMillis":600000}}`, "timeoutMillis"},
		{"authorize timeout too long", `{"version":"jitgate.dev/filter/v1","controlPlane":{"authorizeTimeoutMillis":300000}}`, "authorizeTimeoutMillis"},
		{"wrong type", `{"version":"jitgate.dev/filter/v1","maxRequestBodyBytes":"10"}`, "maxRequestBodyBytes"},
		{"trailing data", `{"version":"jitgate.dev/filter/v1"} {}`, "trailing"},
		{"policy version too long", `{"version":"jitgate.dev/filter/v1","policyVersion":"` + strings.Repeat("x", 200) + `"}`, "policyVersion"},
		{"bundle without version", `{"version":"jitgate.dev/filter/v1","policyBundle":{"policies":[]}}`, "policyBundle without policyVersion"},
		{"bundle too large", `{"version":"jitgate.dev/filter/v1","policyVersion":"v","policyBundle":"` + strings.Repeat("x", MaxPolicyBundleBytes) + `"}`, "exceeds"},
		{"bundle not JSON", `{"version":"jitgate.dev/filter/v1","policyVersion":"v","policyBundle":{x}}`, "invalid character"},
		{"selfTest not a boolean", `{"version":"jitgate.dev/filter/v1","selfTest":"true"}`, "selfTest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc))
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrInvalid mentioning %q", err, tc.want)
			}
		})
	}
}

func TestResponseLimitBounds(t *testing.T) {
	for doc, want := range map[string]int64{
		`{"version":"jitgate.dev/filter/v1","maxResponseBodyBytes":1}`:          1,
		`{"version":"jitgate.dev/filter/v1","maxResponseBodyBytes":1073741824}`: MaxAllowedResponseBodyBytes,
		`{"version":"jitgate.dev/filter/v1","maxResponseBodyBytes":0}`:          DefaultMaxResponseBodyBytes,
	} {
		c, err := Parse([]byte(doc))
		if err != nil || c.MaxResponseBodyBytes != want {
			t.Errorf("%s: limit %d err %v, want %d", doc, c.MaxResponseBodyBytes, err, want)
		}
	}
}

func TestResponseExcerptBytes(t *testing.T) {
	for _, tc := range []struct {
		doc  string
		want int
		bad  bool
	}{
		{`{"version":"jitgate.dev/filter/v1"}`, 16 << 10, false},
		{`{"version":"jitgate.dev/filter/v1","responseExcerptBytes":-1}`, 0, false},
		{`{"version":"jitgate.dev/filter/v1","responseExcerptBytes":100}`, 100, false},
		{`{"version":"jitgate.dev/filter/v1","responseExcerptBytes":-2}`, 0, true},
		{`{"version":"jitgate.dev/filter/v1","responseExcerptBytes":16777217}`, 0, true},
	} {
		c, err := Parse([]byte(tc.doc))
		if (err != nil) != tc.bad || (err == nil && c.ExcerptBytes() != tc.want) {
			t.Errorf("%s: %d, %v", tc.doc, c.ExcerptBytes(), err)
		}
	}
}
