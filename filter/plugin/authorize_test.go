package plugin

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/jitgate/jitgate/filter/authorize"
	"github.com/jitgate/jitgate/filter/bqapi"
)

// The control plane's side of the authorize callout, as the tests play it.

const (
	// mintedSecret is the canary: the secret part of the minted upstream credential.
	mintedSecret     = "minted-upstream-credential-c4n4ry"
	mintedCredential = "Bearer " + mintedSecret
	allowDecisionID  = "dec-allow-1"
)

// answer is one response of the control plane to a callout.
type answer struct {
	headers [][2]string // nil: no response at all (timeout, connection failure)
	body    []byte
}

func ok200(body []byte) *answer {
	return &answer{headers: [][2]string{{":status", "200"}, {"content-type", "application/json"}}, body: body}
}

func allowResponse() authorize.Response {
	return authorize.Response{
		Version: authorize.Version, DecisionID: allowDecisionID, Decision: authorize.Allow,
		Identity:   &authorize.Identity{AgentID: "agent-7", Issuer: "https://issuer.test"},
		Credential: &authorize.Credential{Authorization: mintedCredential, ID: "cred-42", ExpiresAtUnix: 1900000000},
	}
}

// allowAnswer is the answer send uses when a test gives none.
func allowAnswer(t testing.TB) *answer {
	t.Helper()
	b, err := allowResponse().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return ok200(b)
}

func denyAnswer(t testing.TB, status int, reason, message string) *answer {
	t.Helper()
	b, err := authorize.Response{
		Version: authorize.Version, DecisionID: "dec-deny-9", Decision: authorize.Deny,
		Status: status, Reason: reason, Message: message,
	}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return ok200(b)
}

// rawJSON encodes v without the contract's checks, to build documents that break it.
func rawJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const queryPath = "/bigquery/v2/projects/p/queries"

// TestAuthorizeAllow: the callout carries what the control plane needs, and an allow
// replaces every agent credential with the minted one before resuming.
func TestAuthorizeAllow(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host := configuredHost(t, vm)
		o := send(t, host, request{method: "POST", path: queryPath + "?location=EU",
			headers: [][2]string{
				{"x-request-id", "req-123"}, {"user-agent", "gl-python/3.12 gccl/3.27"},
				{"x-goog-api-key", "agent-api-key"}, {"proxy-authorization", "Basic cHJveHk="},
				{"authorization", "Bearer second-agent-token"}, // a duplicate must not survive either
			},
			chunks: withBody(`{"query":"SELECT name FROM d.t WHERE id = @id","useLegacySql":false,"queryParameters":[{"name":"id","parameterType":{"type":"INT64"},"parameterValue":{"value":"7"}}],"requestId":"client-req-1"}`),
		})
		wantAllowed(t, o)

		co := o.callout
		if co.Upstream != "jitgate_controlplane" {
			t.Errorf("callout cluster = %q", co.Upstream)
		}
		for k, v := range map[string]string{":method": "POST", ":path": "/v1/authorize", ":authority": "jitgate-controlplane", "content-type": "application/json"} {
			if got := headerValue(co.Headers, k); got != v {
				t.Errorf("callout %s = %q, want %q", k, got, v)
			}
		}
		r := o.authz
		if r.Version != authorize.Version || r.RequestID != "req-123" || r.Token != agentToken ||
			r.Client != (authorize.Client{Address: testClientAddress, UserAgent: "gl-python/3.12 gccl/3.27"}) {
			t.Errorf("callout identity fields = %+v", r)
		}
		if r.Call != (authorize.Call{API: "jobs.query", Method: "POST", Project: "p", Location: "EU"}) {
			t.Errorf("callout call = %+v", r.Call)
		}
		q := r.Query
		if q == nil || q.SQL != "SELECT name FROM d.t WHERE id = @id" || q.LegacySQL || len(q.Parameters) != 1 ||
			*q.Parameters[0].ParameterValue.Value != "7" || q.ClientRequestID != "client-req-1" {
			t.Errorf("callout query = %+v", q)
		}

		up := o.upstreamHeaders
		for _, gone := range []string{"x-goog-api-key", "proxy-authorization"} {
			if v := headerValues(up, gone); len(v) != 0 {
				t.Errorf("%s still goes upstream: %q", gone, v)
			}
		}
		for _, kv := range up {
			if strings.Contains(kv[1], "second-agent-token") || strings.Contains(kv[1], "agent-api-key") {
				t.Errorf("agent credential goes upstream in %s", kv[0])
			}
		}
		if got := headerValue(up, ":path"); got != queryPath+"?location=EU" {
			t.Errorf("path changed: %q", got)
		}
		line := o.logLine(t)
		for _, want := range []string{`decision=allow status=200 decision_id="dec-allow-1" agent="agent-7" credential_id="cred-42"`} {
			if !strings.Contains(line, want) {
				t.Errorf("log line %q lacks %s", line, want)
			}
		}
	})
}

