// Package config owns jitgated's own configuration file: a strict, versioned YAML document
// (apiVersion jitgate.dev/v1, kind ControlPlaneConfig) that says where the control plane
// listens, where Envoy's agent listener and the BigQuery upstream are, which filter module
// Envoy loads, how NATS is reached, which OIDC issuers identify agents and how upstream
// credentials are minted, which policy directory decides calls, how the SQL analyser
// caches, and how the audit trail is kept. Unknown fields are
// rejected with file:line, and command-line flags override the file (see Overrides). Every
// field has a default except the two a serving control plane cannot guess (see
// ValidateForServe): at least one trusted issuer (identity.issuers, or the development
// issuer) and credentials.keyFile.
//
// Envoy and jitgated authenticate each other with mutual TLS (tls: the operator's files or
// generated material) on ADS and on the filter's callout listener (api.filterListen); the
// plain API (api.listen) stays on loopback unless explicitly allowed.
//
// Relative paths written in the file (filter.wasmPath, nats.storeDir, credentials.keyFile,
// devIssuer.keyFile, policies.dir, masking.hashKeyFile, tls.*) are resolved against the directory of the config file;
// defaults and flag values are resolved against the process's working directory.
package config

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/jitgate/jitgate/controlplane/credentials"
	"github.com/jitgate/jitgate/controlplane/identity"
	"github.com/jitgate/jitgate/controlplane/mtls"
	filterconfig "github.com/jitgate/jitgate/filter/config"
)

// APIVersion and Kind identify a jitgated configuration document.
const (
	APIVersion = "jitgate.dev/v1"
	Kind       = "ControlPlaneConfig"
)

// Defaults for every field. They make a document holding only apiVersion and kind usable on
// a developer machine: everything on loopback, TLS to the real BigQuery, embedded NATS.
const (
	DefaultXDSListen          = "127.0.0.1:18000"
	DefaultAPIListen          = "127.0.0.1:18001"
	DefaultFilterListen       = "127.0.0.1:18003"
	DefaultAgentListener      = "127.0.0.1:10000"
	DefaultNodeCluster        = "jitgate"
	DefaultBigQueryURL        = "https://bigquery.googleapis.com"
	DefaultCAFile             = "/etc/ssl/certs/ca-certificates.crt"
	DefaultWasmPath           = "build/jitgate.wasm"
	DefaultNATSStoreDir       = ".jitgate/nats"
	DefaultNATSMaxMemoryBytes = 256 << 20
	DefaultNATSMaxStoreBytes  = 1 << 30
	DefaultDevIssuerListen    = "127.0.0.1:18002"
	DefaultDevIssuerKeyFile   = ".jitgate/dev-issuer-key.pem"
	DefaultDevIssuerAudience  = "jitgate"
	DefaultAnalysisCacheSize  = 4096
	DefaultAnalysisCacheTTL   = 5 * time.Minute
	DefaultTableMetadataTTL   = 5 * time.Minute
	DefaultAuditMode          = AuditStrict
)

// Audit modes (audit.mode).
const (
	// AuditStrict: a decision whose audit record cannot be written is answered Deny 503
	// audit_unavailable, without a credential.
	AuditStrict = "strict"
	// AuditRelaxed: such a decision is answered as decided and logged as an ERROR. It
	// breaks the invariant that every decision is audited before it takes effect.
	AuditRelaxed = "relaxed"
)

// Sentinel errors; every error Load returns wraps one of them.
var (
	// ErrSyntax: the file is not a single well-formed YAML document of the expected shape
	// (including unknown fields and wrong value types).
	ErrSyntax = errors.New("invalid config syntax")
	// ErrVersion: apiVersion or kind is missing or not the one this binary understands.
	ErrVersion = errors.New("unsupported config version")
	// ErrInvalid: a field has a value jitgated cannot use.
	ErrInvalid = errors.New("invalid config value")
)

// Config is jitgated's configuration document.
type Config struct {
	// APIVersion must be "jitgate.dev/v1". Required, so a future incompatible format is
	// refused instead of half-understood.
	APIVersion string `yaml:"apiVersion"`
	// Kind must be "ControlPlaneConfig". Required.
	Kind string `yaml:"kind"`
	// XDS is the Envoy-facing gRPC ADS server.
	XDS XDS `yaml:"xds"`
	// API is the control plane's HTTP API: the plain listener (health, status, metrics,
	// approvals) and the mutual-TLS filter listener (the filter's callouts).
	API API `yaml:"api"`
	// TLS is the mutual TLS between Envoy and jitgated (ADS and the filter's callouts):
	// the operator's files, or material generated into tls.dir.
	TLS TLS `yaml:"tls"`
	// Envoy describes the Envoy fleet this control plane configures.
	Envoy Envoy `yaml:"envoy"`
	// Upstream names where Envoy forwards allowed requests.
	Upstream Upstream `yaml:"upstream"`
	// Filter configures the jitgate Wasm filter delivered to Envoy over ECDS.
	Filter Filter `yaml:"filter"`
	// NATS is the messaging and JetStream state shared by control-plane replicas.
	NATS NATS `yaml:"nats"`
	// Identity lists the OIDC issuers whose ID tokens identify agents (issuer, audiences,
	// agentClaim, groupsClaim, algorithms, maxClockSkew, jwksURL: see identity.IssuerConfig).
	// At least one issuer is required to serve, unless devIssuer.enabled supplies it.
	// Issuers are discovered lazily: an unreachable one does not stop jitgated starting.
	Identity identity.Config `yaml:"identity"`
	// Credentials says how the upstream BigQuery credential of each allowed call is minted
	// (mode, keyFile, ttl, scopes, selfSignedJWT, impersonation: see credentials.Config).
	// credentials.keyFile is required to serve. Changes take effect on restart.
	Credentials credentials.Config `yaml:"credentials"`
	// DevIssuer runs a development OIDC issuer inside jitgated and trusts it. For laptops
	// and tests only: anyone who can reach it can mint a token for any agent.
	DevIssuer DevIssuer `yaml:"devIssuer"`
	// Policies is the policy directory (policies/README.md) that decides every authorize
	// call. Empty: no policies, every call is denied (403 no_policy) unless
	// policies.identityOnly is set.
	Policies Policies `yaml:"policies"`
	// Analysis tunes the SQL analyser that policies decide queries with (used only when
	// policies.dir is set).
	Analysis Analysis `yaml:"analysis"`
	// Audit configures the audit trail every authorize decision is appended to (the
	// JetStream stream JITGATE_AUDIT on the configured NATS).
	Audit Audit `yaml:"audit"`
	// Approvals configures notifications of new approvals (controlplane/approvals).
	Approvals Approvals `yaml:"approvals"`
	// Masking configures response masking (the hash action's key).
	Masking Masking `yaml:"masking"`

	// sources maps a field path ("upstream.bigquery.url") to where its value came from
	// ("jitgated.yaml:12" or "--upstream"), so validation errors can point at it.
	sources map[string]string
}

