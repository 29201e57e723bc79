package plugin

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"

	"github.com/jitgate/jitgate/filter/authorize"
	"github.com/jitgate/jitgate/filter/bqapi"
)

// DenyReasonHeader carries the rejection's short code on every local reply.
const DenyReasonHeader = "x-jitgate-deny-reason"

// DecisionIDHeader names the control plane's decision on the response to the agent
// (allowed or denied), so support can find it in the audit trail.
const DecisionIDHeader = "x-jitgate-decision-id"

// AnalysisHeader tells the agent its allowed query's SQL was not analysed ("not analysed:
// legacy SQL", under a policy's what.legacySql): no table, deny rule or mask was checked.
const AnalysisHeader = "x-jitgate-analysis"

// wwwAuthenticate is sent with every 401 (RFC 6750).
const wwwAuthenticate = `Bearer realm="jitgate"`

// sendRejection sends the BigQuery-shaped error as Envoy's local reply. decisionID,
// when not empty, is the control plane's decision the call was allowed by (a failure
// after the allow, e.g. a job the ledger did not record).
func sendRejection(rej *bqapi.Rejection, decisionID string) {
	headers := [][2]string{
		{"content-type", bqapi.ErrorContentType},
		{DenyReasonHeader, string(rej.Reason)},
	}
	if decisionID != "" {
		headers = append(headers, [2]string{DecisionIDHeader, decisionID})
	}
	if err := proxywasm.SendHttpResponse(uint32(rej.Reason.HTTPStatus()), headers, bqapi.ErrorBodyFor(rej), -1); err != nil {
		proxywasm.LogCriticalf("jitgate: could not send local reply %s: %v", rej.Reason, err)
	}
}

// denial is a control-plane denial as the agent sees it. Reason and DecisionID are
// already header-safe (see headerSafe).
type denial struct {
	status       int    // 401, 403, 429 or 503 (authorize.Response.Validate)
	reason       string // the decision's stable code
	decisionID   string
	message      string // the decision's message for the agent, possibly empty
	tokenMissing bool   // the agent sent no bearer token
}

// document renders the BigQuery error for a denial:
// "jitgate: <message> (<reason>) [decision <id>]".
func (d denial) document() bqapi.ErrorDocument {
	errReason, status := "accessDenied", "PERMISSION_DENIED"
	switch d.status {
	case 401:
		errReason, status = "authError", "UNAUTHENTICATED"
		if d.tokenMissing {
			errReason = "required"
		}
	case 429:
		errReason, status = "rateLimitExceeded", "RESOURCE_EXHAUSTED"
	case 503:
		errReason, status = "backendError", "UNAVAILABLE"
	}
	text := strings.TrimSpace(d.message)
	if text == "" {
		text = defaultDenialText(d.status)
	}
	if len(text) > maxDenialText {
		text = text[:maxDenialText] + "..."
	}
	msg := "jitgate: " + text + " (" + d.reason + ") [decision " + d.decisionID + "]"
	return bqapi.ErrorDocument{Error: bqapi.ErrorBody{
		Code:    d.status,
		Message: msg,
		Errors:  []bqapi.ErrorProto{{Reason: errReason, Domain: "global", Message: msg}},
		Status:  status,
	}}
}

const maxDenialText = 1024

func defaultDenialText(status int) string {
	switch status {
	case 401:
		return "the agent's identity could not be verified"
	case 429:
		return "too many requests"
	case 503:
		return "a service the decision depends on is unavailable"
	}
	return "denied by policy"
}

// sendDenial sends a control-plane denial as Envoy's local reply.
func sendDenial(d denial) {
	headers := [][2]string{
		{"content-type", bqapi.ErrorContentType},
		{DenyReasonHeader, d.reason},
		{DecisionIDHeader, d.decisionID},
	}
	if d.status == 401 {
		headers = append(headers, [2]string{"www-authenticate", wwwAuthenticate})
	}
	if err := proxywasm.SendHttpResponse(uint32(d.status), headers, d.document().Marshal(), -1); err != nil {
		proxywasm.LogCriticalf("jitgate: could not send local reply %s %d: %v", d.reason, d.status, err)
	}
}

// denialOf turns a validated deny response into a denial.
func denialOf(r *authorize.Response, tokenMissing bool) denial {
	return denial{
		status: r.Status, reason: headerSafe(r.Reason), decisionID: headerSafe(r.DecisionID),
		message: r.Message, tokenMissing: tokenMissing,
	}
}

// headerSafe keeps a control-plane code or id usable in a header value and a log field:
// letters, digits and ._:- only (others become '_'), at most 128 bytes.
func headerSafe(s string) string {
	const max = 128
	if len(s) > max {
		s = s[:max]
	}
	ok := true
	for i := 0; i < len(s) && ok; i++ {
		ok = safeByte(s[i])
	}
	if ok {
		return s
	}
	b := []byte(s)
	for i, c := range b {
		if !safeByte(c) {
			b[i] = '_'
		}
	}
	return string(b)
}

// phraseSafe is headerSafe keeping single inner spaces, for short phrases such as
// "legacy SQL" that go into a header value and the log line.
func phraseSafe(s string) string {
	words := strings.Fields(s)
	for i, w := range words {
		words[i] = headerSafe(w)
	}
	s = strings.Join(words, " ")
	if len(s) > 64 {
		s = s[:64]
	}
	return s
}

func safeByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '.' || c == '_' || c == ':' || c == '-'
}

// panicText renders a recovered value briefly; panics never carry request content we
// put there, but keep the line bounded anyway.
func panicText(r any) string {
	return bounded(fmt.Sprint(r))
}

func bounded(s string) string {
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	q := strconv.QuoteToASCII(s) // one line, whatever s holds
	return q[1 : len(q)-1]
}
