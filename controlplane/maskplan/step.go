package maskplan

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/jitgate/jitgate/controlplane/authz"
	"github.com/jitgate/jitgate/controlplane/jobs"
	"github.com/jitgate/jitgate/controlplane/policystep"
	"github.com/jitgate/jitgate/controlplane/sqlanalysis"
	"github.com/jitgate/jitgate/filter/authorize"
	"github.com/jitgate/jitgate/filter/bqapi"
	"github.com/jitgate/jitgate/filter/masking"
)

// StepName labels the masking step in decision logs.
const StepName = "masking"

// LineageAnalyzer gives the full analysis (with column lineage) of a query call;
// *sqlanalysis.PolicyAnalyzer implements it. The policy step has just analysed the same
// call, so this is normally a cache hit.
type LineageAnalyzer interface {
	AnalyzeRequest(ctx context.Context, req authorize.Request) (*sqlanalysis.Analysis, error)
}

// JobRecords is the job ledger's view the step needs; *jobs.Ledger implements it.
type JobRecords interface {
	Job(ctx context.Context, project, jobID string) (*jobs.Job, error)
	ResultTable(ctx context.Context, project, dataset, table string) (*jobs.Job, error)
}

// FreshTableSource reads a table's metadata bypassing any cache;
// *sqlanalysis.BigQueryTableSource implements it.
type FreshTableSource interface {
	FreshTable(ctx context.Context, project, dataset, table string) (*sqlanalysis.TableMeta, error)
}