// XDS configures the ADS server.
type XDS struct {
	// Listen is the host:port the gRPC ADS server binds. Default 127.0.0.1:18000. It
	// always requires mutual TLS: a client certificate issued by the CA of tls (Envoy's).
	Listen string `yaml:"listen"`
}

// API configures the HTTP API's two listeners.
type API struct {
	// Listen is the host:port of the plain HTTP API: /healthz, /readyz, /v1/status,
	// /metrics and the approvers' /v1/approvals (bearer tokens). It does not serve the
	// filter's callouts. Default 127.0.0.1:18001. Loopback only unless
	// allowNonLoopbackListen is true.
	Listen string `yaml:"listen"`
	// AllowNonLoopbackListen permits a plain listen address that is not loopback. Only
	// behind a TLS-terminating proxy or on a network where approvers' tokens and the
	// status document may cross in clear text. Default false.
	AllowNonLoopbackListen bool `yaml:"allowNonLoopbackListen"`
	// FilterListen is the host:port of the filter's callouts (POST /v1/authorize,
	// /v1/responses), served only over mutual TLS to clients presenting a
	// certificate from the CA of tls (Envoy's). Default 127.0.0.1:18003.
	FilterListen string `yaml:"filterListen"`
	// EnvoyAddress is the host:port Envoy dials for the callouts (the
	// "jitgate_controlplane" cluster, with TLS). Default: FilterListen, with an
	// unspecified host (0.0.0.0, ::) replaced by loopback.
	EnvoyAddress string `yaml:"envoyAddress"`
}

// TLS is the mutual TLS between Envoy and jitgated. Either give all of caFile,
// serverCertFile, serverKeyFile, envoyCertFile and envoyKeyFile, or none: then jitgated
// generates a private CA (ECDSA P-256), its own server certificate and Envoy's client
// certificate into dir at start-up, reusing them while they are valid, and Envoy's
// bootstrap points at the same files (`jitgate envoy bootstrap --tls-dir DIR`).
// Relative paths in the file are resolved against the file's directory. Changes take
// effect on restart.
type TLS struct {
	// Dir holds generated material (ca.pem, jitgated.pem, envoy.pem and their -key.pem,
	// keys 0600). Default: "tls" next to nats.storeDir (.jitgate/tls).
	Dir string `yaml:"dir"`
	// CAFile verifies Envoy's client certificates (PEM bundle).
	CAFile string `yaml:"caFile"`
	// ServerCertFile and ServerKeyFile are jitgated's certificate (chain) and key for
	// the ADS and filter listeners; the certificate must be valid for serverName.
	ServerCertFile string `yaml:"serverCertFile"`
	ServerKeyFile  string `yaml:"serverKeyFile"`
	// EnvoyCAFile, EnvoyCertFile and EnvoyKeyFile are the paths as Envoy opens them
	// (sent in CDS for the callout cluster; never the contents): the CA that verifies
	// jitgated's certificate (default caFile) and Envoy's client certificate and key.
	EnvoyCAFile   string `yaml:"envoyCAFile"`
	EnvoyCertFile string `yaml:"envoyCertFile"`
	EnvoyKeyFile  string `yaml:"envoyKeyFile"`
	// ServerName is the name (IP address or DNS name) Envoy checks in jitgated's
	// certificate on the callout cluster (and sends as SNI when it is a DNS name).
	// Default: the host of api.envoyAddress.
	ServerName string `yaml:"serverName"`
	// ServerHosts are extra IP addresses or DNS names the generated server certificate
	// is valid for (it always names 127.0.0.1, ::1, localhost, serverName and the hosts
	// of xds.listen, api.filterListen and api.envoyAddress). Add the address Envoys dial
	// for ADS when xds.listen is 0.0.0.0.
	ServerHosts []string `yaml:"serverHosts"`
}

// Envoy describes the Envoys that connect over ADS.
type Envoy struct {
	// AgentListener is the host:port (IP literal) of the listener agents' BigQuery clients
	// connect to. Default 127.0.0.1:10000.
	AgentListener string `yaml:"agentListener"`
	// NodeCluster is the snapshot key. Every Envoy gets the same snapshot whatever its node
	// id; the key only names the snapshot in logs and status. Default "jitgate".
	NodeCluster string `yaml:"nodeCluster"`
}

// Upstream lists the upstream services.
type Upstream struct {
	// BigQuery is the BigQuery REST API (or the emulator).
	BigQuery BigQuery `yaml:"bigquery"`
}

// BigQuery is the upstream BigQuery endpoint.
type BigQuery struct {
	// URL is the scheme, host and optional port of the BigQuery REST API, without a path:
	// https://bigquery.googleapis.com (TLS with SNI, certificate and SAN checks, Host
	// rewritten to the URL's host) or http://127.0.0.1:9050 (plain HTTP, e.g. the emulator).
	// Default https://bigquery.googleapis.com.
	URL string `yaml:"url"`
	// CAFile is the PEM bundle that verifies the upstream certificate when URL is https.
	// Default /etc/ssl/certs/ca-certificates.crt.
	CAFile string `yaml:"caFile"`
}

// Filter configures the jitgate filter.
type Filter struct {
	// WasmPath is the compiled filter module (build/jitgate.wasm) as Envoy will open it. A
	// relative path in the file is resolved against the file's directory; the default
	// "build/jitgate.wasm" and a --wasm flag value against the working directory.
	WasmPath string `yaml:"wasmPath"`
	// MaxRequestBodyBytes caps a buffered request body; larger ones get 413 from the filter.
	// Default 10 MiB (filter/config.DefaultMaxRequestBodyBytes), at most 100 MiB.
	MaxRequestBodyBytes int64 `yaml:"maxRequestBodyBytes"`
	// MaxResponseBodyBytes caps an upstream response the filter holds to read: every
	// response of an allowed call (masked, reported to the job ledger and the audit
	// trail before release); larger ones fail closed (502). Default 64 MiB
	// (filter/config.DefaultMaxResponseBodyBytes), at most 1 GiB.
	MaxResponseBodyBytes int64 `yaml:"maxResponseBodyBytes"`
	// CalloutTimeoutMillis bounds every filter callout to the control plane; a timeout fails
	// closed. Default 2000, at most 60000.
	CalloutTimeoutMillis uint32 `yaml:"calloutTimeoutMillis"`
}

