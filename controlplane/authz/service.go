// Package authz owns the control plane's answer to the filter's authorize callout
// (POST /v1/authorize; the contract is filter/authorize). Every call becomes one decision
// with its own id: the agent's token is verified (identity), the ordered Steps run (policy,
// SQL analysis, approvals slot in there), and only then is a short-lived upstream
// credential minted for the call. Each decision is logged once and counted; the agent's
// token and the minted credential are never logged, counted or echoed in errors.
//
// # Audit
//
// With Options.Audit set, every decision (allow and deny, identity failures and step
// denials included) is appended to the audit trail (controlplane/audit) before the answer
// goes back to the filter: decision and request id, verified agent, client address and
// user agent, the call (API, project, job id), SQL, a digest of the parameters, the SQL
// analysis summary, decision, reason, rule, step, policy name@version and bundle, and the
// minted credential's id (never the credential or the agent's token). In AuditStrict mode
// (the default) a record that cannot be written turns the answer into Deny 503
// ReasonAuditUnavailable without a credential, whatever was decided: the filter fails
// closed and the client retries. AuditRelaxed answers as decided and logs an ERROR per
// unrecorded decision. Calls rejected before a decision (a malformed document: 400, 405,
// 413) are logged but not audited: there is no decision, nothing was allowed, and the
// document may not even name a request.
//
// # Abandoned calls
//
// Envoy does not cancel a Wasm filter's pending callout when the agent's stream ends (the
// client gave up or disconnected; a call held for an approval is the long case), so the
// filter posts the pending call's document to authorize.AbandonPath and the Service stops
// that decision (same request id and agent token); a callout whose connection closes (its
// timeout) stops too. An allow decided after that point is recorded and
// logged as Deny 503 ReasonCancelled (step "answer") without a credential, and every call
// that does not end in an allow gets back what its steps spent on it (Call.OnUndo: an
// approval's use), so nothing is consumed on behalf of an answer nobody receives.
package authz

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jitgate/jitgate/controlplane/credentials"
	"github.com/jitgate/jitgate/controlplane/identity"
	"github.com/jitgate/jitgate/filter/authorize"
)

// TokenVerifier verifies an agent's bearer token; *identity.Verifier implements it.
type TokenVerifier interface {
	Verify(ctx context.Context, rawToken string) (identity.Identity, error)
}

// Options are a Service's dependencies.
type Options struct {
	// Verifier checks agent tokens. Required.
	Verifier TokenVerifier
	// Minter mints the upstream credential of an allowed call. Required.
	Minter credentials.Minter
	// CredentialTTL is the lifetime asked of the minter; a Step may shorten it (a policy's
	// TTL). Zero leaves it to the minter's configured default.
	CredentialTTL time.Duration
	// Steps run in order after the agent is verified and before the credential is minted;
	// the first denial ends the decision.
	Steps []Step
	// Logger receives one line per decision. Default slog.Default().
	Logger *slog.Logger
	// Metrics records decisions and mints; nil records into a private registry.
	Metrics *Metrics
	// Audit receives every decision's record before the answer is sent (*audit.Writer);
	// nil audits nothing (tests and tools; jitgated always sets it).
	Audit Auditor
	// AuditMode is what a call gets when its record cannot be written: AuditStrict (the
	// default, also for "") or AuditRelaxed.
	AuditMode AuditMode
	// Now is the clock for decision ids and latency. Default time.Now.
	Now func() time.Time
	// IdentityOnly lets a call through that no policy decided (no step set
	// Call.Decision, because the pipeline has no policy step): every verified agent gets
	// a credential. It is jitgated's first-setup switch (policies.identityOnly). Without
	// it such a call is denied 403 ReasonNoPolicy: deny by default.
	IdentityOnly bool
}

// Service serves POST authorize.Path and authorize.AbandonPath. It is safe for
// concurrent use.
type Service struct {
	pending   pendingCalls
	pipeline  []Step
	ttl       time.Duration
	log       *slog.Logger
	metrics   *Metrics
	now       func() time.Time
	auditor   Auditor
	auditMode AuditMode
}

