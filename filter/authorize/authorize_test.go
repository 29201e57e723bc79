package authorize

import (
	"errors"
	"strings"
	"testing"

	"github.com/jitgate/jitgate/filter/bqapi"
	"github.com/jitgate/jitgate/filter/masking"
)

func allow() Response {
	return Response{
		Version: Version, DecisionID: "d-1", Decision: Allow,
		Identity:   &Identity{AgentID: "agent-a", Issuer: "https://issuer"},
		Credential: &Credential{Authorization: "Bearer upstream-secret", ID: "cred-1", ExpiresAtUnix: 1},
	}
}

func TestRequestRoundTrip(t *testing.T) {
	max := int64(1000)
	in := Request{RequestID: "r", Token: "t", Client: Client{Address: "127.0.0.1:1", UserAgent: "ua"},
		Call: Call{API: "jobs.query", Method: "POST", Project: "p"},
		Query: QueryFromSpec(&bqapi.QuerySpec{SQL: "SELECT 1", DefaultDataset: &bqapi.DatasetReference{DatasetID: "d"},
			MaximumBytesBilled: &max, JobID: "job-1"})}
	b, err := in.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	out, err := ParseRequest(b)
	if err != nil {
		t.Fatal(err)
	}
	if out.Version != Version || out.Query.SQL != "SELECT 1" || out.Query.DefaultDataset.DatasetID != "d" ||
		*out.Query.MaximumBytesBilled != 1000 || out.Query.ClientJobID != "job-1" || out.Token != "t" {
		t.Fatalf("round trip lost data: %+v %+v", out, out.Query)
	}
}

func TestParseRequestRejects(t *testing.T) {
	for name, doc := range map[string]string{
		"old version":   `{"version":"jitgate.dev/authorize/v0","call":{"api":"jobs.query","method":"POST"}}`,
		"unknown field": `{"version":"` + Version + `","call":{"api":"jobs.query","method":"POST"},"sudo":true}`,
		"no call":       `{"version":"` + Version + `"}`,
		"not JSON":      `<html>`,
	} {
		if _, err := ParseRequest([]byte(doc)); !errors.Is(err, ErrContract) {
			t.Errorf("%s: err = %v, want ErrContract", name, err)
		}
	}
}

func TestResponseValidation(t *testing.T) {
	if err := allow().Validate(); err != nil {
		t.Fatalf("valid allow rejected: %v", err)
	}
	for name, mutate := range map[string]func(*Response){
		"wrong version":          func(r *Response) { r.Version = "v0" },
		"no decision id":         func(r *Response) { r.DecisionID = "" },
		"unknown decision":       func(r *Response) { r.Decision = "maybe" },
		"allow no credential":    func(r *Response) { r.Credential = nil },
		"allow empty bearer":     func(r *Response) { r.Credential.Authorization = "Bearer " },
		"allow not bearer":       func(r *Response) { r.Credential.Authorization = "Basic abc" },
		"allow header injection": func(r *Response) { r.Credential.Authorization = "Bearer a\r\nx-evil: 1" },
		"allow no identity":      func(r *Response) { r.Identity = nil },
		"allow no expiry":        func(r *Response) { r.Credential.ExpiresAtUnix = 0 },
		"deny with credential":   func(r *Response) { r.Decision = Deny; r.Status = 403; r.Reason = "x" },
		"deny bad status":        func(r *Response) { r.Decision = Deny; r.Credential = nil; r.Status = 200; r.Reason = "x" },
		"deny no reason":         func(r *Response) { r.Decision = Deny; r.Credential = nil; r.Status = 401 },
	} {
		r := allow()
		c := *r.Credential
		r.Credential = &c
		mutate(&r)
		err := r.Validate()
		if !errors.Is(err, ErrContract) {
			t.Errorf("%s: err = %v, want ErrContract", name, err)
		} else if strings.Contains(err.Error(), "upstream-secret") {
			t.Errorf("%s: error leaks the credential: %v", name, err)
		}
	}
}

func TestResponseRoundTrip(t *testing.T) {
	b, err := allow().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	r, err := ParseResponse(b)
	if err != nil {
		t.Fatal(err)
	}
	if r.Credential.Authorization != "Bearer upstream-secret" || r.Identity.AgentID != "agent-a" {
		t.Fatalf("%+v", r)
	}
	deny := Response{Version: Version, DecisionID: "d", Decision: Deny, Status: 401, Reason: "token_expired", Message: "expired"}
	if _, err := deny.Marshal(); err != nil {
		t.Fatal(err)
	}
	// The deciding policy travels with the decision and survives the filter's strict decoder.
	deny = Response{Version: Version, DecisionID: "d", Decision: Deny, Status: 403, Reason: "table_denied", Message: "denied",
		Policy: &PolicyRef{Name: "analysts", Version: "sha256:0123456789abcdef", Bundle: "sha256:fedcba9876543210"}}
	pb, err := deny.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if r, err := ParseResponse(pb); err != nil || *r.Policy != *deny.Policy {
		t.Fatalf("policy round trip: %+v %v", r.Policy, err)
	}
	if _, err := ParseResponse(append(b, []byte(" {}")...)); !errors.Is(err, ErrContract) {
		t.Fatalf("trailing data accepted: %v", err)
	}
}

func TestMaskingValidation(t *testing.T) {
	good := allow()
	good.Masking = &Masking{Rules: []masking.Rule{{Path: []int{1, 0}, Action: masking.Hash}},
		Detectors: []string{"email"}, HashKey: "c2VjcmV0LWtleQ=="}
	if err := good.Validate(); err != nil {
		t.Fatalf("valid masking rejected: %v", err)
	}
	p, err := good.Masking.Plan()
	if err != nil || p.Key.Len() != len("secret-key") || len(p.Rules) != 1 || p.Detectors[0] != "email" {
		t.Fatalf("Plan() = %+v, %v", p, err)
	}
	for name, mutate := range map[string]func(*Response){
		"no path":        func(r *Response) { r.Masking.Rules[0].Path = nil },
		"negative path":  func(r *Response) { r.Masking.Rules[0].Path = []int{-1} },
		"unknown action": func(r *Response) { r.Masking.Rules[0].Action = "scramble" },
		"hash no key":    func(r *Response) { r.Masking.HashKey = "" },
		"key not base64": func(r *Response) { r.Masking.HashKey = "%%%" },
		"deny with masks": func(r *Response) {
			*r = Response{Version: Version, DecisionID: "d", Decision: Deny, Status: 403, Reason: "x", Masking: r.Masking}
		},
	} {
		r := allow()
		r.Masking = &Masking{Rules: []masking.Rule{{Path: []int{0}, Action: masking.Hash}}, HashKey: "a2V5"}
		mutate(&r)
		if err := r.Validate(); !errors.Is(err, ErrContract) {
			t.Errorf("%s: err = %v, want ErrContract", name, err)
		}
	}
}
