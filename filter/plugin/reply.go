package plugin

import (
	"fmt"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"

	"github.com/jitgate/jitgate/filter/bqapi"
)

// DenyReasonHeader carries the rejection's short code on every local reply.
const DenyReasonHeader = "x-jitgate-deny-reason"

// sendRejection sends the BigQuery-shaped error as Envoy's local reply.
func sendRejection(rej *bqapi.Rejection) {
	headers := [][2]string{
		{"content-type", bqapi.ErrorContentType},
		{DenyReasonHeader, string(rej.Reason)},
	}
	if err := proxywasm.SendHttpResponse(uint32(rej.Reason.HTTPStatus()), headers, bqapi.ErrorBodyFor(rej), -1); err != nil {
		proxywasm.LogCriticalf("jitgate: could not send local reply %s: %v", rej.Reason, err)
	}
}

// panicText renders a recovered value briefly; panics never carry request content we
// put there, but keep the line bounded anyway.
func panicText(r any) string {
	s := fmt.Sprint(r)
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
