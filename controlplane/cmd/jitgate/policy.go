package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/jitgate/jitgate/controlplane/identity"
	"github.com/jitgate/jitgate/controlplane/maskplan"
	"github.com/jitgate/jitgate/controlplane/policystep"
	"github.com/jitgate/jitgate/controlplane/sqlanalysis"
	"github.com/jitgate/jitgate/filter/authorize"
	"github.com/jitgate/jitgate/filter/bqapi"
	"github.com/jitgate/jitgate/policies"
	"github.com/jitgate/jitgate/policies/source"
)

const policyUsage = `Usage: jitgate policy <command> [flags]

Commands:
  check DIR                 validate and compile a policy directory; errors as file:line:col
  explain --policies DIR …  decide one call the way jitgated would, and say why
  diff OLD NEW              which agents and groups gain or lose access between two directories

Run 'jitgate policy <command> -h' for a command's flags. The language: policies/README.md.
`

func policyCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, policyUsage)
		return 2
	}
	switch args[0] {
	case "check":
		return policyCheck(args[1:], stdout, stderr)
	case "explain":
		return policyExplain(args[1:], stdout, stderr)
	case "diff":
		return policyDiff(args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, policyUsage)
		return 0
	}
	fmt.Fprintf(stderr, "jitgate policy: unknown command %q\n\n%s", args[0], policyUsage)
	return 2
}

// loadDir loads a policy directory, printing every error (file:line:col) to stderr.
func loadDir(dir string, stderr io.Writer) (*source.Result, bool) {
	return loadDirWith(dir, source.Options{}, stderr)
}

// loadDirWith is loadDir checking the directory against the gateway's options (its
// trusted issuers).
func loadDirWith(dir string, o source.Options, stderr io.Writer) (*source.Result, bool) {
	res, err := source.LoadWith(dir, o)
	if err == nil {
		return res, true
	}
	var list source.ErrorList
	if errors.As(err, &list) {
		for _, e := range list {
			fmt.Fprintln(stderr, e.Error())
		}
		fmt.Fprintf(stderr, "jitgate: %s: %d error(s); nothing compiled\n", dir, len(list))
		return nil, false
	}
	fmt.Fprintf(stderr, "jitgate: %v\n", err)
	return nil, false
}

func policyCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("jitgate policy check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	quiet := fs.Bool("q", false, "print nothing on success")
	var issuers []string
	fs.Func("issuer", "an OIDC issuer URL the gateway trusts (repeatable); with two or more, every policy must list who.issuers and every approver group spec.issuers, as jitgated requires", func(s string) error {
		issuers = append(issuers, s)
		return nil
	})
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: jitgate policy check [-q] [--issuer URL ...] DIR

Reads every *.yaml / *.yml file directly in DIR the way jitgated does, validates and
compiles them. Exit 0 with a summary line (policies, approver groups, bundle version) when
the directory would load; exit 1 with one "file:line:col: message (hint)" line per error on
stderr when it would not (jitgated keeps its last good policies on such a change).

Give the gateway's trusted issuers (identity.issuers, plus the development issuer when
enabled) with --issuer to check what jitgated checks: with several, every document must
name its issuers, since an agent id is unique only within its issuer.

Example:
  jitgate policy check policies/examples
  jitgate policy check --issuer https://idp.example.com --issuer http://127.0.0.1:18002 policies/examples
