// Package jobs is the control plane's job ledger: which agent owns which BigQuery job. It
// lives in JetStream KV (the only state, so it survives restarts and is shared by every
// control plane on the same NATS) in two buckets:
//
//   - jitgate_decisions (TTL 1h): every allowed jobs.query, jobs.insert and jobs.get
//     decision, keyed by decision id: the verified agent, the policy that allowed it and
//     the SQL analysis summary. Written before the call's credential is minted; a failed
//     write denies the call (503).
//   - jitgate_jobs (history 1, TTL 48h, longer than BigQuery keeps anonymous results):
//     one record per job, written when the filter reports the response of an allowed
//     call that names a job (POST /v1/responses, controlplane/responses, which hands the
//     ledger a Report), under three kinds of key: the job
//     (project + job id), the stateless query (project + query id) and the result table
//     (project.dataset.table).
//
// Follow-up calls (jobs.get, jobs.getQueryResults, jobs.cancel, jobs.delete, and
// tabledata.list on a recorded result table) are allowed only for the agent (same issuer
// and agent id) the ledger names as the job's owner; see FollowUpStep.
package jobs

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/jitgate/jitgate/filter/bqapi"
	"github.com/jitgate/jitgate/filter/masking"
	"github.com/jitgate/jitgate/policies"
)

// Bucket names and lifetimes.
const (
	JobsBucket      = "jitgate_jobs"
	DecisionsBucket = "jitgate_decisions"
	// JobsTTL outlives BigQuery's 24 hours of anonymous query results.
	JobsTTL = 48 * time.Hour
	// DecisionsTTL bounds how long after its decision a job may be reported.
	DecisionsTTL = time.Hour
	// DefaultTimeout bounds each KV operation; the filter's callout times out at 2s.
	DefaultTimeout = time.Second
)

// Refusal reasons of a Report (Outcome.Reason; the response report's answer carries it).
const (
	ReasonUnknownDecision   = "unknown_decision"
	ReasonOwnedByAnother    = "job_owned_by_another_agent"
	ReasonDecisionMismatch  = "decision_mismatch"
	ReasonNotRecordable     = "decision_not_recordable"
	ReasonJobNotOwned       = "job_not_owned"
	ReasonLedgerUnavailable = "job_ledger_unavailable"
)

// ErrUnavailable wraps every KV failure: the caller answers 503 (fail closed).
var ErrUnavailable = errors.New("job ledger unavailable")