// NATS configures the NATS connection.
type NATS struct {
	// URL of an existing NATS cluster with JetStream (nats://host:4222). Empty runs an
	// embedded in-process server with JetStream. Default empty.
	URL string `yaml:"url"`
	// StoreDir is the embedded server's JetStream directory. Default .jitgate/nats.
	StoreDir string `yaml:"storeDir"`
	// MaxMemoryBytes caps the embedded JetStream memory store. Default 256 MiB.
	MaxMemoryBytes int64 `yaml:"maxMemoryBytes"`
	// MaxStoreBytes caps the embedded JetStream file store. Default 1 GiB.
	MaxStoreBytes int64 `yaml:"maxStoreBytes"`
	// Listen additionally opens a client port on the embedded server (IP:port, e.g.
	// 127.0.0.1:4222), so `jitgate audit ... --nats-url nats://127.0.0.1:4222` and the nats
	// CLI on this machine can read the audit trail and the job ledger. The port has no
	// authentication: whoever reaches it can read and write every stream and bucket. Empty
	// (the default) keeps the server in-process only. Only with an embedded server (url
	// empty). Loopback addresses only, unless allowNonLoopbackListen is true.
	Listen string `yaml:"listen"`
	// AllowNonLoopbackListen permits a listen address that is not loopback. Only for a
	// network where everyone who can reach the port may read and alter jitgate's state.
	// Default false.
	AllowNonLoopbackListen bool `yaml:"allowNonLoopbackListen"`
}

// DevIssuer configures the development OIDC issuer (controlplane/devissuer).
type DevIssuer struct {
	// Enabled starts the issuer at start-up and adds it to the trusted issuers (with
	// Audience as its only accepted audience). Default false; jitgated logs a warning when
	// it is on.
	Enabled bool `yaml:"enabled"`
	// Listen is the loopback IP:port it serves discovery, JWKS and POST /dev/token on; the
	// issuer URL is http://Listen. Default 127.0.0.1:18002. Non-loopback addresses are
	// refused.
	Listen string `yaml:"listen"`
	// KeyFile holds its signing key (PKCS#8 PEM), created with mode 0600 when missing so
	// tokens survive restarts. Default .jitgate/dev-issuer-key.pem.
	KeyFile string `yaml:"keyFile"`
	// Audience is the aud of the tokens it mints and the audience jitgated accepts from
	// it. Default "jitgate".
	Audience string `yaml:"audience"`
}

// Policies configures the policy directory.
type Policies struct {
	// Dir holds the *.yaml / *.yml policy documents. jitgated loads it at start (and
	// refuses to start if it does not load), watches it for changes and reloads it on
	// SIGHUP; an invalid change keeps the last good policies live. A relative path in the
	// file is resolved against the file's directory. Changing dir itself takes a restart.
	// Default empty (no policies: every call is denied, see IdentityOnly).
	Dir string `yaml:"dir"`
	// IdentityOnly is for a first setup only: without a policy directory, every verified
	// agent may do whatever the filter's built-in rules and the job ledger allow (DML,
	// DDL, EXPORT DATA, scripts, legacy SQL, writes, unmasked reads of any table). jitgated
	// logs a warning at start and on every check. Default false: without policies.dir
	// every call is denied 403 no_policy. Cannot be combined with dir (--identity-only).
	IdentityOnly bool `yaml:"identityOnly"`
}

func (p Policies) checkIdentityOnly() error {
	if p.IdentityOnly && p.Dir != "" {
		return errors.New("identity-only mode applies only without a policy directory; unset policies.identityOnly or policies.dir")
	}
	return nil
}

// Analysis configures the GoogleSQL analyser (controlplane/sqlanalysis). It reads table
// schemas and view bodies with tables.get from upstream.bigquery.url: with the
// service-account key credentials.keyFile over https, without credentials from a plain
// http upstream (the emulator). Changes take effect on restart.
type Analysis struct {
	// CacheSize bounds the analysis result cache, in entries (keyed by a fingerprint of
	// the SQL text, parameters, default dataset and catalog). Default 4096; -1 disables
	// the cache.
	CacheSize int `yaml:"cacheSize"`
	// CacheTTL bounds how long an analysis result is reused, e.g. "5m". Default 5m.
	CacheTTL time.Duration `yaml:"cacheTTL"`
	// TableMetadataTTL bounds how long a table's metadata (schema, view body) is reused
	// before tables.get is asked again, e.g. "5m". Default 5m; a table that does not exist
	// is remembered for 30s.
	TableMetadataTTL time.Duration `yaml:"tableMetadataTTL"`
}

// Masking configures response masking (controlplane/maskplan). Changes take effect on
// restart.
type Masking struct {
	// HashKeyFile holds the deployment's HMAC-SHA256 key for the "hash" mask action: at
	// least 32 bytes, either raw or standard base64 of them (e.g. `head -c 32 /dev/urandom
	// | base64 > hash.key`). Every control plane of a deployment must use the same key, so
	// that a value hashes the same on every replica and across restarts (joins and GROUP BY
	// on hashed columns keep working). The key is sent to the filter only with a plan that
	// hashes and is never logged. Empty: no key; calls whose masking rules hash a column
	// are denied 403 masking_key_unavailable. A relative path in the file is resolved
	// against the file's directory.
	HashKeyFile string `yaml:"hashKeyFile"`
}

// MinHashKeyBytes is the shortest accepted masking hash key.
const MinHashKeyBytes = 32

// LoadHashKey reads masking.hashKeyFile: raw bytes, or standard base64 (surrounding
// whitespace ignored) of at least MinHashKeyBytes bytes. Errors never quote the contents.
func LoadHashKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read masking hash key: %w", errors.Unwrap(err))
	}
	t := bytes.TrimSpace(b)
	if k, err := base64.StdEncoding.DecodeString(string(t)); err == nil && len(k) >= MinHashKeyBytes {
		return k, nil
	}
	if len(b) >= MinHashKeyBytes && !isBase64Text(t) {
		return b, nil
	}
	return nil, fmt.Errorf("masking hash key has fewer than %d bytes (raw, or base64 of them)", MinHashKeyBytes)
}

// isBase64Text: the file looks like base64 text, so a short key in base64 is refused
// rather than taken as its raw text.
func isBase64Text(b []byte) bool {
	for _, c := range b {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=') {
			return false
		}
	}
	return len(b) > 0
}

