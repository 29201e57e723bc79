package xds

import (
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/jitgate/jitgate/controlplane/config"
)

// upstreamRouteTimeout bounds one upstream request. BigQuery long-polls (jobs.query and
// jobs.getQueryResults wait up to timeoutMs, and clients may ask for minutes), so Envoy's
// 15 s default would cut healthy calls.
const upstreamRouteTimeout = 300 * time.Second

// addRoutes adds the RouteConfiguration: every path goes to BigQuery. The filter, which
// runs before the router, has already denied anything that is not a known BigQuery call.
func addRoutes(cfg *config.Config, rs Resources) error {
	action := &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: BigQueryCluster},
		Timeout:          durationpb.New(upstreamRouteTimeout),
	}
	if cfg.UpstreamTLS() {
		// Agents address the gateway; Google's front end routes on Host.
		host, _ := cfg.UpstreamHostPort()
		action.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: host}
	}
	rc := &routev3.RouteConfiguration{
		Name: RouteConfigName,
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    BigQueryCluster,
			Domains: []string{"*"},
			Routes: []*routev3.Route{{
				Name:   BigQueryCluster,
				Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: action},
			}},
		}},
	}
	return rs.add(resourcev3.RouteType, RouteConfigName, rc)
}
