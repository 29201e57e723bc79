package plugin

import (
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/jitgate/jitgate/filter/config"
	"github.com/jitgate/jitgate/policies"
)

// pluginContext holds one plugin configuration (one ECDS version). cfg stays nil until
// OnPluginStart accepts a configuration; streams created meanwhile fail closed. bundle is
// the configuration's parsed policy bundle (nil without one).
type pluginContext struct {
	types.DefaultPluginContext
	opts   *options
	cfg    *config.Config
	bundle *policies.Bundle
}

// OnPluginStart reads and validates the configuration. Returning failure makes Envoy
// reject this ECDS update and keep serving the last good plugin.
func (p *pluginContext) OnPluginStart(int) (status types.OnPluginStartStatus) {
	defer func() {
		if r := recover(); r != nil {
			proxywasm.LogCriticalf("jitgate: panic while loading configuration: %s", panicText(r))
			p.cfg, p.bundle = nil, nil
			status = types.OnPluginStartStatusFailed
		}
	}()
	p.cfg, p.bundle = nil, nil // a failed reconfiguration must not leave an older config half-trusted
	p.fault("plugin-start")
	data, err := proxywasm.GetPluginConfiguration()
	if err != nil && err != types.ErrorStatusNotFound {
		proxywasm.LogCriticalf("jitgate: cannot read plugin configuration: %v", err)
		return types.OnPluginStartStatusFailed
	}
	cfg, err := config.Parse(data)
	if err != nil {
		proxywasm.LogCriticalf("jitgate: rejecting plugin configuration: %v", err)
		return types.OnPluginStartStatusFailed
	}
	bundle, summary, err := loadBundle(&cfg)
	if err != nil {
		proxywasm.LogCriticalf("jitgate: rejecting plugin configuration: %v", err)
		return types.OnPluginStartStatusFailed
	}
	if cfg.SelfTest && !selfTest() {
		return types.OnPluginStartStatusFailed
	}
	p.cfg, p.bundle = &cfg, bundle
	proxywasm.LogInfof("jitgate: configuration accepted: version=%s maxRequestBodyBytes=%d maxResponseBodyBytes=%d policyVersion=%s%s",
		cfg.Version, cfg.MaxRequestBodyBytes, cfg.MaxResponseBodyBytes, cfg.PolicyVersion, summary)
	return types.OnPluginStartStatusOK
}

// NewHttpContext implements types.PluginContext.
func (p *pluginContext) NewHttpContext(uint32) types.HttpContext {
	return &httpContext{plugin: p, cfg: p.cfg, bundle: p.bundle}
}

func (p *pluginContext) fault(callback string) {
	if p.opts.faultAt != nil {
		p.opts.faultAt(callback)
	}
}
