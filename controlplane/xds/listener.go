package xds

import (
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/jitgate/jitgate/controlplane/config"
)

// addListener adds the agent-facing listener: one HTTP connection manager whose routes come
// over RDS and whose filter chain is the jitgate Wasm filter (configured over ECDS) and then
// the router.
func addListener(cfg *config.Config, rs Resources) error {
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: ListenerName,
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    adsConfigSource(),
			RouteConfigName: RouteConfigName,
		}},
		HttpFilters:      nil,
		LocalReplyConfig: localReplyConfig(),
		AccessLog:        nil,
		// Envoy is the edge for agents: trust only the real peer address.
		UseRemoteAddress: wrapperspb.Bool(true),
		// The filter classifies calls by path; hand it one canonical spelling.
		NormalizePath: wrapperspb.Bool(true),
		MergeSlashes:  true,
		// A front end may read x_goog_user_project as x-goog-user-project, past the
		// filter's header checks; no BigQuery client sends underscores in header names.
		CommonHttpProtocolOptions: &corev3.HttpProtocolOptions{
			HeadersWithUnderscoresAction: corev3.HttpProtocolOptions_REJECT_REQUEST,
		},
	}
	filter, err := jitgateHTTPFilter()
	if err != nil {
		return err
	}
	router, err := anypb.New(&routerv3.Router{
		// x-envoy-* headers would tell BigQuery about our topology; nothing needs them.
		SuppressEnvoyHeaders: true,
	})
	if err != nil {
		return fmt.Errorf("%w: router: %v", ErrTranslate, err)
	}
	hcm.HttpFilters = []*hcmv3.HttpFilter{
		filter,
		{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router}},
	}
	accessLog, err := stdoutAccessLog()
	if err != nil {
		return err
	}
	hcm.AccessLog = accessLog

	hcmAny, err := anypb.New(hcm)
	if err != nil {
		return fmt.Errorf("%w: http connection manager: %v", ErrTranslate, err)
	}
	host, port := config.SplitHostPort(cfg.Envoy.AgentListener)
	l := &listenerv3.Listener{
		Name:                          ListenerName,
		Address:                       socketAddress(host, port),
		PerConnectionBufferLimitBytes: wrapperspb.UInt32(bufferLimit(max(cfg.Filter.MaxRequestBodyBytes, cfg.Filter.MaxResponseBodyBytes))),
		FilterChains: []*listenerv3.FilterChain{{
			Filters: []*listenerv3.Filter{{
				Name:       "envoy.filters.network.http_connection_manager",
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcmAny},
			}},
		}},
	}
	return rs.add(resourcev3.ListenerType, ListenerName, l)
}

// adsConfigSource says "fetch this over the same ADS stream".
func adsConfigSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

func socketAddress(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Protocol:      corev3.SocketAddress_TCP,
		Address:       host,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}
