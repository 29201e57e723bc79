package approvals

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/jitgate/jitgate/controlplane/authz"
	"github.com/jitgate/jitgate/policies"
)

// StepName is the approval step's name in logs and audit records.
const StepName = "approval"

// Bundles supplies the live policy bundle (for the approver groups).
type Bundles interface {
	Bundle() *policies.Bundle
}

// Denial reasons of the approval step.
const (
	ReasonRequired    = "approval_required"
	ReasonDenied      = "approval_denied"
	ReasonTimeout     = "approval_timeout"
	ReasonUnavailable = "approval_unavailable"
)

// Step is the authorize step after policy: a call whose decision requires approval runs
// only on a consumed use of a matching approved approval. Otherwise the approval is
// created (or the pending one reused) and, in reject mode, the call is denied 403 naming
// it and the command that approves it; in hold mode the call waits (the filter keeps the
// agent's request paused) until an approver decides or the hold timeout passes.
func (b *Broker) Step(bundles Bundles) authz.Step {
	return authz.NewStep(StepName, func(ctx context.Context, c *authz.Call) *authz.Denial {
		if len(c.Approvals) == 0 {
			return nil
		}
		return b.runStep(ctx, bundles, c)
	})
}

// requestOf merges the call's requirements: every rule must be satisfied by the approver;
// reject wins over hold (the agent is told at once), the shortest ttl, fewest uses and
// shortest hold timeout win.
func requestOf(b *policies.Bundle, c *authz.Call) Request {
	r := Request{DecisionID: c.DecisionID, Binding: BindingOf(c.Request), Mode: policies.ApprovalHold}
	if id := c.Identity; id != nil {
		r.Agent = Agent{ID: id.AgentID, Issuer: id.Issuer, Groups: id.Groups}
	}
	for i, req := range c.Approvals {
		rq := Requirement{Policy: req.Policy.Name + "@" + req.Policy.Version, Rule: req.Rule,
			ApproverGroups: append([]string(nil), req.ApproverGroups...)}
		if b != nil {
			for _, g := range b.ApproverGroups {
				if slices.Contains(req.ApproverGroups, g.Name) {
					rq.Members = union(rq.Members, g.Spec.Members)
					rq.Groups = union(rq.Groups, g.Spec.Groups)
					rq.Approvers = append(rq.Approvers, ApproverSet{Issuers: g.Spec.Issuers, Members: g.Spec.Members, Groups: g.Spec.Groups})
				}
			}
		}
		r.Requirements = append(r.Requirements, rq)
		ttl := time.Duration(req.TTL)
		if ttl <= 0 {
			ttl = time.Duration(policies.DefaultApprovalTTL)
		}
		uses := req.Uses
		if uses <= 0 {
			uses = policies.DefaultApprovalUses
		}
		if req.Mode == policies.ApprovalReject {
			r.Mode = policies.ApprovalReject
		}
		hold := req.EffectiveHoldTimeout()
		if i == 0 || ttl < r.TTL {
			r.TTL = ttl
		}
		if i == 0 || uses < r.Uses {
			r.Uses = uses
		}
		if req.Mode != policies.ApprovalReject && (r.HoldTimeout == 0 || hold < r.HoldTimeout) {
			r.HoldTimeout = hold
		}
	}
	if r.Mode == policies.ApprovalReject {
		r.HoldTimeout = 0
	}
	return r
}

func union(a, b []string) []string {
	for _, s := range b {
		if !slices.Contains(a, s) {
			a = append(a, s)
		}
	}
	return a
}

