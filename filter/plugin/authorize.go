package plugin

import (
	"errors"
	"strconv"
	"strings"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/jitgate/jitgate/filter/authorize"
	"github.com/jitgate/jitgate/filter/bqapi"
)

// The authorize stage: every call the local rules let through is sent to the control
// plane's /v1/authorize, and stays paused until the answer. Allow swaps the agent's
// credentials for the minted upstream credential and resumes; deny answers locally with
// the decision's status; anything else (no answer, timeout, non-200, a document outside
// the contract, a panic) fails closed. Nothing reaches upstream before the answer.

// caller is what the authorize request needs from the request headers, captured in
// OnHttpRequestHeaders (headers are only guaranteed readable there). token is the
// agent's secret: it lives here only until the callout is dispatched.
type caller struct {
	requestID string
	userAgent string
	address   string
	token     string
}

// captureCaller reads the caller's identity material from the request headers.
func (h *httpContext) captureCaller() {
	h.caller = caller{
		requestID: header("x-request-id"),
		userAgent: header("user-agent"),
		token:     bearerToken(header("authorization")),
	}
	if addr, err := proxywasm.GetProperty([]string{"source", "address"}); err == nil {
		h.caller.address = string(addr)
	}
	h.tokenMissing = h.caller.token == ""
}

// bearerToken strips a case-insensitive "Bearer " prefix. Anything that is not a bearer
// token counts as no token: the control plane answers 401.
func bearerToken(v string) string {
	v = strings.TrimSpace(v)
	const prefix = "bearer "
	if len(v) <= len(prefix) || !strings.EqualFold(v[:len(prefix)], prefix) {
		return ""
	}
	return strings.TrimSpace(v[len(prefix):])
}

// authorizeRequest builds the callout document. It carries the agent's token.
func (h *httpContext) authorizeRequest() authorize.Request {
	c := &h.ex.Call
	return authorize.Request{
		RequestID: h.caller.requestID,
		Token:     h.caller.token,
		Client:    authorize.Client{Address: h.caller.address, UserAgent: h.caller.userAgent},
		Call: authorize.Call{
			API: c.API.String(), Method: c.Method, Project: c.Project, Dataset: c.Dataset,
			Table: c.Table, JobID: c.JobID, Location: c.Params.Location, AllUsers: c.Params.AllUsers,
		},
		Query: authorize.QueryFromSpec(h.ex.Query),
	}
}

// allow is called when the local rules let a call through: it asks the control plane
// and keeps the request paused until the answer (onAuthorizeResponse).
func (h *httpContext) allow() types.Action {
	if h.replied || h.awaiting || h.forwarded {
		return types.ActionPause // never ask twice, never forward from here
	}
	doc, err := h.authorizeRequest().Marshal()
	h.caller.token = "" // the token's only remaining copy is the document below
	if err != nil {
		return h.failClosed("the request could not be encoded", err)
	}
	// The authorize callout may be held open by a hold-mode approval: its own timeout.
	if err := h.callControlPlane(authorize.Path, doc, h.cfg.ControlPlane.AuthorizeTimeoutMillis, h.onAuthorizeResponse); err != nil {
		return h.failClosed("the callout could not be dispatched", err)
	}
	h.awaiting = true
	h.pendingDoc = doc
	return types.ActionPause
}

// abandonAuthorize tells the control plane that the agent's request ended while its
// authorize callout was pending (a call held for an approval, usually): Envoy keeps the
// callout running after the stream is gone, so without this the control plane would go on
// waiting and consume the approval for an answer nobody receives.
func (h *httpContext) abandonAuthorize() {
	doc := h.pendingDoc
	h.pendingDoc = nil
	err := h.callControlPlane(authorize.AbandonPath, doc, h.cfg.ControlPlane.TimeoutMillis, func(int, int, int) {})
	if err != nil {
		proxywasm.LogWarnf("jitgate: could not abandon the pending authorize callout: %v", err)
	}
	h.ex.Abandoned = err == nil
}

