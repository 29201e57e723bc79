package xds

import (
	"fmt"
	"net"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/jitgate/jitgate/controlplane/config"
)

const (
	upstreamConnectTimeout     = 5 * time.Second
	controlPlaneConnectTimeout = 1 * time.Second
)

// addClusters adds the BigQuery upstream and the control-plane callout cluster.
func addClusters(cfg *config.Config, rs Resources) error {
	host, port := cfg.UpstreamHostPort()
	bq := &clusterv3.Cluster{
		Name:                          BigQueryCluster,
		ConnectTimeout:                durationpb.New(upstreamConnectTimeout),
		LoadAssignment:                singleEndpoint(BigQueryCluster, host, port),
		PerConnectionBufferLimitBytes: wrapperspb.UInt32(bufferLimit(max(cfg.Filter.MaxRequestBodyBytes, cfg.Filter.MaxResponseBodyBytes))),
	}
	setDiscoveryType(bq, host)
	if cfg.UpstreamTLS() {
		ts, err := upstreamTLS(host, cfg.Upstream.BigQuery.CAFile)
		if err != nil {
			return err
		}
		bq.TransportSocket = ts
	}
	if err := rs.add(resourcev3.ClusterType, BigQueryCluster, bq); err != nil {
		return err
	}

	// The filter's callouts: HTTP/1.1 over mutual TLS to jitgated's filter listener, the
	// only listener that serves them.
	apiHost, apiPort := config.SplitHostPort(cfg.API.EnvoyAddress)
	cp := &clusterv3.Cluster{
		Name:           ControlPlaneCluster,
		ConnectTimeout: durationpb.New(controlPlaneConnectTimeout),
		LoadAssignment: singleEndpoint(ControlPlaneCluster, apiHost, apiPort),
	}
	setDiscoveryType(cp, apiHost)
	ts, err := controlPlaneTLS(cfg)
	if err != nil {
		return err
	}
	cp.TransportSocket = ts
	return rs.add(resourcev3.ClusterType, ControlPlaneCluster, cp)
}

// controlPlaneTLS presents Envoy's client certificate to jitgated and verifies
// jitgated's certificate against the CA and tls.serverName. Only file names go into the
// cluster, never key material: Envoy's /config_dump shows whatever xDS sends.
func controlPlaneTLS(cfg *config.Config) (*corev3.TransportSocket, error) {
	files := cfg.EnvoyTLS()
	name := cfg.TLSServerName()
	san := &tlsv3.SubjectAltNameMatcher{
		SanType: tlsv3.SubjectAltNameMatcher_DNS,
		Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: name}},
	}
	sni := name
	if net.ParseIP(name) != nil {
		san.SanType, sni = tlsv3.SubjectAltNameMatcher_IP_ADDRESS, "" // SNI carries host names only
	}
	tlsCtx := &tlsv3.UpstreamTlsContext{
		Sni: sni,
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsParams:     &tlsv3.TlsParameters{TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_2},
			AlpnProtocols: []string{"http/1.1"},
			TlsCertificates: []*tlsv3.TlsCertificate{{
				CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: files.Cert}},
				PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: files.Key}},
			}},
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{
				ValidationContext: &tlsv3.CertificateValidationContext{
					TrustedCa:                 &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: files.CA}},
					MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{san},
				},
			},
		},
	}
	a, err := anypb.New(tlsCtx)
	if err != nil {
		return nil, fmt.Errorf("%w: control-plane tls: %v", ErrTranslate, err)
	}
	return &corev3.TransportSocket{
		Name:       "envoy.transport_sockets.tls",
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: a},
	}, nil
}

// setDiscoveryType uses STATIC for an IP literal and LOGICAL_DNS (one connection pool
// following DNS, as for any large SaaS endpoint) for a hostname.
func setDiscoveryType(c *clusterv3.Cluster, host string) {
	if net.ParseIP(host) != nil {
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
		return
	}
	c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_LOGICAL_DNS}
	c.DnsLookupFamily = clusterv3.Cluster_V4_PREFERRED
	c.RespectDnsTtl = true
}

func singleEndpoint(cluster, host string, port uint32) *endpointv3.ClusterLoadAssignment {
	return &endpointv3.ClusterLoadAssignment{
		ClusterName: cluster,
		Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
					Address: socketAddress(host, port),
				}},
			}},
		}},
	}
}

// upstreamTLS verifies the upstream's chain against caFile and its name against host (Envoy
// checks neither unless told), and sends host as SNI.
func upstreamTLS(host, caFile string) (*corev3.TransportSocket, error) {
	tlsCtx := &tlsv3.UpstreamTlsContext{
		Sni: host,
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsParams:     &tlsv3.TlsParameters{TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_2},
			AlpnProtocols: []string{"http/1.1"},
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{
				ValidationContext: &tlsv3.CertificateValidationContext{
					TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: caFile}},
					MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
						SanType: tlsv3.SubjectAltNameMatcher_DNS,
						Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: host}},
					}},
				},
			},
		},
	}
	a, err := anypb.New(tlsCtx)
	if err != nil {
		return nil, fmt.Errorf("%w: upstream tls: %v", ErrTranslate, err)
	}
	return &corev3.TransportSocket{
		Name:       "envoy.transport_sockets.tls",
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: a},
	}, nil
}
