// Package config owns the jitgate filter's configuration document: the JSON that the
// control plane delivers to every Envoy through ECDS as the Wasm plugin configuration,
// and that the filter reads in OnPluginStart. Both sides use this one type, so the
// contract cannot drift. It is wasm-safe: standard library only.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Version is the only configuration version this filter understands. A document with
// another version is rejected, so an old filter never half-understands a newer config.
const Version = "jitgate.dev/filter/v1"

// Defaults applied by Parse when a field is zero.
const (
	DefaultMaxRequestBodyBytes   = 10 << 20 // BigQuery's own jobs.query limit is 10 MB
	DefaultControlPlaneTimeout   = 2000     // milliseconds
	MaxAllowedRequestBodyBytes   = 100 << 20
	DefaultControlPlaneCluster   = "jitgate_controlplane"
	DefaultControlPlaneAuthority = "jitgate-controlplane"
)

// Response buffering: the filter reads the upstream responses of jobs.query, jobs.insert
// and jobs.get to record the job they name before releasing them, and every response it
// masks.
const (
	DefaultMaxResponseBodyBytes = 64 << 20
	MaxAllowedResponseBodyBytes = 1 << 30
)

// Config is the filter's configuration.
type Config struct {
	// Version must equal Version.
	Version string `json:"version"`
	// MaxRequestBodyBytes caps a buffered request body, before and after gzip decoding.
	// Larger bodies are answered with 413.
	MaxRequestBodyBytes int64 `json:"maxRequestBodyBytes,omitempty"`
	// MaxResponseBodyBytes caps a buffered upstream response body (every response of an
	// allowed call: the filter reads it to mask it, record its job and report it to the
	// audit trail before releasing it), before and after gzip decoding. A larger
	// response is replaced by a 502, never truncated.
	MaxResponseBodyBytes int64 `json:"maxResponseBodyBytes,omitempty"`
	// ResponseExcerptBytes is how much of each released response body the filter sends
	// with its response report, for the audit record's excerpt (the control plane's
	// audit.maxExcerptBytes): 0 means authorize.DefaultExcerptBytes (16 KiB), -1 none,
	// at most MaxResponseExcerptBytes.
	ResponseExcerptBytes int `json:"responseExcerptBytes,omitempty"`
	// ControlPlane is where the filter sends its callouts (authorize, audit).
	ControlPlane ControlPlane `json:"controlPlane"`
	// PolicyVersion is the version of the policy bundle the control plane decides with
	// ("sha256:..."; empty when no policies are loaded). The control plane makes every
	// policy decision; the version is pushed so that a policy change reaches every Envoy
	// as a new configuration (visible in its logs and config dump).
	PolicyVersion string `json:"policyVersion,omitempty"`
	// PolicyBundle is the compiled policy bundle the control plane decides with
	// (policies.Bundle.Encode JSON, at most MaxPolicyBundleBytes). The filter parses it
	// with policies.ParseBundle when the configuration starts (an invalid bundle, or one
	// whose version is not PolicyVersion, fails the start, so Envoy keeps the last good
	// configuration) and checks every call the control plane allows against it again
	// (policies.EvaluateCall). Set exactly when PolicyVersion is; a configuration with a
	// PolicyVersion but no bundle starts, and fails every request closed.
	PolicyBundle json.RawMessage `json:"policyBundle,omitempty"`
	// IdentityOnly is set by the control plane only in its explicit identity-only mode
	// (policies.identityOnly, no policy directory). Without a PolicyBundle the filter
	// refuses every call the control plane allows (403 no_policy: deny by default) unless
	// IdentityOnly is true. It cannot be combined with a PolicyBundle.
	IdentityOnly bool `json:"identityOnly,omitempty"`
	// SelfTest is for tests only and never set by the control plane: when true,
	// OnPluginStart runs the embedded policy conformance vectors (policies/conformance)
	// through the evaluator compiled into the module, logs "conformance: N vectors
	// passed", and fails the start if any vector fails.
	SelfTest bool `json:"selfTest,omitempty"`
}

// MaxResponseExcerptBytes bounds ResponseExcerptBytes (the control plane's
// audit.maxExcerptBytes has the same bound).
const MaxResponseExcerptBytes = 16 << 20

// ExcerptBytes is the effective ResponseExcerptBytes: 16 KiB by default, 0 for none.
func (c Config) ExcerptBytes() int {
	switch {
	case c.ResponseExcerptBytes < 0:
		return 0
	case c.ResponseExcerptBytes == 0:
		return 16 << 10
	}
	return c.ResponseExcerptBytes
}

// maxPolicyVersionLength bounds PolicyVersion.
const maxPolicyVersionLength = 128

// MaxPolicyBundleBytes bounds PolicyBundle: 8 MiB, about 16,000 typical policies (a
// compiled policy takes a few hundred bytes; 1,000 take ~500 KB). It keeps the ECDS
// resource and the per-VM copy of the configuration small; a larger bundle is refused
// by the control plane (the last good xDS snapshot stays live) and by the filter.
const MaxPolicyBundleBytes = 8 << 20