// Audit configures the audit trail (controlplane/audit). Changes take effect on restart.
type Audit struct {
	// Mode is what an authorize call gets when its audit record cannot be written:
	// "strict" (the default) answers Deny 503 audit_unavailable and releases no credential
	// (the filter fails closed, clients retry); "relaxed" answers as decided and logs an
	// ERROR per unrecorded decision. Relaxed breaks the invariant that every decision is
	// audited before it takes effect; jitgated warns at start when it is set.
	Mode string `yaml:"mode"`
	// MaxAge drops records older than this from the stream, e.g. "2160h" (90 days).
	// Default 0: kept until maxBytes (or forever).
	MaxAge time.Duration `yaml:"maxAge"`
	// MaxBytes caps the stream's size; the oldest records are dropped beyond it. Default 0:
	// no cap of its own, bounded only by the JetStream store (nats.maxStoreBytes when
	// embedded); once that is full, appends fail and strict mode denies every call. At
	// least 1 MiB; with embedded NATS at most nats.maxStoreBytes.
	MaxBytes int64 `yaml:"maxBytes"`
	// MaxExcerptBytes caps the excerpt of the body the agent received (the masked body
	// on masked calls, never the upstream one) stored with each response record; the
	// filter sends no more than this (its responseExcerptBytes). Default 0: 16 KiB; -1
	// stores no excerpt; at most 16 MiB.
	MaxExcerptBytes int `yaml:"maxExcerptBytes"`
}

// Approvals configures what happens around human approvals. Changes take effect on
// restart.
type Approvals struct {
	// Webhooks receive every new approval (event jitgate.approvals.created), delivered at
	// least once by a durable NATS consumer shared by all control-plane replicas.
	Webhooks []Webhook `yaml:"webhooks"`
}

// Webhook formats.
const (
	WebhookJSON  = "json"
	WebhookSlack = "slack"
)

// Webhook is one notification target. Its URL is treated as a secret (Slack's webhook
// URLs are): it is never logged or shown in status; the name is.
type Webhook struct {
	// Name identifies the webhook in logs and metrics: lowercase letters, digits, hyphens.
	Name string `yaml:"name"`
	// URL receives a POST per new approval; http or https.
	URL string `yaml:"url"`
	// Format is "json" (default: the approval event as JSON, see approvals.Event) or
	// "slack" (a Slack-compatible {"text": ...} message).
	Format string `yaml:"format"`
	// Timeout bounds each POST. Default 5s, 1s..60s.
	Timeout time.Duration `yaml:"timeout"`
	// MaxAttempts is how many times a delivery is tried (exponential backoff from 1s,
	// at most 30s apart) before it is given up and counted as failed. Default 5, 1..20.
	MaxAttempts int `yaml:"maxAttempts"`
}

func (a *Approvals) applyDefaults() {
	for i := range a.Webhooks {
		w := &a.Webhooks[i]
		if w.Format == "" {
			w.Format = WebhookJSON
		}
		if w.Timeout == 0 {
			w.Timeout = 5 * time.Second
		}
		if w.MaxAttempts == 0 {
			w.MaxAttempts = 5
		}
	}
}

var webhookName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

func (a *Approvals) checkWebhooks() error {
	seen := map[string]bool{}
	for i, w := range a.Webhooks {
		switch {
		case !webhookName.MatchString(w.Name):
			return fmt.Errorf("webhooks[%d].name %q: want lowercase letters, digits and hyphens", i, w.Name)
		case seen[w.Name]:
			return fmt.Errorf("webhooks[%d].name %q is not unique", i, w.Name)
		case w.Format != WebhookJSON && w.Format != WebhookSlack:
			return fmt.Errorf("webhooks[%d].format %q: want %q or %q", i, w.Format, WebhookJSON, WebhookSlack)
		case w.Timeout < time.Second || w.Timeout > time.Minute:
			return fmt.Errorf("webhooks[%d].timeout %s: want 1s..60s", i, w.Timeout)
		case w.MaxAttempts < 1 || w.MaxAttempts > 20:
			return fmt.Errorf("webhooks[%d].maxAttempts %d: want 1..20", i, w.MaxAttempts)
		}
		u, err := url.Parse(w.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			// Never echo the URL: it may carry a secret.
			return fmt.Errorf("webhooks[%d] (%s).url: want an http:// or https:// URL", i, w.Name)
		}
		seen[w.Name] = true
	}
	return nil
}

// URL is the issuer identifier of the development issuer (the iss of its tokens).
func (d DevIssuer) URL() string { return "http://" + d.Listen }

// IdentityConfig is the identity configuration to verify with: the configured issuers,
// plus the development issuer at devIssuerURL when it is enabled.
func (c *Config) IdentityConfig(devIssuerURL string) identity.Config {
	out := identity.Config{Issuers: append([]identity.IssuerConfig(nil), c.Identity.Issuers...), KeyMaxAge: c.Identity.KeyMaxAge}
	if c.DevIssuer.Enabled {
		out.Issuers = append(out.Issuers, identity.IssuerConfig{Issuer: devIssuerURL, Audiences: []string{c.DevIssuer.Audience}})
	}
	return out
}

// RedactedURL is URL with any user info (token, user, password) replaced, for logs and
// status.
func (n NATS) RedactedURL() string {
	var parts []string
	for _, one := range strings.Split(n.URL, ",") {
		if u, err := url.Parse(strings.TrimSpace(one)); err == nil {
			if u.User != nil {
				u.User = url.User("redacted")
			}
			parts = append(parts, u.String())
		}
	}
	return strings.Join(parts, ",")
}

// Default returns the configuration used when no file is given: every default applied and
// relative paths resolved against the working directory.
func Default() (*Config, error) {
	c := &Config{APIVersion: APIVersion, Kind: Kind, sources: map[string]string{}}
	if err := c.finish(""); err != nil {
		return nil, err
	}
	return c, nil
}

// Load reads, strictly decodes, defaults and validates the configuration file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data)
}

// Parse is Load for data already read; name is used in error messages and its directory
// anchors relative paths.
func Parse(name string, data []byte) (*Config, error) {
	c := &Config{sources: map[string]string{}}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: %w: empty document, want apiVersion %q and kind %q", name, ErrVersion, APIVersion, Kind)
		}
		return nil, fmt.Errorf("%w: %s", ErrSyntax, yamlErrorAt(name, err))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s:%d: %w: more than one YAML document", name, extra.Line, ErrSyntax)
	}
	// A second pass over the node tree records where each field was written, so that
	// semantic errors below can name file:line too.
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err == nil {
		recordLines(name, "", &root, c.sources)
	}
	if c.APIVersion != APIVersion || c.Kind != Kind {
		return nil, fmt.Errorf("%s: %w: apiVersion %q kind %q, want apiVersion %q kind %q",
			c.where("apiVersion", name), ErrVersion, c.APIVersion, c.Kind, APIVersion, Kind)
	}
	abs, err := filepath.Abs(name)
	if err != nil {
		return nil, fmt.Errorf("resolve config path %s: %w", name, err)
	}
	if err := c.finish(filepath.Dir(abs)); err != nil {
		return nil, err
	}
	return c, nil
}