// StepOptions configure Step.
type StepOptions struct {
	// Builder holds the hash key. Required.
	Builder *Builder
	// Lineage analyses query calls; nil refuses every query that masks must apply to.
	Lineage LineageAnalyzer
	// Tables reads table schemas (tables.get) for tabledata.list and result tables; nil
	// refuses tabledata.list when the agent's rules mask or detect anything. When it is
	// a FreshTableSource, tabledata.list reads the schema fresh (its rows carry none).
	Tables sqlanalysis.TableSource
	// Jobs is the job ledger holding each job's plan; nil refuses follow-up pages.
	Jobs JobRecords
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Step is the masking step of /v1/authorize. It runs after the policy step (whose allow
// decision carries the agent's mask entries and detectors) and before the job ledger
// records the decision, and sets Call.Masking (returned to the filter with the allow) and
// Call.MaskingBasis (kept with the job):
//
//   - jobs.query, jobs.insert: the plan from the query's lineage (Builder.Query);
//   - jobs.getQueryResults, tabledata.list of a job's result table: the plan stored with
//     the job (Builder.FollowUp), with the result table's schema for pages without one;
//   - tabledata.list of a base table: SELECT * of the table (Builder.Table) with its schema;
//   - tables.get: the same plan as tabledata.list of that table (result table or base
//     table), so the filter retypes the returned schema like the rows; views get none;
//   - jobs.get, jobs.cancel of a job with a plan: that plan (Builder.Job), so the filter
//     withholds BigQuery's error messages, which quote values;
//   - jobs.list is refused (its jobs' error messages are not withheld);
//   - other calls return no rows and get no masking.
//
// A call that cannot be masked is denied (see Refusal); one whose rules mask nothing and
// run no detector passes untouched.
func Step(o StepOptions) (authz.Step, error) {
	if o.Builder == nil {
		return nil, errors.New("maskplan: Builder is required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return authz.NewStep(StepName, func(ctx context.Context, c *authz.Call) *authz.Denial { return o.run(ctx, c) }), nil
}

func (o StepOptions) run(ctx context.Context, c *authz.Call) *authz.Denial {
	d := c.Decision
	if d == nil || !d.Allow {
		return nil
	}
	basis := Basis(d.MaskPlan, d.Detectors)
	if basis == "" {
		return nil
	}
	c.MaskingBasis = basis
	call := c.Request.Call
	var m *authorize.Masking
	var err error
	switch call.API {
	case "jobs.query", "jobs.insert":
		q := c.Request.Query
		if q == nil {
			return nil // not a query job: no rows (load, extract and copy are refused earlier)
		}
		var a *sqlanalysis.Analysis
		// An unanalysed query (legacy SQL under what.legacySql; the evaluator refuses it
		// when masking rules apply) gets detectors only, and Builder.Query refuses any rule.
		if o.Lineage != nil && c.NotAnalysed == "" { // also for detectors only: the result schema goes with the job
			if a, err = o.Lineage.AnalyzeRequest(ctx, c.Request); err != nil {
				return analysisDenial(err)
			}
		}
		m, err = o.Builder.Query(a, d.MaskPlan, d.Detectors, q.Destination != nil)
		if a != nil && len(a.ResultSchema) > 0 && m != nil && countFields(a.ResultSchema) <= maxStoredSchemaFields {
			c.ResultSchema = SchemaOf(a.ResultSchema)
		}
		if m != nil && c.ResultSchema != nil && (len(m.Rules) > 0 || len(m.Detectors) > 0) {
			// The rules are positions in the schema the analyser resolved from (cached)
			// table metadata. Sent along, the filter checks the response's schema has
			// the same columns (names, modes, records) and fails closed when BigQuery's
			// differs, e.g. a table altered since its metadata was read: positions would
			// otherwise mask the wrong columns.
			m.Schema = c.ResultSchema
		}
	case "jobs.getQueryResults":
		j, denial := o.job(ctx, func(ctx context.Context) (*jobs.Job, error) { return o.Jobs.Job(ctx, call.Project, call.JobID) })
		if denial != nil {
			return denial
		}
		var schema *masking.Schema
		switch {
		case !hasWork(j.Masking):
		case j.ResultTable != "":
			// Later pages carry no schema: give the filter the result table's.
			if schema, denial = o.schema(ctx, j.ResultTable); denial != nil {
				return denial
			}
		default:
			// No result table known (jobs.query does not name it): the schema the
			// analyser resolved when the job was allowed.
			schema = j.Masking.Schema
		}
		m, err = o.Builder.FollowUp(storedOf(j), basis, schema)
	case "tabledata.list", "tables.get":
		if call.Project == "" || call.Dataset == "" || call.Table == "" {
			return authz.Forbidden(ReasonUnresolvable, "The call names no table, so its rows cannot be masked.", nil)
		}
		table := call.Project + "." + call.Dataset + "." + call.Table
		if bqapi.Decorated(table) {
			// BigQuery resolves "t$20250101" and "t@-3600000" to t's metadata and rows,
			// while the rules name t: refuse rather than plan for a table no rule names
			// (the filter and the policy evaluator refuse these calls first).
			return authz.Forbidden(ReasonUnresolvable, fmt.Sprintf("%s carries a table decorator; its rows cannot be masked, name the base table.", table), nil)
		}
		j, err := o.resultTable(ctx, call)
		if err != nil {
			return authz.Unavailable(jobs.ReasonLedgerUnavailable, "The gateway could not reach its job ledger to decide on this call; retry later.", err)
		}
		// tabledata.list rows of a base table carry no schema to check the plan's
		// positions against: read the table's current one (a job's anonymous result
		// table does not change). tables.get returns its schema, which the filter
		// compares with the plan's, so the cached one is enough.
		meta, denial := o.table(ctx, table, call.API == "tabledata.list" && j == nil)
		if denial != nil {
			return denial
		}
		if meta.ViewQuery != "" {
			if call.API == "tables.get" {
				// A view's metadata carries no values and BigQuery lists no rows of a
				// view, so no client reads cells with this schema: nothing to retype.
				return nil
			}
			return authz.Forbidden(ReasonUnresolvable, fmt.Sprintf("%s is a view; its rows cannot be listed and masked directly, query it instead.", table), nil)
		}
		// tables.get: the filter retypes the returned schema as the rows of
		// tabledata.list are masked, so a client that reads the table's schema first
		// (the Go client's Table.Read) decodes the masked cells.
		schema := &masking.Schema{Fields: schemaFields(meta.Columns)}
		if j != nil {
			m, err = o.Builder.FollowUp(storedOf(j), basis, schema)
		} else {
			m, err = o.Builder.Table(table, schema, d.MaskPlan, d.Detectors)
		}
	case "jobs.get", "jobs.cancel":
		// The job resource carries no rows, but a failed job's status.errorResult
		// quotes values (CAST(email AS INT64)): a masking instruction makes the filter
		// withhold BigQuery's error messages. The stored plan applies even when the
		// rules changed since (there is no page to refuse, only messages to withhold).
		j, denial := o.job(ctx, func(ctx context.Context) (*jobs.Job, error) { return o.Jobs.Job(ctx, call.Project, call.JobID) })
		if denial != nil {
			return denial
		}
		if !hasWork(j.Masking) {
			return nil
		}
		m, err = o.Builder.Job(storedOf(j))
	case "jobs.list":
		// Listed jobs carry their errorResult messages, which can quote masked values
		// of this agent's (or another agent's) jobs; the filter withholds messages of one
		// job resource, not of a list.
		return authz.Forbidden(ReasonUnresolvable, "Listing jobs is not allowed for an agent whose results are masked: the list carries BigQuery's error messages, which may quote masked values. Use jobs.get on the jobs you created.", nil)
	default:
		return nil
	}
	if err != nil {
		return refusalDenial(err)
	}
	c.Masking = m
	return nil
}

func (o StepOptions) job(ctx context.Context, get func(context.Context) (*jobs.Job, error)) (*jobs.Job, *authz.Denial) {
	if o.Jobs == nil {
		return nil, authz.Forbidden(ReasonUnresolvable, "The gateway keeps no job ledger, so it cannot mask this job's results.", nil)
	}
	j, err := get(ctx)
	if err != nil {
		return nil, authz.Unavailable(jobs.ReasonLedgerUnavailable, "The gateway could not reach its job ledger to decide on this call; retry later.", err)
	}
	if j == nil {
		// The job step denies unknown jobs first; this is a second line.
		return nil, authz.Forbidden(jobs.ReasonJobNotOwned, "This job was not run through the gateway, so its results cannot be masked.", nil)
	}
	return j, nil
}

func (o StepOptions) resultTable(ctx context.Context, call authorize.Call) (*jobs.Job, error) {
	if o.Jobs == nil {
		if strings.HasPrefix(call.Dataset, "_") {
			return nil, errors.New("no job ledger for a result table")
		}
		return nil, nil
	}
	return o.Jobs.ResultTable(ctx, call.Project, call.Dataset, call.Table)
}

// schema reads table ("project.dataset.table") with tables.get; views are refused.
func (o StepOptions) schema(ctx context.Context, table string) (*masking.Schema, *authz.Denial) {
	meta, denial := o.table(ctx, table, false)
	if denial != nil {
		return nil, denial
	}
	if meta.ViewQuery != "" {
		return nil, authz.Forbidden(ReasonUnresolvable, fmt.Sprintf("%s is a view; its rows cannot be listed and masked directly, query it instead.", table), nil)
	}
	return &masking.Schema{Fields: schemaFields(meta.Columns)}, nil
}

// table reads table ("project.dataset.table") with tables.get, bypassing the source's
// cache when fresh and the source can.
func (o StepOptions) table(ctx context.Context, table string, fresh bool) (*sqlanalysis.TableMeta, *authz.Denial) {
	parts := strings.SplitN(table, ".", 3)
	if c := strings.IndexByte(table, ':'); c >= 0 { // domain-scoped project "example.com:p"
		rest := table[c:]
		if d := strings.IndexByte(rest, '.'); d >= 0 {
			parts = append([]string{table[:c+d]}, strings.SplitN(rest[d+1:], ".", 2)...)
		}
	}
	if len(parts) != 3 {
		return nil, authz.Forbidden(ReasonUnresolvable, fmt.Sprintf("Table %s is not project.dataset.table, so its rows cannot be masked.", table), nil)
	}
	if o.Tables == nil {
		return nil, authz.Unavailable(ReasonSchemaUnavailable, "The gateway cannot read table schemas, so it cannot mask this table's rows; retry later.", errors.New("no table source"))
	}
	read := o.Tables.Table
	if f, ok := o.Tables.(FreshTableSource); ok && fresh {
		read = f.FreshTable
	}
	meta, err := read(ctx, parts[0], parts[1], parts[2])
	if err != nil {
		if errors.Is(err, sqlanalysis.ErrTableNotFound) {
			return nil, authz.Forbidden(ReasonUnresolvable, fmt.Sprintf("Table %s was not found, so its rows cannot be masked.", table), err)
		}
		return nil, authz.Unavailable(ReasonSchemaUnavailable, "The gateway could not read the schema it needs to mask this table's rows; retry later.", err)
	}
	return meta, nil
}

// SchemaOf converts catalog columns to the masking engine's schema.
func SchemaOf(cols []sqlanalysis.Column) *masking.Schema {
	return &masking.Schema{Fields: schemaFields(cols)}
}

func schemaFields(cols []sqlanalysis.Column) []masking.Field {
	out := make([]masking.Field, len(cols))
	for i, c := range cols {
		f := masking.Field{Name: c.Name, Type: c.Type, Mode: "NULLABLE"}
		switch {
		case c.Repeated:
			f.Mode = "REPEATED"
		case c.Required:
			f.Mode = "REQUIRED"
		}
		if len(c.Fields) > 0 {
			f.Fields = schemaFields(c.Fields)
		}
		out[i] = f
	}
	return out
}

// maxStoredSchemaFields keeps a job's ledger record well under NATS's 1 MB message limit
// (a field is ~70 bytes of JSON). A wider result's later pages rely on the result table's
// schema (tables.get) instead.
const maxStoredSchemaFields = 4096

func countFields(cs []sqlanalysis.Column) int {
	n := 0
	for _, c := range cs {
		n += 1 + countFields(c.Fields)
	}
	return n
}

func storedOf(j *jobs.Job) *Stored {
	if j == nil || j.Masking == nil {
		return nil
	}
	return &Stored{Rules: j.Masking.Rules, Detectors: j.Masking.Detectors, Basis: j.Masking.Basis, Withhold: j.Masking.Withhold}
}

func hasWork(m *jobs.Masking) bool {
	return m != nil && (len(m.Rules) > 0 || len(m.Detectors) > 0 || m.Withhold)
}

func refusalDenial(err error) *authz.Denial {
	if r, ok := errors.AsType[*Refusal](err); ok {
		return &authz.Denial{Status: r.Status, Reason: r.Reason, Message: r.Message}
	}
	return authz.Unavailable("internal_error", "The gateway could not prepare the masking of this call; retry later.", err)
}

func analysisDenial(err error) *authz.Denial {
	if ae, ok := errors.AsType[*policystep.AnalysisError](err); ok {
		return authz.Forbidden(ae.Reason, ae.Message, err)
	}
	return authz.Unavailable("analysis_unavailable", "The gateway could not analyse this query's SQL right now; retry later.", err)
}
