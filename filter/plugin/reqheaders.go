package plugin

import (
	"strings"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"

	"github.com/jitgate/jitgate/filter/bqapi"
)

// The request headers an agent may not send as they are. Refused (in
// OnHttpRequestHeaders, before anything else is read):
//   - a second value of a header the filter decides on (also joined with a comma, as
//     Envoy joins repeated content-type headers), or an empty method override: the
//     filter would judge one value while Envoy or BigQuery might use another;
//   - header names with an underscore: a front end may read x_goog_user_project as
//     x-goog-user-project, past the stripping below (Envoy's listener rejects them too);
//   - x-jitgate-* (the gateway's own headers: an agent sending one is spoofing it),
//     other spellings of a method override, and upload protocol headers.
//
// Stripped (at forward time, with the agent's credentials): headers that steer billing,
// quota, identity or Envoy itself. Standard clients send x-goog-user-project when a
// quota project is configured, so refusing it would break them; the others are never
// needed upstream. None of their values is judged, so none may reach BigQuery.

// decisionHeaders are read by the filter to judge a call; each may appear once.
// (x-goog-fieldmask belongs to the masking stage, mask.go; authorization may repeat:
// every value is removed, and the first is the identity the control plane verifies.)
var decisionHeaders = []string{bqapi.MethodOverrideHeader, "content-type", "content-encoding", "content-length"}

// strippedHeaders never go upstream; neither does any header starting with
// strippedPrefix.
var strippedHeaders = []string{
	"x-goog-user-project",            // bills and charges quota to another project
	"x-goog-iam-authorization-token", // legacy IAM credential headers
	"x-goog-iam-authority-selector",
	"cookie",
}

// strippedPrefix: x-envoy-* request headers tell Envoy's router how to retry and time
// out the upstream call (a retried jobs.insert could run DML twice under one decision),
// and Envoy trusts them from clients it considers internal. Envoy's own (such as
// x-envoy-internal) are of no use to BigQuery either.
const strippedPrefix = "x-envoy-"

// checkRequestHeaders refuses what the comment above lists.
func checkRequestHeaders() *bqapi.Rejection {
	hs, err := proxywasm.GetHttpRequestHeaders()
	if err != nil {
		return bqapi.Reject(bqapi.ReasonInternal, "the gateway could not read the request headers")
	}
	seen := make(map[string]int, len(decisionHeaders))
	for _, kv := range hs {
		name := strings.ToLower(kv[0])
		switch {
		case strings.HasPrefix(name, ":"):
			continue
		case strings.Contains(name, "_"):
			return bqapi.Reject(bqapi.ReasonAmbiguousHeader, "header names with an underscore are not accepted through the gateway; use dashes")
		case strings.HasPrefix(name, "x-jitgate-"):
			return bqapi.Reject(bqapi.ReasonForbiddenHeader, "x-jitgate-* headers are the gateway's own and cannot be sent by an agent")
		case name == "x-http-method" || name == "x-method-override":
			return bqapi.Reject(bqapi.ReasonForbiddenHeader, name+" is not accepted; the gateway honours X-HTTP-Method-Override only")
		case strings.HasPrefix(name, "x-goog-upload-"):
			return bqapi.Reject(bqapi.ReasonUploadEndpoint, "upload protocol headers are not allowed through the gateway")
		case name == bqapi.MethodOverrideHeader && strings.TrimSpace(kv[1]) == "":
			return bqapi.Reject(bqapi.ReasonAmbiguousHeader, "X-HTTP-Method-Override is empty; send the method, or leave the header out")
		case name == "content-type" && strings.Contains(kv[1], ","):
			// Envoy joins repeated inline headers such as content-type with commas (a
			// joined method override is refused as an unknown method by Classify).
			return bqapi.Reject(bqapi.ReasonAmbiguousHeader, "the header "+name+" carries more than one value; send it once")
		}
		for _, d := range decisionHeaders {
			if name == d {
				if seen[d]++; seen[d] > 1 {
					return bqapi.Reject(bqapi.ReasonAmbiguousHeader, "the header "+d+" is sent more than once; the gateway decides on it, so send it once")
				}
			}
		}
	}
	return nil
}

// stripAgentHeaders removes strippedHeaders and every x-envoy-* header.
func stripAgentHeaders() error {
	hs, err := proxywasm.GetHttpRequestHeaders()
	if err != nil {
		return err
	}
	names := append([]string(nil), strippedHeaders...)
	for _, kv := range hs {
		if name := strings.ToLower(kv[0]); strings.HasPrefix(name, strippedPrefix) {
			names = append(names, name)
		}
	}
	for _, name := range names {
		if err := removeRequestHeader(name); err != nil {
			return err
		}
	}
	return nil
}