// finish resolves paths written in the file against fileDir (empty: not from a file),
// applies defaults and validates.
func (c *Config) finish(fileDir string) error {
	if fileDir != "" {
		c.Filter.WasmPath = resolve(fileDir, c.Filter.WasmPath)
		c.NATS.StoreDir = resolve(fileDir, c.NATS.StoreDir)
		c.Credentials.KeyFile = resolve(fileDir, c.Credentials.KeyFile)
		c.DevIssuer.KeyFile = resolve(fileDir, c.DevIssuer.KeyFile)
		c.Policies.Dir = resolve(fileDir, c.Policies.Dir)
		c.Masking.HashKeyFile = resolve(fileDir, c.Masking.HashKeyFile)
		for _, p := range c.TLS.paths() {
			*p = resolve(fileDir, *p)
		}
	}
	if err := c.applyDefaults(); err != nil {
		return err
	}
	return c.Validate()
}

func resolve(dir, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

func (c *Config) applyDefaults() error {
	c.Approvals.applyDefaults()
	setDefault(&c.XDS.Listen, DefaultXDSListen)
	setDefault(&c.API.Listen, DefaultAPIListen)
	setDefault(&c.API.FilterListen, DefaultFilterListen)
	setDefault(&c.Envoy.AgentListener, DefaultAgentListener)
	setDefault(&c.Envoy.NodeCluster, DefaultNodeCluster)
	setDefault(&c.Upstream.BigQuery.URL, DefaultBigQueryURL)
	setDefault(&c.Upstream.BigQuery.CAFile, DefaultCAFile)
	setDefault(&c.Filter.WasmPath, DefaultWasmPath)
	setDefault(&c.NATS.StoreDir, DefaultNATSStoreDir)
	setDefault(&c.DevIssuer.Listen, DefaultDevIssuerListen)
	setDefault(&c.DevIssuer.KeyFile, DefaultDevIssuerKeyFile)
	setDefault(&c.DevIssuer.Audience, DefaultDevIssuerAudience)
	c.Credentials = c.Credentials.WithDefaults()
	if c.Analysis.CacheSize == 0 {
		c.Analysis.CacheSize = DefaultAnalysisCacheSize
	}
	if c.Analysis.CacheTTL == 0 {
		c.Analysis.CacheTTL = DefaultAnalysisCacheTTL
	}
	if c.Analysis.TableMetadataTTL == 0 {
		c.Analysis.TableMetadataTTL = DefaultTableMetadataTTL
	}
	if c.Filter.MaxResponseBodyBytes == 0 {
		c.Filter.MaxResponseBodyBytes = filterconfig.DefaultMaxResponseBodyBytes
	}
	if c.Filter.MaxRequestBodyBytes == 0 {
		c.Filter.MaxRequestBodyBytes = filterconfig.DefaultMaxRequestBodyBytes
	}
	if c.Filter.CalloutTimeoutMillis == 0 {
		c.Filter.CalloutTimeoutMillis = filterconfig.DefaultControlPlaneTimeout
	}
	if c.NATS.MaxMemoryBytes == 0 {
		c.NATS.MaxMemoryBytes = DefaultNATSMaxMemoryBytes
	}
	if c.NATS.MaxStoreBytes == 0 {
		c.NATS.MaxStoreBytes = DefaultNATSMaxStoreBytes
	}
	setDefault(&c.Audit.Mode, DefaultAuditMode)
	// Remaining relative paths came from defaults or flags: anchor them at the working
	// directory now, so Envoy (whose cwd may differ) gets an absolute filename.
	for _, p := range append([]*string{&c.Filter.WasmPath, &c.NATS.StoreDir, &c.Credentials.KeyFile, &c.DevIssuer.KeyFile, &c.Policies.Dir, &c.Masking.HashKeyFile}, c.TLS.paths()...) {
		if *p != "" && !filepath.IsAbs(*p) {
			abs, err := filepath.Abs(*p)
			if err != nil {
				return fmt.Errorf("resolve %s: %w", *p, err)
			}
			*p = abs
		}
	}
	if c.API.EnvoyAddress == "" {
		c.API.EnvoyAddress = loopbackIfUnspecified(c.API.FilterListen)
	}
	return nil
}

func setDefault(field *string, def string) {
	if *field == "" {
		*field = def
	}
}

// loopbackIfUnspecified turns "0.0.0.0:18001" into "127.0.0.1:18001" (and "[::]" into
// "[::1]"): Envoy must dial a concrete address.
func loopbackIfUnspecified(hostport string) string {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return hostport
	}
	ip := net.ParseIP(host)
	switch {
	case host == "" || (ip != nil && ip.IsUnspecified() && ip.To4() != nil):
		return net.JoinHostPort("127.0.0.1", port)
	case ip != nil && ip.IsUnspecified():
		return net.JoinHostPort("::1", port)
	}
	return hostport
}

// Validate reports the first unusable value, naming the field and where it was set.
func (c *Config) Validate() error {
	checks := []struct {
		field string
		err   error
	}{
		{"xds.listen", checkListen(c.XDS.Listen, false)},
		{"api.listen", checkPlainListen(c.API.Listen, c.API.AllowNonLoopbackListen, "api.allowNonLoopbackListen",
			"the plain API carries approvers' tokens and the status document in clear text")},
		{"api.filterListen", checkListen(c.API.FilterListen, false)},
		{"api.envoyAddress", checkListen(c.API.EnvoyAddress, true)},
		{"tls", c.TLS.check()},
		{"tls.serverName", checkServerName(c.TLSServerName())},
		{"envoy.agentListener", checkListen(c.Envoy.AgentListener, true)},
		{"envoy.nodeCluster", checkName(c.Envoy.NodeCluster)},
		{"upstream.bigquery.url", checkUpstreamURL(c.Upstream.BigQuery.URL)},
		{"upstream.bigquery.caFile", checkAbs(c.Upstream.BigQuery.CAFile)},
		{"filter.wasmPath", checkAbs(c.Filter.WasmPath)},
		{"filter.maxRequestBodyBytes", checkRange(c.Filter.MaxRequestBodyBytes, 1, filterconfig.MaxAllowedRequestBodyBytes)},
		{"filter.maxResponseBodyBytes", checkRange(c.Filter.MaxResponseBodyBytes, 1, filterconfig.MaxAllowedResponseBodyBytes)},
		{"filter.calloutTimeoutMillis", checkRange(int64(c.Filter.CalloutTimeoutMillis), 1, 60000)},
		{"nats.url", checkNATSURL(c.NATS.URL)},
		{"nats.maxMemoryBytes", checkRange(c.NATS.MaxMemoryBytes, 1<<20, 1<<40)},
		{"nats.maxStoreBytes", checkRange(c.NATS.MaxStoreBytes, 1<<20, 1<<50)},
		{"nats.listen", c.NATS.checkListen()},
		{"identity.issuers", checkIssuers(c.Identity)},
		{"credentials", c.Credentials.ValidateSettings()},
		{"credentials.keyFile", checkOptionalAbs(c.Credentials.KeyFile)},
		{"devIssuer.listen", checkLoopbackListen(c.DevIssuer.Listen)},
		{"devIssuer.keyFile", checkAbs(c.DevIssuer.KeyFile)},
		{"devIssuer.audience", checkAudience(c.DevIssuer.Audience)},
		{"policies.dir", checkOptionalAbs(c.Policies.Dir)},
		{"policies.identityOnly", c.Policies.checkIdentityOnly()},
		{"analysis.cacheSize", checkRange(int64(c.Analysis.CacheSize), -1, 1<<20)},
		{"analysis.cacheTTL", checkDuration(c.Analysis.CacheTTL, time.Second, 24*time.Hour)},
		{"analysis.tableMetadataTTL", checkDuration(c.Analysis.TableMetadataTTL, time.Second, 24*time.Hour)},
		{"audit.mode", checkAuditMode(c.Audit.Mode)},
		{"audit.maxAge", checkOptionalDuration(c.Audit.MaxAge, time.Minute, 100*365*24*time.Hour)},
		{"audit.maxBytes", c.checkAuditMaxBytes()},
		{"audit.maxExcerptBytes", checkRange(int64(c.Audit.MaxExcerptBytes), -1, 16<<20)},
		{"approvals", c.Approvals.checkWebhooks()},
		{"masking.hashKeyFile", checkOptionalAbs(c.Masking.HashKeyFile)},
	}
	for _, ch := range checks {
		if ch.err != nil {
			return fmt.Errorf("%s: %w: %s: %v", c.where(ch.field, "config"), ErrInvalid, ch.field, ch.err)
		}
	}
	return nil
}

