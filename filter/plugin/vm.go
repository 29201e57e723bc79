// Package plugin is jitgate's proxy-wasm filter: the lifecycle adapter between Envoy's
// callbacks and the stages that judge a BigQuery request. Today the stages are
// classification (bqapi.Classify), body buffering and decoding (reqbody, bqapi.Decode*),
// the authorize callout to the control plane (authorize.go: every call the local rules
// let through waits, paused, for the decision; allow swaps in the minted upstream
// credential and resumes in httpContext.forward, the single point where a request goes
// upstream), the job ledger (jobs.go: the 2xx response of an allowed jobs.query,
// jobs.insert or jobs.get is held until the control plane recorded the job it names),
// masking (mask.go: the response of a call whose decision carries a masking instruction
// is held, its rows masked and its error messages withheld, or it is replaced by an
// error) and the reply. Every callback, the callouts' included, recovers panics into
// a fail-closed BigQuery-shaped reply, and a plugin without a valid configuration
// answers every request with 503.
package plugin

import (
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

// NewVMContext returns the VM context the filter registers in init.
func NewVMContext() types.VMContext { return newVMContext(options{}) }

// options are seams for native tests only; the wasm build always uses the zero value.
type options struct {
	// faultAt is called at the start of every host callback with its name; a test makes
	// it panic to prove recovery.
	faultAt func(callback string)
	// observe receives every decided exchange (allowed or refused).
	observe func(*Exchange)
}

type vmContext struct {
	types.DefaultVMContext
	opts options
}

func newVMContext(opts options) *vmContext { return &vmContext{opts: opts} }

// NewPluginContext implements types.VMContext.
func (vm *vmContext) NewPluginContext(uint32) types.PluginContext {
	return &pluginContext{opts: &vm.opts}
}
