package sqlanalysis

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/goccy/go-googlesql"
	"github.com/jitgate/jitgate/policies"
)

// Errors. Every error Analyze returns wraps exactly one of them; callers deny on any.
var (
	// ErrLegacySQL: the query is legacy SQL (useLegacySql true or absent, or #legacySQL).
	ErrLegacySQL = errors.New("legacy SQL is not analysed")
	// ErrUnanalysable: the analyser rejected the query, or it uses something this
	// package does not analyse yet. The *AnalysisError says what.
	ErrUnanalysable = errors.New("query cannot be analysed")
	// ErrCatalogUnavailable: table metadata could not be read (a transient failure).
	ErrCatalogUnavailable = errors.New("table metadata unavailable")
)

// AnalysisError is the error Analyze returns for a query it will not vouch for.
type AnalysisError struct {
	// Kind is ErrLegacySQL, ErrUnanalysable or ErrCatalogUnavailable.
	Kind error
	// Reason is a one-line explanation safe to show the agent (the analyser's message,
	// cleaned).
	Reason string
	// StatementKind is the kind when it is known (e.g. SCRIPT), else "".
	StatementKind string
	// Findings are deny-rule kinds noticed before analysis failed (e.g. externalQuery),
	// so the denial can name the rule.
	Findings []policies.DenyRuleKind
}

func (e *AnalysisError) Error() string {
	if e.Reason == "" {
		return e.Kind.Error()
	}
	return e.Kind.Error() + ": " + e.Reason
}

func (e *AnalysisError) Unwrap() error { return e.Kind }

// Options configure an Analyzer.
type Options struct {
	// Catalog supplies table schemas (required); see NewBigQueryTableSource.
	Catalog TableSource
	// CatalogVersion, when set, is part of every fingerprint: change it to invalidate
	// cached results (e.g. after a schema change).
	CatalogVersion func() string
	// CacheSize bounds the result cache (entries); 0 means 4096, negative disables it.
	CacheSize int
	// CacheTTL bounds how long a result is reused; 0 means 5 minutes.
	CacheTTL time.Duration
	// MaxViewDepth bounds view expansion; 0 means 8.
	MaxViewDepth int
	// Now is the clock (tests).
	Now func() time.Time
	// Metrics, when set, counts analyses (NewMetrics).
	Metrics *Metrics
}

// Input is one query to analyse.
type Input struct {
	SQL string
	// DefaultProject is the job's project (names without a project resolve to it).
	DefaultProject string
	// DefaultDataset is the request's defaultDataset (nil when absent).
	DefaultDataset *DatasetRef
	// LegacySQL is the dialect BigQuery would use (true when useLegacySql is absent).
	LegacySQL bool
	// Parameters are the query parameters; an empty Name means positional.
	Parameters []Parameter
}

// DatasetRef names a dataset.
type DatasetRef struct{ Project, Dataset string }

// Parameter is a query parameter's name and BigQuery type (values do not matter here).
type Parameter struct{ Name, Type string }

