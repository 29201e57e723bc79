package xds

import (
	"strings"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// localReplyJSONContentType matches what BigQuery itself sends with an error.
const localReplyJSONContentType = "application/json; charset=UTF-8"

// localReplyConfig gives Envoy's own local replies (no route, upstream unreachable, reset or
// timed out, malformed request) BigQuery's error shape, so clients parse and retry them
// like any BigQuery error.
//
// Each mapper matches on response flags, which Envoy sets only for its own failures; the
// filter's local replies carry no flag, match no mapper and, because there is no top-level
// body_format, pass through byte for byte (they are already BigQuery JSON).
//
// TODO(controlplane): two Envoy-generated replies carry no response flag and so keep
// Envoy's plain-text body: 413 when a body outgrows the connection buffer (cannot happen
// while bufferLimit exceeds the filter's limit) and the 503 Envoy sends when the Wasm VM
// has failed (details "wasm_fail_stream"). Matching those needs a CEL access-log filter
// on response.code_details; add it once the smoke test can exercise a crashing module.
func localReplyConfig() *hcmv3.LocalReplyConfig {
	return &hcmv3.LocalReplyConfig{Mappers: []*hcmv3.ResponseMapper{
		flagMapper([]string{"NR"}, "notFound", "NOT_FOUND",
			"jitgate gateway: no route for this request"),
		flagMapper([]string{"UT", "UMSDR"}, "backendError", "DEADLINE_EXCEEDED",
			"jitgate gateway: BigQuery did not answer in time (%RESPONSE_CODE_DETAILS%)"),
		flagMapper([]string{"UH", "UF", "UO", "URX", "UC", "UR", "LR", "NC", "OM", "DF", "UPE"}, "backendError", "UNAVAILABLE",
			"jitgate gateway: BigQuery is unreachable (%RESPONSE_CODE_DETAILS%)"),
		flagMapper([]string{"DPE"}, "invalid", "INVALID_ARGUMENT",
			"jitgate gateway: malformed HTTP request (%RESPONSE_CODE_DETAILS%)"),
		filterMissingMapper(),
	}}
}

// filterMissingMapper covers the listener serving while the jitgate filter has no
// configuration: Envoy NACKed the ECDS update (e.g. the .wasm file is missing), which ends
// listener warming all the same. Envoy then refuses every request with an empty 500 (flag
// NFCF); nothing is forwarded, but clients deserve the retryable "control plane
// unavailable" answer: 503 backendError.
func filterMissingMapper() *hcmv3.ResponseMapper {
	m := flagMapper([]string{"NFCF"}, "backendError", "UNAVAILABLE",
		"jitgate gateway: the jitgate filter is not configured on this gateway")
	m.StatusCode = wrapperspb.UInt32(503)
	return m
}

// flagMapper rewrites the body of a local reply carrying any of flags into
// {"error":{"code":N,"message":...,"errors":[{"reason":...,"domain":"global","message":...}],"status":...}}.
func flagMapper(flags []string, reason, status, message string) *hcmv3.ResponseMapper {
	body, err := structpb.NewStruct(map[string]any{
		"error": map[string]any{
			// A value that is exactly one command operator keeps its type: a JSON number.
			"code":    "%RESPONSE_CODE%",
			"message": message,
			"errors": []any{map[string]any{
				"reason":  reason,
				"domain":  "global",
				"message": message,
			}},
			"status": status,
		},
	})
	if err != nil {
		panic("xds: local reply body for " + strings.Join(flags, ",") + ": " + err.Error()) // static input
	}
	return &hcmv3.ResponseMapper{
		Filter: &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_ResponseFlagFilter{
			ResponseFlagFilter: &accesslogv3.ResponseFlagFilter{Flags: flags},
		}},
		BodyFormatOverride: &corev3.SubstitutionFormatString{
			Format:      &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: body},
			ContentType: localReplyJSONContentType,
		},
	}
}
