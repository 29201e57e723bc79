// Command jitgated is the jitgate control plane: it serves Envoy's configuration over ADS
// (listener, routes, clusters and the jitgate Wasm filter over ECDS), runs or connects to
// NATS with JetStream, serves the plain HTTP API (health, readiness, status, metrics,
// approvals) and, on a separate listener only Envoy can use (mutual TLS with Envoy's
// client certificate, as ADS), the filter's callouts: POST /v1/authorize, which verifies
// agents and mints upstream credentials, POST /v1/responses, where the
// filter reports every response of an allowed call before releasing it (the job it
// names goes to the job ledger in JetStream KV, the response to the audit trail); it
// appends every authorize decision to the hash-chained audit trail in JetStream
// (controlplane/audit) before answering it. Calls a policy allows only with a human's
// approval wait for one (controlplane/approvals: KV state, events, the approvers'
// API under /v1/approvals, webhooks).
//
// See --help for flags; the configuration file format is documented in
// controlplane/config.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/jitgate/jitgate/controlplane/api"
	"github.com/jitgate/jitgate/controlplane/approvals"
	"github.com/jitgate/jitgate/controlplane/audit"
	"github.com/jitgate/jitgate/controlplane/authz"
	"github.com/jitgate/jitgate/controlplane/config"
	"github.com/jitgate/jitgate/controlplane/credentials"
	"github.com/jitgate/jitgate/controlplane/devissuer"
	"github.com/jitgate/jitgate/controlplane/identity"
	"github.com/jitgate/jitgate/controlplane/jobs"
	"github.com/jitgate/jitgate/controlplane/maskplan"
	"github.com/jitgate/jitgate/controlplane/mtls"
	"github.com/jitgate/jitgate/controlplane/natsembed"
	"github.com/jitgate/jitgate/controlplane/policystep"
	"github.com/jitgate/jitgate/controlplane/policystore"
	"github.com/jitgate/jitgate/controlplane/responses"
	"github.com/jitgate/jitgate/controlplane/sqlanalysis"
	"github.com/jitgate/jitgate/controlplane/xds"
	"github.com/jitgate/jitgate/policies/source"
)

// shutdownGrace bounds graceful shutdown; ADS streams never end on their own, so after
// this the gRPC server is stopped hard.
const shutdownGrace = 5 * time.Second

// approvalSweepInterval is how often expired approvals are marked (and announced) and the
// pending gauge is refreshed.
const approvalSweepInterval = 10 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	reload := make(chan os.Signal, 1)
	signal.Notify(reload, syscall.SIGHUP)
	os.Exit(run(ctx, os.Args[1:], reload, os.Stdout, os.Stderr))
}