`)
		fs.PrintDefaults()
	}
	if code, done := parseWithPositional(fs, args, 1); done {
		return code
	}
	dir := fs.Arg(0)
	res, ok := loadDirWith(dir, source.Options{TrustedIssuers: issuers}, stderr)
	if !ok {
		return 1
	}
	if !*quiet {
		b := res.Bundle
		fmt.Fprintf(stdout, "%s: OK: %d policies, %d approver groups, bundle %s\n", dir, len(b.Policies), len(b.ApproverGroups), b.Version)
		for _, p := range b.Policies {
			fmt.Fprintf(stdout, "  %s@%s  %s\n", p.Name, p.Version, res.Sources[policies.KindAgentPolicy+"/"+p.Name])
		}
	}
	return 0
}

// parseWithPositional parses flags given before or after n positional arguments.
func parseWithPositional(fs *flag.FlagSet, args []string, n int) (int, bool) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0, true
			}
			return 2, true
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) != n {
		fmt.Fprintf(fs.Output(), "%s: want %d argument(s), got %d\n", fs.Name(), n, len(pos))
		fs.Usage()
		return 2, true
	}
	_ = fs.Parse(pos) // leaves pos as fs.Args()
	return 0, false
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// staticAnalyzer stands in for the control plane's SQL analyser: it returns the analysis
// given on the command line.
type staticAnalyzer struct{ a policies.Analysis }

func (s staticAnalyzer) Analyze(context.Context, authorize.Request) (*policies.Analysis, error) {
	a := s.a
	return &a, nil
}

// recordingAnalyzer is the control plane's SQL analyser (sqlanalysis.PolicyAnalyzer,
// exactly what jitgated runs) keeping the full analysis, or the refusal, for printing.
type recordingAnalyzer struct {
	pa   *sqlanalysis.PolicyAnalyzer
	full *sqlanalysis.Analysis
	err  error
	ran  bool
}

func (r *recordingAnalyzer) Analyze(ctx context.Context, req authorize.Request) (*policies.Analysis, error) {
	r.ran = true
	r.full, r.err = r.pa.AnalyzeRequest(ctx, req)
	if r.err != nil {
		return nil, r.err
	}
	return r.full.ToPolicy(), nil
}

// analysisTimeout bounds the tables.get reads and the analysis of one explain.
const analysisTimeout = 30 * time.Second

// staticLedger answers every job lookup with the owner given on the command line (an
// agent of the --issuer given).
type staticLedger struct{ owner, issuer string }

func (s staticLedger) Job(context.Context, string, string) (*policies.Job, error) {
	return &policies.Job{OwnerAgentID: s.owner, OwnerIssuer: s.issuer}, nil
}

func policyExplain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("jitgate policy explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("policies", "", "policy directory (required)")
	agent := fs.String("agent", "", "verified agent id (required)")
	issuer := fs.String("issuer", "", "the agent token's issuer URL")
	groups := fs.String("groups", "", "the agent's groups, comma-separated")
	api := fs.String("api", "", "BigQuery method: jobs.query (default with --sql or --statement-kind), jobs.insert, jobs.get, tabledata.list, tables.get, datasets.list, ...")
	project := fs.String("project", "", "project in the call's URL (default: the project of --default-dataset, else of the first --tables entry)")
	dataset := fs.String("dataset", "", "dataset in the call's URL (tables.get, tabledata.list, tables.list, datasets.get)")
	table := fs.String("table", "", "table in the call's URL (tables.get, tabledata.list)")
	jobID := fs.String("job-id", "", "job id in the call's URL (jobs.get, jobs.getQueryResults, ...)")
	jobOwner := fs.String("job-owner", "", "agent that owns --job-id, from the --issuer given (stands in for the job ledger; empty: unknown)")
	sql := fs.String("sql", "", "the query's SQL (analysed with --bigquery-endpoint; otherwise not analysed: give --statement-kind and --tables)")
	endpoint := fs.String("bigquery-endpoint", "", "analyse --sql as jitgated does, reading table metadata (tables.get) from this BigQuery URL: http://127.0.0.1:9050 (emulator, no credentials) or https://bigquery.googleapis.com")
	keyFile := fs.String("credentials-key-file", "", "service-account key for an https --bigquery-endpoint (read-only scope)")
	defaultDataset := fs.String("default-dataset", "", "the query's defaultDataset, project.dataset (or dataset: in --project)")
	legacy := fs.Bool("legacy-sql", false, "the query uses legacy SQL: never analysed; denied unless a policy sets what.legacySql (then allowed unanalysed, and said so)")
	dryRun := fs.Bool("dry-run", false, "the query is a BigQuery dry run")
	destination := fs.String("destination", "", "jobs.insert destination table, project.dataset.table")
	writeDisposition := fs.String("write-disposition", "", "jobs.insert write disposition (WRITE_APPEND, ...)")
	kind := fs.String("statement-kind", "", "analysis: statement kind (SELECT, INSERT, DML, CREATE_TABLE, ...)")
	tables := fs.String("tables", "", "analysis: tables read, project.dataset.table, comma-separated")
	written := fs.String("written-tables", "", "analysis: tables written, comma-separated")
	findings := fs.String("findings", "", "analysis: deny-rule kinds found (selectStar, missingPartitionFilter, ...), comma-separated")
	bytesEst := fs.Int64("estimated-bytes", -1, "analysis: estimated bytes processed (-1: unknown)")
	asJSON := fs.Bool("json", false, "print the decision as JSON (policies.Decision) instead of text")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: jitgate policy explain --policies DIR --agent A [flags]

Decides one call exactly as jitgated's policy step does (the same request mapping and
evaluator, controlplane/policystep) and prints the decision, the rule, the deciding
policy@version, the reasons, the mask plan, approvals, credential and limits, and the
message the agent would see. Exit 0 whatever the decision; 1 if DIR does not load; 2 on
bad flags.

With --bigquery-endpoint, --sql is analysed by the control plane's own SQL analyser
(controlplane/sqlanalysis, the code jitgated runs) over table metadata read with tables.get
from that endpoint: http (the emulator) without credentials, https with
--credentials-key-file. The analysis (statement kind, tables, findings, lineage) is printed
before the decision; SQL it cannot analyse is denied (unanalysable_sql) as in jitgated.

Without --bigquery-endpoint the CLI has no SQL analyser: for a query, give the analysis
with --statement-kind and --tables (and --written-tables, --findings); with --sql alone the
query is not decidable, exactly as in jitgated without an analyser.

Examples:
  jitgate policy explain --policies tools/demo/policies --agent demo-agent --groups analysts \
      --bigquery-endpoint http://127.0.0.1:9050 --default-dataset jitgate-demo.crm \
      --sql "SELECT name FROM crm.customers"
  jitgate policy explain --policies policies/examples --agent reporting-agent --groups analysts \
      --sql "SELECT region FROM acme-prod.analytics.sales" \
      --statement-kind SELECT --tables acme-prod.analytics.sales
  jitgate policy explain --policies policies/examples --agent etl-loader --groups etl \
      --api tables.get --project acme-prod --dataset scratch --table staging

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "jitgate policy explain: unexpected arguments: %s\n", strings.Join(fs.Args(), " "))
		return 2
	}
	if *dir == "" || *agent == "" {
		fmt.Fprintln(stderr, "jitgate policy explain: --policies and --agent are required (see -h)")
		return 2
	}
	res, ok := loadDir(*dir, stderr)
	if !ok {
		return 1
	}

	haveAnalysis := *kind != "" || *tables != "" || *written != "" || *findings != ""
	if *endpoint != "" {
		if haveAnalysis {
			fmt.Fprintln(stderr, "jitgate policy explain: --bigquery-endpoint analyses --sql; do not also give --statement-kind/--tables/--written-tables/--findings")
			return 2
		}
		u, err := url.Parse(*endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			fmt.Fprintf(stderr, "jitgate policy explain: --bigquery-endpoint %q: want an http:// or https:// URL\n", *endpoint)
			return 2
		}
		if u.Scheme == "https" && *keyFile == "" {
			fmt.Fprintln(stderr, "jitgate policy explain: an https --bigquery-endpoint needs --credentials-key-file (a service-account key)")
			return 2
		}
	}
	var ddRef *bqapi.DatasetReference
	if *defaultDataset != "" {
		parts := strings.Split(*defaultDataset, ".")
		switch {
		case len(parts) == 1 && parts[0] != "":
			ddRef = &bqapi.DatasetReference{DatasetID: parts[0]}
		case len(parts) == 2 && parts[0] != "" && parts[1] != "":
			ddRef = &bqapi.DatasetReference{ProjectID: parts[0], DatasetID: parts[1]}
		default:
			fmt.Fprintln(stderr, "jitgate policy explain: --default-dataset must be project.dataset (or dataset)")
			return 2
		}
	}
	if *api == "" {
		if *sql != "" || haveAnalysis || *legacy {
			*api = "jobs.query"
		} else {
			fmt.Fprintln(stderr, "jitgate policy explain: give --api, or --sql / --statement-kind for a query (see -h)")
			return 2
		}
	}
	read := splitList(*tables)
	switch {
	case *project != "":
	case ddRef != nil && ddRef.ProjectID != "":
		*project = ddRef.ProjectID
	case len(read) > 0:
		*project = strings.SplitN(read[0], ".", 2)[0]
	}
	req := authorize.Request{
		Version:   authorize.Version,
		RequestID: "explain",
		Call: authorize.Call{API: *api, Method: "POST", Project: *project, Dataset: *dataset,
			Table: *table, JobID: *jobID},
	}
	isQuery := *api == "jobs.query" || *api == "jobs.insert"
	if isQuery {
		// The dialect as the filter reads it: --legacy-sql is useLegacySql, and a
		// #legacySQL / #standardSQL prefix overrides it.
		q := &authorize.Query{SQL: *sql, LegacySQL: bqapi.LegacyDialect(*sql, legacy), DryRun: *dryRun, WriteDisposition: *writeDisposition, DefaultDataset: ddRef}
		if *destination != "" {
			parts := strings.Split(*destination, ".")
			if len(parts) != 3 {
				fmt.Fprintln(stderr, "jitgate policy explain: --destination must be project.dataset.table")
				return 2
			}
			q.Destination = &bqapi.TableReference{ProjectID: parts[0], DatasetID: parts[1], TableID: parts[2]}
		}
		req.Query = q
	}
	var an policystep.Analyzer
	var rec *recordingAnalyzer
	var notes []string
	ctx := context.Background()
	if isQuery && *endpoint != "" {
		if *sql == "" {
			fmt.Fprintln(stderr, "jitgate policy explain: --bigquery-endpoint analyses --sql; give --sql")
			return 2
		}
		if *project == "" {
			fmt.Fprintln(stderr, "jitgate policy explain: give --project (the job's project) or --default-dataset project.dataset")
			return 2
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, analysisTimeout)
		defer cancel()
		pa, err := sqlanalysis.NewForUpstream(ctx, *endpoint, *keyFile, sqlanalysis.UpstreamOptions{})
		if err != nil {
			fmt.Fprintf(stderr, "jitgate policy explain: %v\n", err)
			return 1
		}
		defer pa.Close()
		rec = &recordingAnalyzer{pa: pa}
		an = rec
	} else if isQuery && !req.Query.LegacySQL {
		if haveAnalysis {
			a := policies.Analysis{StatementKind: *kind, ReferencedTables: read, WrittenTables: splitList(*written)}
			for _, f := range splitList(*findings) {
				a.Findings = append(a.Findings, policies.DenyRuleKind(f))
			}
			if *bytesEst >= 0 {
				a.EstimatedBytes = bytesEst
			}
			an = staticAnalyzer{a}
			if *sql != "" {
				notes = append(notes, "the SQL was NOT analysed (no --bigquery-endpoint given): the analysis is --statement-kind/--tables/--written-tables/--findings")
			}
		} else {
			notes = append(notes, "the SQL was NOT analysed (no --bigquery-endpoint given) and no --statement-kind/--tables were given: the query is not decidable (as in jitgated without an analyser)")
		}
	}
	var jobs policystep.JobLedger
	if *jobOwner != "" {
		jobs = staticLedger{*jobOwner, *issuer}
	}
	id := identity.Identity{AgentID: *agent, Issuer: *issuer, Groups: splitList(*groups), Subject: *agent,
		ExpiresAt: time.Now().Add(time.Hour)}
	out := policystep.Decide(ctx, res.Bundle, req, id, an, jobs)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(out.Decision)
		for _, n := range notes {
			fmt.Fprintln(stderr, "note:", n)
		}
		if rec != nil {
			printAnalysis(stderr, rec, *endpoint)
		}
		return 0
	}
	for _, n := range notes {
		fmt.Fprintln(stdout, "note:", n)
	}
	if rec != nil {
		printAnalysis(stdout, rec, *endpoint)
	}
	printExplanation(stdout, res, out, nil)
	if rec != nil && rec.full != nil && out.Decision != nil && out.Decision.Allow {
		printMasking(stdout, rec.full, out.Decision, req.Query != nil && req.Query.Destination != nil)
	}
	return 0
}

// printMasking shows the masking plan jitgated would send with the allow (controlplane/
// maskplan, by result position), or the refusal that turns the allow into a denial.
func printMasking(w io.Writer, a *sqlanalysis.Analysis, d *policies.Decision, writesTable bool) {
	if len(d.MaskPlan) == 0 && len(d.Detectors) == 0 {
		fmt.Fprintln(w, "masking:    (none)")
		return
	}
	// A placeholder key: explain shows where hashing happens, never a key.
	m, err := maskplan.NewBuilder([]byte("explain")).Query(a, d.MaskPlan, d.Detectors, writesTable)
	if r, ok := errors.AsType[*maskplan.Refusal](err); ok {
		fmt.Fprintf(w, "masking:    refused, jitgated denies the call\nagent sees: %d %s: %s\n", r.Status, r.Reason, r.Message)
		return
	}
	if err != nil {
		fmt.Fprintf(w, "masking:    failed: %v\n", err)
		return
	}
	if m == nil || len(m.Rules) == 0 {
		fmt.Fprintln(w, "masking:    no result column masked")
	} else {
		fmt.Fprintf(w, "masking:    %d rule(s) by result position\n", len(m.Rules))
		for _, r := range m.Rules {
			name := ""
			for _, c := range a.Lineage {
				if c.Position == r.Path[0] && slices.Equal(c.FieldPositions, r.Path[1:]) {
					name = strings.Join(append([]string{c.Name}, c.Path...), ".")
					break
				}
			}
			fmt.Fprintf(w, "  - %v %s → %s\n", r.Path, name, r.Action)
		}
	}
	if m != nil && len(m.Detectors) > 0 {
		fmt.Fprintf(w, "masking detectors: %s\n", strings.Join(m.Detectors, ", "))
	}
}

// printAnalysis prints what the control plane's SQL analyser found (or why it refused).
func printAnalysis(w io.Writer, rec *recordingAnalyzer, endpoint string) {
	fmt.Fprintf(w, "analyser:   controlplane/sqlanalysis (as jitgated), table metadata from %s (%s)\n", endpoint, rec.pa.Auth())
	switch {
	case !rec.ran:
		fmt.Fprintln(w, "analysis:   not analysed: legacy SQL (never analysed; denied unless a policy sets what.legacySql)")
		return
	case rec.err != nil:
		var cause error = rec.err
		if ae, ok := errors.AsType[*policystep.AnalysisError](rec.err); ok && ae.Err != nil {
			cause = ae.Err
		}
		fmt.Fprintf(w, "analysis:   failed: %v\n", cause)
		return
	}
	a := rec.full
	fmt.Fprintf(w, "statement:  %s\n", a.StatementKind)
	if len(a.Statements) > 0 {
		fmt.Fprintf(w, "statements: %s\n", strings.Join(a.Statements, ", "))
	}
	none := func(xs []string) string {
		if len(xs) == 0 {
			return "(none)"
		}
		return strings.Join(xs, ", ")
	}
	fmt.Fprintf(w, "reads:      %s\n", none(a.ReferencedTables))
	if len(a.Views) > 0 {
		fmt.Fprintf(w, "views:      %s\n", strings.Join(a.Views, ", "))
	}
	if len(a.WildcardTables) > 0 {
		fmt.Fprintf(w, "wildcards:  %s\n", strings.Join(a.WildcardTables, ", "))
	}
	fmt.Fprintf(w, "writes:     %s\n", none(a.WrittenTables))
	var fs []string
	for _, f := range a.Findings {
		fs = append(fs, string(f))
	}
	fmt.Fprintf(w, "findings:   %s\n", none(fs))
	if len(a.UnfilteredPartitionedTables) > 0 {
		fmt.Fprintf(w, "no partition filter on: %s\n", strings.Join(a.UnfilteredPartitionedTables, ", "))
	}
	complete := "incomplete"
	if a.LineageComplete {
		complete = "complete"
	}
	fmt.Fprintf(w, "lineage:    %s, %d output column(s)\n", complete, countTopLevel(a.Lineage))
	for _, c := range a.Lineage {
		name := c.Name
		if len(c.Path) > 0 {
			name += "." + strings.Join(c.Path, ".")
		}
		var src []string
		for _, s := range c.Sources {
			src = append(src, s.String())
		}
		line := fmt.Sprintf("  - %s ← %s", name, none(src))
		if c.Unknown {
			line += " (unknown: not modelled)"
		}
		if c.Via != "" {
			line += " (" + c.Via
			if len(c.Aggregates) > 0 {
				line += ": " + strings.Join(c.Aggregates, ", ")
			}
			line += ")"
		}
		fmt.Fprintln(w, line)
	}
	if len(a.ControlReads) > 0 {
		var cr []string
		for _, s := range a.ControlReads {
			cr = append(cr, s.String())
		}
		fmt.Fprintf(w, "control reads: %s\n", strings.Join(cr, ", "))
	}
	if len(a.LineageGaps) > 0 {
		fmt.Fprintf(w, "lineage gaps:  %s\n", strings.Join(a.LineageGaps, "; "))
	}
}

func countTopLevel(cols []sqlanalysis.OutputColumn) int {
	n := 0
	for _, c := range cols {
		if len(c.Path) == 0 {
			n++
		}
	}
	return n
}

func printExplanation(w io.Writer, res *source.Result, out policystep.Outcome, notes []string) {
	for _, n := range notes {
		fmt.Fprintln(w, "note:", n)
	}
	d := out.Decision
	if d == nil { // the analyser refused before evaluation
		fmt.Fprintf(w, "decision:   deny (status %d)\nrule:       %s\nmessage:    %s\n", out.Denial.Status, out.Denial.Reason, out.Denial.Message)
		return
	}
	verdict := "deny"
	if d.Allow {
		verdict = "allow"
		if len(d.Approvals) > 0 {
			verdict = "allow once approved"
		}
	}
	fmt.Fprintf(w, "decision:   %s\n", verdict)
	if d.Allow && d.NotAnalysed != "" {
		fmt.Fprintf(w, "analysis:   not analysed: %s (what.legacySql): the tables it reads, deny rules and masking were NOT checked\n", d.NotAnalysed)
	}
	rule := d.Rule
	if d.RuleName != "" {
		rule += " (" + d.RuleName + ")"
	}
	fmt.Fprintf(w, "rule:       %s\n", rule)
	if d.Policy != nil {
		fmt.Fprintf(w, "policy:     %s@%s  %s\n", d.Policy.Name, d.Policy.Version, res.Sources[policies.KindAgentPolicy+"/"+d.Policy.Name])
	} else {
		fmt.Fprintf(w, "policy:     (none)\n")
	}
	fmt.Fprintf(w, "bundle:     %s\n", d.BundleVersion)
	if out.Denial != nil {
		fmt.Fprintf(w, "agent sees: %d %s: %s\n", out.Denial.Status, out.Denial.Reason, out.Denial.Message)
	}
	list := func(title string, items []string) {
		if len(items) == 0 {
			return
		}
		fmt.Fprintf(w, "%s\n", title)
		for _, it := range items {
			fmt.Fprintf(w, "  - %s\n", it)
		}
	}
	list("reasons:", d.Reasons)
	refs := func(rs []policies.PolicyRef) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.Name+"@"+r.Version)
		}
		return out
	}
	list("matched:", refs(d.Matched))
	list("granting:", refs(d.Granting))
	var masks []string
	for _, m := range d.MaskPlan {
		s := fmt.Sprintf("%s → %s", m.Columns, m.Action)
		if len(m.AllowAggregates) > 0 {
			s += " (unmasked under " + strings.Join(m.AllowAggregates, ", ") + ")"
		}
		masks = append(masks, s+"  [from "+strings.Join(m.Policies, ", ")+"]")
	}
	list("mask plan:", masks)
	if len(d.Detectors) > 0 {
		var ds []string
		for _, x := range d.Detectors {
			ds = append(ds, string(x))
		}
		fmt.Fprintf(w, "detectors:  %s\n", strings.Join(ds, ", "))
	}
	var apps []string
	for _, a := range d.Approvals {
		apps = append(apps, fmt.Sprintf("%s/%s: approvers %s, mode %s, ttl %s, uses %d",
			a.Policy.Name, a.Rule, strings.Join(a.ApproverGroups, ", "), a.Mode, a.TTL, a.Uses))
	}
	list("approvals:", apps)
	if c := d.Credential; c != nil {
		sa := c.ServiceAccount
		if sa == "" {
			sa = "the control plane's account"
		}
		fmt.Fprintf(w, "credential: %s as %s, ttl %s\n", c.Mode, sa, c.TTL)
	}
	if l := d.Limits; l != (policies.Limits{}) {
		fmt.Fprintf(w, "limits:     maxRequestBodyBytes %s, maxResponseBodyBytes %s, maxRows %s\n",
			orDefault(int64(l.MaxRequestBodyBytes)), orDefault(int64(l.MaxResponseBodyBytes)), orDefault(l.MaxRows))
	}
	var dry []string
	for _, h := range d.DryRunWouldDeny {
		dry = append(dry, fmt.Sprintf("%s@%s rule %s (%s)", h.Policy.Name, h.Policy.Version, h.Rule, h.Kind))
	}
	list("dry run, would deny:", dry)
}

func orDefault(v int64) string {
	if v == 0 {
		return "default"
	}
	return fmt.Sprint(v)
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
