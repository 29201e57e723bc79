package plugin

import (
	"strconv"
	"strings"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/jitgate/jitgate/filter/bqapi"
	"github.com/jitgate/jitgate/filter/config"
	"github.com/jitgate/jitgate/filter/reqbody"
	"github.com/jitgate/jitgate/policies"
)

// bodyUse says what the filter does with a request body it buffers.
type bodyUse uint8

const (
	bodyNone   bodyUse = iota // not buffered: passes through
	bodyOpaque                // buffered up to the limit, forwarded unread (jobs.cancel)
	bodyQuery                 // jobs.query / jobs.insert: decoded
	bodyForm                  // POST + X-HTTP-Method-Override: GET/DELETE: form parameters
)

// httpContext handles one HTTP stream.
type httpContext struct {
	types.DefaultHttpContext
	plugin *pluginContext
	cfg    *config.Config // snapshot at stream start; nil means not configured
	// bundle is the policy bundle of cfg (snapshot at stream start; nil without one).
	bundle *policies.Bundle

	ex              Exchange
	body            bodyUse
	contentEncoding string
	buffering       bool // waiting for the end of the request body
	replied         bool // a local reply was sent: never send another, never forward
	awaiting        bool // the authorize callout is in flight: the request stays paused
	// pendingDoc is the in-flight authorize callout's document, kept (token included) only
	// until its answer, to abandon it if the stream ends first (authorize.AbandonPath).
	pendingDoc []byte
	done       bool // OnHttpStreamDone ran: the stream is gone, nothing more to send
	forwarded  bool // the control plane allowed it and the request was resumed

	// The response (jobs.go): resp says whether the filter holds it; replyPassing is set
	// once a local reply's own headers pass the response path, so its body may follow,
	// while the upstream response it replaced never does.
	resp         respState
	respSeen     bool // the upstream response's headers arrived (later ones are Envoy's)
	respEncoding string
	replyPassing bool
	// mask is the allowed call's masking instruction (mask.go); nil: no masking.
	mask *maskState
	// released is the body the agent gets once the response is recorded (the upstream
	// bytes, or the masked body), and releasedEncoding its Content-Encoding.
	released         []byte
	releasedEncoding string

	// caller holds what the authorize callout needs from the request headers, including
	// the agent's token until the callout is dispatched.
	caller       caller
	tokenMissing bool

	// decodedBodyBytes is the size of a read request body after inflating (the policy
	// limit applies to both sizes, as the configuration's limit does).
	decodedBodyBytes int
}

// Exchange returns what the filter knows about this request so far.
func (h *httpContext) Exchange() *Exchange { return &h.ex }

// OnHttpRequestHeaders classifies the call and decides whether its body must be read.
func (h *httpContext) OnHttpRequestHeaders(_ int, endOfStream bool) (action types.Action) {
	defer h.recoverInto(&action, "request-headers")
	h.plugin.fault("request-headers")
	if h.cfg == nil {
		return h.reject(bqapi.Reject(bqapi.ReasonNotConfigured, "filter not configured: the gateway has no valid filter configuration"))
	}
	if h.cfg.PolicyVersion != "" && h.bundle == nil {
		// Policies are enforced but this configuration carries no bundle to check them
		// with: fail closed rather than trust the callout alone.
		return h.reject(bqapi.Reject(bqapi.ReasonNotConfigured, "filter not configured: the gateway has no valid policy bundle for policy version "+headerSafe(h.cfg.PolicyVersion)))
	}
	method := header(":method")
	// A repeated or empty X-HTTP-Method-Override is refused by checkRequestHeaders (the
	// single-value getter returns only the first of repeated headers, and Envoy forwards
	// them all).
	call, rej := bqapi.Classify(method, header(bqapi.MethodOverrideHeader), header(":path"))
	h.ex.Call = call
	if rej != nil {
		return h.reject(rej)
	}
	// After classifying (so the log line names the call), before anything is decided.
	if rej := checkRequestHeaders(); rej != nil {
		return h.reject(rej)
	}
	h.captureCaller()

	switch {
	case call.API.HasQueryBody():
		if endOfStream {
			return h.reject(bqapi.Reject(bqapi.ReasonMissingBody, call.API.String()+" needs a JSON request body"))
		}
		h.body = bodyQuery
	case endOfStream || !carriesBody(method):
		// GET/DELETE bodies are not read (BigQuery ignores them), but they stay paused
		// with the headers until the control plane answers.
		return h.allow()
	case call.Overridden && call.Method != "POST":
		ct := strings.ToLower(header("content-type"))
		if !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
			return h.reject(bqapi.Reject(bqapi.ReasonMethodOverrideBody, "a POST overridden to "+call.Method+" may only carry form-encoded parameters"))
		}
		h.body = bodyForm
	default:
		h.body = bodyOpaque
	}
	if cl := header("content-length"); cl != "" {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n > h.cfg.MaxRequestBodyBytes {
			return h.reject(reqbody.TooLarge(h.cfg.MaxRequestBodyBytes))
		}
	}
	h.contentEncoding = header("content-encoding")
	h.buffering = true
	return types.ActionPause
}

