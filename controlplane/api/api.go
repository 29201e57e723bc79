// Package api owns jitgated's HTTP API on two listeners. The plain one (NewHandler):
// liveness (/healthz), readiness (/readyz), the operator status document (/v1/status:
// xDS, NATS, identity, the live policies and the audit trail), Prometheus metrics
// (/metrics) and the approvers' /v1/approvals. The filter's callouts (POST /v1/authorize,
// served by controlplane/authz; POST /v1/responses, controlplane/responses, which also
// records jobs in the job ledger) are served only by NewFilterHandler, which jitgated puts
// behind mutual TLS (Envoy's client certificate) and Envoy reaches through the
// "jitgate_controlplane" cluster: an answer to /v1/authorize holds a minted upstream
// credential, so no other client may ask for one.
package api

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/jitgate/jitgate/controlplane/audit"
	"github.com/jitgate/jitgate/controlplane/policystore"
	"github.com/jitgate/jitgate/controlplane/xds"
	"github.com/jitgate/jitgate/filter/authorize"
)

// Options are the API's dependencies.
type Options struct {
	// XDSStatus reports the snapshot publisher's state.
	XDSStatus func() xds.Status
	// NATS reports the NATS connection's state.
	NATS func() NATSStatus
	// Identity reports the agent identity verifier; nil means it was not constructed.
	Identity func() IdentityStatus
	// Policies reports the policy store; nil means no policies are configured.
	Policies func() policystore.Status
	// Audit reports the audit trail's writer; nil leaves "audit" out of /v1/status.
	Audit func() AuditStatus
	// Authorize serves the filter's authorize callout (authz.Service); nil answers 503.
	Authorize http.Handler
	// Responses serves the filter's response reports (POST /v1/responses: job ledger and
	// response audit records, controlplane/responses); nil answers 503.
	Responses http.Handler
	// Approvals serves the approvers' API (/v1/approvals, controlplane/approvals); nil
	// answers 503.
	Approvals http.Handler
	// Gatherer serves /metrics.
	Gatherer prometheus.Gatherer
	// Started is when the process started.
	Started time.Time
}

// NATSStatus is the NATS part of /v1/status.
type NATSStatus struct {
	// Embedded is true when jitgated runs the NATS server in-process.
	Embedded bool `json:"embedded"`
	// Connected is true while the client connection is up.
	Connected bool `json:"connected"`
	// URL is the configured cluster URL with credentials redacted; empty when embedded.
	URL string `json:"url,omitempty"`
}

// IdentityStatus is the identity part of /v1/status.
type IdentityStatus struct {
	// Ready is true once the verifier is constructed. Issuers are discovered lazily, so an
	// unreachable issuer does not make jitgated unready (its tokens get 503 until it is back).
	Ready bool `json:"ready"`
	// Issuers are the trusted issuer URLs, the development issuer included.
	Issuers []string `json:"issuers"`
	// DevIssuer is the development issuer's URL when it runs; empty otherwise.
	DevIssuer string `json:"devIssuer,omitempty"`
}

// AuditStatus is the audit part of /v1/status: the mode ("strict" or "relaxed") and the
// writer's stream, last sequence, counts and last error.
type AuditStatus struct {
	Mode string `json:"mode"`
	audit.Status
}

// Status is the /v1/status document.
type Status struct {
	// Ready is what /readyz answers.
	Ready bool `json:"ready"`
	// UptimeSeconds since the process started.
	UptimeSeconds int64 `json:"uptimeSeconds"`
	// XDS is the snapshot served to Envoys and the last translation error.
	XDS xds.Status `json:"xds"`
	// NATS is the NATS connection.
	NATS NATSStatus `json:"nats"`
	// Identity is the agent identity verifier.
	Identity IdentityStatus `json:"identity"`
	// Policies is the live policy bundle and the last reload error.
	Policies policystore.Status `json:"policies"`
	// Audit is the audit trail every decision is appended to.
	Audit *AuditStatus `json:"audit,omitempty"`
}

// FilterOnlyMessage is what the plain API answers (403) on the filter's callout paths.
const FilterOnlyMessage = "this endpoint is served only to Envoy, on jitgated's filter listener (api.filterListen, " +
	"mutual TLS with Envoy's client certificate); the plain API does not authorize calls or take reports"

// NewHandler returns the plain API's HTTP handler: everything but the filter's callouts,
// which it refuses with 403 and FilterOnlyMessage.
func NewHandler(o Options) http.Handler {
	mux := http.NewServeMux()
	filterOnly := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusForbidden, map[string]string{"error": FilterOnlyMessage})
	})
	for _, p := range calloutPaths {
		mux.Handle(p, filterOnly)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		st := o.status()
		code := http.StatusOK
		if !st.Ready {
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, map[string]any{"ready": st.Ready, "xdsSnapshotVersion": st.XDS.SnapshotVersion,
			"natsConnected": st.NATS.Connected, "identityReady": st.Identity.Ready})
	})
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, o.status())
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{}))
	approvalsHandler := o.Approvals
	if approvalsHandler == nil {
		approvalsHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "approvals are not configured"})
		})
	}
	mux.Handle("/v1/approvals", approvalsHandler)
	mux.Handle("/v1/approvals/", approvalsHandler)
	mux.HandleFunc("/", notFound)
	return mux
}

// calloutPaths are the filter's callouts: served by NewFilterHandler only.
var calloutPaths = []string{authorize.Path, authorize.AbandonPath, authorize.ResponsesPath}

// NewFilterHandler returns the handler of the filter listener: the filter's callouts and
// /healthz, nothing else. Serve it only behind mutual TLS (mtls.ServerConfig).
func NewFilterHandler(o Options) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	authorizeHandler := o.Authorize
	if authorizeHandler == nil {
		authorizeHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "authorize is not configured"})
		})
	}
	mux.Handle(authorize.Path, authorizeHandler)
	mux.Handle(authorize.AbandonPath, authorizeHandler) // the same Service: it stops its own pending decisions
	responsesHandler := o.Responses
	if responsesHandler == nil {
		responsesHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "response reports are not configured"})
		})
	}
	mux.Handle(authorize.ResponsesPath, responsesHandler)
	mux.HandleFunc("/", notFound)
	return mux
}

func notFound(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such endpoint: " + r.Method + " " + r.URL.Path})
}

// status is ready once Envoys can be served a snapshot, NATS is reachable and agents can
// be verified.
func (o Options) status() Status {
	st := Status{UptimeSeconds: int64(time.Since(o.Started).Seconds())}
	if o.XDSStatus != nil {
		st.XDS = o.XDSStatus()
	}
	if o.NATS != nil {
		st.NATS = o.NATS()
	}
	if o.Identity != nil {
		st.Identity = o.Identity()
	}
	st.Policies = policystore.DisabledStatus()
	if o.Policies != nil {
		st.Policies = o.Policies()
	}
	if o.Audit != nil {
		a := o.Audit()
		st.Audit = &a
	}
	st.Ready = st.XDS.SnapshotVersion != "" && st.NATS.Connected && st.Identity.Ready && o.Authorize != nil
	return st
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
