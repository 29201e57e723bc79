package authz

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/jitgate/jitgate/controlplane/audit"
	"github.com/jitgate/jitgate/filter/authorize"
)

// AuditMode says what an authorize call is answered when its audit record cannot be
// written.
type AuditMode string

const (
	// AuditStrict (the default): every decision is in the audit trail before the filter
	// acts on it. When the record cannot be written the call is answered Deny 503
	// ReasonAuditUnavailable (the filter fails closed, clients retry) and no credential is
	// returned, whatever was decided.
	AuditStrict AuditMode = "strict"
	// AuditRelaxed answers as decided when the record cannot be written and logs an ERROR
	// for every such decision. It breaks the invariant that every decision is audited
	// before it takes effect: decisions (allows included) can go unrecorded while NATS is
	// unavailable. jitgated warns at start when it is configured.
	AuditRelaxed AuditMode = "relaxed"
)

// ReasonAuditUnavailable is the reason of the 503 a call gets in strict mode when its
// audit record could not be written.
const ReasonAuditUnavailable = "audit_unavailable"

// auditUnavailableMessage is the agent's message for ReasonAuditUnavailable.
const auditUnavailableMessage = "The gateway could not record this decision in its audit trail and does not proceed without it; retry later."

// ParseAuditMode parses "strict" or "relaxed"; "" is AuditStrict.
func ParseAuditMode(s string) (AuditMode, error) {
	switch AuditMode(s) {
	case "", AuditStrict:
		return AuditStrict, nil
	case AuditRelaxed:
		return AuditRelaxed, nil
	}
	return "", fmt.Errorf("audit mode %q: want %q or %q", s, AuditStrict, AuditRelaxed)
}

// Auditor appends audit records; *audit.Writer implements it. Append must return an error
// whenever the record may not have been stored.
type Auditor interface {
	Append(ctx context.Context, r audit.Record) (audit.Appended, error)
}

// auditOutcome is what happened to a decision's audit record, for the decision log.
type auditOutcome struct {
	seq uint64
	err error
	// overridden is the decision and reason strict mode replaced with the 503.
	overridden, overriddenReason string
}

// auditRecord is the audit record of a decided call: the request (never its token), the
// verified agent, the SQL analysis summary, the decision with its reason, rule, step and
// policy, and the minted credential's id (never the credential).
func (s *Service) auditRecord(c *Call, resp authorize.Response, reason, step string) audit.Record {
	rec := audit.FromRequest(c.DecisionID, c.Request)
	rec.Time = s.now()
	if c.Identity != nil {
		rec.Agent = audit.Agent{ID: c.Identity.AgentID, Issuer: c.Identity.Issuer, Groups: c.Identity.Groups}
	}
	rec.Analysis = audit.SummaryOf(c.Analysis)
	if c.NotAnalysed != "" {
		rec.Analysis = &audit.Analysis{NotAnalysed: c.NotAnalysed}
	}
	rec.Decision, rec.Reason, rec.Rule, rec.Step = string(resp.Decision), reason, c.PolicyRule, step
	if resp.Decision == authorize.Deny {
		rec.Status = resp.Status
	}
	if p := c.Policy; p != nil {
		if p.Name != "" {
			rec.Policy = p.Name + "@" + p.Version
		}
		rec.PolicyBundle = p.Bundle
	}
	if resp.Credential != nil {
		rec.CredentialID = resp.Credential.ID
	}
	if resp.Decision == authorize.Allow {
		rec.Masking = audit.MaskingOf(resp.Masking, c.MaskingBasis)
	}
	rec.ApprovalID, rec.Approver = c.ApprovalID, c.Approver
	return rec
}

// audit appends the decision's record before the answer goes back. A failure is returned
// in the outcome (ServeHTTP fails the call closed in strict mode) and, in relaxed mode,
// logged as an ERROR here.
func (s *Service) audit(r *http.Request, c *Call, resp authorize.Response, reason, step string) auditOutcome {
	if s.auditor == nil {
		return auditOutcome{}
	}
	// The record is written even when the filter has given up waiting: the decision was
	// made. The writer bounds the append by its own timeout.
	ctx := context.WithoutCancel(r.Context())
	a, err := s.auditor.Append(ctx, s.auditRecord(c, resp, reason, step))
	if err == nil {
		return auditOutcome{seq: a.Seq}
	}
	if s.auditMode == AuditRelaxed {
		s.log.LogAttrs(r.Context(), slog.LevelError,
			"AUDIT RECORD NOT WRITTEN: answering as decided because audit.mode is relaxed; this decision is missing from the audit trail",
			slog.String("decision_id", c.DecisionID), slog.String("decision", string(resp.Decision)),
			slog.String("reason", reason), slog.String("error", err.Error()))
	}
	return auditOutcome{err: err}
}