// OnHttpRequestBody buffers the body (pausing until the end of the stream), enforcing
// the size limit on every frame, then decodes it.
func (h *httpContext) OnHttpRequestBody(bodySize int, endOfStream bool) (action types.Action) {
	defer h.recoverInto(&action, "request-body")
	h.plugin.fault("request-body")
	if !h.buffering {
		return h.passThrough()
	}
	if int64(bodySize) > h.cfg.MaxRequestBodyBytes {
		return h.reject(reqbody.TooLarge(h.cfg.MaxRequestBodyBytes))
	}
	if !endOfStream {
		return types.ActionPause
	}
	h.buffering = false
	h.ex.RequestBodyBytes = bodySize
	var raw []byte
	if bodySize > 0 {
		b, err := proxywasm.GetHttpRequestBody(0, bodySize)
		if err != nil {
			return h.reject(bqapi.Reject(bqapi.ReasonInternal, "the gateway could not read the request body"))
		}
		raw = b
	}
	if h.body == bodyOpaque {
		return h.allow()
	}
	decoded, rej := reqbody.Decode(h.contentEncoding, raw, h.cfg.MaxRequestBodyBytes)
	if rej != nil {
		return h.reject(rej)
	}
	h.decodedBodyBytes = len(decoded)
	switch h.body {
	case bodyQuery:
		spec, rej := bqapi.DecodeBody(h.ex.Call.API, decoded)
		if rej != nil {
			return h.reject(rej)
		}
		h.ex.Query = spec
	case bodyForm:
		if rej := h.ex.Call.Params.MergeForm(string(decoded)); rej != nil {
			return h.reject(rej)
		}
	}
	// The body is forwarded exactly as received.
	return h.allow()
}

// OnHttpRequestTrailers refuses trailers that arrive before a body the gateway must
// read has ended: the body would otherwise go upstream unread.
func (h *httpContext) OnHttpRequestTrailers(int) (action types.Action) {
	defer h.recoverInto(&action, "request-trailers")
	h.plugin.fault("request-trailers")
	if h.buffering && !h.replied {
		return h.reject(bqapi.Reject(bqapi.ReasonUnexpectedTrailers, "request trailers are not supported on calls whose body the gateway reads"))
	}
	return h.passThrough()
}

// passThrough is the action for request data the filter does not read: it follows the
// headers, which go upstream only once the control plane allowed the call. Returning
// Continue earlier would release the paused headers too.
func (h *httpContext) passThrough() types.Action {
	if h.forwarded && !h.replied {
		return types.ActionContinue
	}
	return types.ActionPause
}

// OnHttpResponseHeaders records the upstream status and names the control plane's
// decision (x-jitgate-decision-id) for the agent. Every response to an allowed call is
// held (paused) until it is read, masked when the decision says so (mask.go), and
// recorded by the control plane (jobs.go, respreport.go). The filter's own local
// replies also pass through here and must be left alone (a denial carries the header
// already).
func (h *httpContext) OnHttpResponseHeaders(_ int, endOfStream bool) (action types.Action) {
	defer h.recoverInto(&action, "response-headers")
	if h.replied {
		h.replyPassing = true
		return types.ActionContinue
	}
	h.plugin.fault("response-headers")
	h.ex.ResponseStatus = responseHeader(":status")
	if a := h.ex.Authz; a != nil && a.DecisionID != "" {
		if err := proxywasm.ReplaceHttpResponseHeader(DecisionIDHeader, a.DecisionID); err != nil {
			proxywasm.LogWarnf("jitgate: could not set %s: %v", DecisionIDHeader, err)
		}
	}
	if a := h.ex.Authz; a != nil && a.NotAnalysed != "" {
		if err := proxywasm.ReplaceHttpResponseHeader(AnalysisHeader, "not analysed: "+a.NotAnalysed); err != nil {
			proxywasm.LogWarnf("jitgate: could not set %s: %v", AnalysisHeader, err)
		}
	}
	if h.forwarded && !h.respSeen {
		h.respSeen = true
		return h.holdResponse(endOfStream)
	}
	// Not read: passes through. Also when these headers replace a response being held
	// (Envoy's own reply when its buffer limit is exceeded, say).
	h.resp = respPassing
	return types.ActionContinue
}