// ValidateForServe reports what jitgated needs before it can answer authorize calls,
// beyond Validate's checks of each value: at least one trusted issuer (configured, or the
// development issuer) and a readable service-account key in credentials.keyFile. Call it
// on the final configuration, after Apply: flags may supply both.
func (c *Config) ValidateForServe() error {
	if len(c.Identity.Issuers) == 0 && !c.DevIssuer.Enabled {
		return fmt.Errorf("%s: %w: identity.issuers: at least one OIDC issuer is required to verify agents "+
			"(configure identity.issuers, or for local development enable the development issuer with --dev-issuer)",
			c.where("identity.issuers", "config"), ErrInvalid)
	}
	if err := c.IdentityConfig(c.DevIssuer.URL()).Validate(); err != nil {
		return fmt.Errorf("%s: %w: identity.issuers: %v", c.where("identity.issuers", "config"), ErrInvalid, err)
	}
	if c.Credentials.KeyFile == "" {
		return fmt.Errorf("%s: %w: credentials.keyFile is required: the service-account JSON key that signs upstream "+
			"credentials (--credentials-key-file; for local runs create a throwaway one with "+
			"`jitgate dev service-account-key --out .jitgate/dev-sa-key.json`)", c.where("credentials.keyFile", "config"), ErrInvalid)
	}
	// The key's errors name the path and the problem, never the file's contents.
	if _, err := credentials.LoadServiceAccountKey(c.Credentials.KeyFile); err != nil {
		return fmt.Errorf("%s: %w: credentials.keyFile: %v", c.where("credentials.keyFile", "config"), ErrInvalid, err)
	}
	if c.Masking.HashKeyFile != "" {
		if _, err := LoadHashKey(c.Masking.HashKeyFile); err != nil {
			return fmt.Errorf("%s: %w: masking.hashKeyFile: %v", c.where("masking.hashKeyFile", "config"), ErrInvalid, err)
		}
	}
	return c.ValidateTLSFiles()
}

// ValidateTLSFiles checks operator-provided TLS files (nothing when they are generated):
// the CA and the server certificate and key load and belong together, and the
// certificate is valid for the name Envoys check. Errors name files, never contents.
func (c *Config) ValidateTLSFiles() error {
	if c.TLSGenerated() {
		return nil
	}
	if _, err := mtls.ServerConfig(c.ServerTLS()); err != nil {
		return fmt.Errorf("%s: %w: tls: %v", c.where("tls", "config"), ErrInvalid, err)
	}
	if err := mtls.CheckServerName(c.TLS.ServerCertFile, c.TLSServerName()); err != nil {
		return fmt.Errorf("%s: %w: tls.serverName: %v", c.where("tls", "config"), ErrInvalid, err)
	}
	return nil
}

// paths are the TLS fields holding file names.
func (t *TLS) paths() []*string {
	return []*string{&t.Dir, &t.CAFile, &t.ServerCertFile, &t.ServerKeyFile, &t.EnvoyCAFile, &t.EnvoyCertFile, &t.EnvoyKeyFile}
}

// check accepts all five files or none of them (then material is generated).
func (t TLS) check() error {
	given := 0
	for _, p := range []string{t.CAFile, t.ServerCertFile, t.ServerKeyFile, t.EnvoyCertFile, t.EnvoyKeyFile} {
		if p != "" {
			given++
		}
	}
	if given != 0 && given != 5 {
		return errors.New("give all of caFile, serverCertFile, serverKeyFile, envoyCertFile and envoyKeyFile, " +
			"or none of them (then jitgated generates a private CA and both certificates into tls.dir)")
	}
	if given == 0 && t.EnvoyCAFile != "" {
		return errors.New("envoyCAFile is only used with operator-provided files (caFile, serverCertFile, ...)")
	}
	for _, h := range t.ServerHosts {
		if err := checkServerName(h); err != nil {
			return fmt.Errorf("serverHosts: %v", err)
		}
	}
	for _, p := range t.paths() {
		if err := checkOptionalAbs(*p); err != nil {
			return err
		}
	}
	return nil
}

// TLSGenerated reports whether jitgated generates the TLS material (no files given).
func (c *Config) TLSGenerated() bool { return c.TLS.CAFile == "" }

// TLSDir is where generated TLS material lives: tls.dir, or "tls" next to nats.storeDir.
func (c *Config) TLSDir() string {
	if c.TLS.Dir != "" {
		return c.TLS.Dir
	}
	return filepath.Join(filepath.Dir(c.NATS.StoreDir), "tls")
}

// ServerTLS is jitgated's side of the mutual TLS: the CA verifying Envoy and its own
// certificate and key.
func (c *Config) ServerTLS() mtls.Files {
	if c.TLSGenerated() {
		return mtls.Paths(c.TLSDir()).Server
	}
	return mtls.Files{CA: c.TLS.CAFile, Cert: c.TLS.ServerCertFile, Key: c.TLS.ServerKeyFile}
}