// TestAuthorizeCalloutTarget: the callout goes where the configuration says.
func TestAuthorizeCalloutTarget(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host, status := startHost(t, vm, `{"version":"jitgate.dev/filter/v1","identityOnly":true,"controlPlane":{"cluster":"cp_east","authority":"cp.internal","timeoutMillis":750}}`)
		if status != types.OnPluginStartStatusOK {
			t.Fatal("plugin did not start")
		}
		o := send(t, host, request{method: "GET", path: "/bigquery/v2/projects"})
		wantAllowed(t, o)
		if o.callout.Upstream != "cp_east" || headerValue(o.callout.Headers, ":authority") != "cp.internal" {
			t.Errorf("callout to %q authority %q", o.callout.Upstream, headerValue(o.callout.Headers, ":authority"))
		}
	})
}

// TestAuthorizeGetWithoutBody: a body-less call is held at its headers until the answer.
func TestAuthorizeGetWithoutBody(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host := configuredHost(t, vm)
		o := send(t, host, request{method: "GET", path: "/projects/p/datasets/d/tables/t?location=US"})
		if o.headersAction != types.ActionPause {
			t.Errorf("headers action = %v, want pause until the control plane answers", o.headersAction)
		}
		wantAllowed(t, o)
		if o.authz.Call != (authorize.Call{API: "tables.get", Method: "GET", Project: "p", Dataset: "d", Table: "t", Location: "US"}) || o.authz.Query != nil {
			t.Errorf("callout = %+v query %+v", o.authz.Call, o.authz.Query)
		}
		o = send(t, host, request{method: "GET", path: "/bigquery/v2/projects/p/queries/job_9"})
		wantAllowed(t, o)
		if o.authz.Call.API != "jobs.getQueryResults" || o.authz.Call.JobID != "job_9" {
			t.Errorf("callout call = %+v", o.authz.Call)
		}
	})
}

// TestAuthorizeCarriesSessionAndAllUsers: the control plane learns of sessions and of
// jobs.list allUsers=true from the callout document.
func TestAuthorizeCarriesSessionAndAllUsers(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host := configuredHost(t, vm)
		o := send(t, host, request{method: "GET", path: "/bigquery/v2/projects/p/jobs?allUsers=true"})
		wantAllowed(t, o)
		if o.authz.Call != (authorize.Call{API: "jobs.list", Method: "GET", Project: "p", AllUsers: true}) {
			t.Errorf("callout = %+v", o.authz.Call)
		}
		o = send(t, host, request{method: "POST", path: "/bigquery/v2/projects/p/queries",
			chunks: withBody(`{"query":"SELECT 1","useLegacySql":false,"createSession":true,"connectionProperties":[{"key":"session_id","value":"s-9"}]}`)})
		wantAllowed(t, o)
		if q := o.authz.Query; q == nil || !q.CreateSession || q.SessionID != "s-9" || !q.Session() {
			t.Errorf("callout query = %+v", q)
		}
	})
}

