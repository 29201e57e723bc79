package authz

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/jitgate/jitgate/controlplane/credentials"
	"github.com/jitgate/jitgate/controlplane/identity"
	"github.com/jitgate/jitgate/filter/authorize"
	"github.com/jitgate/jitgate/filter/masking"
	"github.com/jitgate/jitgate/policies"
)

// Call is one authorize call on its way through the pipeline. Steps read the request and
// what earlier steps established, and adjust what later steps will do.
type Call struct {
	// DecisionID names this decision in the response, logs and (later) audit records.
	DecisionID string
	// Request is the filter's document. Its Token is the agent's secret: no step may log,
	// record or forward it.
	Request authorize.Request
	// Identity is the verified agent, set by the identity step before any Step runs.
	Identity *identity.Identity
	// Mint is what the credential step will ask the minter for; steps may narrow it (a
	// policy's service account, scopes or shorter TTL). RequestID and DecisionID are set.
	Mint credentials.Request
	// Policy is the policy (and bundle) that decided, set by the policy step; the
	// response and the decision log carry it.
	Policy *authorize.PolicyRef
	// PolicyRule is the policy decision's rule code ("allow", "table_denied", ...).
	PolicyRule string
	// DryRunWouldDeny lists dry-run deny rules that fired, "policy/rule", for the log.
	DryRunWouldDeny []string
	// Analysis is the SQL analysis of a query call, set by the policy step when it
	// analysed one; the job ledger records its summary with the decision.
	Analysis *policies.Analysis
	// NotAnalysed says why an allowed query's SQL was not analysed (policies.Decision's
	// NotAnalysed: "legacy SQL" under what.legacySql), set by the policy step. The audit
	// record, the decision log, the job ledger and the allow response say so.
	NotAnalysed string
	// Job is the job ledger's owner of the job (or result table) a follow-up call names,
	// set by the job step once it has checked that the verified agent owns it; the policy
	// step passes it to the evaluator instead of asking the ledger again.
	Job *policies.Job
	// Approvals are the approval rules the policy decision requires (set by the policy
	// step on allow); the approval step must find or obtain a human's approval for them.
	Approvals []policies.ApprovalRequirement
	// ApprovalID and Approver name the approval the call consumed (or is waiting for),
	// set by the approval step; the audit record and the decision log carry them.
	ApprovalID, Approver string
	// Approved is set by the approval step once it consumed a use of an approval covering
	// Approvals. The credential step refuses a call with Approvals and without Approved, so
	// a pipeline without an approval step fails closed.
	Approved bool
	// Decision is the policy evaluator's allow decision (mask plan, detectors, limits),
	// set by the policy step; nil without policies or on deny.
	Decision *policies.Decision
	// Masking is what the filter must do to this call's response rows, set by the masking
	// step (controlplane/maskplan); the allow response carries it. Its HashKey is a
	// secret: never log or record it.
	Masking *authorize.Masking
	// MaskingBasis fingerprints the masking rules Masking was built from (maskplan.Basis);
	// the job ledger keeps it with the job so later pages are served only under the same
	// rules. Empty when the agent's rules mask nothing and run no detector.
	MaskingBasis string
	// ResultSchema is the schema of a query's result rows from its analysis, set by the
	// masking step; the job ledger keeps it with the plan for later pages that carry no
	// schema when the job's result table is not known.
	ResultSchema *masking.Schema

	credential *credentials.Credential
	undo       []func(context.Context)
}

// OnUndo registers f to run when the call does not end in an allow the filter receives: a
// later step denies, the audit record cannot be written (strict mode), or the decision was
// stopped before the answer went out (the filter abandoned it because the agent's stream
// ended, or the callout's connection closed, e.g. its timeout). A step that spent something on the
// call's behalf gives it back there: the approval step returns the approval use it
// consumed, so an agent that gave up, or got a 503, can still run the approved call.
func (c *Call) OnUndo(f func(ctx context.Context)) { c.undo = append(c.undo, f) }

// Abandon runs what steps registered with OnUndo, last first, once; ctx should outlive
// the request (the caller is usually gone). The Service calls it for every call that does
// not end in a delivered allow.
func (c *Call) Abandon(ctx context.Context) {
	undo := c.undo
	c.undo = nil
	for i := len(undo) - 1; i >= 0; i-- {
		undo[i](ctx)
	}
}

// Step is one stage of a decision (policy, SQL analysis, approval, audit ...).
type Step interface {
	// Name labels the step in logs ("policy").
	Name() string
	// Run returns nil to let the decision continue, or the Denial that ends it.
	Run(ctx context.Context, c *Call) *Denial
}

// NewStep makes a Step of a function.
func NewStep(name string, run func(ctx context.Context, c *Call) *Denial) Step {
	return funcStep{name, run}
}

type funcStep struct {
	name string
	run  func(context.Context, *Call) *Denial
}

func (f funcStep) Name() string                             { return f.name }
func (f funcStep) Run(ctx context.Context, c *Call) *Denial { return f.run(ctx, c) }