// EnvoyTLS is Envoy's side, as paths Envoy opens: the CA verifying jitgated and Envoy's
// client certificate and key.
func (c *Config) EnvoyTLS() mtls.Files {
	if c.TLSGenerated() {
		return mtls.Paths(c.TLSDir()).Envoy
	}
	ca := c.TLS.EnvoyCAFile
	if ca == "" {
		ca = c.TLS.CAFile
	}
	return mtls.Files{CA: ca, Cert: c.TLS.EnvoyCertFile, Key: c.TLS.EnvoyKeyFile}
}

// TLSServerName is the name Envoy verifies jitgated's certificate against on the
// callout cluster: tls.serverName, or the host of api.envoyAddress.
func (c *Config) TLSServerName() string {
	if c.TLS.ServerName != "" {
		return c.TLS.ServerName
	}
	host, _, _ := net.SplitHostPort(c.API.EnvoyAddress)
	return host
}

// TLSServerHosts are the names a generated server certificate is issued for.
func (c *Config) TLSServerHosts() []string {
	hosts := []string{"127.0.0.1", "::1", "localhost", c.TLSServerName()}
	for _, hp := range []string{c.XDS.Listen, c.API.FilterListen, c.API.EnvoyAddress} {
		host, _, err := net.SplitHostPort(hp)
		if ip := net.ParseIP(host); err == nil && host != "" && (ip == nil || !ip.IsUnspecified()) {
			hosts = append(hosts, host)
		}
	}
	hosts = append(hosts, c.TLS.ServerHosts...)
	var out []string
	for _, h := range hosts {
		if h != "" && !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	return out
}

var dnsNameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`)

// checkServerName accepts an IP address or a DNS name (no wildcard).
func checkServerName(s string) error {
	if net.ParseIP(s) != nil || (len(s) <= 253 && dnsNameRE.MatchString(s)) {
		return nil
	}
	return fmt.Errorf("%q: want an IP address or a DNS name", s)
}

// checkPlainListen accepts host:port on loopback, or anywhere when allowed.
func checkPlainListen(hostport string, allowed bool, allowField, why string) error {
	if err := checkListen(hostport, false); err != nil {
		return err
	}
	if allowed {
		return nil
	}
	host, _, _ := net.SplitHostPort(hostport)
	if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
		return nil
	}
	return fmt.Errorf("%q is not a loopback address: %s; listen on 127.0.0.1 or [::1], or set %s: true to expose it anyway",
		hostport, why, allowField)
}

// where names the origin of field, or fallback when it was defaulted.
func (c *Config) where(field, fallback string) string {
	if s, ok := c.sources[field]; ok {
		return s
	}
	return fallback
}

// Overrides are command-line values; a nil field was not given and keeps the file's value.
type Overrides struct {
	XDSListen     *string
	APIListen     *string
	FilterListen  *string
	TLSDir        *string
	AgentListener *string
	UpstreamURL   *string
	WasmPath      *string
	NATSURL       *string
	NATSStoreDir  *string
	NATSListen    *string
	// DevIssuer enables (or disables) the development issuer.
	DevIssuer          *bool
	DevIssuerListen    *string
	CredentialsKeyFile *string
	PoliciesDir        *string
	HashKeyFile        *string
	// IdentityOnly sets policies.identityOnly (--identity-only).
	IdentityOnly *bool
}

// Apply overrides c's fields with every non-nil value in o (relative paths against the
// working directory), records the flag as each value's origin for error messages, and
// validates again.
func (c *Config) Apply(o Overrides) error {
	set := func(dst *string, v *string, field, flag string) {
		if v != nil {
			*dst = *v
			c.sources[field] = flag
		}
	}
	set(&c.XDS.Listen, o.XDSListen, "xds.listen", "--xds-listen")
	set(&c.API.Listen, o.APIListen, "api.listen", "--api-listen")
	set(&c.API.FilterListen, o.FilterListen, "api.filterListen", "--filter-listen")
	set(&c.TLS.Dir, o.TLSDir, "tls.dir", "--tls-dir")
	set(&c.Envoy.AgentListener, o.AgentListener, "envoy.agentListener", "--agent-listen")
	set(&c.Upstream.BigQuery.URL, o.UpstreamURL, "upstream.bigquery.url", "--upstream")
	set(&c.Filter.WasmPath, o.WasmPath, "filter.wasmPath", "--wasm")
	set(&c.NATS.URL, o.NATSURL, "nats.url", "--nats-url")
	set(&c.NATS.StoreDir, o.NATSStoreDir, "nats.storeDir", "--nats-store-dir")
	set(&c.NATS.Listen, o.NATSListen, "nats.listen", "--nats-listen")
	set(&c.DevIssuer.Listen, o.DevIssuerListen, "devIssuer.listen", "--dev-issuer-listen")
	set(&c.Credentials.KeyFile, o.CredentialsKeyFile, "credentials.keyFile", "--credentials-key-file")
	set(&c.Policies.Dir, o.PoliciesDir, "policies.dir", "--policies")
	set(&c.Masking.HashKeyFile, o.HashKeyFile, "masking.hashKeyFile", "--masking-hash-key-file")
	if o.IdentityOnly != nil {
		c.Policies.IdentityOnly = *o.IdentityOnly
		c.sources["policies.identityOnly"] = "--identity-only"
	}
	if o.DevIssuer != nil {
		c.DevIssuer.Enabled = *o.DevIssuer
		c.sources["devIssuer.enabled"] = "--dev-issuer"
	}
	if o.FilterListen != nil && c.sources["api.envoyAddress"] == "" {
		c.API.EnvoyAddress = "" // follow the new listen address unless set explicitly
	}
	if err := c.applyDefaults(); err != nil {
		return err
	}
	return c.Validate()
}

// UpstreamTLS reports whether the BigQuery upstream is reached over TLS. Call on a validated
// Config.
func (c *Config) UpstreamTLS() bool {
	u, _ := url.Parse(c.Upstream.BigQuery.URL)
	return u != nil && u.Scheme == "https"
}

// UpstreamHostPort returns the BigQuery upstream's host and port (443/80 when implicit).
// Call on a validated Config.
func (c *Config) UpstreamHostPort() (string, uint32) {
	u, _ := url.Parse(c.Upstream.BigQuery.URL)
	port := uint64(80)
	if u.Scheme == "https" {
		port = 443
	}
	if p := u.Port(); p != "" {
		port, _ = strconv.ParseUint(p, 10, 16)
	}
	return u.Hostname(), uint32(port)
}

// SplitHostPort splits a validated host:port field.
func SplitHostPort(hostport string) (string, uint32) {
	host, port, _ := net.SplitHostPort(hostport)
	p, _ := strconv.ParseUint(port, 10, 16)
	return host, uint32(p)
}

func checkListen(hostport string, needIP bool) error {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %v", hostport, err)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return fmt.Errorf("%q: port must be 1..65535", hostport)
	}
	if needIP && net.ParseIP(host) == nil {
		return fmt.Errorf("%q: host must be an IP address (Envoy binds and dials it without DNS)", hostport)
	}
	return nil
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

func checkName(s string) error {
	if !nameRE.MatchString(s) {
		return fmt.Errorf("%q: want 1-63 letters, digits, '.', '_' or '-'", s)
	}
	return nil
}

func checkUpstreamURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return urlError(raw, err)
	}
	raw = credentials.RedactURL(raw) // every message below quotes it
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%q: scheme must be http or https", raw)
	case u.Hostname() == "":
		return fmt.Errorf("%q: no host", raw)
	case u.User != nil:
		return fmt.Errorf("%q: credentials in the URL are not allowed", raw)
	case u.Path != "" && u.Path != "/", u.RawQuery != "", u.Fragment != "":
		return fmt.Errorf("%q: must not have a path, query or fragment (clients send /bigquery/v2/...)", raw)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.ParseUint(p, 10, 16); err != nil || n == 0 {
			return fmt.Errorf("%q: port must be 1..65535", raw)
		}
	}
	if u.Scheme == "http" && net.ParseIP(u.Hostname()) == nil && u.Hostname() != "localhost" {
		// Plain HTTP is for a local emulator; sending minted credentials in clear text across
		// a network is a mistake we refuse to make quietly.
		return fmt.Errorf("%q: plain http is only allowed to an IP address or localhost", raw)
	}
	return nil
}

func checkNATSURL(raw string) error {
	if raw == "" {
		return nil
	}
	for _, one := range strings.Split(raw, ",") {
		u, err := url.Parse(strings.TrimSpace(one))
		if err != nil {
			return urlError(one, err)
		}
		one = credentials.RedactURL(one) // the messages below quote it
		switch u.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return fmt.Errorf("%q: scheme must be nats, tls, ws or wss", one)
		}
		if u.Hostname() == "" {
			return fmt.Errorf("%q: no host", one)
		}
	}
	return nil
}

// urlError is url.Parse's error without the URL it quotes (which may hold a password),
// quoting the redacted URL instead.
func urlError(raw string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%q: %v", credentials.RedactURL(raw), ue.Err)
	}
	return fmt.Errorf("%q: invalid URL", credentials.RedactURL(raw))
}

// checkListen accepts an empty address, or an IP:port (port 0: any free port) for an
// embedded server, on loopback unless explicitly allowed.
func (n NATS) checkListen() error {
	if n.Listen == "" {
		return nil
	}
	if n.URL != "" {
		return fmt.Errorf("%q: only the embedded server listens; with nats.url set, point clients at that cluster", n.Listen)
	}
	host, port, err := net.SplitHostPort(n.Listen)
	if err != nil {
		return fmt.Errorf("%q is not IP:port: %v", n.Listen, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%q: port must be 0..65535", n.Listen)
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return fmt.Errorf("%q: host must be an IP address (127.0.0.1 or [::1])", n.Listen)
	}
	if !ip.IsLoopback() && !n.AllowNonLoopbackListen {
		return fmt.Errorf("%q: the embedded NATS client port has no authentication, so it listens on loopback only "+
			"(127.0.0.1 or [::1]); set nats.allowNonLoopbackListen: true to expose it anyway", n.Listen)
	}
	return nil
}

func checkAuditMode(m string) error {
	if m != AuditStrict && m != AuditRelaxed {
		return fmt.Errorf("%q: want %q or %q", m, AuditStrict, AuditRelaxed)
	}
	return nil
}

func (c *Config) checkAuditMaxBytes() error {
	b := c.Audit.MaxBytes
	if b == 0 {
		return nil
	}
	if err := checkRange(b, 1<<20, 1<<50); err != nil {
		return err
	}
	if c.NATS.URL == "" && b > c.NATS.MaxStoreBytes {
		return fmt.Errorf("%d is more than the embedded JetStream store (nats.maxStoreBytes %d): appends would fail before old records are dropped", b, c.NATS.MaxStoreBytes)
	}
	return nil
}

func checkOptionalDuration(d, lo, hi time.Duration) error {
	if d == 0 {
		return nil
	}
	return checkDuration(d, lo, hi)
}

func checkOptionalAbs(p string) error {
	if p == "" {
		return nil
	}
	return checkAbs(p)
}

// checkIssuers validates configured issuers; having none is ValidateForServe's concern.
func checkIssuers(ic identity.Config) error {
	if len(ic.Issuers) == 0 {
		return nil
	}
	return ic.Validate()
}

// checkLoopbackListen accepts a loopback IP:port: the development issuer mints tokens for
// anyone who can reach it.
func checkLoopbackListen(hostport string) error {
	if err := checkListen(hostport, true); err != nil {
		return err
	}
	host, _, _ := net.SplitHostPort(hostport)
	if !net.ParseIP(host).IsLoopback() {
		return fmt.Errorf("%q: the development issuer listens on loopback only (127.0.0.1 or [::1])", hostport)
	}
	return nil
}

func checkAudience(aud string) error {
	if aud == "" || strings.ContainsAny(aud, " \t\r\n") {
		return fmt.Errorf("%q: want a non-empty audience without whitespace", aud)
	}
	return nil
}

func checkAbs(p string) error {
	if !filepath.IsAbs(p) {
		return fmt.Errorf("%q is not an absolute path", p)
	}
	return nil
}

func checkDuration(d, lo, hi time.Duration) error {
	if d < lo || d > hi {
		return fmt.Errorf("%s outside %s..%s", d, lo, hi)
	}
	return nil
}

func checkRange(v, lo, hi int64) error {
	if v < lo || v > hi {
		return fmt.Errorf("%d outside %d..%d", v, lo, hi)
	}
	return nil
}

// recordLines walks a decoded YAML tree and records "name:line" for each mapping key path.
func recordLines(name, prefix string, n *yaml.Node, out map[string]string) {
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		recordLines(name, prefix, n.Content[0], out)
		return
	}
	if n.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		path := key.Value
		if prefix != "" {
			path = prefix + "." + key.Value
		}
		out[path] = fmt.Sprintf("%s:%d", name, key.Line)
		recordLines(name, path, val, out)
	}
}

var yamlLineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// yamlErrorAt rewrites yaml.v3's "line N: msg" errors as "name:N: msg", one per line.
func yamlErrorAt(name string, err error) string {
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	for i, m := range msgs {
		if sm := yamlLineRE.FindStringSubmatch(m); sm != nil {
			msgs[i] = fmt.Sprintf("%s:%s: %s", name, sm[1], sm[2])
		} else {
			msgs[i] = fmt.Sprintf("%s: %s", name, strings.TrimPrefix(m, "yaml: "))
		}
	}
	return strings.Join(msgs, "; ")
}