// OnHttpResponseBody buffers a held response until the end of the stream, enforcing the
// response limit on every frame, then reads it (masks it, reports its job); other
// responses pass through.
func (h *httpContext) OnHttpResponseBody(bodySize int, endOfStream bool) (action types.Action) {
	defer h.recoverInto(&action, "response-body")
	if h.replied {
		return h.afterReply()
	}
	h.plugin.fault("response-body")
	switch h.resp {
	case respBuffering:
	case respReporting:
		return types.ActionPause
	default:
		return types.ActionContinue
	}
	if int64(bodySize) > h.cfg.MaxResponseBodyBytes {
		return h.withhold(responseTooLarge(h.cfg.MaxResponseBodyBytes), "body of "+strconv.Itoa(bodySize)+" bytes")
	}
	if !endOfStream {
		return types.ActionPause
	}
	return h.readResponse(bodySize)
}

// OnHttpResponseTrailers refuses trailers on a response the filter holds: it reads a
// response whole, at the end of its body, and BigQuery's JSON responses carry none.
func (h *httpContext) OnHttpResponseTrailers(int) (action types.Action) {
	defer h.recoverInto(&action, "response-trailers")
	if h.replied {
		return h.afterReply()
	}
	h.plugin.fault("response-trailers")
	switch h.resp {
	case respBuffering:
		return h.withhold(badUpstream("the response carries trailers"), "trailers")
	case respReporting:
		return types.ActionPause
	}
	return types.ActionContinue
}

// afterReply is the action for response data once a local reply was sent: the reply's
// own body passes; what is left of an upstream response it replaced never does.
func (h *httpContext) afterReply() types.Action {
	if h.replyPassing {
		return types.ActionContinue
	}
	return types.ActionPause
}

// OnHttpStreamDone writes the request's one log line.
func (h *httpContext) OnHttpStreamDone() {
	defer func() {
		if r := recover(); r != nil {
			proxywasm.LogCriticalf("jitgate: panic while logging a request: %s", panicText(r))
		}
	}()
	h.caller = caller{}
	h.done = true
	h.plugin.fault("stream-done")
	if h.awaiting && h.pendingDoc != nil {
		h.abandonAuthorize()
	}
	proxywasm.LogInfo(logLine(&h.ex))
}

// forward is the single point where a request is let through: the control plane
// allowed it and its credential is attached (onAuthorizeResponse). Resuming is the last
// step, so a failure before it can still answer locally.
func (h *httpContext) forward() {
	h.ex.Decision = DecisionAllow
	h.observe()
	h.forwarded = true
	if err := proxywasm.ResumeHttpRequest(); err != nil {
		h.forwarded = false
		proxywasm.LogCriticalf("jitgate: could not resume the request: %v", err)
		h.reject(bqapi.Reject(bqapi.ReasonInternal, "the gateway could not forward this request"))
	}
}

// deny answers the request with the control plane's denial, once.
func (h *httpContext) deny(d denial) {
	if h.replied {
		return
	}
	h.replied = true
	h.buffering = false
	h.ex.Decision = DecisionDeny
	h.observe()
	sendDenial(d)
}

// reject answers the request locally with the BigQuery error document, once.
func (h *httpContext) reject(rej *bqapi.Rejection) types.Action {
	if h.replied {
		return types.ActionPause
	}
	h.replied = true
	h.buffering = false
	h.ex.Decision = DecisionDeny
	h.ex.Rejection = rej
	h.observe()
	decisionID := ""
	if a := h.ex.Authz; a != nil {
		decisionID = a.DecisionID // allowed, then failed: name the decision for support
	}
	sendRejection(rej, decisionID)
	return types.ActionPause
}

func (h *httpContext) observe() {
	if h.plugin.opts.observe != nil {
		h.plugin.opts.observe(&h.ex)
	}
}

// recoverInto turns a panic in a callback into a fail-closed reply (unless one was
// already sent) so a bug never forwards a request or leaves it hanging.
func (h *httpContext) recoverInto(action *types.Action, callback string) {
	r := recover()
	if r == nil {
		return
	}
	proxywasm.LogCriticalf("jitgate: recovered panic in %s: %s", callback, panicText(r))
	if h.replied {
		*action = types.ActionPause
		return
	}
	*action = h.reject(bqapi.Reject(bqapi.ReasonInternal, "the gateway failed while handling this request"))
}

// responseHeader returns a response header, "" when absent.
func responseHeader(name string) string {
	v, err := proxywasm.GetHttpResponseHeader(name)
	if err != nil {
		return ""
	}
	return v
}

// header returns a request header, "" when absent.
func header(name string) string {
	v, err := proxywasm.GetHttpRequestHeader(name)
	if err != nil {
		return ""
	}
	return v
}

func carriesBody(method string) bool {
	return method == "POST" || method == "PUT" || method == "PATCH"
}