// wantDenied checks a control-plane denial as the agent sees it.
func wantDenied(t *testing.T, o outcome, status int, errReason, rpcStatus, reason string) {
	t.Helper()
	if o.callout == nil {
		t.Fatal("no authorize callout was sent")
	}
	if o.reply == nil {
		t.Fatalf("not denied; stream action %v", o.streamAction)
	}
	if o.forwarded() || o.streamAction != types.ActionPause {
		t.Errorf("a denied request was resumed")
	}
	if int(o.reply.StatusCode) != status {
		t.Errorf("status %d, want %d", o.reply.StatusCode, status)
	}
	h := o.reply.Headers
	if headerValue(h, "content-type") != "application/json" || headerValue(h, DenyReasonHeader) != reason || headerValue(h, DecisionIDHeader) != "dec-deny-9" {
		t.Errorf("reply headers = %q", h)
	}
	if got := headerValue(h, "www-authenticate"); (status == 401) != (got == `Bearer realm="jitgate"`) {
		t.Errorf("www-authenticate = %q on a %d", got, status)
	}
	var doc bqapi.ErrorDocument
	if err := json.Unmarshal(o.reply.Data, &doc); err != nil {
		t.Fatalf("reply is not JSON: %s", o.reply.Data)
	}
	e := doc.Error
	if e.Code != status || e.Status != rpcStatus || len(e.Errors) != 1 || e.Errors[0].Reason != errReason ||
		e.Errors[0].Domain != "global" || e.Errors[0].Message != e.Message {
		t.Errorf("error document = %s", o.reply.Data)
	}
	if !strings.HasPrefix(e.Message, "jitgate: ") || !strings.HasSuffix(e.Message, " ("+reason+") [decision dec-deny-9]") {
		t.Errorf("message = %q", e.Message)
	}
	line := o.logLine(t)
	if want := fmt.Sprintf(" decision=deny reason=%s status=%d decision_id=\"dec-deny-9\"", reason, status); !strings.Contains(line, want) {
		t.Errorf("log line %q lacks %q", line, want)
	}
	noSecrets(t, o)
}

func TestAuthorizeDeny(t *testing.T) {
	type tc struct {
		name                        string
		req                         request
		status                      int
		reason, message             string
		errReason, rpcStatus, wantM string
	}
	get := func(noAuth bool) request {
		return request{method: "GET", path: "/bigquery/v2/projects", noAuth: noAuth}
	}
	cases := []tc{
		{"401 missing token", get(true), 401, "token_missing", "send the agent's OIDC token as a bearer token", "required", "UNAUTHENTICATED",
			"jitgate: send the agent's OIDC token as a bearer token (token_missing) [decision dec-deny-9]"},
		{"401 expired token", get(false), 401, "token_expired", "the agent token expired", "authError", "UNAUTHENTICATED",
			"jitgate: the agent token expired (token_expired) [decision dec-deny-9]"},
		{"403 policy", request{method: "POST", path: queryPath, chunks: withBody(queryBody)}, 403, "policy_denied", "rule no-pii forbids table d.t", "accessDenied", "PERMISSION_DENIED",
			"jitgate: rule no-pii forbids table d.t (policy_denied) [decision dec-deny-9]"},
		{"429 rate", get(false), 429, "rate_limited", "", "rateLimitExceeded", "RESOURCE_EXHAUSTED",
			"jitgate: too many requests (rate_limited) [decision dec-deny-9]"},
		{"503 dependency", get(false), 503, "approvals_unavailable", "the approval service is unavailable", "backendError", "UNAVAILABLE",
			"jitgate: the approval service is unavailable (approvals_unavailable) [decision dec-deny-9]"},
	}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host := configuredHost(t, vm)
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				c.req.answer = denyAnswer(t, c.status, c.reason, c.message)
				o := send(t, host, c.req)
				wantDenied(t, o, c.status, c.errReason, c.rpcStatus, c.reason)
				var doc bqapi.ErrorDocument
				if o.reply == nil || json.Unmarshal(o.reply.Data, &doc) != nil || doc.Error.Message != c.wantM {
					t.Errorf("reply message = %q, want %q", doc.Error.Message, c.wantM)
				}
				if c.req.noAuth && o.authz.Token != "" {
					t.Errorf("token %q sent for a request without Authorization", o.authz.Token)
				}
			})
		}
	})
}

