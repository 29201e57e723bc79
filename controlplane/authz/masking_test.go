package authz_test

import (
	"context"
	"encoding/base64"
	"reflect"
	"strings"
	"testing"

	"github.com/jitgate/jitgate/controlplane/authz"
	"github.com/jitgate/jitgate/filter/authorize"
	"github.com/jitgate/jitgate/filter/masking"
)

// maskingCanaryKey is a hash key no log line or audit record may contain.
var maskingCanaryKey = base64.StdEncoding.EncodeToString([]byte("masking-key-canary-0123456789abcdef"))

// maskingStep stands in for controlplane/maskplan's step: it sets the call's masking.
func maskingStep() authz.Step {
	return authz.NewStep("masking", func(_ context.Context, c *authz.Call) *authz.Denial {
		c.Masking = &authorize.Masking{Rules: []masking.Rule{{Path: []int{0}, Action: masking.Hash}}, Detectors: []string{"ssn"}, HashKey: maskingCanaryKey}
		return nil
	})
}

// An allow carries the masking the steps decided; the decision log summarises it and
// neither the log nor the audit record carries the key. A deny never carries it, even
// when an allow is turned into a 503 because its audit record could not be written.
func TestAllowCarriesMasking(t *testing.T) {
	an := startAuditNATS(t)
	g := newGateway(t, options{steps: []authz.Step{policyStandIn(), maskingStep()}, audit: an.writer})
	token := g.mint(t, "etl-bot", nil)
	resp := g.authorizeCall(t, auditedRequest(token))
	if resp.Decision != authorize.Allow || resp.Masking == nil || resp.Masking.HashKey != maskingCanaryKey ||
		!reflect.DeepEqual(resp.Masking.Detectors, []string{"ssn"}) || len(resp.Masking.Rules) != 1 {
		t.Fatalf("allow = %+v masking %+v", resp, resp.Masking)
	}
	line := g.logs.decisionLine(t, resp.DecisionID)
	if line["masking_rules"] != float64(1) {
		t.Errorf("log line %v lacks the masking summary", line)
	}
	rec := an.record(t, resp.DecisionID)
	if rec.Masking == nil || !reflect.DeepEqual(rec.Masking.Rules, []string{"0:hash"}) || !reflect.DeepEqual(rec.Masking.Detectors, []string{"ssn"}) {
		t.Errorf("audit record masking = %+v", rec.Masking)
	}
	_, raw := an.records(t)
	for name, text := range map[string]string{"log": g.logs.String(), "audit trail": raw} {
		if strings.Contains(text, maskingCanaryKey) || strings.Contains(text, maskingCanaryKey[:16]) {
			t.Errorf("the masking hash key is in the %s", name)
		}
	}
	an.stop(t)
	resp = g.authorizeCall(t, auditedRequest(token))
	if resp.Decision != authorize.Deny || resp.Status != 503 || resp.Masking != nil {
		t.Errorf("allow with audit down = %+v, want a deny without masking", resp)
	}
}
