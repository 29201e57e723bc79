package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/jitgate/jitgate/controlplane/authz"
	"github.com/jitgate/jitgate/policies"
)

// FollowUpStepName and DecisionStepName label the steps in decision logs.
const (
	FollowUpStepName = "jobs"
	DecisionStepName = "job_ledger"
)

// ReasonJobsListNotAllowed denies jobs.list when no policy decides it.
const ReasonJobsListNotAllowed = "jobs_list_not_allowed"

// StepOptions configure FollowUpStep.
type StepOptions struct {
	// PoliciesEnabled says a policy step runs after this one. Without policies jobs.list
	// is denied (every agent shares the upstream identity, so it would list every
	// agent's jobs); with policies it is the policies' call.
	PoliciesEnabled bool
}

// FollowUpStep decides calls on existing jobs by the ledger; it runs right after identity,
// with or without policies:
//
//   - jobs.get, jobs.getQueryResults, jobs.cancel, jobs.delete: allowed to continue only
//     when the ledger names the verified agent (same issuer and agent id) as the job's
//     owner; unknown jobs and other agents' jobs are denied 403 job_not_owned.
//   - tabledata.list on a table recorded as a job's result table: only its owner;
//     on any other table the step does nothing (the policy step judges it as SELECT * of
//     the table; without policies it is allowed as before).
//   - jobs.list: denied without policies (see StepOptions).
//
// A ledger that cannot be read denies 503. An owner found is left in Call.Job for the
// policy evaluator.
func (l *Ledger) FollowUpStep(o StepOptions) authz.Step {
	return authz.NewStep(FollowUpStepName, func(ctx context.Context, c *authz.Call) *authz.Denial {
		return l.followUp(ctx, o, c)
	})
}

func (l *Ledger) followUp(ctx context.Context, o StepOptions, c *authz.Call) *authz.Denial {
	call := c.Request.Call
	if c.Identity == nil {
		return authz.Unavailable("internal_error", "The gateway could not decide on this request; retry later.",
			errors.New("job step ran without a verified identity"))
	}
	switch call.API {
	case "jobs.get", "jobs.getQueryResults", "jobs.cancel", "jobs.delete":
		if call.JobID == "" || call.Project == "" {
			return l.notOwned(ctx, c, nil, "The call names no job, so the gateway cannot tell whether this agent created it.")
		}
		j, err := l.Job(ctx, call.Project, call.JobID)
		if err != nil {
			l.metrics.lookup(LookupError)
			return ledgerUnavailable(err)
		}
		msg := fmt.Sprintf("Job %s was not created through jitgate by this agent; only the agent that ran a job may read, cancel or delete it.", call.JobID)
		return l.judge(ctx, c, j, msg)
	case "tabledata.list":
		if call.Project == "" || call.Dataset == "" || call.Table == "" {
			return nil // malformed: the policy step (or the filter) refuses it
		}
		j, err := l.ResultTable(ctx, call.Project, call.Dataset, call.Table)
		if err != nil {
			l.metrics.lookup(LookupError)
			return ledgerUnavailable(err)
		}
		if j == nil {
			l.metrics.lookup(LookupNotFound)
			return nil // not a recorded result table: a base table, decided by policy
		}
		msg := fmt.Sprintf("Table %s.%s.%s holds the results of a job that was not run through jitgate by this agent.", call.Project, call.Dataset, call.Table)
		return l.judge(ctx, c, j, msg)
	case "jobs.list":
		if !o.PoliciesEnabled {
			l.log.LogAttrs(ctx, slog.LevelInfo, "job call denied", slog.String("decision_id", c.DecisionID),
				slog.String("reason", ReasonJobsListNotAllowed), slog.String("agent", c.Identity.AgentID),
				slog.String("issuer", c.Identity.Issuer), slog.String("api", call.API), slog.String("project", call.Project))
			return authz.Forbidden(ReasonJobsListNotAllowed,
				"Listing jobs is not allowed: every agent's jobs run under the gateway's identity, so the list would show other agents' jobs. Keep the ids of the jobs you create.", nil)
		}
	}
	return nil
}

// judge allows the owner of j to continue and denies everyone else.
func (l *Ledger) judge(ctx context.Context, c *authz.Call, j *Job, msg string) *authz.Denial {
	switch {
	case j == nil:
		l.metrics.lookup(LookupNotFound)
		return l.notOwned(ctx, c, nil, msg)
	case !j.OwnedBy(c.Identity.Issuer, c.Identity.AgentID):
		l.metrics.lookup(LookupNotOwner)
		return l.notOwned(ctx, c, j, msg)
	}
	l.metrics.lookup(LookupOwner)
	c.Job = PolicyJob(j)
	return nil
}