// ControlPlane names the Envoy cluster that reaches the control plane's HTTP API.
type ControlPlane struct {
	// Cluster is the Envoy cluster name for callouts.
	Cluster string `json:"cluster,omitempty"`
	// Authority is the :authority header sent on callouts.
	Authority string `json:"authority,omitempty"`
	// TimeoutMillis bounds every callout; a timeout fails closed.
	TimeoutMillis uint32 `json:"timeoutMillis,omitempty"`
	// AuthorizeTimeoutMillis bounds the authorize callout, which a hold-mode approval
	// keeps open until a human decides; default TimeoutMillis. The control plane sets it
	// to the longest hold timeout of its policy bundle plus a margin.
	AuthorizeTimeoutMillis uint32 `json:"authorizeTimeoutMillis,omitempty"`
}

// MaxAuthorizeTimeoutMillis bounds AuthorizeTimeoutMillis: the longest hold timeout a
// policy may set (4m) plus margin, below Envoy's 5 minute stream idle timeout.
const MaxAuthorizeTimeoutMillis = 290000

// ErrInvalid wraps every validation failure.
var ErrInvalid = errors.New("invalid jitgate filter configuration")

// Parse decodes a configuration strictly (unknown fields and trailing data rejected),
// applies defaults and validates it.
func Parse(data []byte) (Config, error) {
	var c Config
	if len(bytes.TrimSpace(data)) == 0 {
		return c, fmt.Errorf("%w: empty configuration", ErrInvalid)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if dec.More() {
		return Config{}, fmt.Errorf("%w: trailing data after the JSON document", ErrInvalid)
	}
	c.applyDefaults()
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

func (c *Config) applyDefaults() {
	if c.MaxRequestBodyBytes == 0 {
		c.MaxRequestBodyBytes = DefaultMaxRequestBodyBytes
	}
	if c.MaxResponseBodyBytes == 0 {
		c.MaxResponseBodyBytes = DefaultMaxResponseBodyBytes
	}
	if c.ControlPlane.Cluster == "" {
		c.ControlPlane.Cluster = DefaultControlPlaneCluster
	}
	if c.ControlPlane.Authority == "" {
		c.ControlPlane.Authority = DefaultControlPlaneAuthority
	}
	if c.ControlPlane.TimeoutMillis == 0 {
		c.ControlPlane.TimeoutMillis = DefaultControlPlaneTimeout
	}
	if c.ControlPlane.AuthorizeTimeoutMillis == 0 {
		c.ControlPlane.AuthorizeTimeoutMillis = c.ControlPlane.TimeoutMillis
	}
}

// Validate reports the first problem with c, wrapped in ErrInvalid.
func (c Config) Validate() error {
	switch {
	case c.Version != Version:
		return fmt.Errorf("%w: version %q, want %q", ErrInvalid, c.Version, Version)
	case c.MaxRequestBodyBytes < 0 || c.MaxRequestBodyBytes > MaxAllowedRequestBodyBytes:
		return fmt.Errorf("%w: maxRequestBodyBytes %d outside 1..%d", ErrInvalid, c.MaxRequestBodyBytes, MaxAllowedRequestBodyBytes)
	case c.MaxResponseBodyBytes < 0 || c.MaxResponseBodyBytes > MaxAllowedResponseBodyBytes:
		return fmt.Errorf("%w: maxResponseBodyBytes %d outside 1..%d", ErrInvalid, c.MaxResponseBodyBytes, MaxAllowedResponseBodyBytes)
	case c.ControlPlane.TimeoutMillis > 60000:
		return fmt.Errorf("%w: controlPlane.timeoutMillis %d above 60000", ErrInvalid, c.ControlPlane.TimeoutMillis)
	case c.ControlPlane.AuthorizeTimeoutMillis > MaxAuthorizeTimeoutMillis:
		return fmt.Errorf("%w: controlPlane.authorizeTimeoutMillis %d above %d", ErrInvalid, c.ControlPlane.AuthorizeTimeoutMillis, MaxAuthorizeTimeoutMillis)
	case c.ResponseExcerptBytes < -1 || c.ResponseExcerptBytes > MaxResponseExcerptBytes:
		return fmt.Errorf("%w: responseExcerptBytes %d outside -1..%d", ErrInvalid, c.ResponseExcerptBytes, MaxResponseExcerptBytes)
	case len(c.PolicyVersion) > maxPolicyVersionLength:
		return fmt.Errorf("%w: policyVersion longer than %d bytes", ErrInvalid, maxPolicyVersionLength)
	case len(c.PolicyBundle) > MaxPolicyBundleBytes:
		return fmt.Errorf("%w: policyBundle of %d bytes exceeds %d", ErrInvalid, len(c.PolicyBundle), MaxPolicyBundleBytes)
	case c.IdentityOnly && (len(c.PolicyBundle) > 0 || c.PolicyVersion != ""):
		return fmt.Errorf("%w: identityOnly with a policy bundle", ErrInvalid)
	case len(c.PolicyBundle) > 0 && c.PolicyVersion == "":
		return fmt.Errorf("%w: policyBundle without policyVersion", ErrInvalid)
	}
	return nil
}

// Marshal encodes c as the control plane sends it.
func (c Config) Marshal() ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(c)
}