const usageHeader = `jitgated - the jitgate control plane.

Serves Envoy's configuration over ADS (gRPC, --xds-listen), the plain HTTP API
(--api-listen: /healthz, /readyz, /v1/status, /metrics, /v1/approvals), the filter's
callouts on their own listener (--filter-listen: POST /v1/authorize: verify the agent's
OIDC token, mint a short-lived upstream credential; POST /v1/responses: before any
response of an allowed call is released, record the job it names and append its audit
record) and
NATS with JetStream (embedded unless --nats-url), which holds the job ledger (KV buckets
jitgate_jobs and jitgate_decisions). Follow-up calls on a job (jobs.get, getQueryResults,
cancel, delete, tabledata.list on its result table) are allowed only to the agent that
created the job through jitgate.

Audit: every authorize decision (allow and deny) is appended to the hash-chained JetStream
stream JITGATE_AUDIT before the filter gets the answer, and every response of an allowed
call before the filter releases it (status, rows, masked cells, bytes, sha256 of the body
the agent receives and its first audit.maxExcerptBytes; config audit.mode, audit.maxAge,
audit.maxBytes, audit.maxExcerptBytes). In strict mode (the default) a decision that cannot
be recorded is answered 503 audit_unavailable and no credential is released, and a
response that cannot be recorded is replaced by 503 response-not-recorded; "relaxed"
answers and releases as decided and logs an ERROR per unrecorded record (it breaks the
every-decision-is-audited guarantee; jitgated warns at start). Read the trail with
'jitgate audit tail|show|replay|verify|export --nats-url URL'. The embedded NATS is
in-process only unless --nats-listen (config nats.listen) opens a client port for that:
  jitgated --nats-listen 127.0.0.1:4222 ...
  jitgate audit tail --nats-url nats://127.0.0.1:4222
The port has no authentication (anyone who reaches it can read and alter jitgate's
JetStream state), so only loopback addresses are accepted unless the config file sets
nats.allowNonLoopbackListen: true.

Usage:
  jitgated [--config jitgated.yaml] [flags]
  jitgated --config jitgated.yaml --check-config

  # local development: a development OIDC issuer and a throwaway service-account key
  jitgate dev service-account-key --out .jitgate/dev-sa-key.json
  jitgated --dev-issuer --credentials-key-file .jitgate/dev-sa-key.json --upstream http://127.0.0.1:9050
  TOKEN=$(jitgate dev token --agent my-agent)

Envoy <-> jitgated is mutual TLS on both channels: ADS and the filter listener complete a
TLS handshake only with a client certificate issued by the configured CA (Envoy's); the
plain API answers the callout paths 403. Without tls.caFile/serverCertFile/serverKeyFile/
envoyCertFile/envoyKeyFile in the config, jitgated generates a private CA (ECDSA P-256)
and both certificates into --tls-dir (default: 'tls' next to the NATS store dir, keys
0600), reuses them while valid, and Envoy's bootstrap points at them:
  jitgate envoy bootstrap --node-id gw-1 --xds 127.0.0.1:18000 --tls-dir .jitgate/tls > envoy.yaml
The plain API listens on loopback only unless api.allowNonLoopbackListen: true.

Flags override the config file. Two things have no default: a trusted OIDC issuer
(identity.issuers, or --dev-issuer) and the service-account key (credentials.keyFile or
--credentials-key-file). A minimal file:
  apiVersion: jitgate.dev/v1
  kind: ControlPlaneConfig
  identity:
    issuers:
    - issuer: https://token.actions.githubusercontent.com
      audiences: [jitgate]
  credentials:
    keyFile: /etc/jitgate/sa-key.json
Relative paths in the file are resolved against the file's directory; relative flag values
against the working directory. SIGHUP reloads the config file and the policy directory; if
either is invalid the last good one stays live (identity, credentials, listen addresses and
policies.dir itself change on restart).

Approvals: a policy's approvals rule makes matching queries wait for a human (reject mode:
403 naming the approval and 'jitgate approve ID'; hold mode: the call waits up to the
rule's holdTimeout). Approvals live in the KV bucket jitgate_approvals; events go to
jitgate.approvals.created|approved|denied|expired (stream JITGATE_APPROVAL_EVENTS);
approvers use GET /v1/approvals and POST /v1/approvals/{id}/approve|deny with their own
OIDC token ('jitgate approvals list', 'jitgate approve ID', 'jitgate deny ID --reason R').
Config approvals.webhooks posts every new approval (format json or slack, with retries).

Policies: --policies DIR (config policies.dir) loads every *.yaml of DIR (policies/README.md),
refuses to start if it does not load, then watches it (a saved change is live in well
under a second) and reloads on SIGHUP; an invalid change keeps the last good policies, logs
each error as file:line:col and shows it in /v1/status ("policies") and the metrics
jitgate_policy_reload_total{result="error"} / jitgate_policy_reload_failing. Check a
directory before deploying it with: jitgate policy check DIR. Without a policy directory
every call is denied (403 no_policy: "no policy applies to agent X"); --identity-only
(config policies.identityOnly) instead allows every verified agent what the filter's
built-in rules allow, for a first setup only (a warning says so at start).
When several issuers are trusted (identity.issuers plus the development issuer), every
policy must list who.issuers and every approver group spec.issuers, or the directory does
not load: an agent id is unique only within its issuer.
With policies, queries are analysed with GoogleSQL over table metadata read by tables.get
from the upstream (config analysis.cacheSize, analysis.cacheTTL, analysis.tableMetadataTTL).

Flags:
`

type flags struct {
	configPath  string
	checkConfig bool
	logFormat   string
	logLevel    string
	overrides   config.Overrides
}

