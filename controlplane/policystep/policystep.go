// Package policystep decides authorize calls with the live policy bundle. It owns the one
// mapping from an authorize request and a verified identity to policies.Input (Input), the
// SQL analysis hook (Analyzer), the evaluation (Decide) and how a decision becomes an
// answer (a 403 naming the policy and rule, or a narrowed credential mint). jitgated runs
// it as the "policy" step of controlplane/authz; `jitgate policy explain` calls Decide
// directly, so the CLI and the control plane cannot disagree.
package policystep

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jitgate/jitgate/controlplane/authz"
	"github.com/jitgate/jitgate/controlplane/credentials"
	"github.com/jitgate/jitgate/controlplane/identity"
	"github.com/jitgate/jitgate/filter/authorize"
	"github.com/jitgate/jitgate/policies"
)

// Analyzer analyses the SQL of a query call (jobs.query, jobs.insert with a query) and
// reports its statement kind, the tables it reads and writes, and its findings.
type Analyzer interface {
	Analyze(ctx context.Context, req authorize.Request) (*policies.Analysis, error)
}

// AnalysisError is an analyser's refusal: the call is denied with 403 and this Reason
// ("legacy_sql", "unanalysable_sql") and Message.
type AnalysisError struct {
	Reason  string
	Message string
	// Findings are deny-rule kinds the analyser noticed before it gave up (e.g.
	// externalQuery): a policy deny rule on one of them is named instead of Reason.
	Findings []policies.DenyRuleKind
	Err      error
}

func (e *AnalysisError) Error() string {
	if e.Err != nil {
		return e.Reason + ": " + e.Message + ": " + e.Err.Error()
	}
	return e.Reason + ": " + e.Message
}

func (e *AnalysisError) Unwrap() error { return e.Err }

// ErrAnalyzerUnavailable marks an analyser failure that is not the query's fault (the
// analyser is down): the call is answered 503 so the client retries.
var ErrAnalyzerUnavailable = errors.New("sql analyser unavailable")

// JobLedger says who owns a job, for follow-up calls (jobs.get, jobs.getQueryResults, ...).
// Without one those calls are not decidable and are denied.
type JobLedger interface {
	Job(ctx context.Context, project, jobID string) (*policies.Job, error)
}

// ResultTableLedger is implemented by job ledgers that also know which job wrote a table
// (a query's anonymous result table). With one, tabledata.list on an anonymous result
// dataset is decided by the owner of the job that produced the table; without one, only
// a call that names its job (JobID) can be.
type ResultTableLedger interface {
	ResultTableJob(ctx context.Context, project, dataset, table string) (*policies.Job, error)
}

// Bundles supplies the live bundle (*policystore.Store implements it).
type Bundles interface {
	Bundle() *policies.Bundle
}

// Options configure the policy step.
type Options struct {
	// Bundles is the live bundle. Required.
	Bundles Bundles
	// Analyzer analyses query SQL; nil means no analysis, so every query is denied
	// not_decidable (fail closed).
	Analyzer Analyzer
	// Jobs is the job ledger; nil makes job follow-up calls not decidable.
	Jobs JobLedger
	// MinterMode is the mode the control plane's minter runs in; a policy that demands
	// another mode is refused (the gateway cannot honour it).
	MinterMode credentials.Mode
	// Logger receives "would deny" lines of dry-run rules. Default slog.Default().
	Logger *slog.Logger
}

// Name is the step's name in logs.
const Name = "policy"