func (l *Ledger) notOwned(ctx context.Context, c *authz.Call, owner *Job, msg string) *authz.Denial {
	call := c.Request.Call
	attrs := []slog.Attr{
		slog.String("decision_id", c.DecisionID), slog.String("reason", ReasonJobNotOwned),
		slog.String("agent", c.Identity.AgentID), slog.String("issuer", c.Identity.Issuer),
		slog.String("api", call.API), slog.String("project", call.Project), slog.String("job_id", call.JobID),
	}
	if call.Table != "" {
		attrs = append(attrs, slog.String("table", call.Project+"."+call.Dataset+"."+call.Table))
	}
	if owner != nil {
		attrs = append(attrs, slog.String("owner_agent", owner.Agent), slog.String("owner_issuer", owner.Issuer),
			slog.String("owner_decision_id", owner.DecisionID))
	} else {
		attrs = append(attrs, slog.Bool("in_ledger", false))
	}
	l.log.LogAttrs(ctx, slog.LevelWarn, "job call denied", attrs...)
	return authz.Forbidden(ReasonJobNotOwned, msg, nil)
}

func ledgerUnavailable(err error) *authz.Denial {
	return authz.Unavailable(ReasonLedgerUnavailable, "The gateway could not reach its job ledger to decide on this call; retry later.", err)
}

// DecisionStep records every allowed jobs.query, jobs.insert and jobs.get decision (agent,
// policy, analysis summary) in jitgate_decisions, so the job the call creates can be bound
// to its agent when the filter reports it. It runs after the policy step, last before the
// credential is minted; a failed write denies 503 (a job nobody could page must not run).
func (l *Ledger) DecisionStep() authz.Step {
	return authz.NewStep(DecisionStepName, func(ctx context.Context, c *authz.Call) *authz.Denial {
		if !recordable(c.Request.Call.API) {
			return nil
		}
		if c.Identity == nil {
			return authz.Unavailable("internal_error", "The gateway could not decide on this request; retry later.",
				errors.New("job ledger step ran without a verified identity"))
		}
		call := c.Request.Call
		d := Decision{
			DecisionID: c.DecisionID, Agent: c.Identity.AgentID, Issuer: c.Identity.Issuer,
			Groups: c.Identity.Groups, API: call.API, Project: call.Project,
		}
		if call.API == "jobs.get" {
			d.JobID = call.JobID
		}
		if q := c.Request.Query; q != nil && call.API == "jobs.insert" {
			d.ClientJobID = q.ClientJobID
		}
		if p := c.Policy; p != nil {
			d.PolicyBundle = p.Bundle
			if p.Name != "" {
				d.Policy = p.Name + "@" + p.Version
			}
		}
		if a := c.Analysis; a != nil {
			d.StatementKind, d.ReferencedTables = a.StatementKind, a.ReferencedTables
		}
		d.NotAnalysed = c.NotAnalysed
		if c.MaskingBasis != "" {
			d.Masking = &Masking{Basis: c.MaskingBasis, Schema: c.ResultSchema}
			if m := c.Masking; m != nil { // never the key
				d.Masking.Rules, d.Masking.Detectors = slices.Clone(m.Rules), slices.Clone(m.Detectors)
				d.Masking.Withhold = true
			}
		}
		if err := l.RecordDecision(ctx, d); err != nil {
			return ledgerUnavailable(err)
		}
		return nil
	})
}

// PolicyLedger is the ledger as the policy step sees it (policystep.JobLedger and
// policystep.ResultTableLedger): the owner's agent id for the evaluator's job rules. The
// follow-up step has normally answered first (and checked the issuer too).
type PolicyLedger struct{ l *Ledger }

// PolicyLedger returns the ledger's view for the policy step.
func (l *Ledger) PolicyLedger() PolicyLedger { return PolicyLedger{l} }

// Job implements policystep.JobLedger.
func (p PolicyLedger) Job(ctx context.Context, project, jobID string) (*policies.Job, error) {
	j, err := p.l.Job(ctx, project, jobID)
	return PolicyJob(j), err
}

// ResultTableJob implements policystep.ResultTableLedger.
func (p PolicyLedger) ResultTableJob(ctx context.Context, project, dataset, table string) (*policies.Job, error) {
	j, err := p.l.ResultTable(ctx, project, dataset, table)
	return PolicyJob(j), err
}