// TestBearerToken: the token is sent raw, without its scheme; anything else is no token.
func TestBearerToken(t *testing.T) {
	for in, want := range map[string]string{
		"Bearer abc.def": "abc.def", "bearer abc": "abc", "BEARER  abc ": "abc",
		"Basic abc": "", "Bearer ": "", "": "", "abc": "",
	} {
		if got := bearerToken(in); got != want {
			t.Errorf("bearerToken(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestControlPlaneFailuresFailClosed: every way the callout can fail answers 503
// backendError (clients retry) and forwards nothing.
func TestControlPlaneFailuresFailClosed(t *testing.T) {
	noCred := allowResponse()
	noCred.Credential = nil
	oldVersion := allowResponse()
	oldVersion.Version = "jitgate.dev/authorize/v0"
	crlf := allowResponse()
	crlf.Credential.Authorization = "Bearer abc\r\nx-injected: 1"
	goodAllow := rawJSON(t, allowResponse())
	cases := []struct {
		name   string
		answer *answer
		detail string
	}{
		{"HTTP 500 (even with an allow body)", &answer{headers: [][2]string{{":status", "500"}}, body: goodAllow}, "(HTTP 500)"},
		{"HTTP 401 from the control plane", &answer{headers: [][2]string{{":status", "401"}}, body: []byte("no")}, "(HTTP 401)"},
		{"no status", &answer{headers: [][2]string{{"content-type", "application/json"}}, body: goodAllow}, "(no response status)"},
		{"timeout: no response", &answer{}, "(no response: timeout or connection failure)"},
		{"empty body", ok200(nil), "(empty response)"},
		{"malformed JSON", ok200([]byte(`{"version":`)), "(invalid response)"},
		{"HTML error page", ok200([]byte(`<html>bad gateway</html>`)), "(invalid response)"},
		{"allow without credential", ok200(rawJSON(t, noCred)), "(invalid response)"},
		{"credential with CRLF", ok200(rawJSON(t, crlf)), "(invalid response)"},
		{"wrong version", ok200(rawJSON(t, oldVersion)), "(invalid response)"},
		{"unknown decision", ok200([]byte(`{"version":"` + authorize.Version + `","decisionId":"d","decision":"pending"}`)), "(invalid response)"},
		{"unknown field", ok200([]byte(strings.TrimSuffix(string(goodAllow), "}") + `,"sudo":true}`)), "(invalid response)"},
	}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host := configuredHost(t, vm)
		for i, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				req := request{method: "GET", path: "/bigquery/v2/projects/p/datasets", answer: c.answer}
				if i%2 == 1 { // half of them on a call whose body was read
					req = request{method: "POST", path: queryPath, chunks: withBody(queryBody), answer: c.answer}
				}
				o := send(t, host, req)
				if o.callout == nil {
					t.Fatal("no callout")
				}
				wantRefused(t, o, bqapi.ReasonControlPlaneUnavailable)
				want := "jitgate: unavailable: the control plane could not authorize this call " + c.detail + " (control-plane-unavailable)"
				var doc bqapi.ErrorDocument
				if json.Unmarshal(o.reply.Data, &doc) != nil || doc.Error.Message != want || doc.Error.Code != 503 ||
					doc.Error.Errors[0].Reason != "backendError" || doc.Error.Status != "UNAVAILABLE" {
					t.Errorf("reply %s, want message %q", o.reply.Data, want)
				}
				if got := headerValues(o.upstreamHeaders, "authorization"); len(got) != 1 || got[0] != "Bearer "+agentToken {
					t.Errorf("request headers were rewritten: authorization %q", got)
				}
				if !strings.Contains(strings.Join(o.allLogs, "\n"), "jitgate: authorize callout failed: ") {
					t.Errorf("failure not logged: %q", o.allLogs)
				}
			})
		}
	})
}

