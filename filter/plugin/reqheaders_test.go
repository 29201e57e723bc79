package plugin

import (
	"strings"
	"testing"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/jitgate/jitgate/filter/bqapi"
)

// A header the filter decides on, sent twice (or an override sent empty), is refused
// before anything is judged: the filter reads one value, Envoy and BigQuery might use
// another (a POST judged as jobs.insert that BigQuery runs as a GET, say).
func TestRepeatedDecisionHeadersAreRefused(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host := configuredHost(t, vm)
		for name, hs := range map[string][][2]string{
			"two overrides":          {{"x-http-method-override", "POST"}, {"x-http-method-override", "GET"}},
			"empty override first":   {{"x-http-method-override", ""}, {"x-http-method-override", "GET"}},
			"empty override":         {{"x-http-method-override", " "}},
			"two content types":      {{"content-type", "application/json"}, {"Content-Type", "application/x-www-form-urlencoded"}},
			"two content encodings":  {{"content-encoding", "identity"}, {"content-encoding", "gzip"}},
			"joined content types":   {{"content-type", "application/json,application/x-www-form-urlencoded"}},
			"underscore header name": {{"x_goog_user_project", "someone-elses-project"}},
		} {
			t.Run(name, func(t *testing.T) {
				o := send(t, host, request{method: "POST", path: jobsInsertPath, headers: hs, chunks: withBody(insertBody)})
				wantRefused(t, o, bqapi.ReasonAmbiguousHeader)
				if o.callout != nil {
					t.Error("the control plane was asked about an ambiguous request")
				}
			})
		}
	})
}

// Headers that are the gateway's own, or that would take the call somewhere the filter
// does not judge, are refused.
func TestForbiddenAgentHeadersAreRefused(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host := configuredHost(t, vm)
		for _, c := range []struct {
			header [2]string
			reason bqapi.Reason
		}{
			{[2]string{"x-jitgate-decision-id", "forged"}, bqapi.ReasonForbiddenHeader},
			{[2]string{"X-Jitgate-Agent", "someone-else"}, bqapi.ReasonForbiddenHeader},
			{[2]string{"x-http-method", "GET"}, bqapi.ReasonForbiddenHeader},
			{[2]string{"x-method-override", "GET"}, bqapi.ReasonForbiddenHeader},
			{[2]string{"x-goog-upload-protocol", "multipart"}, bqapi.ReasonUploadEndpoint},
		} {
			t.Run(c.header[0], func(t *testing.T) {
				o := send(t, host, request{method: "POST", path: jobsInsertPath, headers: [][2]string{c.header}, chunks: withBody(insertBody)})
				wantRefused(t, o, c.reason)
				if o.callout != nil {
					t.Error("the control plane was asked")
				}
			})
		}
	})
}

// An allowed call goes upstream without the agent's billing, cookie, IAM and Envoy
// control headers (x-envoy-* would set Envoy's retries and timeouts: a retried
// jobs.insert could run DML twice under one decision), while what clients need to send
// (user agent, API client, a single method override) still arrives.
func TestAgentControlHeadersAreStrippedBeforeUpstream(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host := configuredHost(t, vm)
		o := send(t, host, request{method: "POST", path: jobsInsertPath,
			headers: [][2]string{
				{"x-goog-user-project", "someone-elses-project"},
				{"cookie", "SID=agent-cookie"},
				{"cookie", "HSID=second-cookie"},
				{"x-goog-iam-authorization-token", "agent-iam-token"},
				{"x-goog-iam-authority-selector", "agent@example.com"},
				{"x-envoy-retry-on", "5xx,reset"},
				{"x-envoy-max-retries", "5"},
				{"x-envoy-upstream-rq-timeout-ms", "1"},
				{"X-Envoy-Upstream-Rq-Per-Try-Timeout-Ms", "1"},
				{"x-envoy-hedge-on-per-try-timeout", "true"},
				{"user-agent", "gl-python/3.12 gccl/3.40"},
				{"x-goog-api-client", "gl-python/3.12 gccl/3.40"},
				{"content-type", "application/json"},
			},
			chunks: withBody(insertBody),
		})
		wantAllowed(t, o)
		for _, kv := range o.upstreamHeaders {
			name := strings.ToLower(kv[0])
			for _, gone := range []string{"x-goog-user-project", "cookie", "x-goog-iam-authorization-token", "x-goog-iam-authority-selector"} {
				if name == gone {
					t.Errorf("agent header %s goes upstream: %q", kv[0], kv[1])
				}
			}
			if strings.HasPrefix(name, "x-envoy-") {
				t.Errorf("agent header %s goes upstream: %q", kv[0], kv[1])
			}
		}
		for _, kept := range []string{"user-agent", "x-goog-api-client", "content-type"} {
			if len(headerValues(o.upstreamHeaders, kept)) != 1 {
				t.Errorf("%s does not go upstream", kept)
			}
		}

		// Java's single override is judged and goes upstream as sent.
		o = send(t, host, request{method: "POST", path: "/bigquery/v2/projects/p/jobs?alt=json",
			headers: [][2]string{{"x-http-method-override", "GET"}, {"content-type", "application/x-www-form-urlencoded"}, {"x-envoy-max-retries", "3"}},
			chunks:  withBody("allUsers=false&maxResults=10"),
		})
		wantAllowed(t, o)
		if o.authz.Call.API != "jobs.list" || o.authz.Call.Method != "GET" {
			t.Errorf("judged as %s %s", o.authz.Call.Method, o.authz.Call.API)
		}
		if got := headerValues(o.upstreamHeaders, "x-http-method-override"); len(got) != 1 || got[0] != "GET" {
			t.Errorf("upstream override = %q", got)
		}
		if got := headerValues(o.upstreamHeaders, "x-envoy-max-retries"); len(got) != 0 {
			t.Errorf("x-envoy-max-retries goes upstream: %q", got)
		}
	})
}