// Decision is what jitgate_decisions holds for one allowed call.
type Decision struct {
	DecisionID string   `json:"decisionId"`
	Agent      string   `json:"agent"`
	Issuer     string   `json:"issuer"`
	Groups     []string `json:"groups,omitempty"`
	// Policy is "name@version" of the policy that allowed the call; empty without policies.
	Policy       string `json:"policy,omitempty"`
	PolicyBundle string `json:"policyBundle,omitempty"`
	API          string `json:"api"`
	Project      string `json:"project"`
	// JobID is the job a jobs.get call names.
	JobID string `json:"jobId,omitempty"`
	// ClientJobID is the job id a jobs.insert chose itself.
	ClientJobID      string   `json:"clientJobId,omitempty"`
	StatementKind    string   `json:"statementKind,omitempty"`
	ReferencedTables []string `json:"referencedTables,omitempty"`
	// NotAnalysed says why the query's SQL was not analysed ("legacy SQL").
	NotAnalysed string `json:"notAnalysed,omitempty"`
	// Masking is the masking plan of the call (rules and detectors, never the hash key)
	// and the basis it was built from; nil when the agent's rules mask nothing.
	Masking   *Masking  `json:"masking,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
}

// Masking is the masking plan kept with a decision and its job, so every later page of
// the job (getQueryResults, tabledata.list of its result table) is masked the same way on
// any control plane: the position rules and detectors the call was answered with, and
// the basis (maskplan.Basis) of the agent's rules they were built from. Never the key.
type Masking struct {
	Rules     []masking.Rule `json:"rules,omitempty"`
	Detectors []string       `json:"detectors,omitempty"`
	Basis     string         `json:"basis"`
	// Withhold: the call was answered with a masking instruction, even one without rules
	// (maskplan.Stored.Withhold).
	Withhold bool `json:"withhold,omitempty"`
	// Schema is the result rows' schema from the query's analysis (nil when unknown).
	Schema *masking.Schema `json:"schema,omitempty"`
}

// Job is what jitgate_jobs holds for one job (the same record under each of its keys).
type Job struct {
	Agent      string `json:"agent"`
	Issuer     string `json:"issuer"`
	DecisionID string `json:"decisionId"`
	// Policy is "name@version" of the policy that allowed the job; empty without policies.
	Policy           string    `json:"policy,omitempty"`
	CreatedAt        time.Time `json:"createdAt"`
	API              string    `json:"api"`
	StatementKind    string    `json:"statementKind,omitempty"`
	ReferencedTables []string  `json:"referencedTables,omitempty"`
	// NotAnalysed says why the job's SQL was not analysed ("legacy SQL").
	NotAnalysed string `json:"notAnalysed,omitempty"`
	// ResultTable is "project.dataset.table" once a response named it.
	ResultTable string `json:"resultTable,omitempty"`
	Project     string `json:"project"`
	JobID       string `json:"jobId,omitempty"`
	QueryID     string `json:"queryId,omitempty"`
	Location    string `json:"location,omitempty"`
	// Masking is the plan the job's rows are masked with (from its decision).
	Masking *Masking `json:"masking,omitempty"`
}

// OwnedBy reports whether the verified agent (issuer and agent id) owns j.
func (j *Job) OwnedBy(issuer, agent string) bool {
	return j != nil && j.Agent != "" && j.Agent == agent && j.Issuer == issuer
}

// Options configure a Ledger.
type Options struct {
	// Logger receives one line per recorded job and per refusal. Default slog.Default().
	Logger *slog.Logger
	// Metrics counts records and lookups; nil counts into a private registry.
	Metrics *Metrics
	// Timeout bounds each KV operation. Default DefaultTimeout.
	Timeout time.Duration
	// Replicas of the buckets (a NATS cluster); default 1.
	Replicas int
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Ledger is the job ledger. It keeps no state of its own: every answer comes from KV.
type Ledger struct {
	decisions jetstream.KeyValue
	jobs      jetstream.KeyValue
	log       *slog.Logger
	metrics   *Metrics
	timeout   time.Duration
	now       func() time.Time
}

// Open creates (or adopts, updating their settings) both buckets on js.
func Open(ctx context.Context, js jetstream.JetStream, o Options) (*Ledger, error) {
	if js == nil {
		return nil, errors.New("jobs: JetStream is required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(prometheus.NewRegistry())
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	open := func(cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
		cfg.Storage, cfg.Replicas = jetstream.FileStorage, o.Replicas
		kv, err := js.CreateOrUpdateKeyValue(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("%w: bucket %s: %v", ErrUnavailable, cfg.Bucket, err)
		}
		return kv, nil
	}
	dec, err := open(jetstream.KeyValueConfig{Bucket: DecisionsBucket, History: 1, TTL: DecisionsTTL,
		Description: "jitgate: allowed job-creating decisions (agent, policy, analysis) by decision id"})
	if err != nil {
		return nil, err
	}
	jobs, err := open(jetstream.KeyValueConfig{Bucket: JobsBucket, History: 1, TTL: JobsTTL,
		Description: "jitgate: BigQuery job owners by job, query id and result table"})
	if err != nil {
		return nil, err
	}
	return &Ledger{decisions: dec, jobs: jobs, log: o.Logger, metrics: o.Metrics, timeout: o.Timeout, now: o.Now}, nil
}

// Metrics returns the ledger's counters (for the steps and the handler).
func (l *Ledger) Metrics() *Metrics { return l.metrics }

func (l *Ledger) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, l.timeout)
}

// RecordDecision stores d under its decision id.
func (l *Ledger) RecordDecision(ctx context.Context, d Decision) error {
	key, err := decisionKey(d.DecisionID)
	if err != nil {
		return err
	}
	if d.CreatedAt.IsZero() {
		d.CreatedAt = l.now().UTC()
	}
	val, err := json.Marshal(d)
	if err != nil {
		return err
	}
	ctx, cancel := l.ctx(ctx)
	defer cancel()
	if _, err := l.decisions.Put(ctx, key, val); err != nil {
		return fmt.Errorf("%w: record decision: %v", ErrUnavailable, err)
	}
	return nil
}

// Decision returns the recorded decision, or nil when there is none (never recorded, or
// expired).
func (l *Ledger) Decision(ctx context.Context, id string) (*Decision, error) {
	key, err := decisionKey(id)
	if err != nil {
		return nil, nil // no such decision can have been recorded
	}
	var d Decision
	if _, ok, err := l.get(ctx, l.decisions, key, &d); !ok || err != nil {
		return nil, err
	}
	return &d, nil
}

// Job returns the record of job jobID in project, or nil when the ledger has none.
func (l *Ledger) Job(ctx context.Context, project, jobID string) (*Job, error) {
	return l.lookup(ctx, jobKey(project, jobID))
}

// QueryJob returns the record of the stateless query queryID in project, or nil.
func (l *Ledger) QueryJob(ctx context.Context, project, queryID string) (*Job, error) {
	return l.lookup(ctx, queryKey(project, queryID))
}

// ResultTable returns the record of the job whose result table is project.dataset.table,
// or nil when no recorded job wrote it.
func (l *Ledger) ResultTable(ctx context.Context, project, dataset, table string) (*Job, error) {
	return l.lookup(ctx, tableKey(project, dataset, table))
}

func (l *Ledger) lookup(ctx context.Context, key string) (*Job, error) {
	if key == "" {
		return nil, nil
	}
	var j Job
	if _, ok, err := l.get(ctx, l.jobs, key, &j); !ok || err != nil {
		return nil, err
	}
	return &j, nil
}

// get reads key into v; ok is false when the key does not exist.
func (l *Ledger) get(ctx context.Context, kv jetstream.KeyValue, key string, v any) (rev uint64, ok bool, err error) {
	ctx, cancel := l.ctx(ctx)
	defer cancel()
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("%w: get %s: %v", ErrUnavailable, kv.Bucket(), err)
	}
	if err := json.Unmarshal(e.Value(), v); err != nil {
		// A record this version cannot read names no owner: fail closed.
		return 0, false, fmt.Errorf("%w: %s entry %s unreadable: %v", ErrUnavailable, kv.Bucket(), key, err)
	}
	return e.Revision(), true, nil
}

// Report is the job that one upstream response of an allowed call names: what Record
// binds to the agent of the decision that allowed the call.
type Report struct {
	// DecisionID is the authorize decision that allowed the call.
	DecisionID string
	// API is the call whose response this is: jobs.query, jobs.insert or jobs.get.
	API string
	// Job is the response's jobReference (nil for stateless queries).
	Job *bqapi.JobReference
	// QueryID identifies a stateless query (jobCreationMode JOB_CREATION_OPTIONAL).
	QueryID string
	// ResultTable is the job's destination (for queries, the anonymous result table),
	// when the response names it.
	ResultTable *bqapi.TableReference
}

// Outcome is what Record did with a report.
type Outcome struct {
	Recorded bool
	// Reason says why a report was not recorded (ReasonUnknownDecision ...).
	Reason string
	// Job is the record written (or that would have been, on ReasonOwnedByAnother).
	Job *Job
	// Detail explains a refusal for the log (never sent to agents).
	Detail string
}

// Record binds the job in a report to the agent of the decision that allowed the call. An
// error means the ledger could not be read or written (answer 503); a refusal is an
// Outcome with Recorded false.
// Recorded jobs are logged at INFO, refusals at WARN (the caller logs a ledger error).
func (l *Ledger) Record(ctx context.Context, r Report) (Outcome, error) {
	out, err := l.record(ctx, r)
	switch {
	case err != nil:
		l.metrics.record(ResultError)
		return out, err
	case out.Recorded:
		l.metrics.record(ResultRecorded)
	default:
		l.metrics.record(out.Reason)
	}
	attrs := []slog.Attr{slog.String("decision_id", r.DecisionID), slog.String("api", r.API), slog.String("query_id", r.QueryID)}
	if r.Job != nil {
		attrs = append(attrs, slog.String("project", r.Job.ProjectID), slog.String("job_id", r.Job.JobID),
			slog.String("location", r.Job.Location))
	}
	if j := out.Job; j != nil {
		attrs = append(attrs, slog.String("agent", j.Agent), slog.String("issuer", j.Issuer),
			slog.String("policy", j.Policy), slog.String("result_table", j.ResultTable),
			slog.String("statement_kind", j.StatementKind))
	}
	if out.Recorded {
		l.log.LogAttrs(ctx, slog.LevelInfo, "job recorded", attrs...)
	} else {
		l.log.LogAttrs(ctx, slog.LevelWarn, "job report refused",
			append(attrs, slog.String("reason", out.Reason), slog.String("detail", out.Detail))...)
	}
	return out, nil
}

func (l *Ledger) record(ctx context.Context, r Report) (Outcome, error) {
	dec, err := l.Decision(ctx, r.DecisionID)
	if err != nil {
		return Outcome{}, err
	}
	if dec == nil {
		return Outcome{Reason: ReasonUnknownDecision, Detail: "no such decision (never allowed, or older than " + DecisionsTTL.String() + ")"}, nil
	}
	if !recordable(dec.API) {
		return Outcome{Reason: ReasonNotRecordable, Detail: "decision was for " + dec.API}, nil
	}
	if r.API != dec.API {
		return Outcome{Reason: ReasonDecisionMismatch, Detail: fmt.Sprintf("report for %s, decision for %s", r.API, dec.API)}, nil
	}
	job := &Job{
		Agent: dec.Agent, Issuer: dec.Issuer, DecisionID: dec.DecisionID, Policy: dec.Policy,
		CreatedAt: l.now().UTC(), API: dec.API, StatementKind: dec.StatementKind,
		ReferencedTables: dec.ReferencedTables, NotAnalysed: dec.NotAnalysed, Project: dec.Project, QueryID: r.QueryID, Masking: dec.Masking,
	}
	if ref := r.Job; ref != nil {
		job.JobID, job.Location = ref.JobID, ref.Location
		if ref.ProjectID != "" && ref.ProjectID != dec.Project {
			return Outcome{Reason: ReasonDecisionMismatch, Detail: fmt.Sprintf("job in project %q, decision for project %q", ref.ProjectID, dec.Project)}, nil
		}
	}
	switch want := firstNonEmpty(dec.JobID, dec.ClientJobID); {
	case want != "" && job.JobID != want:
		return Outcome{Reason: ReasonDecisionMismatch, Detail: fmt.Sprintf("job %q, decision for job %q", job.JobID, want)}, nil
	case dec.API == "jobs.get" && job.JobID == "":
		return Outcome{Reason: ReasonDecisionMismatch, Detail: "jobs.get report names no job"}, nil
	}
	if rt := r.ResultTable; rt != nil {
		p := firstNonEmpty(rt.ProjectID, dec.Project)
		if p == "" || rt.DatasetID == "" || rt.TableID == "" {
			return Outcome{Reason: ReasonDecisionMismatch, Detail: "result table not project.dataset.table"}, nil
		}
		job.ResultTable = p + "." + rt.DatasetID + "." + rt.TableID
	}
	if job.Project == "" {
		return Outcome{Reason: ReasonDecisionMismatch, Detail: "decision names no project"}, nil
	}
	if dec.API == "jobs.get" {
		// A jobs.get report may name the result table first (a job still running when
		// jobs.insert answered): the table gets the masking of the query that made it.
		prev, err := l.Job(ctx, job.Project, job.JobID)
		if err != nil {
			return Outcome{}, err
		}
		if prev != nil && prev.OwnedBy(job.Issuer, job.Agent) {
			job.Masking = prev.Masking
			fill := func(dst *string, v string) {
				if *dst == "" {
					*dst = v
				}
			}
			fill(&job.StatementKind, prev.StatementKind)
			fill(&job.NotAnalysed, prev.NotAnalysed)
			fill(&job.Policy, prev.Policy)
			if len(job.ReferencedTables) == 0 {
				job.ReferencedTables = prev.ReferencedTables
			}
		}
	}

	var keys []string
	if job.JobID != "" {
		keys = append(keys, jobKey(job.Project, job.JobID))
	}
	if job.QueryID != "" {
		keys = append(keys, queryKey(job.Project, job.QueryID))
	}
	if rt := r.ResultTable; rt != nil {
		keys = append(keys, tableKey(firstNonEmpty(rt.ProjectID, dec.Project), rt.DatasetID, rt.TableID))
	}
	for _, key := range keys {
		owner, err := l.claim(ctx, key, job)
		if err != nil {
			return Outcome{}, err
		}
		if owner != nil {
			return Outcome{Reason: ReasonOwnedByAnother, Job: job,
				Detail: fmt.Sprintf("%s is owned by agent %q (issuer %s, decision %s)", key, owner.Agent, owner.Issuer, owner.DecisionID)}, nil
		}
	}
	return Outcome{Recorded: true, Job: job}, nil
}

// claim writes job under key unless another agent owns key; it returns that owner. A key
// the same agent already owns is merged (a jobs.get report adds the result table).
func (l *Ledger) claim(ctx context.Context, key string, job *Job) (*Job, error) {
	val, err := json.Marshal(job)
	if err != nil {
		return nil, err
	}
	for attempt := 0; attempt < 5; attempt++ {
		cctx, cancel := l.ctx(ctx)
		_, err := l.jobs.Create(cctx, key, val)
		cancel()
		if err == nil {
			return nil, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, fmt.Errorf("%w: create %s: %v", ErrUnavailable, key, err)
		}
		var cur Job
		rev, ok, err := l.get(ctx, l.jobs, key, &cur)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue // deleted or expired in between: create again
		}
		if !cur.OwnedBy(job.Issuer, job.Agent) {
			return &cur, nil
		}
		merged, changed := merge(cur, *job)
		if !changed {
			return nil, nil
		}
		mval, err := json.Marshal(merged)
		if err != nil {
			return nil, err
		}
		cctx, cancel = l.ctx(ctx)
		_, err = l.jobs.Update(cctx, key, mval, rev)
		cancel()
		if err == nil {
			return nil, nil
		}
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) && !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, fmt.Errorf("%w: update %s: %v", ErrUnavailable, key, err)
		}
		// Someone wrote in between: read again.
	}
	return nil, fmt.Errorf("%w: %s: too many concurrent writers", ErrUnavailable, key)
}

// merge fills what cur lacks from next (same owner): the first record's decision and
// analysis stay, a later report adds the result table, query id or job id.
func merge(cur, next Job) (Job, bool) {
	out := cur
	fill := func(dst *string, v string) {
		if *dst == "" && v != "" {
			*dst = v
		}
	}
	fill(&out.ResultTable, next.ResultTable)
	fill(&out.QueryID, next.QueryID)
	fill(&out.JobID, next.JobID)
	fill(&out.Location, next.Location)
	fill(&out.StatementKind, next.StatementKind)
	fill(&out.NotAnalysed, next.NotAnalysed)
	if len(out.ReferencedTables) == 0 && len(next.ReferencedTables) > 0 {
		out.ReferencedTables = slices.Clone(next.ReferencedTables)
	}
	// The first record's masking stays: a job's pages are masked by the plan of the call
	// that created it.
	changed := out.ResultTable != cur.ResultTable || out.QueryID != cur.QueryID || out.JobID != cur.JobID ||
		out.Location != cur.Location || out.StatementKind != cur.StatementKind || out.NotAnalysed != cur.NotAnalysed || len(out.ReferencedTables) != len(cur.ReferencedTables)
	return out, changed
}

func recordable(api string) bool {
	switch api {
	case "jobs.query", "jobs.insert", "jobs.get":
		return true
	}
	return false
}

// PolicyJob is the evaluator's view of a ledger record.
func PolicyJob(j *Job) *policies.Job {
	if j == nil {
		return nil
	}
	return &policies.Job{OwnerAgentID: j.Agent, OwnerIssuer: j.Issuer}
}

// KV keys. A key token is the value itself when it is made only of letters, digits, '-'
// and '_' (BigQuery job ids, most project, dataset and table ids), else "=" and its
// unpadded base64url encoding (which never contains '='), so the mapping is one-to-one and
// every key is a valid KV key:
//
//	jitgate_decisions: <decisionId>                           dec_01h...
//	jitgate_jobs:      job.<project>.<jobId>                   job.jitgate-demo.job_abc
//	                   query.<project>.<queryId>               query.jitgate-demo.q123
//	                   table.<project>.<dataset>.<table>       table.jitgate-demo._d1.anon
var plainToken = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func token(s string) string {
	if plainToken.MatchString(s) {
		return s
	}
	return "=" + base64.RawURLEncoding.EncodeToString([]byte(s))
}

func keyOf(kind string, parts ...string) string {
	toks := []string{kind}
	for _, p := range parts {
		if p == "" {
			return ""
		}
		toks = append(toks, token(p))
	}
	return strings.Join(toks, ".")
}

func jobKey(project, jobID string) string { return keyOf("job", project, jobID) }

func queryKey(project, queryID string) string { return keyOf("query", project, queryID) }

func tableKey(project, dataset, table string) string {
	return keyOf("table", project, dataset, table)
}

func decisionKey(id string) (string, error) {
	if !plainToken.MatchString(id) || len(id) > 128 {
		return "", fmt.Errorf("decision id %q is not a decision id", id)
	}
	return id, nil
}

func firstNonEmpty(xs ...string) string {
	for _, x := range xs {
		if x != "" {
			return x
		}
	}
	return ""
}