// Denial ends a decision: the agent gets Status with Reason and Message.
type Denial struct {
	// Status is 401 (identity), 403 (policy), 429 or 503 (a dependency is unavailable).
	Status int
	// Reason is a stable code for logs, metrics and audit ("token_expired").
	Reason string
	// Message is for the agent's eyes: a sentence saying what happened and what to do.
	Message string
	// Err is the cause, logged but never sent to the agent. It must not contain secrets.
	Err error
}

// Unauthenticated denies with 401: the agent's identity could not be established.
func Unauthenticated(reason, message string, err error) *Denial {
	return &Denial{Status: http.StatusUnauthorized, Reason: reason, Message: message, Err: err}
}

// Forbidden denies with 403: the agent may not do this.
func Forbidden(reason, message string, err error) *Denial {
	return &Denial{Status: http.StatusForbidden, Reason: reason, Message: message, Err: err}
}

// Unavailable denies with 503: something the decision needs is down; clients retry.
func Unavailable(reason, message string, err error) *Denial {
	return &Denial{Status: http.StatusServiceUnavailable, Reason: reason, Message: message, Err: err}
}

// identityStep verifies the agent's token and fills Call.Identity.
type identityStep struct{ verifier TokenVerifier }

func (identityStep) Name() string { return "identity" }

func (s identityStep) Run(ctx context.Context, c *Call) *Denial {
	id, err := s.verifier.Verify(ctx, c.Request.Token)
	if err != nil {
		reason := identity.Reason(err)
		switch reason {
		case identity.ReasonIssuerUnavailable:
			return Unavailable(reason, "The gateway cannot reach the issuer of the agent identity token to verify it; retry later.", err)
		case identity.ReasonInternal:
			return Unavailable(reason, "The gateway could not verify the agent identity token; retry later.", err)
		}
		return Unauthenticated(reason, identityMessages[reason], err)
	}
	c.Identity = &id
	return nil
}

// identityMessages tell the agent why its token was refused, without echoing it or the
// gateway's configuration.
var identityMessages = map[string]string{
	identity.ReasonMissing:             "No agent identity token was presented; send an OIDC ID token from a trusted issuer as \"Authorization: Bearer <token>\".",
	identity.ReasonMalformed:           "The agent identity token is not a well-formed signed JWT.",
	identity.ReasonExpired:             "The agent identity token has expired; get a fresh token and retry.",
	identity.ReasonNotYetValid:         "The agent identity token is not valid yet; check the clock of the machine that issued it.",
	identity.ReasonWrongAudience:       "The agent identity token was not issued for this gateway (its audience is not accepted).",
	identity.ReasonUnknownIssuer:       "The agent identity token comes from an issuer this gateway does not trust.",
	identity.ReasonBadSignature:        "The agent identity token's signature is invalid.",
	identity.ReasonAlgorithmNotAllowed: "The agent identity token is signed with an algorithm this gateway does not accept.",
	identity.ReasonUnknownKey:          "The agent identity token is signed with a key its issuer does not publish.",
	identity.ReasonInvalidClaims:       "The agent identity token lacks a required claim or has a claim of the wrong type.",
}

// ReasonNoPolicy denies a call that no policy decided: the gateway has no policies
// loaded and is not in identity-only mode (deny by default).
const ReasonNoPolicy = "no_policy"

// defaultDenyStep runs just before the credential is minted, unless Options.IdentityOnly:
// a call that reached it without a policy's allow decision (Call.Decision) is denied.
// It is structural, so a pipeline built without a policy step fails closed.
type defaultDenyStep struct{}

func (defaultDenyStep) Name() string { return "default_deny" }

func (defaultDenyStep) Run(_ context.Context, c *Call) *Denial {
	if c.Decision != nil && c.Decision.Allow {
		return nil
	}
	agent, issuer := "(unknown)", "(unknown)"
	if c.Identity != nil {
		agent, issuer = c.Identity.AgentID, c.Identity.Issuer
	}
	return Forbidden(ReasonNoPolicy, fmt.Sprintf("Denied by default: no policy applies to agent %s (issuer %s). "+
		"The gateway has no policies loaded; an operator must configure a policy directory that allows this agent.", agent, issuer),
		errors.New("no policy decided the call and identity-only mode is off"))
}

// mintStep mints the upstream credential, last, once everything else allowed the call.
type mintStep struct {
	minter  credentials.Minter
	metrics *Metrics
}

func (mintStep) Name() string { return "credential" }

func (s mintStep) Run(ctx context.Context, c *Call) *Denial {
	if len(c.Approvals) > 0 && !c.Approved {
		return Forbidden("approval_required", "Policy requires a human approval for this call, and the gateway has no approval service to obtain one.",
			errors.New("approvals required but not obtained by any step"))
	}
	cred, err := s.minter.Mint(ctx, c.Mint)
	if err == nil && (cred.Token.IsZero() || cred.ID == "" || cred.ExpiresAt.IsZero()) {
		err = errors.New("minter returned an incomplete credential")
	}
	if err != nil {
		return Unavailable("credential_unavailable", "The gateway could not obtain an upstream credential for this request; retry later.", err)
	}
	s.metrics.minted(string(cred.Mode))
	c.credential = &cred
	return nil
}
