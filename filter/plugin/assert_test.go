package plugin

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/jitgate/jitgate/filter/bqapi"
)

// wantAllowed fails unless the request went upstream untouched.
func wantAllowed(t *testing.T, o outcome) {
	t.Helper()
	if o.reply != nil {
		t.Fatalf("request refused with %d: %s", o.reply.StatusCode, o.reply.Data)
	}
	if o.lastAction != types.ActionContinue {
		t.Fatalf("request left paused (action %v)", o.lastAction)
	}
	if line := o.logLine(t); !strings.Contains(line, " decision=allow") {
		t.Fatalf("log line %q does not record the allow", line)
	}
}

// wantRefused fails unless the request was answered locally with the BigQuery error
// document for reason, and the answer carries the reason code everywhere it should.
func wantRefused(t *testing.T, o outcome, reason bqapi.Reason) {
	t.Helper()
	if o.reply == nil {
		t.Fatalf("request was not refused (want %s); last action %v", reason, o.lastAction)
	}
	if o.lastAction != types.ActionPause {
		t.Errorf("action after local reply = %v, want pause", o.lastAction)
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

// noSecrets fails if the agent's token shows up in a log line or reply.
func noSecrets(t *testing.T, o outcome) {
	t.Helper()
	for _, l := range o.logs {
		if strings.Contains(l, "agent-secret-token") || strings.Contains(l, "Bearer") {
			t.Errorf("log line leaks the Authorization header: %q", l)
		}
	}
	if o.reply != nil && strings.Contains(string(o.reply.Data), "agent-secret-token") {
		t.Errorf("reply leaks the token: %s", o.reply.Data)
	}
}

func headerValue(h [][2]string, name string) string {
	for _, kv := range h {
		if strings.EqualFold(kv[0], name) {
			return kv[1]
		}
	}
	return ""
}
