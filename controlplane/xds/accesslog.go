package xds

import (
	"fmt"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// accessLogFields is Envoy's per-request JSON log line. It deliberately names every field:
// no request headers beyond these (never Authorization, which carries the agent's token or,
// upstream, the minted credential) and the path without its query string (NQ = no query:
// Google APIs accept ?access_token=).
var accessLogFields = map[string]any{
	"start_time":            "%START_TIME%",
	"method":                "%REQ(:METHOD)%",
	"path":                  "%PATH(NQ:ORIG_OR_PATH)%",
	"protocol":              "%PROTOCOL%",
	"response_code":         "%RESPONSE_CODE%",
	"response_flags":        "%RESPONSE_FLAGS%",
	"response_code_details": "%RESPONSE_CODE_DETAILS%",
	"bytes_received":        "%BYTES_RECEIVED%",
	"bytes_sent":            "%BYTES_SENT%",
	"duration_ms":           "%DURATION%",
	"upstream_host":         "%UPSTREAM_HOST%",
	"upstream_cluster":      "%UPSTREAM_CLUSTER%",
	"downstream_remote":     "%DOWNSTREAM_REMOTE_ADDRESS%",
	"request_id":            "%REQ(X-REQUEST-ID)%",
	"user_agent":            "%REQ(USER-AGENT)%",
}

// stdoutAccessLog logs one JSON line per request to Envoy's stdout.
func stdoutAccessLog() ([]*accesslogv3.AccessLog, error) {
	format, err := structpb.NewStruct(accessLogFields)
	if err != nil {
		return nil, fmt.Errorf("%w: access log format: %v", ErrTranslate, err)
	}
	stdout, err := anypb.New(&streamv3.StdoutAccessLog{
		AccessLogFormat: &streamv3.StdoutAccessLog_LogFormat{LogFormat: &corev3.SubstitutionFormatString{
			Format: &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: format},
		}},
	})
	if err != nil {
		return nil, fmt.Errorf("%w: access log: %v", ErrTranslate, err)
	}
	return []*accesslogv3.AccessLog{{
		Name:       "envoy.access_loggers.stdout",
		ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: stdout},
	}}, nil
}
