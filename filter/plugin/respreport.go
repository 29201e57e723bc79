package plugin

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"unicode/utf8"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/jitgate/jitgate/filter/authorize"
	"github.com/jitgate/jitgate/filter/bqapi"
	"github.com/jitgate/jitgate/filter/masking"
)

// The response report: one callout per response of an allowed call (POST
// authorize.ResponsesPath) carrying the job the response names (for the ledger) and a
// summary of what the agent will receive (for the audit record): upstream status, rows,
// masked cells, detector hits, size, sha256 of the released bytes and the start of the
// released (masked) body. It never carries a header, so neither the agent's token nor
// the upstream credential can reach the audit trail through it.

// reportResponse sends the response report; the response stays paused until the answer
// (onResponseReportResponse). shown is the decoded body the agent gets (the masked one
// on masked calls), for the row count and the excerpt.
func (h *httpContext) reportResponse(shown []byte) types.Action {
	a := h.ex.Authz
	if a == nil || a.DecisionID == "" {
		return h.withhold(bqapi.Reject(bqapi.ReasonInternal, "the gateway lost the decision that allowed this call"), "no decision id")
	}
	status, err := strconv.Atoi(h.ex.ResponseStatus)
	if err != nil || status < 100 || status > 999 {
		return h.withhold(badUpstream("the response has no valid status"), "status "+bounded(h.ex.ResponseStatus))
	}
	sum := sha256.Sum256(h.released)
	s := authorize.ResponseSummary{
		Status: status, Bytes: int64(len(h.released)), Digest: "sha256:" + hex.EncodeToString(sum[:]),
		Encoding: headerSafe(h.releasedEncoding),
	}
	if m := h.ex.Masked; m != nil {
		s.Masked, s.Rows, s.CellsMasked, s.DetectorHits = true, int64(m.Rows), int64(m.CellsMasked), int64(m.DetectorHits)
		s.MessagesWithheld = m.MessagesWithheld
	} else if is2xx(h.ex.ResponseStatus) && looksLikeObject(shown) {
		// A body that is not JSON has no rows: it is still recorded as received.
		if n, err := masking.CountRows(shown); err == nil {
			s.Rows = int64(n)
		}
	}
	s.Excerpt, s.ExcerptTruncated = excerpt(shown, h.cfg.ExcerptBytes())
	h.ex.ResponseRows = s.Rows
	doc, err := authorize.ResponseReport{
		DecisionID: a.DecisionID, RequestID: h.caller.requestID, API: h.ex.Call.API.String(),
		Job: h.ex.ResponseJob, QueryID: h.ex.ResponseQueryID, ResultTable: h.ex.ResultTable, Response: s,
	}.Marshal()
	if err != nil {
		return h.notRecorded("the report could not be encoded", err)
	}
	if err := h.callControlPlane(authorize.ResponsesPath, doc, h.cfg.ControlPlane.TimeoutMillis, h.onResponseReportResponse); err != nil {
		return h.notRecorded("the report could not be dispatched", err)
	}
	h.resp = respReporting
	return types.ActionPause
}

// excerpt is the start of body, at most n bytes, cut on a UTF-8 boundary.
func excerpt(body []byte, n int) (string, bool) {
	if len(body) <= n {
		return string(body), false
	}
	for n > 0 && !utf8.RuneStart(body[n]) {
		n--
	}
	return string(body[:n]), true
}

// onResponseReportResponse is the report's callback: it releases the response when the
// control plane recorded it, and replaces it with a 503 otherwise.
func (h *httpContext) onResponseReportResponse(numHeaders, bodySize, _ int) {
	defer func() {
		if r := recover(); r != nil {
			proxywasm.LogCriticalf("jitgate: recovered panic in response-report-response: %s", panicText(r))
			h.withhold(bqapi.Reject(bqapi.ReasonInternal, "the gateway failed while handling this response"), "panic")
		}
	}()
	if h.replied || h.resp != respReporting {
		return
	}
	h.plugin.fault("response-report-response")
	body, detail, err := readCalloutBody(numHeaders, bodySize)
	if detail != "" {
		h.notRecorded(detail, err)
		return
	}
	ack, err := authorize.ParseResponseReportAck(body)
	if err != nil {
		h.notRecorded("invalid response", err)
		return
	}
	if !ack.Recorded {
		detail := "refused"
		if ack.Reason != "" {
			detail += ": " + headerSafe(ack.Reason)
		}
		h.notRecorded(detail, nil)
		return
	}
	h.ex.JobRecorded = h.ex.ResponseJob != nil || h.ex.ResponseQueryID != ""
	h.ex.ResponseRecorded, h.ex.AuditSeq = true, ack.AuditSeq
	h.resp = respReleased
	h.released = nil // the host holds the body; drop the filter's reference
	if err := proxywasm.ResumeHttpResponse(); err != nil {
		h.ex.JobRecorded, h.ex.ResponseRecorded = false, false
		proxywasm.LogCriticalf("jitgate: could not resume the response: %v", err)
		h.withhold(bqapi.Reject(bqapi.ReasonInternal, "the gateway could not release the response"), "resume failed")
	}
}
