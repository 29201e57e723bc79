package bqapi

import "testing"

// TestResponsePathReasons: failures after an allow are retryable BigQuery errors.
func TestResponsePathReasons(t *testing.T) {
	for _, c := range []struct {
		r              Reason
		status         int
		errReason, rpc string
		message        string
	}{
		{ReasonBadUpstreamResponse, 502, "backendError", "UNAVAILABLE", "jitgate: bad gateway: x (bad-upstream-response)"},
		{ReasonResponseTooLarge, 502, "backendError", "UNAVAILABLE", "jitgate: bad gateway: x (response-too-large)"},
		{ReasonJobNotRecorded, 503, "backendError", "UNAVAILABLE", "jitgate: unavailable: x (job-not-recorded)"},
		{ReasonResponseNotRecorded, 503, "backendError", "UNAVAILABLE", "jitgate: unavailable: x (response-not-recorded)"},
	} {
		if c.r.HTTPStatus() != c.status || c.r.ErrorReason() != c.errReason || c.r.Status() != c.rpc || Reject(c.r, "x").Message() != c.message {
			t.Errorf("%s: %d %s %s %q", c.r, c.r.HTTPStatus(), c.r.ErrorReason(), c.r.Status(), Reject(c.r, "x").Message())
		}
	}
}