func (b *Broker) runStep(ctx context.Context, bundles Bundles, c *authz.Call) *authz.Denial {
	var bundle *policies.Bundle
	if bundles != nil {
		bundle = bundles.Bundle()
	}
	r := requestOf(bundle, c)
	deadline := time.Now().Add(r.HoldTimeout)
	for {
		if c.ApprovalID != "" && ctx.Err() != nil {
			// Decided while the caller hung up: leave the use for the call's next attempt.
			b.metrics.held("cancelled")
			return cancelledDenial(c.ApprovalID, ctx.Err())
		}
		out, err := b.Require(ctx, r)
		if err != nil {
			if c.ApprovalID != "" && ctx.Err() != nil {
				b.metrics.held("cancelled")
				return cancelledDenial(c.ApprovalID, ctx.Err())
			}
			return unavailable(err)
		}
		a := out.Approval
		c.ApprovalID = a.ID
		switch {
		case out.Consumed:
			c.Approver, c.Approved = a.Approver, true
			// A call that consumed a use and then does not run (a later step denies, the
			// audit record cannot be written, the agent hung up before the answer) gives
			// the use back, so the approved call can still run once.
			id, decision := a.ID, c.DecisionID
			c.OnUndo(func(ctx context.Context) {
				if err := b.Return(ctx, id, decision); err != nil {
					b.log.LogAttrs(ctx, slog.LevelError, "approval use not returned: the call that consumed it did not run",
						slog.String("approval_id", id), slog.String("decision_id", decision), slog.String("error", err.Error()))
				}
			})
			return nil
		case a.State == StateDenied:
			c.Approver = a.Approver
			return deniedDenial(a)
		case r.Mode == policies.ApprovalReject:
			return authz.Forbidden(ReasonRequired, requiredMessage(a), nil)
		}
		// Hold: wait for the decision, then go round again to consume a use.
		left := time.Until(deadline)
		if left <= 0 {
			b.metrics.held("timeout")
			return timeoutDenial(a, r.HoldTimeout)
		}
		got, err := b.Wait(ctx, a.ID, left)
		switch {
		case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
			b.metrics.held("timeout")
			return timeoutDenial(a, r.HoldTimeout)
		case ctx.Err() != nil:
			b.metrics.held("cancelled")
			return cancelledDenial(a.ID, ctx.Err())
		case err != nil:
			return unavailable(err)
		}
		switch got.effective(time.Now()) {
		case StateDenied:
			b.metrics.held("denied")
			c.Approver = got.Approver
			return deniedDenial(got)
		case StateApproved:
			b.metrics.held("approved")
			continue // consume a use (another call may take it first: then wait again)
		default:
			// Expired or used up while we waited: the next round creates a fresh approval.
			continue
		}
	}
}

// cancelledDenial ends a held call whose caller hung up (the filter abandons its pending
// callout when the agent's stream ends: authz.ErrAbandoned): nothing is consumed, the approval stays as it is
// for the call's next attempt, and the decision is audited and logged as cancelled.
func cancelledDenial(id string, err error) *authz.Denial {
	return authz.Unavailable(authz.ReasonCancelled, "The request was cancelled while it waited for approval "+id+
		"; the approval stays as it is for the next attempt of the same call.", err)
}

func unavailable(err error) *authz.Denial {
	return authz.Unavailable(ReasonUnavailable, "The gateway could not reach its approval store to check this call's approval; retry later.", err)
}

func requiredMessage(a *Approval) string {
	return fmt.Sprintf("Approval %s is required before this call runs (%s): %s is waiting for a member of approver group(s) %s. "+
		"An approver runs: %s (or: jitgate deny %s --reason ...). Send the same call again once it is approved; it expires at %s.",
		a.ID, rules(a), a.Waiting(), strings.Join(a.ApproverGroupNames(), ", "), ApproveCommand(a.ID), a.ID,
		a.ExpiresAt.UTC().Format(time.RFC3339))
}

func deniedDenial(a *Approval) *authz.Denial {
	return authz.Forbidden(ReasonDenied, fmt.Sprintf("Approval %s for this call was denied by %s: %s.", a.ID, a.Approver, a.Reason), nil)
}

func timeoutDenial(a *Approval, timeout time.Duration) *authz.Denial {
	return authz.Forbidden(ReasonTimeout, fmt.Sprintf(
		"No approver decided approval %s within the hold timeout of %s (%s); it stays pending until %s: an approver runs %s, then send the same call again.",
		a.ID, timeout, rules(a), a.ExpiresAt.UTC().Format(time.RFC3339), ApproveCommand(a.ID)), nil)
}

func rules(a *Approval) string {
	var out []string
	for _, r := range a.Requirements {
		out = append(out, "policy "+r.Policy+" rule "+r.Rule)
	}
	return strings.Join(out, "; ")
}
