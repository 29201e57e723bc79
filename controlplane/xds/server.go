package xds

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
)

// NewCache returns the snapshot cache for ADS: one snapshot for the whole fleet under key.
func NewCache(key string, log *slog.Logger) cachev3.SnapshotCache {
	return cachev3.NewSnapshotCache(true, FleetHash{Key: key}, cacheLogger{log.With("component", "xds-cache")})
}

// NewGRPCServer returns a gRPC server with the Aggregated Discovery Service registered on
// cache. Stream opens and closes are logged, and every NACK is logged with Envoy's reason
// and counted, since a NACKed ECDS update (for example a missing .wasm) otherwise leaves
// the listener silently warming.
//
// Every connection must be mutual TLS (tlsConfig, from mtls.ServerConfig: Envoy's client
// certificate is required and verified); a nil tlsConfig is refused, there is no
// plaintext mode.
func NewGRPCServer(ctx context.Context, cache cachev3.SnapshotCache, tlsConfig *tls.Config, log *slog.Logger, metrics *Metrics) (*grpc.Server, error) {
	if tlsConfig == nil || tlsConfig.ClientAuth != tls.RequireAndVerifyClientCert {
		return nil, fmt.Errorf("xds: the ADS server needs a TLS config that requires and verifies client certificates")
	}
	cb := &callbacks{log: log, metrics: metrics, nodes: map[int64]string{}}
	srv := serverv3.NewServer(ctx, cache, serverv3.CallbackFuncs{
		StreamOpenFunc:    cb.open,
		StreamClosedFunc:  cb.closed,
		StreamRequestFunc: cb.request,
	})
	g := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(tlsConfig)),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 15 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 5 * time.Second}),
	)
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, srv)
	return g, nil
}

type callbacks struct {
	log     *slog.Logger
	metrics *Metrics
	mu      sync.Mutex
	nodes   map[int64]string
}

func (c *callbacks) open(_ context.Context, id int64, typeURL string) error {
	if c.metrics != nil {
		c.metrics.streams.Inc()
	}
	c.log.Debug("xds stream opened", "stream", id, "type", typeURL)
	return nil
}

func (c *callbacks) closed(id int64, node *corev3.Node) {
	if c.metrics != nil {
		c.metrics.streams.Dec()
	}
	c.mu.Lock()
	delete(c.nodes, id)
	c.mu.Unlock()
	c.log.Info("xds stream closed", "stream", id, "node", node.GetId())
}

func (c *callbacks) request(id int64, req *discoveryv3.DiscoveryRequest) error {
	c.mu.Lock()
	_, seen := c.nodes[id]
	if !seen && req.GetNode() != nil {
		c.nodes[id] = req.GetNode().GetId()
	}
	c.mu.Unlock()
	if !seen && req.GetNode() != nil {
		c.log.Info("envoy connected", "stream", id, "node", req.GetNode().GetId(), "cluster", req.GetNode().GetCluster())
	}
	if req.GetErrorDetail() != nil {
		if c.metrics != nil {
			c.metrics.nacks.WithLabelValues(req.GetTypeUrl()).Inc()
		}
		c.log.Error("envoy rejected xds update (NACK)", "stream", id, "type", req.GetTypeUrl(),
			"rejected_nonce", req.GetResponseNonce(), "kept_version", req.GetVersionInfo(),
			"reason", req.GetErrorDetail().GetMessage())
		return nil
	}
	c.log.Debug("xds request", "stream", id, "type", req.GetTypeUrl(), "version", req.GetVersionInfo(), "names", req.GetResourceNames())
	return nil
}

// cacheLogger adapts slog to go-control-plane's logger.
type cacheLogger struct{ l *slog.Logger }

func (c cacheLogger) Debugf(format string, args ...any) { c.l.Debug(fmt.Sprintf(format, args...)) }
func (c cacheLogger) Infof(format string, args ...any)  { c.l.Debug(fmt.Sprintf(format, args...)) }
func (c cacheLogger) Warnf(format string, args ...any)  { c.l.Warn(fmt.Sprintf(format, args...)) }
func (c cacheLogger) Errorf(format string, args ...any) { c.l.Error(fmt.Sprintf(format, args...)) }