// New returns the policy step.
func New(o Options) (authz.Step, error) {
	if o.Bundles == nil {
		return nil, errors.New("policystep: Bundles is required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return authz.NewStep(Name, func(ctx context.Context, c *authz.Call) *authz.Denial { return run(ctx, o, c) }), nil
}

func run(ctx context.Context, o Options, c *authz.Call) *authz.Denial {
	if c.Identity == nil {
		return authz.Unavailable("internal_error", "The gateway could not decide on this request; retry later.",
			errors.New("policy step ran without a verified identity"))
	}
	b := o.Bundles.Bundle()
	jobs := o.Jobs
	if c.Job != nil {
		// The job step already found (and checked) the owner: no second lookup.
		jobs = knownJob{c.Job}
	}
	out := Decide(ctx, b, c.Request, *c.Identity, o.Analyzer, jobs)
	c.Policy = out.Ref()
	if out.Input != nil {
		c.Analysis = out.Input.Analysis
	}
	if d := out.Decision; d != nil {
		c.PolicyRule = d.Rule
		for _, hit := range d.DryRunWouldDeny {
			o.Logger.LogAttrs(ctx, slog.LevelInfo, "policy would deny (dry run)",
				slog.String("decision_id", c.DecisionID), slog.String("agent", c.Identity.AgentID),
				slog.String("policy", hit.Policy.Name+"@"+hit.Policy.Version), slog.String("rule", hit.Rule),
				slog.String("kind", string(hit.Kind)), slog.String("api", c.Request.Call.API))
			c.DryRunWouldDeny = append(c.DryRunWouldDeny, hit.Policy.Name+"/"+hit.Rule)
		}
	}
	if out.Denial != nil {
		return out.Denial
	}
	c.Decision = out.Decision
	c.NotAnalysed = out.Decision.NotAnalysed
	// Allowed once approved: the approval step (controlplane/approvals) must run next.
	c.Approvals = out.Decision.Approvals
	return narrowMint(b, out.Decision, o.MinterMode, &c.Mint)
}

// Outcome is what Decide found.
type Outcome struct {
	// Input is what was evaluated (nil when the analyser refused first).
	Input *policies.Input
	// Decision is the evaluator's verdict (nil when the analyser refused first).
	Decision *policies.Decision
	// BundleVersion is the bundle decided with.
	BundleVersion string
	// Denial is set when the call is denied (by the decision or the analyser).
	Denial *authz.Denial
}

// Ref is the policy reference the authorize response carries.
func (o Outcome) Ref() *authorize.PolicyRef {
	if o.BundleVersion == "" {
		return nil
	}
	ref := &authorize.PolicyRef{Bundle: o.BundleVersion}
	if o.Decision != nil && o.Decision.Policy != nil {
		ref.Name, ref.Version = o.Decision.Policy.Name, o.Decision.Policy.Version
	}
	return ref
}

// Decide evaluates one call against b: it maps the request (Input), asks the analyser for
// query calls, the ledger for job follow-ups, and evaluates. The control plane's policy
// step and `jitgate policy explain` both call it.
func Decide(ctx context.Context, b *policies.Bundle, req authorize.Request, id identity.Identity, an Analyzer, jobs JobLedger) Outcome {
	var out Outcome
	if b != nil {
		out.BundleVersion = b.Version
	}
	var analysis *policies.Analysis
	if needsAnalysis(req) && an != nil {
		a, err := an.Analyze(ctx, req)
		if err != nil {
			out.Denial = analysisDenial(err)
			// A deny rule on something the analyser noticed before it gave up is the
			// better answer: the outcome is the same denial, but it names the rule.
			if ae, ok := errors.AsType[*AnalysisError](err); ok && len(ae.Findings) > 0 && out.Denial.Status == 403 {
				in := Input(req, id, &policies.Analysis{Findings: ae.Findings}, nil)
				if d := policies.Evaluate(b, in); d.Rule == policies.RuleDenyRule {
					out.Input, out.Decision = &in, &d
					out.Denial = authz.Forbidden(d.Rule, DenyMessage(d)+" "+ae.Message, err)
				}
			}
			return out
		}
		analysis = a
	}
	var job *policies.Job
	if needsJob(req) && jobs != nil {
		var j *policies.Job
		var err error
		rt, byTable := jobs.(ResultTableLedger)
		switch {
		case req.Call.API == "tabledata.list" && byTable:
			j, err = rt.ResultTableJob(ctx, req.Call.Project, req.Call.Dataset, req.Call.Table)
		case req.Call.JobID != "":
			j, err = jobs.Job(ctx, req.Call.Project, req.Call.JobID)
		}
		if err != nil {
			out.Denial = authz.Unavailable("job_ledger_unavailable", "The gateway could not look up the job this call names; retry later.", err)
			return out
		}
		job = j
	}
	in := Input(req, id, analysis, job)
	d := policies.Evaluate(b, in)
	out.Input, out.Decision = &in, &d
	if !d.Allow {
		out.Denial = authz.Forbidden(d.Rule, DenyMessage(d), nil)
	}
	return out
}

// Input maps an authorize request and a verified identity (plus the analysis and job
// record, when known) to the evaluator's input.
func Input(req authorize.Request, id identity.Identity, analysis *policies.Analysis, job *policies.Job) policies.Input {
	in := policies.Input{
		Identity: policies.Identity{AgentID: id.AgentID, Issuer: id.Issuer, Groups: append([]string(nil), id.Groups...)},
		Call: policies.Call{API: req.Call.API, Project: req.Call.Project, Dataset: req.Call.Dataset,
			Table: req.Call.Table, JobID: req.Call.JobID, AllUsers: req.Call.AllUsers},
		Analysis: analysis,
		Job:      job,
	}
	if q := req.Query; q != nil {
		pq := &policies.Query{LegacySQL: q.LegacySQL, DryRun: q.DryRun, WriteDisposition: q.WriteDisposition, Session: q.Session()}
		if d := q.Destination; d != nil {
			project := d.ProjectID
			if project == "" {
				project = req.Call.Project
			}
			pq.Destination = project + "." + d.DatasetID + "." + d.TableID
		}
		in.Query = pq
	}
	return in
}

// needsAnalysis: query calls in standard SQL (legacy SQL is never analysed: the evaluator
// denies it, or allows it unanalysed under what.legacySql).
func needsAnalysis(req authorize.Request) bool {
	switch req.Call.API {
	case "jobs.query", "jobs.insert":
		return req.Query != nil && !req.Query.LegacySQL
	}
	return false
}

func needsJob(req authorize.Request) bool {
	switch req.Call.API {
	case "jobs.get", "jobs.getQueryResults", "jobs.cancel", "jobs.delete":
		return req.Call.JobID != ""
	case "tabledata.list":
		// An anonymous result dataset: the evaluator decides by the owner of the job.
		return strings.HasPrefix(req.Call.Dataset, "_")
	}
	return false
}

// knownJob answers every lookup with the job the job step already found.
type knownJob struct{ job *policies.Job }

func (k knownJob) Job(context.Context, string, string) (*policies.Job, error) { return k.job, nil }

func (k knownJob) ResultTableJob(context.Context, string, string, string) (*policies.Job, error) {
	return k.job, nil
}

func analysisDenial(err error) *authz.Denial {
	if errors.Is(err, ErrAnalyzerUnavailable) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return authz.Unavailable("analysis_unavailable", "The gateway could not analyse this query's SQL right now; retry later.", err)
	}
	if ae, ok := errors.AsType[*AnalysisError](err); ok {
		msg := ae.Message
		if msg == "" {
			msg = "The gateway could not analyse this query's SQL, so it cannot be allowed."
		}
		return authz.Forbidden(ae.Reason, msg, err)
	}
	return authz.Forbidden("unanalysable_sql", "The gateway could not analyse this query's SQL, so it cannot be allowed.", err)
}

// DenyMessage is the one sentence an agent sees for a policy denial: which policy (at
// which version) or bundle decided, the rule, and why.
func DenyMessage(d policies.Decision) string {
	why := ""
	if len(d.Reasons) > 0 {
		why = d.Reasons[0]
	}
	rule := d.Rule
	if d.RuleName != "" {
		rule += " (" + d.RuleName + ")"
	}
	if d.Policy != nil {
		why = strings.TrimPrefix(why, "policy "+d.Policy.Name+": ")
		return fmt.Sprintf("Denied by policy %s@%s, rule %s: %s.", d.Policy.Name, d.Policy.Version, rule, why)
	}
	return fmt.Sprintf("Denied by policy bundle %s, rule %s: %s.", d.BundleVersion, rule, why)
}

// narrowMint applies an allow decision's credential to the mint request: the shortest TTL
// wins and a policy's service account is used. A policy that names a credential mode the
// gateway's minter does not run is refused.
func narrowMint(b *policies.Bundle, d *policies.Decision, minterMode credentials.Mode, m *credentials.Request) *authz.Denial {
	if d == nil || d.Credential == nil {
		return nil
	}
	explicit := false
	for _, ref := range d.Granting {
		if p, ok := b.Policy(ref.Name); ok && p.Spec.Credential != nil {
			explicit = true
		}
	}
	if explicit {
		if minterMode != "" && string(d.Credential.Mode) != string(minterMode) {
			return authz.Forbidden("credential_mode_unavailable",
				fmt.Sprintf("Policy %s@%s asks for %s upstream credentials, but this gateway mints %s credentials; ask the operator to align credentials.mode or the policy.",
					d.Policy.Name, d.Policy.Version, d.Credential.Mode, minterMode),
				fmt.Errorf("policy credential mode %s, minter mode %s", d.Credential.Mode, minterMode))
		}
		m.ServiceAccount = d.Credential.ServiceAccount
	}
	if ttl := time.Duration(d.Credential.TTL); ttl > 0 && (m.TTL == 0 || ttl < m.TTL) {
		m.TTL = ttl
	}
	return nil
}
