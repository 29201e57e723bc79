package xds

import (
	"fmt"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	wasmfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/jitgate/jitgate/controlplane/config"
	filterconfig "github.com/jitgate/jitgate/filter/config"
	"github.com/jitgate/jitgate/policies"
)

const (
	// WasmFilterTypeURL is the type of the ECDS resource, and the only type the listener's
	// config_discovery accepts for the jitgate filter.
	WasmFilterTypeURL = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
	wasmRuntime       = "envoy.wasm.runtime.v8"
	// FilterControlPlaneAuthority is the :authority the filter sends on callouts.
	FilterControlPlaneAuthority = "jitgate-controlplane"
)

// jitgateHTTPFilter is the listener's reference to the filter. It has no default
// configuration on purpose: the listener stays warming until ECDS delivers the filter's
// configuration, so no request is ever served without the filter (fail closed).
func jitgateHTTPFilter() (*hcmv3.HttpFilter, error) {
	return &hcmv3.HttpFilter{
		Name: FilterName,
		ConfigType: &hcmv3.HttpFilter_ConfigDiscovery{ConfigDiscovery: &corev3.ExtensionConfigSource{
			ConfigSource: adsConfigSource(),
			TypeUrls:     []string{WasmFilterTypeURL},
		}},
	}, nil
}

// FilterConfig is the document the filter receives as its plugin configuration. bundle
// is the live policy bundle (nil without policies): its version (policyVersion) and its
// compiled JSON (policyBundle, Bundle.Encode) go to every Envoy, so a policy change is a
// new ECDS version, and the filter checks every call the control plane allows against the
// same bundle (policies.EvaluateCall). A bundle larger than
// filterconfig.MaxPolicyBundleBytes fails the translation (Marshal), so the last good
// snapshot stays live.
func FilterConfig(cfg *config.Config, bundle *policies.Bundle) (filterconfig.Config, error) {
	fc := filterconfig.Config{
		Version:              filterconfig.Version,
		MaxRequestBodyBytes:  cfg.Filter.MaxRequestBodyBytes,
		MaxResponseBodyBytes: cfg.Filter.MaxResponseBodyBytes,
		ResponseExcerptBytes: cfg.Audit.MaxExcerptBytes,
		ControlPlane: filterconfig.ControlPlane{
			Cluster:       ControlPlaneCluster,
			Authority:     FilterControlPlaneAuthority,
			TimeoutMillis: cfg.Filter.CalloutTimeoutMillis,
		},
	}
	if bundle != nil {
		raw, err := bundle.Encode()
		if err != nil {
			return filterconfig.Config{}, fmt.Errorf("%w: policy bundle: %v", ErrTranslate, err)
		}
		fc.PolicyVersion, fc.PolicyBundle = bundle.Version, raw
		fc.ControlPlane.AuthorizeTimeoutMillis = AuthorizeTimeoutMillis(cfg.Filter.CalloutTimeoutMillis, bundle.LongestHoldTimeout())
	} else {
		// Without a bundle the filter denies every call unless told this is the
		// operator's explicit identity-only mode.
		fc.IdentityOnly = cfg.Policies.IdentityOnly
	}
	return fc, nil
}

// HoldMargin is how much longer than the longest hold-mode approval the filter waits for
// an authorize answer: the control plane still has to audit and mint after the decision.
const HoldMargin = 10 * time.Second

// AuthorizeTimeoutMillis is the filter's authorize callout timeout: the configured callout
// timeout, or the longest hold timeout plus HoldMargin when that is longer (0 leaves the
// filter's default, the callout timeout).
func AuthorizeTimeoutMillis(callout uint32, longestHold time.Duration) uint32 {
	if longestHold <= 0 {
		return 0
	}
	ms := uint32((longestHold + HoldMargin) / time.Millisecond)
	if ms <= callout {
		return 0
	}
	return min(ms, filterconfig.MaxAuthorizeTimeoutMillis)
}

// addFilterConfig adds the ECDS TypedExtensionConfig for the jitgate filter: the Wasm module
// from cfg.Filter.WasmPath with the filter configuration as a JSON string.
func addFilterConfig(cfg *config.Config, bundle *policies.Bundle, rs Resources) error {
	fc, err := FilterConfig(cfg, bundle)
	if err != nil {
		return err
	}
	doc, err := fc.Marshal()
	if err != nil {
		return fmt.Errorf("%w: filter configuration: %v", ErrTranslate, err)
	}
	pluginCfg, err := anypb.New(wrapperspb.String(string(doc)))
	if err != nil {
		return fmt.Errorf("%w: filter configuration: %v", ErrTranslate, err)
	}
	wasm := &wasmfilterv3.Wasm{Config: &wasmv3.PluginConfig{
		Name:   FilterName,
		RootId: FilterName,
		Vm: &wasmv3.PluginConfig_VmConfig{VmConfig: &wasmv3.VmConfig{
			VmId:    FilterName,
			Runtime: wasmRuntime,
			Code: &corev3.AsyncDataSource{Specifier: &corev3.AsyncDataSource_Local{
				Local: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: cfg.Filter.WasmPath}},
			}},
		}},
		Configuration: pluginCfg,
		// The filter holds request headers (StopIteration) until it has read and judged the
		// body. Without this Envoy turns that into StopAllIteration, never hands the body to
		// the filter, and every POST hangs until the stream idle timeout.
		AllowOnHeadersStopIteration: wrapperspb.Bool(true),
		// A crashed or unloadable filter must stop traffic, never wave it through.
		FailurePolicy: wasmv3.FailurePolicy_FAIL_CLOSED,
	}}
	if err := wasm.ValidateAll(); err != nil {
		return fmt.Errorf("%w: wasm filter: %v", ErrTranslate, err)
	}
	wasmAny, err := anypb.New(wasm)
	if err != nil {
		return fmt.Errorf("%w: wasm filter: %v", ErrTranslate, err)
	}
	return rs.add(resourcev3.ExtensionConfigType, FilterName, &corev3.TypedExtensionConfig{
		Name:        FilterName,
		TypedConfig: wasmAny,
	})
}