func parseFlags(args []string, stderr io.Writer) (*flags, error) {
	fs := flag.NewFlagSet("jitgated", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usageHeader)
		fs.PrintDefaults()
	}
	f := &flags{}
	fs.StringVar(&f.configPath, "config", "", "config file (YAML, apiVersion jitgate.dev/v1); without it every field takes its default")
	fs.BoolVar(&f.checkConfig, "check-config", false, "validate the configuration (file and flags), print the result and exit 0 if valid, 1 if not")
	fs.StringVar(&f.logFormat, "log-format", "json", "log format: json or text")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	xdsListen := fs.String("xds-listen", config.DefaultXDSListen, "host:port for the gRPC ADS server (config xds.listen)")
	apiListen := fs.String("api-listen", config.DefaultAPIListen, "host:port for the plain HTTP API: health, status, metrics, approvals; loopback only unless api.allowNonLoopbackListen (config api.listen)")
	filterListen := fs.String("filter-listen", config.DefaultFilterListen, "host:port for the filter's callouts (/v1/authorize, /v1/responses), mutual TLS with Envoy's client certificate only (config api.filterListen)")
	tlsDir := fs.String("tls-dir", "", "directory of the generated mutual-TLS material (private CA, jitgated's and Envoy's certificates) when tls.caFile etc. are not configured; default 'tls' next to the NATS store dir (config tls.dir)")
	agentListen := fs.String("agent-listen", config.DefaultAgentListener, "IP:port of Envoy's listener for agents (config envoy.agentListener)")
	upstream := fs.String("upstream", config.DefaultBigQueryURL, "BigQuery base URL: https://... (TLS) or http://IP:port such as the emulator (config upstream.bigquery.url)")
	wasm := fs.String("wasm", config.DefaultWasmPath, "path of the compiled filter module, as Envoy opens it (config filter.wasmPath)")
	natsURL := fs.String("nats-url", "", "URL of an existing NATS cluster with JetStream; empty embeds one (config nats.url)")
	natsStore := fs.String("nats-store-dir", config.DefaultNATSStoreDir, "JetStream directory of the embedded NATS (config nats.storeDir)")
	natsListen := fs.String("nats-listen", "", "loopback IP:port where the embedded NATS also accepts clients such as 'jitgate audit --nats-url' (no authentication); empty: in-process only (config nats.listen)")
	devIssuer := fs.Bool("dev-issuer", false, "run a development OIDC issuer and trust it; for laptops and tests only, never production (config devIssuer.enabled)")
	devIssuerListen := fs.String("dev-issuer-listen", config.DefaultDevIssuerListen, "loopback IP:port of the development issuer (config devIssuer.listen)")
	keyFile := fs.String("credentials-key-file", "", "service-account JSON key that signs upstream credentials (config credentials.keyFile)")
	policiesDir := fs.String("policies", "", "policy directory (*.yaml AgentPolicy/ApproverGroup documents) deciding every call; watched and reloaded on change and SIGHUP; empty: every call is denied (no_policy) unless --identity-only (config policies.dir)")
	identityOnly := fs.Bool("identity-only", false, "first setup only, without --policies: every verified agent may do whatever the filter's built-in rules allow (DML, DDL, exports, unmasked reads); logged as a warning (config policies.identityOnly)")
	hashKeyFile := fs.String("masking-hash-key-file", "", "file holding the HMAC key (>= 32 bytes, raw or base64) of the hash mask action, the same on every replica; empty: hash rules are denied (config masking.hashKeyFile)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	// Only flags given on the command line override the file.
	fs.Visit(func(fl *flag.Flag) {
		switch fl.Name {
		case "xds-listen":
			f.overrides.XDSListen = xdsListen
		case "api-listen":
			f.overrides.APIListen = apiListen
		case "filter-listen":
			f.overrides.FilterListen = filterListen
		case "tls-dir":
			f.overrides.TLSDir = tlsDir
		case "agent-listen":
			f.overrides.AgentListener = agentListen
		case "upstream":
			f.overrides.UpstreamURL = upstream
		case "wasm":
			f.overrides.WasmPath = wasm
		case "nats-url":
			f.overrides.NATSURL = natsURL
		case "nats-store-dir":
			f.overrides.NATSStoreDir = natsStore
		case "nats-listen":
			f.overrides.NATSListen = natsListen
		case "dev-issuer":
			f.overrides.DevIssuer = devIssuer
		case "dev-issuer-listen":
			f.overrides.DevIssuerListen = devIssuerListen
		case "credentials-key-file":
			f.overrides.CredentialsKeyFile = keyFile
		case "policies":
			f.overrides.PoliciesDir = policiesDir
		case "masking-hash-key-file":
			f.overrides.HashKeyFile = hashKeyFile
		case "identity-only":
			f.overrides.IdentityOnly = identityOnly
		}
	})
	return f, nil
}

