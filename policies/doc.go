// Package policies owns jitgate's policy language: the AgentPolicy and ApproverGroup
// documents (model.go), their validation (validate.go), the compiled Bundle the control
// plane pushes to every Envoy (bundle.go), and the one evaluator both the filter and the
// control plane use to decide a call (evaluate.go).
//
// It is wasm-safe: standard library only and no I/O, so the filter can compile it into
// jitgate.wasm. YAML decoding with file:line:column errors lives in policies/source
// (control-plane side); the reference for every field is policies/README.md.
package policies