// TestNothingForwardedBeforeTheDecision drives the callbacks one by one: headers, body
// frames and trailers all stay paused while the callout is in flight, whatever the call.
func TestNothingForwardedBeforeTheDecision(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host := configuredHost(t, vm)
		start := func(method, path string, eos bool) uint32 {
			id := host.InitializeHttpContext()
			if a := host.CallOnRequestHeaders(id, [][2]string{{":method", method}, {":path", path}, {"authorization", "Bearer " + agentToken}}, eos); a != types.ActionPause {
				t.Fatalf("headers action = %v, want pause", a)
			}
			return id
		}
		answer := func(id uint32, a *answer) {
			cos := host.GetCalloutAttributesFromContext(id)
			if len(cos) != 1 {
				t.Fatalf("%d callouts, want 1", len(cos))
			}
			host.CallOnHttpCallResponse(cos[0].CalloutID, a.headers, nil, a.body)
		}

		t.Run("query body in frames", func(t *testing.T) {
			id := start("POST", queryPath, false)
			if a := host.CallOnRequestBody(id, []byte(queryBody[:10]), false); a != types.ActionPause {
				t.Fatalf("first frame = %v", a)
			}
			if n := len(host.GetCalloutAttributesFromContext(id)); n != 0 {
				t.Fatalf("callout sent before the body was read")
			}
			if a := host.CallOnRequestBody(id, []byte(queryBody[10:]), true); a != types.ActionPause {
				t.Fatalf("last frame = %v, want pause until the answer", a)
			}
			answer(id, allowAnswer(t))
			if host.GetCurrentHttpStreamAction(id) != types.ActionContinue || host.GetSentLocalResponse(id) != nil {
				t.Fatal("not resumed after the allow")
			}
			if got := string(host.GetCurrentRequestBody(id)); got != queryBody {
				t.Errorf("forwarded body changed: %q", got)
			}
			host.CompleteHttpContext(id)
		})
		t.Run("GET with body and trailers, allowed mid-body", func(t *testing.T) {
			id := start("GET", "/bigquery/v2/projects/p/jobs/j", false)
			if a := host.CallOnRequestBody(id, []byte("ignored"), false); a != types.ActionPause {
				t.Fatalf("body frame while awaiting = %v, want pause (continue would release the headers)", a)
			}
			answer(id, allowAnswer(t))
			if host.GetCurrentHttpStreamAction(id) != types.ActionContinue {
				t.Fatal("not resumed after the allow")
			}
			if a := host.CallOnRequestBody(id, []byte("more"), false); a != types.ActionContinue {
				t.Errorf("body frame after the allow = %v, want continue", a)
			}
			if a := host.CallOnRequestTrailers(id, [][2]string{{"x", "y"}}); a != types.ActionContinue {
				t.Errorf("trailers after the allow = %v, want continue", a)
			}
			host.CompleteHttpContext(id)
		})
		t.Run("trailers while awaiting, then denied", func(t *testing.T) {
			id := start("GET", "/bigquery/v2/projects", false)
			if a := host.CallOnRequestTrailers(id, [][2]string{{"x", "y"}}); a != types.ActionPause {
				t.Fatalf("trailers while awaiting = %v, want pause", a)
			}
			answer(id, denyAnswer(t, 403, "policy_denied", "no"))
			if r := host.GetSentLocalResponse(id); r == nil || r.StatusCode != 403 || host.GetCurrentHttpStreamAction(id) != types.ActionPause {
				t.Fatalf("reply %+v action %v", r, host.GetCurrentHttpStreamAction(id))
			}
			host.CompleteHttpContext(id)
		})
		t.Run("client gone before the answer", func(t *testing.T) {
			before := len(host.GetInfoLogs())
			id := start("GET", "/bigquery/v2/projects", true)
			host.CompleteHttpContext(id)
			logs := host.GetInfoLogs()[before:]
			if len(logs) != 1 || !strings.Contains(logs[0], "decision=incomplete") {
				t.Errorf("log = %q", logs)
			}
		})
	})
}

// TestCalloutPanicFailsClosed: a panic in the callout's callback answers 500 and never
// resumes the request (native only: fault injection needs options.faultAt).
func TestCalloutPanicFailsClosed(t *testing.T) {
	host := configuredHost(t, faultyVM("authorize-response"))
	for _, req := range []request{
		{method: "GET", path: "/bigquery/v2/projects"},
		{method: "POST", path: queryPath, chunks: withBody(queryBody)},
	} {
		o := send(t, host, req)
		wantRefused(t, o, bqapi.ReasonInternal)
		if o.callout == nil {
			t.Error("no callout")
		}
		if !strings.Contains(strings.Join(host.GetCriticalLogs(), "\n"), "recovered panic in authorize-response") {
			t.Errorf("panic not logged: %q", host.GetCriticalLogs())
		}
	}
}

// TestSecretsCanary sends allowed, denied and failed calls with a recognisable agent
// token and minted credential, then searches every log line of every level the filter
// wrote over the whole test, and everything the agent received, for either.
func TestSecretsCanary(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host := configuredHost(t, vm)
		answers := []*answer{
			nil, // allow
			denyAnswer(t, 401, "token_expired", "expired"),
			denyAnswer(t, 403, "policy_denied", "no"),
			ok200([]byte(`{"version":"` + authorize.Version + `","decisionId":"d","decision":"deny","status":403,"reason":"x","credential":{"authorization":"` + mintedCredential + `","id":"c","expiresAtUnix":1}}`)),
			{headers: [][2]string{{":status", "502"}}, body: []byte(mintedCredential)},
		}
		var replies []string
		for _, a := range answers {
			for _, req := range []request{
				{method: "GET", path: "/bigquery/v2/projects/p/jobs/j", answer: a, headers: [][2]string{{"x-goog-api-key", agentToken}}},
				{method: "POST", path: "/projects/p/jobs", answer: a, chunks: withBody(`{"configuration":{"query":{"query":"SELECT 1","useLegacySql":false}}}`)},
			} {
				o := send(t, host, req)
				noSecrets(t, o)
				if o.reply != nil {
					replies = append(replies, string(o.reply.Data), fmt.Sprint(o.reply.Headers))
				}
				replies = append(replies, fmt.Sprint(o.responseHeaders))
			}
		}
		var all []string
		for _, l := range logLevels(host) {
			all = append(all, l...)
		}
		if len(all) < 10 {
			t.Fatalf("only %d log lines: is the canary looking at the right host?", len(all))
		}
		for _, s := range append(all, replies...) {
			if strings.Contains(s, agentToken) || strings.Contains(s, mintedSecret) {
				t.Errorf("secret leaked: %q", s)
			}
		}
	})
}