// New checks o and builds a Service.
func New(o Options) (*Service, error) {
	if o.Verifier == nil || o.Minter == nil {
		return nil, errors.New("authz: a Verifier and a Minter are required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(prometheus.NewRegistry())
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	mode, err := ParseAuditMode(string(o.AuditMode))
	if err != nil {
		return nil, fmt.Errorf("authz: %w", err)
	}
	pipeline := []Step{identityStep{o.Verifier}}
	for _, st := range o.Steps {
		if st == nil {
			return nil, errors.New("authz: nil Step")
		}
		pipeline = append(pipeline, st)
	}
	if !o.IdentityOnly {
		pipeline = append(pipeline, defaultDenyStep{})
	}
	pipeline = append(pipeline, mintStep{o.Minter, o.Metrics})
	return &Service{pipeline: pipeline, ttl: o.CredentialTTL, log: o.Logger, metrics: o.Metrics, now: o.Now,
		auditor: o.Audit, auditMode: mode}, nil
}

// ServeHTTP answers one authorize call. A document that breaks the contract gets 400 (413
// when too large) and no decision; the filter fails closed on anything but 200.
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == authorize.AbandonPath {
		s.serveAbandon(w, r)
		return
	}
	start := s.now()
	id := NewDecisionID(start)
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, id, "use POST")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, authorize.MaxDocumentBytes))
	var req authorize.Request
	if err == nil {
		req, err = authorize.ParseRequest(body)
	}
	if err != nil {
		code, reason := http.StatusBadRequest, "malformed_request"
		if _, tooLarge := errors.AsType[*http.MaxBytesError](err); tooLarge {
			code, reason = http.StatusRequestEntityTooLarge, "request_too_large"
		}
		s.metrics.decided("error", reason, s.now().Sub(start))
		// Contract errors name fields and offsets, never values, so they are safe to log.
		s.log.LogAttrs(r.Context(), slog.LevelWarn, "authorize request rejected",
			slog.String("decision_id", id), slog.Int("status", code), slog.String("reason", reason),
			slog.String("peer", r.RemoteAddr), slog.String("error", err.Error()))
		writeError(w, code, id, fmt.Sprintf("%s: %v", reason, err))
		return
	}

	c := &Call{
		DecisionID: id,
		Request:    req,
		Mint:       credentials.Request{TTL: s.ttl, RequestID: req.RequestID, DecisionID: id},
	}
	// The decision stops when the filter hangs up or tells us its agent's request ended
	// (serveAbandon): Envoy does not cancel a Wasm filter's pending callout by itself.
	ctx, release := s.pending.track(r.Context(), req)
	defer release()
	resp, step, denial := s.decide(ctx, c)
	if resp.Decision == authorize.Allow && ctx.Err() != nil {
		// The filter hung up while the decision was made (the agent's stream ended, or the
		// callout timed out): nobody receives this allow, so it is recorded as what it
		// became, and what the steps spent on it (an approval's use) is given back.
		denial, step = Unavailable(ReasonCancelled, cancelledMessage, context.Cause(ctx)), "answer"
		resp.Decision, resp.Status, resp.Reason, resp.Message, resp.Credential, resp.Masking = authorize.Deny, denial.Status, denial.Reason, denial.Message, nil, nil
	}
	out, err := resp.Marshal()
	if err != nil {
		// A response the contract rejects is a bug here; the filter denies on 500.
		s.log.LogAttrs(r.Context(), slog.LevelError, "authorize response invalid", slog.String("decision_id", id), slog.String("error", err.Error()))
		writeError(w, http.StatusInternalServerError, id, "internal error")
		return
	}
	reason := resp.Reason
	if resp.Decision == authorize.Allow {
		reason = "ok"
	}

	// The decision is in the audit trail before the filter hears of it.
	audited := s.audit(r, c, resp, reason, step)
	if audited.err != nil && s.auditMode == AuditStrict {
		audited.overridden, audited.overriddenReason = string(resp.Decision), reason
		denial, step, reason = Unavailable(ReasonAuditUnavailable, auditUnavailableMessage, audited.err), "audit", ReasonAuditUnavailable
		// The minted credential (if any) is never released; it expires unused.
		resp.Decision, resp.Status, resp.Reason, resp.Message, resp.Credential, resp.Masking = authorize.Deny, denial.Status, denial.Reason, denial.Message, nil, nil
		if out, err = resp.Marshal(); err != nil {
			s.log.LogAttrs(r.Context(), slog.LevelError, "authorize response invalid", slog.String("decision_id", id), slog.String("error", err.Error()))
			writeError(w, http.StatusInternalServerError, id, "internal error")
			return
		}
	}
	if resp.Decision != authorize.Allow {
		s.abandon(r, c)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(out)

	latency := s.now().Sub(start)
	s.metrics.decided(string(resp.Decision), reason, latency)
	s.logDecision(r, c, resp, reason, step, denial, audited, latency)
}

// ReasonCancelled is the reason of a decision whose caller hung up before it was answered.
const ReasonCancelled = "cancelled"

const cancelledMessage = "The request was cancelled before the gateway answered it."

// undoTimeout bounds the undo work of one abandoned call.
const undoTimeout = 5 * time.Second

// abandon gives back what the steps spent on a call that does not end in an allow.
func (s *Service) abandon(r *http.Request, c *Call) {
	if len(c.undo) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), undoTimeout)
	defer cancel()
	c.Abandon(ctx)
}