// callControlPlane POSTs a JSON document to the control plane's API through its Envoy
// cluster; every callout (authorize, response report) goes through here.
func (h *httpContext) callControlPlane(path string, doc []byte, timeoutMillis uint32, callback func(numHeaders, bodySize, numTrailers int)) error {
	cp := h.cfg.ControlPlane
	headers := [][2]string{
		{":method", "POST"},
		{":path", path},
		{":authority", cp.Authority},
		{"content-type", "application/json"},
	}
	_, err := proxywasm.DispatchHttpCall(cp.Cluster, headers, doc, nil, timeoutMillis, callback)
	return err
}

// onAuthorizeResponse is the callout's callback. Every path ends in exactly one of:
// forward (resume with the minted credential) or a local reply.
func (h *httpContext) onAuthorizeResponse(numHeaders, bodySize, _ int) {
	defer func() {
		if r := recover(); r != nil {
			proxywasm.LogCriticalf("jitgate: recovered panic in authorize-response: %s", panicText(r))
			h.reject(bqapi.Reject(bqapi.ReasonInternal, "the gateway failed while handling this request"))
		}
	}()
	h.awaiting = false
	h.pendingDoc = nil
	if h.done {
		return // the stream ended first (abandoned): nobody to answer
	}
	if h.replied || h.forwarded {
		return // already answered (e.g. refused while the callout was in flight)
	}
	h.plugin.fault("authorize-response")

	resp, detail, err := readAuthorizeResponse(numHeaders, bodySize)
	if detail != "" {
		h.failClosed(detail, err)
		return
	}
	h.ex.Authz = &Authz{DecisionID: headerSafe(resp.DecisionID)}
	if resp.Identity != nil {
		h.ex.Authz.AgentID = resp.Identity.AgentID
	}
	if resp.Decision == authorize.Deny {
		d := denialOf(&resp, h.tokenMissing)
		h.ex.Authz.Status, h.ex.Authz.Reason = d.status, d.reason
		h.deny(d)
		return
	}
	// Allow: Validate guarantees a usable credential and a verified identity. The
	// filter's own check of the policy bundle must allow it too (policy.go).
	if !h.checkPolicy(&resp) {
		resp.Credential = nil // never attached: the call is refused
		return
	}
	// Either side saying the SQL was not analysed is enough to tell the agent.
	h.ex.Authz.NotAnalysed = phraseSafe(resp.NotAnalysed)
	if p := h.ex.Policy; p != nil && p.NotAnalysed != "" && h.ex.Authz.NotAnalysed == "" {
		h.ex.Authz.NotAnalysed = phraseSafe(p.NotAnalysed)
	}
	if err := h.takeMasking(&resp); err != nil {
		resp.Credential = nil
		proxywasm.LogCriticalf("jitgate: could not read the masking instruction: %v", err)
		h.reject(bqapi.Reject(bqapi.ReasonInternal, "the gateway could not read the masking instruction"))
		return
	}
	if h.mask != nil {
		if rej := h.maskedCallShape(); rej != nil {
			resp.Credential = nil
			h.reject(rej)
			return
		}
	}
	h.ex.Authz.CredentialID = resp.Credential.ID
	if err := swapCredential(resp.Credential.Authorization); err != nil {
		resp.Credential = nil
		h.ex.Authz.CredentialID = ""
		proxywasm.LogCriticalf("jitgate: could not attach the upstream credential: %v", err)
		h.reject(bqapi.Reject(bqapi.ReasonInternal, "the gateway could not attach the upstream credential"))
		return
	}
	resp.Credential = nil // the credential now lives only on the upstream request
	if err := stripAgentHeaders(); err != nil {
		proxywasm.LogCriticalf("jitgate: could not strip agent headers: %v", err)
		h.reject(bqapi.Reject(bqapi.ReasonInternal, "the gateway could not prepare the upstream request"))
		return
	}
	if err := h.identityEncoding(); err != nil {
		proxywasm.LogCriticalf("jitgate: could not remove accept-encoding: %v", err)
		h.reject(bqapi.Reject(bqapi.ReasonInternal, "the gateway could not prepare the upstream request"))
		return
	}
	h.forward()
}