// TestExchangeHoldsNoSecret: what later stages and observers see of a request holds
// neither the token nor the credential (native: the observer hook).
func TestExchangeHoldsNoSecret(t *testing.T) {
	var seen []string
	vm := newVMContext(options{observe: func(ex *Exchange) {
		seen = append(seen, fmt.Sprintf("%+v %+v %+v", *ex, ex.Authz, ex.Query))
	}})
	host := configuredHost(t, vm)
	wantAllowed(t, send(t, host, request{method: "POST", path: queryPath, chunks: withBody(queryBody)}))
	send(t, host, request{method: "GET", path: "/bigquery/v2/projects", answer: denyAnswer(t, 401, "token_expired", "expired")})
	if len(seen) != 2 {
		t.Fatalf("observed %d exchanges", len(seen))
	}
	for _, s := range seen {
		if strings.Contains(s, agentToken) || strings.Contains(s, mintedSecret) {
			t.Errorf("exchange holds a secret: %s", s)
		}
	}
	if !strings.Contains(seen[0], "cred-42") {
		t.Errorf("exchange lacks the credential id: %s", seen[0])
	}
}

// TestAuthorizeAbandonedWhenTheStreamEnds: Envoy keeps a Wasm filter's pending callout
// running after the agent's stream is gone, so when the stream ends with the authorize
// callout pending (a call held for an approval) the filter tells the control plane to
// stop deciding (the same document, to authorize.AbandonPath), and a late answer is
// dropped. A stream that ends after its answer abandons nothing.
func TestAuthorizeAbandonedWhenTheStreamEnds(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host := configuredHost(t, vm)
		start := func() uint32 {
			id := host.InitializeHttpContext()
			host.CallOnRequestHeaders(id, [][2]string{{":method", "GET"}, {":path", "/bigquery/v2/projects"},
				{"x-request-id", "req-gone"}, {"authorization", "Bearer " + agentToken}}, true)
			return id
		}

		before := len(host.GetInfoLogs())
		id := start()
		host.CompleteHttpContext(id)
		cos := host.GetCalloutAttributesFromContext(id)
		if len(cos) != 2 {
			t.Fatalf("%d callouts, want the authorize call and its abandonment", len(cos))
		}
		if p := headerValue(cos[1].Headers, ":path"); p != authorize.AbandonPath || cos[1].Upstream != cos[0].Upstream ||
			string(cos[1].Body) != string(cos[0].Body) {
			t.Fatalf("second callout %s to %s, body %q; want %s with the pending call's document", p, cos[1].Upstream, cos[1].Body, authorize.AbandonPath)
		}
		if logs := host.GetInfoLogs()[before:]; len(logs) != 1 || !strings.Contains(logs[0], "decision=incomplete authorize=abandoned") {
			t.Errorf("log = %q", logs)
		}
		a := allowAnswer(t)
		host.CallOnHttpCallResponse(cos[0].CalloutID, a.headers, nil, a.body)
		if crit := host.GetCriticalLogs(); len(crit) != 0 {
			t.Errorf("a late answer to an abandoned call: %q", crit)
		}

		id = start()
		a = allowAnswer(t)
		host.CallOnHttpCallResponse(host.GetCalloutAttributesFromContext(id)[0].CalloutID, a.headers, nil, a.body)
		host.CompleteHttpContext(id)
		if n := len(host.GetCalloutAttributesFromContext(id)); n != 1 {
			t.Errorf("a stream ended after its answer made %d callouts, want 1", n)
		}
	})
}