// Analysis is what Analyze reports. It is a superset of policies.Analysis (ToPolicy).
type Analysis struct {
	// StatementKind is a policies.StatementKinds() name, or the analyser's own name
	// (upper snake case) for kinds policies do not know, which they deny.
	StatementKind string `json:"statementKind"`
	// ReferencedTables are the tables read, "project.dataset.table", sorted and unique:
	// a view appears together with every table its body reads (recursively).
	ReferencedTables []string `json:"referencedTables,omitempty"`
	// WrittenTables are DML/DDL targets, fully qualified, sorted and unique.
	WrittenTables []string `json:"writtenTables,omitempty"`
	// Findings are deny-rule kinds (policies.DenyRuleKinds), sorted and unique.
	Findings []policies.DenyRuleKind `json:"findings,omitempty"`
	// Views are the views read (they also appear in ReferencedTables).
	Views []string `json:"views,omitempty"`
	// ViewColumns are the top-level column names of each view read (tables.get), so that
	// a rule naming a view column can be recognised (lineage resolves views to their base
	// columns, so it could never match a source).
	ViewColumns map[string][]string `json:"viewColumns,omitempty"`
	// Statements holds the kind of each statement of a multi-statement script.
	Statements []string `json:"statements,omitempty"`
	// WildcardTables are the wildcard tables named (project.dataset.prefix*); the tables
	// they may read (all matching tables, narrowed by _TABLE_SUFFIX conditions of a WHERE
	// directly over the wildcard) are in ReferencedTables.
	WildcardTables []string `json:"wildcardTables,omitempty"`
	// UnfilteredPartitionedTables are partitioned tables read by the agent's statements
	// without a WHERE condition on their partition column (finding missingPartitionFilter).
	UnfilteredPartitionedTables []string `json:"unfilteredPartitionedTables,omitempty"`
	// StarTables are the tables the selectStar finding concerns: those whose whole row a
	// value packs, or, for a * or t.* (whose tables are not told apart), every table read.
	StarTables []string `json:"starTables,omitempty"`
	// Lineage is, for a single query statement, each result column's (and each exactly
	// known nested STRUCT field's) source columns, ordered by Position, each column
	// followed by its nested entries depth first in field order. Empty for other
	// statements. See OutputColumn.
	Lineage []OutputColumn `json:"lineage,omitempty"`
	// LineageComplete is true when every node of the query was modelled: no column is
	// Unknown and ControlReads is exact. It is false for anything but a single query
	// statement (DML, DDL and scripts have no lineage yet), so callers that need lineage
	// must deny or mask everything when it is false.
	LineageComplete bool `json:"lineageComplete"`
	// ControlReads are the base columns the query uses to decide rather than to return:
	// WHERE, JOIN ON, GROUP BY, HAVING, QUALIFY, ORDER BY, PARTITION BY, CASE/IF
	// conditions, the compared value of NULLIF, EXISTS, IN and LIKE ANY/ALL subqueries,
	// aggregate ORDER BY/HAVING MAX/MIN/WHERE, FOR SYSTEM_TIME AS OF. A column may also be
	// in Lineage (GROUP BY email, SELECT email). Predicates inside a view's own body are
	// not the agent's and are not listed; the agent's predicates on view columns are
	// listed as the view columns' base columns. Sorted by table then column.
	ControlReads []SourceColumn `json:"controlReads,omitempty"`
	// LineageGaps names what the lineage walker did not model (node kinds, reasons);
	// non-empty implies LineageComplete is false.
	LineageGaps []string `json:"lineageGaps,omitempty"`
	// ResultSchema is the schema of a single query statement's result rows (BigQuery
	// types: INTEGER, FLOAT, BOOLEAN, RECORD ...; arrays Repeated), from the analyser's
	// resolved types, in Lineage's positions; nil for other statements or when a type
	// cannot be expressed. Anonymous columns are named as the analyser names them
	// ("$colN"), not as BigQuery does ("f0_").
	ResultSchema []Column `json:"resultSchema,omitempty"`
	// ValueTable: the query returns a value table (SELECT AS STRUCT / AS VALUE). Lineage
	// and ResultSchema lay a STRUCT value table out as its fields, as BigQuery returns it;
	// the emulator returns one RECORD column instead.
	ValueTable bool `json:"valueTable,omitempty"`
	// Fingerprint is the cache key (hex sha256).
	Fingerprint string `json:"fingerprint"`
	// Cached is true when the result came from the cache.
	Cached bool `json:"cached,omitempty"`
}

// ToPolicy returns the part of the analysis the policy evaluator reads.
func (a *Analysis) ToPolicy() *policies.Analysis {
	p := &policies.Analysis{
		StatementKind:    a.StatementKind,
		ReferencedTables: slices.Clone(a.ReferencedTables),
		WrittenTables:    slices.Clone(a.WrittenTables),
		Findings:         slices.Clone(a.Findings),
	}
	for _, f := range a.Findings {
		var tables []string
		switch f {
		case policies.DenySelectStar:
			tables = a.StarTables
		case policies.DenyMissingPartitionFilter:
			tables = a.UnfilteredPartitionedTables
		default:
			continue
		}
		if len(tables) > 0 {
			if p.FindingTables == nil {
				p.FindingTables = map[policies.DenyRuleKind][]string{}
			}
			p.FindingTables[f] = slices.Clone(tables)
		}
	}
	return p
}

func (a *Analysis) clone() *Analysis {
	c := *a
	c.ReferencedTables = slices.Clone(a.ReferencedTables)
	c.WrittenTables = slices.Clone(a.WrittenTables)
	c.Findings = slices.Clone(a.Findings)
	c.Views = slices.Clone(a.Views)
	if a.ViewColumns != nil {
		c.ViewColumns = make(map[string][]string, len(a.ViewColumns))
		for k, v := range a.ViewColumns {
			c.ViewColumns[k] = slices.Clone(v)
		}
	}
	c.Statements = slices.Clone(a.Statements)
	c.WildcardTables = slices.Clone(a.WildcardTables)
	c.UnfilteredPartitionedTables = slices.Clone(a.UnfilteredPartitionedTables)
	c.StarTables = slices.Clone(a.StarTables)
	c.Lineage = cloneLineage(a.Lineage)
	c.ControlReads = slices.Clone(a.ControlReads)
	c.LineageGaps = slices.Clone(a.LineageGaps)
	c.ResultSchema = cloneColumns(a.ResultSchema)
	return &c
}

// Analyzer analyses BigQuery standard SQL. It is safe for concurrent use; analyses run
// one at a time on the process's single engine.
type Analyzer struct {
	opts  Options
	e     *engine
	cache *lru
}