// decide runs the pipeline and builds the response; step names the step that denied.
func (s *Service) decide(ctx context.Context, c *Call) (resp authorize.Response, step string, d *Denial) {
	resp = authorize.Response{Version: authorize.Version, DecisionID: c.DecisionID}
	for _, st := range s.pipeline {
		if d = runStep(ctx, st, c); d != nil {
			step = st.Name()
			break
		}
	}
	if c.Identity != nil {
		resp.Identity = &authorize.Identity{AgentID: c.Identity.AgentID, Issuer: c.Identity.Issuer, Groups: c.Identity.Groups}
	}
	resp.Policy = c.Policy
	if d != nil {
		resp.Decision, resp.Status, resp.Reason, resp.Message = authorize.Deny, d.Status, d.Reason, d.Message
		return resp, step, d
	}
	resp.Decision = authorize.Allow
	resp.Credential = &authorize.Credential{
		Authorization: "Bearer " + c.credential.Token.Reveal(),
		ID:            c.credential.ID,
		ExpiresAtUnix: c.credential.ExpiresAt.Unix(),
	}
	resp.Masking = c.Masking
	resp.NotAnalysed = c.NotAnalysed
	return resp, "", nil
}

// runStep runs one step; a panic fails the decision closed instead of killing the request.
func runStep(ctx context.Context, st Step, c *Call) (d *Denial) {
	defer func() {
		if p := recover(); p != nil {
			d = Unavailable("internal_error", "The gateway could not decide on this request; retry later.",
				fmt.Errorf("step %s panicked: %v", st.Name(), p))
		}
	}()
	if err := ctx.Err(); err != nil {
		return Unavailable(ReasonCancelled, "The request was cancelled before a decision was made.", err)
	}
	return st.Run(ctx, c)
}

// logDecision writes the one log line of a decision. Never the token, the credential or
// the SQL text.
func (s *Service) logDecision(r *http.Request, c *Call, resp authorize.Response, reason, step string, d *Denial, audited auditOutcome, latency time.Duration) {
	attrs := []slog.Attr{
		slog.String("decision_id", c.DecisionID),
		slog.String("request_id", c.Request.RequestID),
		slog.String("decision", string(resp.Decision)),
		slog.String("reason", reason),
	}
	if resp.Identity != nil {
		attrs = append(attrs, slog.String("agent", resp.Identity.AgentID), slog.String("issuer", resp.Identity.Issuer),
			slog.Any("groups", resp.Identity.Groups))
	}
	attrs = append(attrs,
		slog.String("api", c.Request.Call.API),
		slog.String("project", c.Request.Call.Project),
		slog.String("job_id", c.Request.Call.JobID),
	)
	if p := resp.Policy; p != nil {
		if p.Name != "" {
			attrs = append(attrs, slog.String("policy", p.Name+"@"+p.Version))
		}
		attrs = append(attrs, slog.String("policy_bundle", p.Bundle), slog.String("policy_rule", c.PolicyRule))
		if len(c.DryRunWouldDeny) > 0 {
			attrs = append(attrs, slog.Any("policy_would_deny", c.DryRunWouldDeny))
		}
	}
	if c.NotAnalysed != "" {
		attrs = append(attrs, slog.String("analysis", "not analysed: "+c.NotAnalysed))
	}
	if c.ApprovalID != "" {
		attrs = append(attrs, slog.String("approval_id", c.ApprovalID), slog.String("approver", c.Approver))
	}
	if resp.Credential != nil {
		attrs = append(attrs, slog.String("credential_id", resp.Credential.ID), slog.Int64("credential_expires_at", resp.Credential.ExpiresAtUnix))
	}
	if m := resp.Masking; m != nil {
		// What is masked, never the hash key.
		attrs = append(attrs, slog.Int("masking_rules", len(m.Rules)), slog.Any("masking_detectors", m.Detectors),
			slog.Bool("masking_schema", m.Schema != nil))
	}
	if d != nil {
		attrs = append(attrs, slog.Int("status", d.Status), slog.String("step", step))
		if d.Err != nil {
			attrs = append(attrs, slog.String("error", d.Err.Error()))
		}
	}
	switch {
	case audited.overridden != "":
		attrs = append(attrs, slog.String("decided", audited.overridden), slog.String("decided_reason", audited.overriddenReason))
	case audited.err != nil:
		attrs = append(attrs, slog.String("audit_error", audited.err.Error()))
	case audited.seq != 0:
		attrs = append(attrs, slog.Uint64("audit_seq", audited.seq))
	}
	attrs = append(attrs,
		slog.Float64("latency_ms", float64(latency.Microseconds())/1000),
		slog.String("client", c.Request.Client.Address),
		slog.String("peer", r.RemoteAddr),
	)
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "authorize decision", attrs...)
}

func writeError(w http.ResponseWriter, code int, decisionID, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg, "decisionId": decisionID})
}
