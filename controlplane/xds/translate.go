// Package xds owns the translation from jitgated's configuration to the Envoy resources
// served over ADS (one file per Envoy feature: listener.go, routes.go, clusters.go,
// wasm.go, localreply.go, accesslog.go), the snapshot publisher that keeps the last good
// snapshot live when a translation fails, and the gRPC ADS server.
//
// The resource names below are a contract with the Envoy bootstrap (envoy/), the filter
// (filter/) and the end-to-end tests (e2e/); change them only together.
package xds

import (
	"errors"
	"fmt"

	cachetypes "github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/jitgate/jitgate/controlplane/config"
	"github.com/jitgate/jitgate/policies"
)

// Resource names served to every Envoy.
const (
	// ListenerName is the listener agents' BigQuery clients connect to.
	ListenerName = "jitgate_agents"
	// RouteConfigName is the RouteConfiguration the listener fetches over RDS (via ADS).
	RouteConfigName = "jitgate_routes"
	// BigQueryCluster is the upstream BigQuery REST API (or emulator).
	BigQueryCluster = "bigquery"
	// ControlPlaneCluster reaches jitgated's HTTP API; the filter's callouts use it.
	ControlPlaneCluster = "jitgate_controlplane"
	// FilterName is both the HTTP filter's name in the listener and the name of the ECDS
	// TypedExtensionConfig that configures it; Envoy requires the two to match.
	FilterName = "jitgate"
)

// ErrTranslate wraps every translation failure.
var ErrTranslate = errors.New("xds translation failed")

// Resources are the Envoy resources of one snapshot, by type URL.
type Resources map[resourcev3.Type][]cachetypes.Resource

// validatable is implemented by every generated Envoy proto (protoc-gen-validate).
type validatable interface {
	ValidateAll() error
}

// add validates r against its proto constraints and appends it; a resource that Envoy
// would reject never reaches a snapshot.
func (rs Resources) add(typ resourcev3.Type, name string, r cachetypes.Resource) error {
	v, ok := r.(validatable)
	if !ok {
		return fmt.Errorf("%w: %s %q: %T has no validator", ErrTranslate, typ, name, r)
	}
	if err := v.ValidateAll(); err != nil {
		return fmt.Errorf("%w: %s %q: %v", ErrTranslate, typ, name, err)
	}
	rs[typ] = append(rs[typ], r)
	return nil
}

// Translate builds the listener, routes, clusters and ECDS filter configuration for cfg,
// which must already be validated. bundle is the live policy bundle (nil without
// policies); its version and compiled JSON go into the filter's configuration, so every
// policy change reaches every Envoy as a new ECDS version.
func Translate(cfg *config.Config, bundle *policies.Bundle) (Resources, error) {
	rs := Resources{}
	steps := []func(*config.Config, Resources) error{
		addListener,
		addRoutes,
		addClusters,
		func(cfg *config.Config, rs Resources) error { return addFilterConfig(cfg, bundle, rs) },
	}
	for _, step := range steps {
		if err := step(cfg, rs); err != nil {
			return nil, err
		}
	}
	return rs, nil
}

// bufferLimit is the per-connection buffer for the agent listener and the upstream cluster.
// It must exceed the filter's body limits (request and held response) so that an oversized
// body reaches the filter, which answers in BigQuery's error shape, rather than Envoy
// answering first with its own plain 413/500.
func bufferLimit(maxBody int64) uint32 {
	limit := max(2*maxBody, 1<<20) + 64<<10
	return uint32(min(limit, 1<<31))
}
