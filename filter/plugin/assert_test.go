package plugin

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/jitgate/jitgate/filter/bqapi"
)

// wantAllowed fails unless the request waited for the authorize callout, then went
// upstream with the minted credential in place of the agent's.
func wantAllowed(t *testing.T, o outcome) {
	t.Helper()
	if o.reply != nil {
		t.Fatalf("request refused with %d: %s", o.reply.StatusCode, o.reply.Data)
	}
	if o.callout == nil {
		t.Fatalf("no authorize callout was sent")
	}
	if o.lastAction != types.ActionPause {
		t.Fatalf("request not paused until the control plane answered (action %v)", o.lastAction)
	}
	if o.streamAction != types.ActionContinue {
		t.Fatalf("request left paused after the allow (action %v)", o.streamAction)
	}
	if got := headerValues(o.upstreamHeaders, "authorization"); len(got) != 1 || got[0] != mintedCredential {
		t.Errorf("upstream Authorization = %q, want only the minted credential", got)
	}
	if got := headerValue(o.responseHeaders, DecisionIDHeader); got != allowDecisionID {
		t.Errorf("response %s = %q, want %q", DecisionIDHeader, got, allowDecisionID)
	}
	if line := o.logLine(t); !strings.Contains(line, " decision=allow") {
		t.Fatalf("log line %q does not record the allow", line)
	}
	noSecrets(t, o)
}

// wantRefused fails unless the request was answered locally with the BigQuery error
// document for reason, and the answer carries the reason code everywhere it should.
func wantRefused(t *testing.T, o outcome, reason bqapi.Reason) {
	t.Helper()
	if o.reply == nil {
		t.Fatalf("request was not refused (want %s); last action %v", reason, o.lastAction)
	}
	if o.lastAction != types.ActionPause || o.streamAction != types.ActionPause {
		t.Errorf("action after local reply = %v (stream %v), want pause", o.lastAction, o.streamAction)
	}
	if got := headerValues(o.upstreamHeaders, "authorization"); len(got) == 1 && got[0] == mintedCredential {
		t.Errorf("a refused request got the minted credential")
	}
	if got, want := int(o.reply.StatusCode), reason.HTTPStatus(); got != want {
		t.Errorf("status = %d, want %d (body %s)", got, want, o.reply.Data)
	}
	if got := headerValue(o.reply.Headers, "content-type"); got != "application/json" {
		t.Errorf("content-type = %q, want application/json", got)
	}
	if got := headerValue(o.reply.Headers, DenyReasonHeader); got != string(reason) {
		t.Errorf("%s = %q, want %q", DenyReasonHeader, got, reason)
	}
	var doc bqapi.ErrorDocument
	if err := json.Unmarshal(o.reply.Data, &doc); err != nil {
		t.Fatalf("reply body is not JSON: %v: %s", err, o.reply.Data)
	}
	e := doc.Error
	if e.Code != reason.HTTPStatus() || e.Status != reason.Status() || len(e.Errors) != 1 ||
		e.Errors[0].Reason != reason.ErrorReason() || e.Errors[0].Domain != "global" {
		t.Errorf("error document = %s", o.reply.Data)
	}
	if !strings.HasPrefix(e.Message, "jitgate: ") || !strings.Contains(e.Message, "("+string(reason)+")") {
		t.Errorf("message %q must start with \"jitgate: \" and name %s", e.Message, reason)
	}
	line := o.logLine(t)
	if !strings.Contains(line, " decision=deny reason="+string(reason)+" ") {
		t.Errorf("log line %q does not record the refusal", line)
	}
	noSecrets(t, o)
}

// noSecrets fails if the agent's token or the minted credential shows up in a log line
// of any level, or in what the agent receives (reply body and headers, response
// headers); and if the agent's token would go upstream.
func noSecrets(t *testing.T, o outcome) {
	t.Helper()
	secrets := []string{agentToken, mintedSecret, "Bearer"}
	for _, l := range o.allLogs {
		for _, s := range secrets {
			if strings.Contains(l, s) {
				t.Errorf("log line leaks %q: %q", s, l)
			}
		}
	}
	var toAgent []string
	if o.reply != nil {
		toAgent = append(toAgent, string(o.reply.Data))
		for _, kv := range o.reply.Headers {
			toAgent = append(toAgent, kv[0]+": "+kv[1])
		}
	}
	for _, kv := range o.responseHeaders {
		toAgent = append(toAgent, kv[0]+": "+kv[1])
	}
	for _, s := range toAgent {
		if strings.Contains(s, agentToken) || strings.Contains(s, mintedSecret) {
			t.Errorf("the agent receives a secret: %q", s)
		}
	}
	if o.forwarded() {
		for _, kv := range o.upstreamHeaders {
			if strings.Contains(kv[1], agentToken) {
				t.Errorf("the agent's token goes upstream in %s", kv[0])
			}
		}
	}
}

func headerValues(h [][2]string, name string) []string {
	var out []string
	for _, kv := range h {
		if strings.EqualFold(kv[0], name) {
			out = append(out, kv[1])
		}
	}
	return out
}

func headerValue(h [][2]string, name string) string {
	for _, kv := range h {
		if strings.EqualFold(kv[0], name) {
			return kv[1]
		}
	}
	return ""
}