// New returns an Analyzer. The first call in a process initialises the engine.
func New(opts Options) (*Analyzer, error) {
	if opts.Catalog == nil {
		return nil, errors.New("sqlanalysis: Options.Catalog is required")
	}
	if opts.CacheSize == 0 {
		opts.CacheSize = 4096
	}
	if opts.CacheTTL == 0 {
		opts.CacheTTL = 5 * time.Minute
	}
	if opts.MaxViewDepth == 0 {
		opts.MaxViewDepth = 8
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	e, err := theEngine()
	if err != nil {
		return nil, err
	}
	a := &Analyzer{opts: opts, e: e}
	if opts.CacheSize > 0 {
		a.cache = newLRU(opts.CacheSize)
	}
	return a, nil
}

// Fingerprint is the cache key of an input: sha256 over the SQL text, default project
// and dataset, dialect, parameters and catalog version.
func (a *Analyzer) Fingerprint(in Input) string {
	h := sha256.New()
	field := func(s string) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	field("jitgate-sqlanalysis-v1")
	field(in.SQL)
	field(in.DefaultProject)
	if in.DefaultDataset != nil {
		field(in.DefaultDataset.Project + "\x00" + in.DefaultDataset.Dataset)
	} else {
		field("\x00nil")
	}
	field(fmt.Sprint(in.LegacySQL))
	field(fmt.Sprint(len(in.Parameters)))
	for _, p := range in.Parameters {
		field(p.Name)
		field(p.Type)
	}
	if a.opts.CatalogVersion != nil {
		field(a.opts.CatalogVersion())
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Analyze analyses one query. On success the Analysis is the caller's to keep; on failure
// the error is an *AnalysisError wrapping ErrLegacySQL, ErrUnanalysable or
// ErrCatalogUnavailable.
func (a *Analyzer) Analyze(ctx context.Context, in Input) (*Analysis, error) {
	res, err := a.analyzeInput(ctx, in)
	switch {
	case err == nil && res.Cached:
		a.opts.Metrics.analysis(ResultCached)
	case err == nil:
		a.opts.Metrics.analysis(ResultAnalysed)
	case errors.Is(err, ErrCatalogUnavailable):
		a.opts.Metrics.analysis(ResultCatalogUnavailable)
	default:
		a.opts.Metrics.analysis(ResultRefused)
		if strings.Contains(err.Error(), "wasm trap") {
			// go-googlesql reports a panic inside the engine (a trap, or a memory fault
			// turned into a panic by SetPanicOnFault in analyzeLocked) this way.
			a.opts.Metrics.engineFailure()
		}
	}
	return res, err
}

func (a *Analyzer) analyzeInput(ctx context.Context, in Input) (*Analysis, error) {
	if in.LegacySQL || hasLegacyPrefix(in.SQL) {
		return nil, &AnalysisError{Kind: ErrLegacySQL, Reason: "the query is legacy SQL; send useLegacySql=false (standard SQL)"}
	}
	if strings.TrimSpace(in.SQL) == "" {
		return nil, &AnalysisError{Kind: ErrUnanalysable, Reason: "empty query"}
	}
	fp := a.Fingerprint(in)
	now := a.opts.Now()
	if a.cache != nil {
		if res, ok := a.cache.get(fp, now); ok {
			out := res.clone()
			out.Cached = true
			return out, nil
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, &AnalysisError{Kind: ErrCatalogUnavailable, Reason: err.Error()}
	}
	positional := false
	for _, p := range in.Parameters {
		if p.Name == "" {
			positional = true
		}
	}
	res, err := a.analyze(ctx, in.SQL, in.DefaultProject, in.DefaultDataset, positional, in.Parameters)
	if err != nil {
		return nil, err
	}
	res.Fingerprint = fp
	if a.cache != nil {
		a.cache.put(fp, res.clone(), now.Add(a.opts.CacheTTL))
	}
	return res, nil
}

// hasLegacyPrefix reports a #legacySQL dialect prefix (BigQuery reads it before any text).
func hasLegacyPrefix(sql string) bool {
	s := strings.TrimLeft(sql, " \t\r\n")
	return len(s) >= 10 && strings.EqualFold(s[:10], "#legacysql")
}

// stmtResult is what one statement contributes.
type stmtResult struct {
	kind                 string
	reads, writes        []string
	findings             []policies.DenyRuleKind
	lineage              *rawLineage // query statements only
	wildcards            []string
	unfilteredPartitions []string
	// star: a * or t.* (its tables are not told apart: every table read counts);
	// wholeRowTables: tables whose whole row is packed into a value.
	star           bool
	wholeRowTables []string
}

var errUnexpectedScan = errors.New("unexpected table scan node")

func unanalysable(kind string, findings map[policies.DenyRuleKind]bool, format string, args ...any) *AnalysisError {
	return &AnalysisError{Kind: ErrUnanalysable, Reason: fmt.Sprintf(format, args...), StatementKind: kind, Findings: sortedFindings(findings)}
}

func sortedFindings(m map[policies.DenyRuleKind]bool) []policies.DenyRuleKind {
	var out []policies.DenyRuleKind
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// analyze runs under the engine lock: parse, normalise, analyse every statement, then
// expand the views it read.
//
// The engine lock is never held while table metadata is fetched: when the TableSource
// can answer from its cache (CachedTableSource), a round that meets a table (or a
// wildcard's dataset listing) not in the cache records it and is discarded; the missing
// metadata is fetched with the lock released, and the analysis runs again. Other
// analyses proceed meanwhile, so one slow tables.get no longer stalls every query.
func (a *Analyzer) analyze(ctx context.Context, sql, jobProject string, defDS *DatasetRef, positional bool, params []Parameter) (*Analysis, error) {
	cached, _ := a.opts.Catalog.(CachedTableSource)
	for round := 0; ; round++ {
		fs := &fetchState{cached: cached}
		res, err := a.analyzeLocked(ctx, fs, sql, jobProject, defDS, positional, params)
		if len(fs.missing) == 0 && len(fs.missingLists) == 0 {
			return res, err
		}
		if round >= maxCatalogRounds {
			return nil, unanalysable("", nil, "the query needs more than %d rounds of table metadata lookups", maxCatalogRounds)
		}
		a.opts.Metrics.fetchRound()
		if err := a.fetchMissing(ctx, fs); err != nil {
			return nil, &AnalysisError{Kind: ErrCatalogUnavailable, Reason: cleanMessage(err)}
		}
	}
}

// maxCatalogRounds bounds the fetch-and-retry rounds of one analysis (each round can
// discover the tables of one more level of views).
const maxCatalogRounds = 12

// fetchMissing reads the metadata a round found missing, concurrently, without the
// engine lock. Not found is an answer (the TableSource caches it); anything else is a
// catalog failure.
func (a *Analyzer) fetchMissing(ctx context.Context, fs *fetchState) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(fs.missing)+len(fs.missingLists))
	for _, t := range fs.missing {
		wg.Go(func() {
			if _, err := a.opts.Catalog.Table(ctx, t.project, t.dataset, t.table); err != nil && !errors.Is(err, ErrTableNotFound) {
				errs <- err
			}
		})
	}
	if lister, ok := a.opts.Catalog.(TableLister); ok {
		for _, d := range fs.missingLists {
			wg.Go(func() {
				if _, err := lister.ListTables(ctx, d.project, d.dataset); err != nil && !errors.Is(err, ErrTableNotFound) && !errors.Is(err, ErrTooManyTables) {
					errs <- err
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func (a *Analyzer) analyzeLocked(ctx context.Context, fs *fetchState, sql, jobProject string, defDS *DatasetRef, positional bool, params []Parameter) (*Analysis, error) {
	e := a.e
	e.mu.Lock()
	defer e.mu.Unlock()
	defer e.endAnalysis() // runs before the unlock, after the last engine call
	// A memory fault inside the transpiled engine (a wild pointer: one killed jitgated
	// with "fatal error: fault" in an ML table function's analysis, cause not found yet)
	// becomes a panic on this goroutine, which analyzeText recovers: the query is refused
	// as unanalysable and the control plane keeps serving. go-googlesql restores the
	// engine's globals and releases its lock when a call panics (its wasm traps are
	// panics too).
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	a.opts.Metrics.engineRun()
	defer e.undeclareParameters() // also after a failed declaration
	if err := e.declareParameters(params); err != nil {
		return nil, unanalysable("", nil, "%s", cleanMessage(err))
	}
	req := &request{ctx: ctx, source: a.opts.Catalog, jobProject: jobProject, fetch: fs}
	if defDS != nil {
		req.dsProject, req.defaultDS = defDS.Project, defDS.Dataset
	}
	main, err := a.analyzeText(req, sql, positional, true)
	if err != nil {
		return nil, err
	}
	reads := map[string]bool{}
	for _, t := range main.reads {
		reads[t] = true
	}
	findings := map[policies.DenyRuleKind]bool{}
	for _, f := range main.findings {
		findings[f] = true
	}
	for f := range req.findings {
		findings[f] = true
	}
	// Views: analyse each body (iteratively, bounded depth), add the tables it reads.
	views := map[string]bool{}
	viewColumns := map[string][]string{}
	vl := &viewLineage{views: map[string]*rawLineage{}, memo: map[SourceColumn]*lin{}, busy: map[SourceColumn]bool{}}
	var viewGaps []string
	type pending struct {
		meta  *TableMeta
		depth int
	}
	var queue []pending
	for _, fq := range req.order {
		if m := req.seen[fq]; m != nil && (m.ViewQuery != "" || isViewType(m.Type)) {
			queue = append(queue, pending{m, 1})
		}
	}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		fq := p.meta.FullName()
		if views[fq] {
			continue
		}
		views[fq] = true
		for _, c := range p.meta.Columns {
			viewColumns[fq] = append(viewColumns[fq], c.Name)
		}
		if p.depth > a.opts.MaxViewDepth {
			return nil, unanalysable(main.kind, findings, "view %s: views nested deeper than %d are not analysed", fq, a.opts.MaxViewDepth)
		}
		if p.meta.ViewQuery == "" {
			return nil, unanalysable(main.kind, findings, "view %s has no readable body", fq)
		}
		if p.meta.ViewLegacySQL || hasLegacyPrefix(p.meta.ViewQuery) {
			return nil, unanalysable(main.kind, findings, "view %s is defined in legacy SQL", fq)
		}
		// A view body resolves dataset.table against the view's own project.
		vreq := &request{ctx: ctx, source: a.opts.Catalog, jobProject: p.meta.Project, seen: req.seen, fetch: fs}
		vres, err := a.analyzeText(vreq, p.meta.ViewQuery, false, false)
		if err != nil {
			var ae *AnalysisError
			if errors.As(err, &ae) && ae.Kind == ErrCatalogUnavailable {
				return nil, err
			}
			reason := err.Error()
			if errors.As(err, &ae) {
				reason = ae.Reason
			}
			return nil, unanalysable(main.kind, findings, "view %s: %s", fq, reason)
		}
		if vres.kind != "SELECT" {
			return nil, unanalysable(main.kind, findings, "view %s: body is %s, not a query", fq, vres.kind)
		}
		for _, t := range vres.reads {
			reads[t] = true
		}
		vl.views[fq] = vres.lineage
		if vres.lineage != nil {
			for g := range vres.lineage.gaps {
				viewGaps = append(viewGaps, "view "+fq+": "+g)
			}
		}
		for _, f := range vres.findings {
			// A view's own SELECT * and its partition filters are not the agent's.
			if f != policies.DenySelectStar && f != policies.DenyMissingPartitionFilter {
				findings[f] = true
			}
		}
		for f := range vreq.findings {
			if f != policies.DenySelectStar && f != policies.DenyMissingPartitionFilter {
				findings[f] = true
			}
		}
		for _, vfq := range vreq.order {
			if m := vreq.seen[vfq]; m != nil && (m.ViewQuery != "" || isViewType(m.Type)) {
				queue = append(queue, pending{m, p.depth + 1})
			}
		}
	}
	out := &Analysis{
		StatementKind:               main.kind,
		ReferencedTables:            sortedKeys(reads),
		WrittenTables:               sortedUnique(main.writes),
		Findings:                    sortedFindings(findings),
		Views:                       sortedKeys(views),
		Statements:                  main.statements,
		WildcardTables:              sortedUnique(main.wildcards),
		UnfilteredPartitionedTables: sortedUnique(main.unfilteredPartitions),
	}
	if main.star {
		out.StarTables = out.ReferencedTables
	} else {
		out.StarTables = sortedUnique(main.wholeRowTables)
	}
	if len(viewColumns) > 0 {
		out.ViewColumns = viewColumns
	}
	if main.lineage == nil {
		out.LineageGaps = []string{"lineage is only computed for a single query statement"}
	} else {
		out.Lineage, out.ControlReads, out.LineageComplete = vl.build(main.lineage)
		out.ResultSchema = cloneColumns(main.lineage.schema)
		out.ValueTable = main.lineage.valueTable
		gaps := map[string]bool{}
		for g := range main.lineage.gaps {
			gaps[g] = true
		}
		for _, g := range viewGaps {
			gaps[g] = true
		}
		out.LineageGaps = sortedKeys(gaps)
		if len(out.LineageGaps) > 0 {
			out.LineageComplete = false
		}
	}
	return out, nil
}

func isViewType(t string) bool { return strings.EqualFold(t, "VIEW") }

type textResult struct {
	kind                 string
	statements           []string
	reads                []string
	writes               []string
	findings             []policies.DenyRuleKind
	lineage              *rawLineage // single query statement only
	wildcards            []string
	unfilteredPartitions []string
	star                 bool
	wholeRowTables       []string
}

// analyzeText parses and analyses sql (one statement or a plain multi-statement script)
// with req as the catalog's request. allowScript is false for view bodies.
func (a *Analyzer) analyzeText(req *request, sql string, positional, allowScript bool) (res *textResult, err error) {
	e := a.e
	defer func() {
		if r := recover(); r != nil {
			a.opts.Metrics.engineFailure()
			res, err = nil, unanalysable("", req.findings, "analyser failure: %v", r)
		}
	}()
	if err := e.setParameterMode(positional); err != nil {
		return nil, unanalysable("", nil, "parameter mode: %s", cleanMessage(err))
	}
	out, stmts, err := e.parseScript(sql)
	if err != nil {
		return nil, unanalysable("", nil, "%s", cleanMessage(err))
	}
	var rw []byteRange
	facts := make([]*astFacts, len(stmts))
	for i, s := range stmts {
		f, err := inspectAST(s, sql)
		if err != nil {
			return nil, unanalysable("", nil, "%s", cleanMessage(err))
		}
		facts[i] = f
		rw = append(rw, f.rewrites...)
	}
	if len(rw) > 0 {
		sql = applyRewrites(sql, rw)
		out, stmts, err = e.parseScript(sql)
		if err != nil {
			return nil, unanalysable("", nil, "after normalising quoted paths: %s", cleanMessage(err))
		}
		if len(stmts) != len(facts) {
			return nil, unanalysable("", nil, "normalising quoted paths changed the statements")
		}
	}
	defer runtime.KeepAlive(out)
	if len(stmts) == 0 {
		return nil, unanalysable("", nil, "no statement")
	}
	multi := len(stmts) > 1
	if multi && !allowScript {
		return nil, unanalysable("", nil, "multiple statements")
	}
	res = &textResult{}
	var script *scriptState
	for i, s := range stmts {
		k, _ := s.GetNodeKindString()
		if (k == "VariableDeclaration" || k == "SingleAssignment") && allowScript {
			if script == nil {
				if script, err = a.newScript(req); err != nil {
					return nil, err
				}
			}
			r, err := script.statement(req, s, k, sql)
			if err != nil {
				return nil, err
			}
			res.statements = append(res.statements, r.kind)
			res.reads = append(res.reads, r.reads...)
			res.findings = append(res.findings, r.findings...)
			res.wildcards = append(res.wildcards, r.wildcards...)
			res.unfilteredPartitions = append(res.unfilteredPartitions, r.unfilteredPartitions...)
			res.wholeRowTables = append(res.wholeRowTables, r.wholeRowTables...)
			continue
		}
		if isScriptOnly(s, k) {
			return nil, unanalysable("SCRIPT", req.findings, "scripts with %s are not analysed", k)
		}
		e.cat.cur = req
		r, err := a.analyzeStatement(req, s, sql, facts[i].selectStar)
		e.cat.cur = nil
		if err != nil {
			return nil, err
		}
		for _, f := range r.findings {
			req.finding(f) // so a later statement's failure still names them
		}
		res.statements = append(res.statements, r.kind)
		res.reads = append(res.reads, r.reads...)
		res.writes = append(res.writes, r.writes...)
		res.findings = append(res.findings, r.findings...)
		res.wildcards = append(res.wildcards, r.wildcards...)
		res.unfilteredPartitions = append(res.unfilteredPartitions, r.unfilteredPartitions...)
		res.star = res.star || r.star
		res.wholeRowTables = append(res.wholeRowTables, r.wholeRowTables...)
		if i == 0 {
			res.kind = r.kind
			res.lineage = r.lineage
		}
	}
	if multi {
		res.kind = "SCRIPT"
		res.lineage = nil
	} else {
		res.statements = nil
	}
	return res, nil
}

// isScriptOnly reports procedural statements the analyser cannot take one by one.
func isScriptOnly(s googlesql.ASTNode, kindString string) bool {
	switch kindString {
	case "ExecuteImmediateStatement":
		return false
	}
	if sc, err := s.IsScriptStatement(); err != nil || sc {
		return true
	}
	switch kindString {
	case "VariableDeclaration", "SingleAssignment", "ParameterAssignment", "SystemVariableAssignment",
		"AssignmentFromStruct", "BeginEndBlock", "IfStatement", "WhileStatement", "RepeatStatement",
		"ForInStatement", "CaseStatement", "RaiseStatement", "ReturnStatement", "BreakStatement", "ContinueStatement":
		return true
	}
	return false
}

// analyzeStatement resolves one parsed statement and reads the resolved tree.
func (a *Analyzer) analyzeStatement(req *request, s googlesql.ASTStatementNode, sql string, star bool) (*stmtResult, error) {
	e := a.e
	out, err := googlesql.AnalyzeStatementFromParserAST(s, e.opts, sql, req.catalog(e), e.tf)
	if err != nil || out == nil {
		if req.sourceErr != nil {
			return nil, &AnalysisError{Kind: ErrCatalogUnavailable, Reason: cleanMessage(req.sourceErr), Findings: sortedFindings(req.findings)}
		}
		msg := "analyser returned nothing"
		if err != nil {
			msg = cleanMessage(err)
		}
		return nil, unanalysable("", req.findings, "%s", msg)
	}
	stmt, err := out.ResolvedStatement()
	if err != nil || stmt == nil {
		return nil, unanalysable("", req.findings, "no resolved statement")
	}
	kindStr, err := stmt.NodeKindString()
	if err != nil {
		return nil, unanalysable("", req.findings, "%s", cleanMessage(err))
	}
	r := &stmtResult{kind: statementKind(stmt, kindStr)}
	if q, ok := stmt.(*googlesql.ResolvedQueryStmt); ok {
		var wild map[string][]string
		for fq, wt := range req.wildcards {
			if wild == nil {
				wild = map[string][]string{}
			}
			for _, t := range wt.tables {
				wild[fq] = append(wild[fq], wt.project+"."+wt.dataset+"."+t)
			}
		}
		r.lineage = statementLineage(q, wild)
		r.lineage.schema = resultSchema(q)
	}
	if star && r.kind != "EXECUTE_IMMEDIATE" {
		r.findings = append(r.findings, policies.DenySelectStar)
		r.star = true
	}
	// Every table scanned is read (wildcards: the tables they match, narrowed by
	// _TABLE_SUFFIX).
	sr, err := readScans(req, stmt)
	if err != nil {
		return nil, unanalysable(r.kind, req.findings, "%s", cleanMessage(err))
	}
	counts := sr.counts
	r.wildcards = sr.wildcards
	r.unfilteredPartitions = sr.unfilteredPartitions
	if len(sr.wholeRow) > 0 && r.kind != "EXECUTE_IMMEDIATE" {
		r.findings = append(r.findings, policies.DenySelectStar)
		r.wholeRowTables = sr.wholeRow
	}
	if len(sr.unfilteredPartitions) > 0 {
		r.findings = append(r.findings, policies.DenyMissingPartitionFilter)
	}
	// Targets.
	var target *googlesql.ResolvedTableScan
	switch st := stmt.(type) {
	case *googlesql.ResolvedInsertStmt:
		target, err = st.TableScan()
	case *googlesql.ResolvedUpdateStmt:
		target, err = st.TableScan()
	case *googlesql.ResolvedDeleteStmt:
		target, err = st.TableScan()
	case *googlesql.ResolvedMergeStmt:
		target, err = st.TableScan()
	case *googlesql.ResolvedTruncateStmt:
		target, err = st.TableScan()
	}
	if err != nil {
		return nil, unanalysable(r.kind, req.findings, "%s", cleanMessage(err))
	}
	if target != nil {
		name, err := tableScanName(target)
		if err != nil {
			return nil, unanalysable(r.kind, req.findings, "%s", cleanMessage(err))
		}
		r.writes = append(r.writes, name)
		if _, ok := stmt.(*googlesql.ResolvedInsertStmt); ok {
			counts[name]-- // INSERT does not read its target (unless it also selects from it)
		}
	} else if r.kind != "SELECT" {
		if np, ok := stmt.(interface{ NamePath() ([]string, error) }); ok {
			path, err := np.NamePath()
			if err != nil {
				return nil, unanalysable(r.kind, req.findings, "%s", cleanMessage(err))
			}
			if len(path) > 0 && writesTable(r.kind) {
				p, d, t, err := qualify(splitPath(path), req.jobProject, req.dsProject, req.defaultDS)
				if err != nil {
					return nil, unanalysable(r.kind, req.findings, "%s", err)
				}
				r.writes = append(r.writes, p+"."+d+"."+t)
			}
		}
	}
	for name, n := range counts {
		if n > 0 {
			r.reads = append(r.reads, name)
		}
	}
	// Findings from the statement itself.
	switch r.kind {
	case "EXPORT_DATA":
		r.findings = append(r.findings, policies.DenyExportData)
	case "EXECUTE_IMMEDIATE":
		r.findings = append(r.findings, policies.DenyExecuteImmediate)
	}
	if cs, ok := stmt.(interface {
		CreateScope() (googlesql.ResolvedCreateStatementEnums_CreateScope, error)
	}); ok && strings.Contains(r.kind, "FUNCTION") {
		if scope, err := cs.CreateScope(); err != nil || scope == googlesql.ResolvedCreateStatementEnums_CreateScopeCreateTemp {
			r.findings = append(r.findings, policies.DenyTemporaryFunction)
		}
	}
	joins, err := stmt.GetDescendantsWithKinds([]googlesql.ResolvedNodeKind{googlesql.ResolvedNodeKindResolvedJoinScan})
	if err != nil {
		return nil, unanalysable(r.kind, req.findings, "%s", cleanMessage(err))
	}
	for _, n := range joins {
		if j, ok := n.(*googlesql.ResolvedJoinScan); ok {
			if ex, err := j.JoinExpr(); err == nil && ex == nil {
				r.findings = append(r.findings, policies.DenyCrossJoin)
				break
			}
		}
	}
	return r, nil
}

// writesTable: DDL kinds whose name path is a table-like object the statement writes.
func writesTable(kind string) bool {
	switch kind {
	case "CREATE_TABLE", "CREATE_TABLE_AS_SELECT", "CREATE_VIEW", "CREATE_MATERIALIZED_VIEW",
		"ALTER_TABLE", "ALTER_VIEW", "DROP_TABLE", "DROP_VIEW", "DROP_MATERIALIZED_VIEW",
		"CREATE_EXTERNAL_TABLE", "DROP_EXTERNAL_TABLE", "CREATE_SNAPSHOT_TABLE", "DROP_SNAPSHOT_TABLE":
		return true
	}
	return false
}

func tableScanName(ts *googlesql.ResolvedTableScan) (string, error) {
	t, err := ts.Table()
	if err != nil {
		return "", err
	}
	if t == nil {
		return "", errors.New("table scan without table")
	}
	return t.FullName()
}

// statementKinds maps resolved statement node kinds to policies' names.
var statementKinds = map[string]string{
	"QueryStmt":                  "SELECT",
	"InsertStmt":                 "INSERT",
	"UpdateStmt":                 "UPDATE",
	"DeleteStmt":                 "DELETE",
	"MergeStmt":                  "MERGE",
	"TruncateStmt":               "TRUNCATE_TABLE",
	"CreateTableStmt":            "CREATE_TABLE",
	"CreateTableAsSelectStmt":    "CREATE_TABLE_AS_SELECT",
	"CreateViewStmt":             "CREATE_VIEW",
	"CreateMaterializedViewStmt": "CREATE_MATERIALIZED_VIEW",
	"CreateSchemaStmt":           "CREATE_SCHEMA",
	"CreateFunctionStmt":         "CREATE_FUNCTION",
	"CreateTableFunctionStmt":    "CREATE_TABLE_FUNCTION",
	"CreateProcedureStmt":        "CREATE_PROCEDURE",
	"CreateModelStmt":            "CREATE_MODEL",
	"AlterTableStmt":             "ALTER_TABLE",
	"AlterViewStmt":              "ALTER_VIEW",
	"AlterSchemaStmt":            "ALTER_SCHEMA",
	"DropFunctionStmt":           "DROP_FUNCTION",
	"DropMaterializedViewStmt":   "DROP_MATERIALIZED_VIEW",
	"GrantStmt":                  "GRANT",
	"RevokeStmt":                 "REVOKE",
	"CallStmt":                   "CALL",
	"ExecuteImmediateStmt":       "EXECUTE_IMMEDIATE",
	"ExportDataStmt":             "EXPORT_DATA",
	"AuxLoadDataStmt":            "LOAD_DATA",
}

func statementKind(stmt googlesql.ResolvedStatementNode, nodeKind string) string {
	nodeKind = strings.TrimPrefix(nodeKind, "Resolved")
	if k, ok := statementKinds[nodeKind]; ok {
		return k
	}
	if d, ok := stmt.(*googlesql.ResolvedDropStmt); ok {
		obj, err := d.ObjectType()
		if err == nil && obj != "" {
			return "DROP_" + strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(obj), " ", "_"))
		}
	}
	return upperSnake(strings.TrimSuffix(nodeKind, "Stmt"))
}

func upperSnake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String())
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	if len(out) == 0 {
		return nil
	}
	return out
}

func sortedUnique(xs []string) []string {
	m := map[string]bool{}
	for _, x := range xs {
		m[x] = true
	}
	return sortedKeys(m)
}

// ---- result cache ----

type lru struct {
	mu    sync.Mutex
	max   int
	ll    *list.List
	items map[string]*list.Element
}

type lruEntry struct {
	key     string
	val     *Analysis
	expires time.Time
}

func newLRU(max int) *lru { return &lru{max: max, ll: list.New(), items: map[string]*list.Element{}} }

func (c *lru) get(key string, now time.Time) (*Analysis, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return nil, false
	}
	ent := el.Value.(*lruEntry)
	if !now.Before(ent.expires) {
		c.ll.Remove(el)
		delete(c.items, key)
		return nil, false
	}
	c.ll.MoveToFront(el)
	return ent.val, true
}

func (c *lru) put(key string, val *Analysis, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		el.Value = &lruEntry{key, val, expires}
		c.ll.MoveToFront(el)
		return
	}
	c.items[key] = c.ll.PushFront(&lruEntry{key, val, expires})
	for c.ll.Len() > c.max {
		old := c.ll.Back()
		c.ll.Remove(old)
		delete(c.items, old.Value.(*lruEntry).key)
	}
}

// CacheLen is the number of cached results (tests, metrics).
func (a *Analyzer) CacheLen() int {
	if a.cache == nil {
		return 0
	}
	a.cache.mu.Lock()
	defer a.cache.mu.Unlock()
	return a.cache.ll.Len()
}