// readAuthorizeResponse reads and checks the callout's answer. A non-empty detail means
// the call must fail closed; detail is short and safe to show the agent, err (if any)
// is for the log.
func readAuthorizeResponse(numHeaders, bodySize int) (authorize.Response, string, error) {
	body, detail, err := readCalloutBody(numHeaders, bodySize)
	if detail != "" {
		return authorize.Response{}, detail, err
	}
	resp, err := authorize.ParseResponse(body)
	if err != nil {
		return authorize.Response{}, "invalid response", err
	}
	return resp, "", nil
}

// readCalloutBody reads the body of a control-plane callout's answer, which must be a
// 200 with a non-empty body within the contract's size limit. A non-empty detail says
// why not (short, safe to show the agent); err (if any) is for the log.
func readCalloutBody(numHeaders, bodySize int) ([]byte, string, error) {
	if numHeaders == 0 {
		return nil, "no response: timeout or connection failure", nil
	}
	hs, err := proxywasm.GetHttpCallResponseHeaders()
	if err != nil {
		return nil, "response headers unreadable", err
	}
	status := ""
	for _, kv := range hs {
		if kv[0] == ":status" {
			status = kv[1]
			break
		}
	}
	switch code, err := strconv.Atoi(status); {
	case status == "":
		return nil, "no response status", nil
	case err != nil || code < 100 || code > 999:
		return nil, "invalid response status", nil
	case code != 200:
		return nil, "HTTP " + status, nil
	}
	if bodySize <= 0 {
		return nil, "empty response", nil
	}
	if bodySize > authorize.MaxDocumentBytes {
		return nil, "response too large", nil
	}
	body, err := proxywasm.GetHttpCallResponseBody(0, bodySize)
	if err != nil {
		return nil, "response body unreadable", err
	}
	return body, "", nil
}

// credentialHeaders are every header an agent could carry a credential in. All are
// removed before the minted credential is set, so none of the agent's reaches upstream.
var credentialHeaders = []string{"authorization", "proxy-authorization", "x-goog-api-key"}

// swapCredential removes the agent's credentials and sets the minted one.
func swapCredential(authorization string) error {
	for _, name := range credentialHeaders {
		if err := removeRequestHeader(name); err != nil {
			return err
		}
	}
	if err := proxywasm.ReplaceHttpRequestHeader("authorization", authorization); err != nil {
		return errors.New("setting authorization: " + err.Error())
	}
	return nil
}

// removeRequestHeader removes every value of a request header. Envoy removes them all at
// once; the loop also covers hosts that remove one at a time.
func removeRequestHeader(name string) error {
	for i := 0; ; i++ {
		if _, err := proxywasm.GetHttpRequestHeader(name); errors.Is(err, types.ErrorStatusNotFound) {
			return nil
		} else if err != nil {
			return errors.New("reading " + name + ": " + err.Error())
		}
		if i == 64 {
			return errors.New(name + " could not be removed")
		}
		if err := proxywasm.RemoveHttpRequestHeader(name); err != nil {
			return errors.New("removing " + name + ": " + err.Error())
		}
	}
}

// failClosed answers 503 backendError: the control plane could not authorize the call.
// detail is shown to the agent; err goes to the log only.
func (h *httpContext) failClosed(detail string, err error) types.Action {
	line := "jitgate: authorize callout failed: " + detail
	if err != nil {
		line += ": " + bounded(err.Error())
	}
	if h.caller.requestID != "" {
		line += " request_id=" + strconv.Quote(h.caller.requestID)
	}
	proxywasm.LogWarn(line)
	return h.reject(bqapi.Reject(bqapi.ReasonControlPlaneUnavailable, "the control plane could not authorize this call ("+detail+")"))
}