func loadConfig(f *flags) (*config.Config, error) {
	var cfg *config.Config
	var err error
	if f.configPath != "" {
		cfg, err = config.Load(f.configPath)
	} else {
		cfg, err = config.Default()
	}
	if err != nil {
		return nil, err
	}
	if err := cfg.Apply(f.overrides); err != nil {
		return nil, err
	}
	if err := cfg.ValidateForServe(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func newLogger(format, level string, w io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want json or text", format)
}

// run is jitgated's main; it returns the process exit code. Cancelling ctx shuts down
// gracefully; a value on reload re-reads the config file.
func run(ctx context.Context, args []string, reload <-chan os.Signal, stdout, stderr io.Writer) int {
	f, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "jitgated:", err)
		return 2
	}
	log, err := newLogger(f.logFormat, f.logLevel, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "jitgated:", err)
		return 2
	}
	cfg, err := loadConfig(f)
	if f.checkConfig {
		if err != nil {
			fmt.Fprintln(stderr, "jitgated: config invalid:", err)
			return 1
		}
		fmt.Fprintf(stdout, "config OK: xds %s (mTLS), api %s, filter callouts %s (mTLS), tls %s, agents %s, upstream %s, wasm %s, nats %s, issuers %s, credentials %s (key loaded, ttl %s)\n",
			cfg.XDS.Listen, cfg.API.Listen, cfg.API.FilterListen, tlsDescription(cfg), cfg.Envoy.AgentListener, cfg.Upstream.BigQuery.URL,
			cfg.Filter.WasmPath, natsDescription(cfg), strings.Join(issuerURLs(cfg.IdentityConfig(cfg.DevIssuer.URL())), " "),
			cfg.Credentials.Mode, cfg.Credentials.TTL)
		if cfg.DevIssuer.Enabled {
			fmt.Fprintf(stderr, "warning: the development issuer is enabled (%s): anyone on this machine can mint agent tokens\n", cfg.DevIssuer.URL())
		}
		if cfg.Audit.Mode == config.AuditRelaxed {
			fmt.Fprintln(stderr, "warning: "+relaxedAuditWarning)
		}
		if _, err := os.Stat(cfg.Filter.WasmPath); err != nil {
			fmt.Fprintf(stderr, "warning: filter module %s: %v (Envoy will reject the filter until it exists)\n", cfg.Filter.WasmPath, err)
		}
		if cfg.Policies.Dir == "" {
			if cfg.Policies.IdentityOnly {
				fmt.Fprintln(stderr, identityOnlyWarning)
			} else {
				fmt.Fprintln(stderr, noPoliciesWarning)
			}
			return 0
		}
		res, err := source.LoadWith(cfg.Policies.Dir, source.Options{TrustedIssuers: issuerURLs(cfg.IdentityConfig(cfg.DevIssuer.URL()))})
		if err != nil {
			fmt.Fprintf(stderr, "jitgated: policies invalid:\n%v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "policies OK: %s, %d policies, version %s\n", cfg.Policies.Dir, len(res.Bundle.Policies), res.Bundle.Version)
		return 0
	}
	if err != nil {
		log.Error("config invalid", "error", err)
		return 1
	}
	if err := serve(ctx, f, cfg, reload, log); err != nil {
		log.Error("jitgated stopped", "error", err)
		return 1
	}
	return 0
}

func issuerURLs(ic identity.Config) []string {
	urls := make([]string, len(ic.Issuers))
	for n, is := range ic.Issuers {
		urls[n] = is.Issuer
	}
	return urls
}

// noPoliciesWarning is logged (and printed by --check-config) when no policy directory is
// configured: every call is denied.
const noPoliciesWarning = "warning: no policies are loaded (policies.dir / --policies is empty): every call is denied (403 no_policy); configure a policy directory (policies/README.md), or for a first setup only --identity-only (policies.identityOnly)"

// identityOnlyWarning is logged (and printed by --check-config) in identity-only mode.
const identityOnlyWarning = "warning: IDENTITY-ONLY MODE (policies.identityOnly / --identity-only): no policies are loaded and every verified agent may do whatever the filter's built-in rules and the job ledger allow: " +
	"DML, DDL, EXPORT DATA, scripts, legacy SQL, external tables, writes to any table and unmasked reads of every table; for a first setup only, never production; configure a policy directory (policies/README.md)"

// newAuthorizer builds what POST /v1/authorize needs: the development issuer when enabled,
// the identity verifier, the steps (the job ledger's follow-up check, the policy step with
// the SQL analyser when a policy store is given, the job ledger's decision record) and the
// credential minter. stop shuts the development issuer down.
func newAuthorizer(ctx context.Context, cfg *config.Config, store *policystore.Store, ledger *jobs.Ledger, broker *approvals.Broker, auditor authz.Auditor, log *slog.Logger, reg prometheus.Registerer) (
	svc *authz.Service, verifier *identity.Verifier, st api.IdentityStatus, stop func(), err error) {
	stop = func() {}
	devURL := ""
	if cfg.DevIssuer.Enabled {
		if err := os.MkdirAll(filepath.Dir(cfg.DevIssuer.KeyFile), 0o700); err != nil {
			return nil, nil, st, stop, fmt.Errorf("development issuer key directory: %w", err)
		}
		dev, err := devissuer.Start(devissuer.Options{Addr: cfg.DevIssuer.Listen, KeyFile: cfg.DevIssuer.KeyFile, Audience: cfg.DevIssuer.Audience})
		if err != nil {
			return nil, nil, st, stop, fmt.Errorf("development issuer: %w", err)
		}
		stop = func() { _ = dev.Close() }
		devURL = dev.URL()
		st.DevIssuer = devURL
		log.Warn("DEVELOPMENT ISSUER ENABLED: any process on this machine can mint agent tokens for any agent; never enable it in production",
			"issuer", devURL, "token_endpoint", devURL+devissuer.TokenPath, "audience", cfg.DevIssuer.Audience,
			"key_file", cfg.DevIssuer.KeyFile)
	}
	fail := func(err error) (*authz.Service, *identity.Verifier, api.IdentityStatus, func(), error) {
		stop()
		return nil, nil, api.IdentityStatus{}, func() {}, err
	}
	idCfg := cfg.IdentityConfig(devURL)
	verifier, err = identity.NewVerifier(idCfg, identity.Options{Logger: log, KeyMaxAge: time.Duration(idCfg.KeyMaxAge)})
	if err != nil {
		return fail(fmt.Errorf("identity: %w", err))
	}
	st.Ready, st.Issuers = true, issuerURLs(idCfg)
	// Discovery is lazy; warming only surfaces a wrong issuer URL in the log early.
	go func() {
		wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		if err := verifier.Warm(wctx); err != nil {
			log.Warn("identity issuer not reachable yet; its agents get 503 until it is", "error", err)
		}
	}()
	minter, err := credentials.New(cfg.Credentials, credentials.WithLogger(log))
	if err != nil {
		return fail(fmt.Errorf("credentials: %w", err))
	}
	// Follow-ups on existing jobs are checked against the job ledger first, with or
	// without policies; allowed job-creating calls are recorded last, before minting.
	steps := []authz.Step{ledger.FollowUpStep(jobs.StepOptions{PoliciesEnabled: store != nil})}
	if store != nil {
		analyzer, err := newAnalyzer(ctx, cfg, log, sqlanalysis.NewMetrics(reg))
		if err != nil {
			return fail(err)
		}
		step, err := policystep.New(policystep.Options{Bundles: store, Analyzer: analyzer, Jobs: ledger.PolicyLedger(),
			MinterMode: cfg.Credentials.Mode, Logger: log})
		if err != nil {
			return fail(err)
		}
		steps = append(steps, step)
		// The allow decision's masking rules become the filter's masking instruction
		// (or a denial when they cannot be honoured), before the ledger records it.
		var key []byte
		if cfg.Masking.HashKeyFile != "" {
			if key, err = config.LoadHashKey(cfg.Masking.HashKeyFile); err != nil {
				return fail(fmt.Errorf("masking: %w", err))
			}
		} else {
			log.Warn("no masking hash key configured (masking.hashKeyFile): calls whose masking rules hash a column are denied")
		}
		mstep, err := maskplan.Step(maskplan.StepOptions{Builder: maskplan.NewBuilder(key), Lineage: analyzer,
			Tables: analyzer.Tables(), Jobs: ledger, Logger: log})
		if err != nil {
			return fail(err)
		}
		steps = append(steps, mstep)
		// Calls the policy allows only once a human approves them wait here: after the
		// masking step, so nobody is asked to approve a call that would be refused anyway.
		steps = append(steps, broker.Step(store))
	}
	steps = append(steps, ledger.DecisionStep())
	svc, err = authz.New(authz.Options{
		Verifier: verifier, Minter: minter, CredentialTTL: cfg.Credentials.TTL,
		Steps: steps, Logger: log, Metrics: authz.NewMetrics(reg),
		Audit: auditor, AuditMode: authz.AuditMode(cfg.Audit.Mode),
		// Without a policy store nothing sets a policy decision: every call is denied
		// no_policy unless the operator chose identity-only mode.
		IdentityOnly: store == nil && cfg.Policies.IdentityOnly,
	})
	if err != nil {
		return fail(err)
	}
	log.Info("authorize ready", "issuers", st.Issuers, "credential_mode", cfg.Credentials.Mode,
		"credential_ttl", cfg.Credentials.TTL.String())
	return svc, verifier, st, stop, nil
}

func tlsDescription(cfg *config.Config) string {
	if cfg.TLSGenerated() {
		return "generated in " + cfg.TLSDir()
	}
	return "files (ca " + cfg.TLS.CAFile + ")"
}

// serverTLS returns the tls.Config of the ADS and filter listeners, generating (or
// reusing) the private CA and both certificates first when no files are configured.
func serverTLS(cfg *config.Config, log *slog.Logger, nextProtos ...string) (*tls.Config, error) {
	if cfg.TLSGenerated() {
		g, err := mtls.Ensure(cfg.TLSDir(), cfg.TLSServerHosts(), time.Now())
		if err != nil {
			return nil, fmt.Errorf("tls material: %w", err)
		}
		if g.Created {
			log.Warn("generated a new private CA and certificates for Envoy <-> jitgated mutual TLS; Envoys using older files must be restarted with these",
				"dir", g.Dir, "ca", g.Server.CA, "envoy_cert", g.Envoy.Cert, "envoy_key", g.Envoy.Key, "server_names", cfg.TLSServerHosts())
		} else {
			log.Info("reusing mutual TLS material", "dir", g.Dir)
		}
	}
	return mtls.ServerConfig(cfg.ServerTLS(), nextProtos...)
}

func natsDescription(cfg *config.Config) string {
	if cfg.NATS.URL == "" {
		if cfg.NATS.Listen != "" {
			return "embedded (store " + cfg.NATS.StoreDir + ", clients on " + cfg.NATS.Listen + ")"
		}
		return "embedded (store " + cfg.NATS.StoreDir + ")"
	}
	return cfg.NATS.RedactedURL()
}

func serve(ctx context.Context, f *flags, cfg *config.Config, reload <-chan os.Signal, log *slog.Logger) error {
	started := time.Now()
	if _, err := os.Stat(cfg.Filter.WasmPath); err != nil {
		log.Warn("filter module missing; Envoy will reject the jitgate filter and keep the agent listener warming until it exists",
			"wasm", cfg.Filter.WasmPath, "error", err)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := xds.NewMetrics(reg)

	// Envoy <-> jitgated is mutual TLS on both channels (ADS and the filter's callouts):
	// the material exists before anything listens.
	xdsTLS, err := serverTLS(cfg, log)
	if err != nil {
		return err
	}
	filterTLS := xdsTLS.Clone()
	filterTLS.NextProtos = []string{"http/1.1"}

	// Bind every port before anything else so a port clash fails fast.
	xdsLis, err := net.Listen("tcp", cfg.XDS.Listen)
	if err != nil {
		return fmt.Errorf("xds listen: %w", err)
	}
	apiLis, err := net.Listen("tcp", cfg.API.Listen)
	if err != nil {
		xdsLis.Close()
		return fmt.Errorf("api listen: %w", err)
	}
	filterLis, err := net.Listen("tcp", cfg.API.FilterListen)
	if err != nil {
		xdsLis.Close()
		apiLis.Close()
		return fmt.Errorf("filter listen: %w", err)
	}
	defer filterLis.Close()

	store, err := openPolicies(cfg, log, reg)
	if err != nil {
		xdsLis.Close()
		apiLis.Close()
		return err
	}

	// NATS before the authorizer: the job ledger lives in its JetStream KV.
	nc, err := natsembed.Start(ctx, natsembed.Options{
		URL: cfg.NATS.URL, StoreDir: cfg.NATS.StoreDir,
		MaxMemoryBytes: cfg.NATS.MaxMemoryBytes, MaxStoreBytes: cfg.NATS.MaxStoreBytes,
		Listen: cfg.NATS.Listen, Name: "jitgated", Logger: log,
	})
	if err != nil {
		xdsLis.Close()
		apiLis.Close()
		return err
	}
	defer nc.Close()
	natsURL := cfg.NATS.RedactedURL()
	ledger, err := jobs.Open(ctx, nc.JetStream, jobs.Options{Logger: log, Metrics: jobs.NewMetrics(reg)})
	if err != nil {
		xdsLis.Close()
		apiLis.Close()
		return fmt.Errorf("job ledger: %w", err)
	}

	auditor, err := openAudit(ctx, cfg, nc, log, reg)
	if err != nil {
		xdsLis.Close()
		apiLis.Close()
		return err
	}

	auditStatus := func() api.AuditStatus { return api.AuditStatus{Mode: cfg.Audit.Mode, Status: auditor.Status()} }

	broker, err := approvals.Open(ctx, nc.JetStream, approvals.Options{Logger: log, Metrics: approvals.NewMetrics(reg), Audit: auditor})
	if err != nil {
		xdsLis.Close()
		apiLis.Close()
		return fmt.Errorf("approvals: %w", err)
	}
	go broker.Run(ctx, approvalSweepInterval)
	go func() {
		if err := approvals.NewNotifier(nc.JetStream, webhooks(cfg), log, broker.Metrics()).Run(ctx); err != nil {
			log.Error("approval webhooks not running", "error", err)
		}
	}()

	authorizer, verifier, identityStatus, stopDevIssuer, err := newAuthorizer(ctx, cfg, store, ledger, broker, auditor, log, reg)
	if err != nil {
		xdsLis.Close()
		apiLis.Close()
		return err
	}
	defer stopDevIssuer()

	cache := xds.NewCache(cfg.Envoy.NodeCluster, log)
	publisher := xds.NewPublisher(cache, cfg.Envoy.NodeCluster, log, metrics)
	var policyStatus func() policystore.Status
	if store != nil {
		// Every new good bundle goes to every Envoy (its version and compiled JSON in the
		// filter's ECDS configuration, which the filter checks allowed calls against); the
		// first call only records the bundle for the first snapshot.
		store.Subscribe(func(snap *policystore.Snapshot) {
			_ = publisher.PublishPolicy(ctx, snap.Bundle) // logs its own failure
		})
		go store.Watch(ctx)
		policyStatus = store.Status
	}
	if err := publisher.Publish(ctx, cfg); err != nil {
		xdsLis.Close()
		apiLis.Close()
		return fmt.Errorf("initial snapshot: %w", err)
	}

	grpcSrv, err := xds.NewGRPCServer(ctx, cache, xdsTLS, log, metrics)
	if err != nil {
		xdsLis.Close()
		apiLis.Close()
		return err
	}
	apiOpts := api.Options{
		XDSStatus: publisher.Status,
		NATS: func() api.NATSStatus {
			return api.NATSStatus{Embedded: nc.Embedded(), Connected: nc.Healthy(), URL: natsURL}
		},
		Identity:  func() api.IdentityStatus { return identityStatus },
		Policies:  policyStatus,
		Audit:     auditStatus,
		Authorize: authorizer,
		Responses: responses.NewHandler(responses.Options{Trail: auditor, Ledger: ledger,
			Relaxed: cfg.Audit.Mode == config.AuditRelaxed, MaxExcerptBytes: cfg.Audit.MaxExcerptBytes,
			Logger: log, Registerer: reg}),
		Approvals: broker.Handler(verifier, log),
		Gatherer:  reg,
		Started:   started,
	}
	httpSrv := &http.Server{Handler: api.NewHandler(apiOpts), ReadHeaderTimeout: 10 * time.Second}
	// The callouts: only to clients with a certificate from Envoy's CA (filterTLS). A
	// refused handshake (someone without Envoy's certificate) is logged as a warning.
	filterSrv := &http.Server{Handler: api.NewFilterHandler(apiOpts), TLSConfig: filterTLS, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(log.With("component", "filter-listener").Handler(), slog.LevelWarn)}
	errc := make(chan error, 3)
	go func() { errc <- grpcSrv.Serve(xdsLis) }()
	go func() {
		if err := httpSrv.Serve(apiLis); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	go func() {
		if err := filterSrv.Serve(tls.NewListener(filterLis, filterTLS)); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	log.Info("jitgated serving", "xds", xdsLis.Addr().String(), "api", apiLis.Addr().String(), "filter_callouts", filterLis.Addr().String(),
		"tls", tlsDescription(cfg),
		"agent_listener", cfg.Envoy.AgentListener, "upstream", cfg.Upstream.BigQuery.URL,
		"nats", natsDescription(cfg))

	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			log.Info("shutting down")
			break loop
		case err := <-errc:
			runErr = fmt.Errorf("server: %w", err)
			break loop
		case <-reload:
			reloadConfig(ctx, f, publisher, log)
			if store != nil {
				_ = store.Reload("SIGHUP") // logs, reports and keeps the last good bundle on error
			}
		}
	}

	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := httpSrv.Shutdown(shutdownCtx); err != nil {
		httpSrv.Close()
	}
	if err := filterSrv.Shutdown(shutdownCtx); err != nil {
		filterSrv.Close()
	}
	stopped := make(chan struct{})
	go func() { grpcSrv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-shutdownCtx.Done():
		grpcSrv.Stop() // open ADS streams do not end by themselves
	}
	return runErr
}

// webhooks converts the configured approval webhooks.
func webhooks(cfg *config.Config) []approvals.Webhook {
	var out []approvals.Webhook
	for _, w := range cfg.Approvals.Webhooks {
		out = append(out, approvals.Webhook{Name: w.Name, URL: w.URL, Slack: w.Format == config.WebhookSlack,
			Timeout: w.Timeout, MaxAttempts: w.MaxAttempts})
	}
	return out
}

// relaxedAuditWarning is logged at start (and printed by --check-config) in relaxed mode.
const relaxedAuditWarning = "audit.mode is relaxed: a decision whose audit record cannot be written is answered as decided (an ERROR is logged for each), " +
	"so allowed calls can go unrecorded while NATS is unavailable; this breaks the guarantee that every decision is audited before it takes effect. " +
	"Use audit.mode strict (the default) in production"

// openAudit opens the audit trail's writer on NATS (creating or updating the stream to
// the audit settings) and registers its metrics. It fails in either mode: a stream that
// cannot even be opened at start is a configuration problem.
func openAudit(ctx context.Context, cfg *config.Config, nc *natsembed.NATS, log *slog.Logger, reg prometheus.Registerer) (*audit.Writer, error) {
	if cfg.Audit.Mode == config.AuditRelaxed {
		log.Warn(relaxedAuditWarning)
	}
	w, err := audit.Open(ctx, nc.JetStream, audit.Config{
		MaxAge: cfg.Audit.MaxAge, MaxBytes: cfg.Audit.MaxBytes, MaxExcerptBytes: cfg.Audit.MaxExcerptBytes,
		Metrics: audit.NewMetrics(reg), Logger: log,
	})
	if err != nil {
		return nil, fmt.Errorf("audit trail: %w", err)
	}
	st := w.Status()
	log.Info("audit trail ready", "stream", st.Stream, "last_seq", st.LastSeq, "mode", cfg.Audit.Mode,
		"max_age", cfg.Audit.MaxAge.String(), "max_bytes", cfg.Audit.MaxBytes)
	return w, nil
}

// openPolicies loads the configured policy directory (nil without one, after a warning).
// A directory that does not load stops jitgated, every error logged with file:line:col.
func openPolicies(cfg *config.Config, log *slog.Logger, reg prometheus.Registerer) (*policystore.Store, error) {
	if cfg.Policies.Dir == "" {
		if cfg.Policies.IdentityOnly {
			log.Warn(strings.TrimPrefix(identityOnlyWarning, "warning: "))
		} else {
			log.Warn(strings.TrimPrefix(noPoliciesWarning, "warning: "))
		}
		return nil, nil
	}
	// An agent id is unique only within its issuer: with several issuers trusted, every
	// policy must say which one its agents come from.
	store, err := policystore.Open(cfg.Policies.Dir, policystore.Options{Logger: log, Metrics: policystore.NewMetrics(reg),
		TrustedIssuers: issuerURLs(cfg.IdentityConfig(cfg.DevIssuer.URL()))})
	if err != nil {
		var list source.ErrorList
		if errors.As(err, &list) {
			for _, e := range list {
				log.Error("policy error", "error", e.Error(), "dir", cfg.Policies.Dir)
			}
			return nil, fmt.Errorf("policies %s: %d errors (first: %v)", cfg.Policies.Dir, len(list), list[0])
		}
		return nil, err
	}
	return store, nil
}

// reloadConfig re-reads the config file on SIGHUP; an invalid file leaves the last good
// snapshot live. Listen addresses and NATS settings take effect only on restart.
func reloadConfig(ctx context.Context, f *flags, publisher *xds.Publisher, log *slog.Logger) {
	if f.configPath == "" {
		log.Info("SIGHUP ignored: no --config file to reload")
		return
	}
	cfg, err := loadConfig(f)
	if err != nil {
		log.Error("config reload failed; last good snapshot stays live", "error", err)
		return
	}
	_ = publisher.Publish(ctx, cfg) // Publish logs and records its own failure
}
