package sqlanalysis

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/goccy/go-googlesql"
	"github.com/jitgate/jitgate/policies"
)

// TableSource returns the metadata of one BigQuery table (tables.get). It must return an
// error wrapping ErrTableNotFound when the table does not exist, and never (nil, nil).
type TableSource interface {
	Table(ctx context.Context, project, dataset, table string) (*TableMeta, error)
}

// ErrTableNotFound is what a TableSource returns (wrapped) for a table that does not exist.
var ErrTableNotFound = errors.New("table not found")

// CachedTableSource is implemented by TableSources with a cache the analyser can read
// without waiting (BigQueryTableSource): ok is false when the answer is not cached. With
// one, the analyser never holds its engine lock across a tables.get or tables.list.
type CachedTableSource interface {
	CachedTable(project, dataset, table string) (meta *TableMeta, err error, ok bool)
	CachedListTables(project, dataset string) (tables []string, err error, ok bool)
}

// fetchState is shared by the requests of one analysis round: what the catalog found
// missing from the TableSource's cache.
type fetchState struct {
	cached       CachedTableSource // nil: ask the TableSource directly
	missing      map[string]tableRef
	missingLists map[string]tableRef
}

type tableRef struct{ project, dataset, table string }

func (f *fetchState) miss(p, d, t string) {
	if f.missing == nil {
		f.missing = map[string]tableRef{}
	}
	f.missing[p+"."+d+"."+t] = tableRef{p, d, t}
}

func (f *fetchState) missList(p, d string) {
	if f.missingLists == nil {
		f.missingLists = map[string]tableRef{}
	}
	f.missingLists[p+"."+d] = tableRef{p, d, ""}
}

// errNotCached ends a round that met uncached metadata (the round is discarded).
var errNotCached = errors.New("table metadata not cached yet")

// lookup returns a table's metadata: from the cache when the source has one (recording
// a miss), else from the source.
func (r *request) lookup(p, d, t string) (*TableMeta, error) {
	if f := r.fetch; f != nil && f.cached != nil {
		meta, err, ok := f.cached.CachedTable(p, d, t)
		if !ok {
			f.miss(p, d, t)
			return nil, errNotCached
		}
		return meta, err
	}
	return r.source.Table(r.ctx, p, d, t)
}

func (r *request) listTables(lister TableLister, p, d string) ([]string, error) {
	if f := r.fetch; f != nil && f.cached != nil {
		names, err, ok := f.cached.CachedListTables(p, d)
		if !ok {
			f.missList(p, d)
			return nil, errNotCached
		}
		return names, err
	}
	return lister.ListTables(r.ctx, p, d)
}

// ErrTooManyTables is what a TableLister returns (wrapped) for a dataset too large to list.
var ErrTooManyTables = errors.New("too many tables")

// TableLister is implemented by TableSources that can list a dataset's tables (tables.list);
// wildcard tables (dataset.prefix*) need it. Names are returned sorted.
type TableLister interface {
	ListTables(ctx context.Context, project, dataset string) ([]string, error)
}

// maxWildcardTables bounds how many tables one wildcard may match before the query is
// refused (every one of them is a referenced table the policy must judge).
const maxWildcardTables = 1000

// wildcardTable is a wildcard table a statement names: the tables it matches now.
type wildcardTable struct {
	project, dataset, prefix string
	tables                   []string // table ids, sorted
}

// TableMeta is what the analyser needs to know about a table or view.
type TableMeta struct {
	Project, Dataset, Table string
	// Type is BigQuery's table type: TABLE, VIEW, MATERIALIZED_VIEW, EXTERNAL, SNAPSHOT.
	Type    string
	Columns []Column
	// ViewQuery is the body of a view (tables.get view.query); empty for tables.
	ViewQuery string
	// ViewLegacySQL is set when the view body is legacy SQL (it cannot be analysed).
	ViewLegacySQL bool
	// IngestionTimePartitioned tables have the _PARTITIONTIME/_PARTITIONDATE pseudo-columns.
	IngestionTimePartitioned bool
	// PartitionField and RequirePartitionFilter are kept for the partition-filter rule.
	PartitionField         string
	RequirePartitionFilter bool
}

// FullName is "project.dataset.table".
func (m *TableMeta) FullName() string { return m.Project + "." + m.Dataset + "." + m.Table }

// Column is one column of a table schema, in BigQuery's terms.
type Column struct {
	Name string
	// Type is a BigQuery type name: STRING, BYTES, INTEGER/INT64, FLOAT/FLOAT64, NUMERIC,
	// BIGNUMERIC, BOOLEAN/BOOL, TIMESTAMP, DATE, TIME, DATETIME, GEOGRAPHY, JSON,
	// INTERVAL, RECORD/STRUCT (with Fields).
	Type     string
	Repeated bool
	// Required is mode REQUIRED (never null); masking needs it to keep results valid.
	Required bool
	Fields   []Column
}

func cloneColumns(cs []Column) []Column {
	if cs == nil {
		return nil
	}
	out := make([]Column, len(cs))
	for i, c := range cs {
		c.Fields = cloneColumns(c.Fields)
		out[i] = c
	}
	return out
}

// request is the per-analysis state the catalog callback reads. It is only touched
// while the engine lock is held.
type request struct {
	ctx context.Context
	// jobProject qualifies dataset.table; dsProject.defaultDS qualifies a bare table.
	jobProject, dsProject, defaultDS string
	source                           TableSource
	// seen maps a fully qualified name to its metadata, in lookup order.
	seen     map[string]*TableMeta
	order    []string
	findings map[policies.DenyRuleKind]bool
	// sourceErr is the first error from the TableSource that is not "not found".
	sourceErr error
	// infoSchema are synthetic INFORMATION_SCHEMA tables read (fully qualified).
	infoSchema []string
	// wildcards are the wildcard tables named, by engine table name (project.dataset.prefix*).
	wildcards map[string]*wildcardTable
	// tvfs are the table-valued functions named (upper case, as written).
	tvfs []string
	// fetch is the analysis round's cache-miss record (nil: ask the source directly).
	fetch *fetchState
	// scriptCatalog, set while a script with variables is analysed, is the engine's
	// catalog plus the script's variables.
	scriptCatalog googlesql.CatalogNode
}

// catalog is what statements of this request resolve names against.
func (r *request) catalog(e *engine) googlesql.CatalogNode {
	if r.scriptCatalog != nil {
		return r.scriptCatalog
	}
	return e.multi
}

func (r *request) finding(k policies.DenyRuleKind) {
	if r.findings == nil {
		r.findings = map[policies.DenyRuleKind]bool{}
	}
	r.findings[k] = true
}

// goCatalog is the Go callback catalog. One instance lives in the engine; cur is the
// request being analysed (set and cleared under the engine lock).
type goCatalog struct {
	googlesql.CatalogCallbackDefaults
	e   *engine
	cur *request
}

func (c *goCatalog) FullName() (string, error) { return "bigquery", nil }

// splitPath splits every element on "." (a backticked `a.b.c` arrives as one element).
func splitPath(path []string) []string {
	var out []string
	for _, p := range path {
		out = append(out, strings.Split(p, ".")...)
	}
	return out
}

// qualify turns a 1-3 part table path into project, dataset, table: dataset.table is in
// the job's project, a bare table in the default dataset (which carries its own project).
func qualify(parts []string, jobProject, dsProject, defDataset string) (p, d, t string, err error) {
	for _, x := range parts {
		if x == "" {
			return "", "", "", fmt.Errorf("invalid table name %q", strings.Join(parts, "."))
		}
	}
	switch len(parts) {
	case 1:
		if defDataset == "" {
			return "", "", "", fmt.Errorf("table %q must be qualified with a dataset name (no default dataset)", parts[0])
		}
		if dsProject == "" {
			dsProject = jobProject
		}
		if dsProject == "" {
			return "", "", "", fmt.Errorf("table %q: no default project", parts[0])
		}
		return dsProject, defDataset, parts[0], nil
	case 2:
		if jobProject == "" {
			return "", "", "", fmt.Errorf("table %q: no default project", strings.Join(parts, "."))
		}
		return jobProject, parts[0], parts[1], nil
	case 3:
		return parts[0], parts[1], parts[2], nil
	}
	return "", "", "", fmt.Errorf("table name %q has too many parts", strings.Join(parts, "."))
}

// catalogCallbackHook, when set (tests only), runs at the start of every FindTable
// callback: the engine's mutex is released then, so a garbage collection run from it lets
// go-googlesql finalizers free engine objects while the analysis is suspended.
var catalogCallbackHook func()

func (c *goCatalog) FindTable(path []string, _ *googlesql.FindOptions) (googlesql.TableNode, error) {
	if catalogCallbackHook != nil {
		catalogCallbackHook()
	}
	r := c.cur
	if r == nil {
		return nil, errors.New("no analysis in progress")
	}
	parts := splitPath(path)
	// INFORMATION_SCHEMA: [project.][region-x|dataset.]INFORMATION_SCHEMA.VIEW
	for i, p := range parts {
		if strings.EqualFold(p, "INFORMATION_SCHEMA") {
			return c.informationSchema(parts, i)
		}
	}
	proj, ds, tbl, err := qualify(parts, r.jobProject, r.dsProject, r.defaultDS)
	if err != nil {
		return nil, err
	}
	if strings.ContainsAny(tbl, "*") {
		return c.wildcard(proj, ds, tbl)
	}
	fq := proj + "." + ds + "." + tbl
	meta := r.seen[fq]
	if meta == nil {
		meta, err = r.lookup(proj, ds, tbl)
		if errors.Is(err, errNotCached) {
			// A placeholder lets the analyser go on and name the round's other tables;
			// the round is discarded once their metadata is fetched.
			return c.e.placeholder(fq)
		}
		if err != nil {
			if !errors.Is(err, ErrTableNotFound) && r.sourceErr == nil {
				r.sourceErr = err
			}
			if errors.Is(err, ErrTableNotFound) {
				return nil, fmt.Errorf("Table not found: %s", fq)
			}
			return nil, fmt.Errorf("table %s: metadata unavailable", fq)
		}
		if meta == nil {
			return nil, fmt.Errorf("Table not found: %s", fq)
		}
		if r.seen == nil {
			r.seen = map[string]*TableMeta{}
		}
		r.seen[fq] = meta
		r.order = append(r.order, fq)
	}
	return c.e.simpleTable(fq, meta)
}

// wildcard resolves dataset.prefix*: every table of the dataset whose id starts with
// prefix (tables.list), with the schema of the last of them in name order (BigQuery uses
// the most recently created table's; shards of one family share a schema) plus the
// _TABLE_SUFFIX pseudo-column. Which tables a statement really reads is narrowed later
// from its _TABLE_SUFFIX predicates (wildcardReads).
func (c *goCatalog) wildcard(proj, ds, tbl string) (googlesql.TableNode, error) {
	r := c.cur
	fq := proj + "." + ds + "." + tbl
	prefix, ok := strings.CutSuffix(tbl, "*")
	if !ok || strings.Contains(prefix, "*") {
		return nil, fmt.Errorf("wildcard table %s: the * must be the last character", fq)
	}
	lister, ok := r.source.(TableLister)
	if !ok {
		return nil, fmt.Errorf("wildcard table %s cannot be resolved: the catalog cannot list tables", fq)
	}
	wt := r.wildcards[fq]
	if wt == nil {
		names, err := r.listTables(lister, proj, ds)
		if errors.Is(err, errNotCached) {
			return nil, fmt.Errorf("wildcard table %s: %w", fq, err)
		}
		if err != nil {
			if errors.Is(err, ErrTableNotFound) {
				return nil, fmt.Errorf("wildcard table %s: dataset %s.%s not found", fq, proj, ds)
			}
			if errors.Is(err, ErrTooManyTables) {
				return nil, fmt.Errorf("wildcard table %s: %v", fq, err)
			}
			if r.sourceErr == nil {
				r.sourceErr = err
			}
			return nil, fmt.Errorf("wildcard table %s: table list unavailable", fq)
		}
		wt = &wildcardTable{project: proj, dataset: ds, prefix: prefix}
		for _, n := range names {
			if strings.HasPrefix(n, prefix) {
				wt.tables = append(wt.tables, n)
			}
		}
		switch {
		case len(wt.tables) == 0:
			return nil, fmt.Errorf("wildcard table %s matches no table", fq)
		case len(wt.tables) > maxWildcardTables:
			return nil, fmt.Errorf("wildcard table %s matches %d tables, more than the %d the gateway judges", fq, len(wt.tables), maxWildcardTables)
		}
		if r.wildcards == nil {
			r.wildcards = map[string]*wildcardTable{}
		}
		r.wildcards[fq] = wt
	}
	last := wt.tables[len(wt.tables)-1]
	meta, err := r.lookup(proj, ds, last)
	if errors.Is(err, errNotCached) {
		return nil, fmt.Errorf("wildcard table %s: %w", fq, err)
	}
	if err != nil || meta == nil {
		if err != nil && !errors.Is(err, ErrTableNotFound) && r.sourceErr == nil {
			r.sourceErr = err
		}
		return nil, fmt.Errorf("wildcard table %s: schema of %s unavailable", fq, last)
	}
	if meta.ViewQuery != "" || isViewType(meta.Type) {
		return nil, fmt.Errorf("wildcard table %s matches view %s (BigQuery does not query views through a wildcard)", fq, last)
	}
	return c.e.wildcardTable(fq, meta)
}

// jobsColumns is the part of INFORMATION_SCHEMA.JOBS* the analyser knows, enough for the
// usual "who ran what" queries to analyse (and be denied by name).
var jobsColumns = []Column{
	{Name: "creation_time", Type: "TIMESTAMP"}, {Name: "project_id", Type: "STRING"},
	{Name: "project_number", Type: "INT64"}, {Name: "user_email", Type: "STRING"},
	{Name: "principal_subject", Type: "STRING"}, {Name: "job_id", Type: "STRING"},
	{Name: "job_type", Type: "STRING"}, {Name: "statement_type", Type: "STRING"},
	{Name: "priority", Type: "STRING"}, {Name: "start_time", Type: "TIMESTAMP"},
	{Name: "end_time", Type: "TIMESTAMP"}, {Name: "query", Type: "STRING"},
	{Name: "state", Type: "STRING"}, {Name: "reservation_id", Type: "STRING"},
	{Name: "total_bytes_processed", Type: "INT64"}, {Name: "total_bytes_billed", Type: "INT64"},
	{Name: "total_slot_ms", Type: "INT64"}, {Name: "cache_hit", Type: "BOOL"},
	{Name: "session_info", Type: "RECORD", Fields: []Column{{Name: "session_id", Type: "STRING"}}},
	{Name: "destination_table", Type: "RECORD", Fields: []Column{
		{Name: "project_id", Type: "STRING"}, {Name: "dataset_id", Type: "STRING"}, {Name: "table_id", Type: "STRING"}}},
	{Name: "referenced_tables", Type: "RECORD", Repeated: true, Fields: []Column{
		{Name: "project_id", Type: "STRING"}, {Name: "dataset_id", Type: "STRING"}, {Name: "table_id", Type: "STRING"}}},
	{Name: "labels", Type: "RECORD", Repeated: true, Fields: []Column{{Name: "key", Type: "STRING"}, {Name: "value", Type: "STRING"}}},
	{Name: "error_result", Type: "RECORD", Fields: []Column{
		{Name: "reason", Type: "STRING"}, {Name: "location", Type: "STRING"}, {Name: "debug_info", Type: "STRING"}, {Name: "message", Type: "STRING"}}},
}

func (c *goCatalog) informationSchema(parts []string, i int) (googlesql.TableNode, error) {
	r := c.cur
	if i != len(parts)-2 {
		return nil, fmt.Errorf("INFORMATION_SCHEMA path %q is not analysed", strings.Join(parts, "."))
	}
	view := strings.ToUpper(parts[i+1])
	var scope []string
	switch i {
	case 0: // INFORMATION_SCHEMA.X: dataset-qualified needs the default dataset
		if r.defaultDS == "" {
			return nil, fmt.Errorf("INFORMATION_SCHEMA.%s needs a dataset or region qualifier", view)
		}
		scope = []string{firstNonEmpty(r.dsProject, r.jobProject), r.defaultDS}
	case 1:
		scope = []string{r.jobProject, parts[0]}
	case 2:
		scope = parts[:2]
	default:
		return nil, fmt.Errorf("INFORMATION_SCHEMA path %q is not analysed", strings.Join(parts, "."))
	}
	fq := strings.Join(append(append([]string{}, scope...), "INFORMATION_SCHEMA", view), ".")
	if !strings.HasPrefix(view, "JOBS") {
		return nil, fmt.Errorf("INFORMATION_SCHEMA.%s is not analysed yet", view)
	}
	r.finding(policies.DenyInformationSchemaJobs)
	r.infoSchema = append(r.infoSchema, fq)
	// One *TableMeta per view name: a new one per reference would build a new engine table
	// each time (and drop the cached one).
	meta := c.e.infoSchema[fq]
	if meta == nil {
		if c.e.infoSchema == nil || len(c.e.infoSchema) >= maxCachedTables {
			c.e.infoSchema = map[string]*TableMeta{}
		}
		meta = &TableMeta{Project: scope[0], Dataset: scope[1], Table: "INFORMATION_SCHEMA." + view, Type: "VIEW", Columns: jobsColumns}
		c.e.infoSchema[fq] = meta
	}
	return c.e.simpleTable(fq, meta)
}

func (c *goCatalog) FindTableValuedFunction(path []string, _ *googlesql.FindOptions) (*googlesql.TableValuedFunction, error) {
	parts := splitPath(path)
	name := strings.ToUpper(parts[len(parts)-1])
	if name == "EXTERNAL_QUERY" && c.cur != nil {
		c.cur.finding(policies.DenyExternalQuery)
		return nil, errors.New("EXTERNAL_QUERY is not analysed")
	}
	if c.cur != nil {
		full := strings.ToUpper(strings.Join(parts, "."))
		c.cur.tvfs = append(c.cur.tvfs, full)
		if strings.HasPrefix(full, "ML.") || strings.HasPrefix(full, "AI.") || strings.HasPrefix(full, "VECTOR_SEARCH") {
			c.cur.finding(policies.DenyMLFunction)
			f, err := c.e.mlTVF(full)
			if err != nil {
				return nil, err
			}
			if f != nil {
				return f, nil
			}
		}
		if strings.HasPrefix(full, "ML.") || strings.HasPrefix(full, "AI.") {
			return nil, fmt.Errorf("table-valued function %s is not analysed", strings.Join(parts, "."))
		}
		// Routines (CREATE TABLE FUNCTION) are not read: tables.get cannot see them and
		// the emulator does not serve routines.get.
		return nil, fmt.Errorf("table-valued function %s is not analysed (user-defined table functions are not read)", strings.Join(parts, "."))
	}
	return nil, fmt.Errorf("Table-valued function not found: %s", strings.Join(path, "."))
}

func (c *goCatalog) FindFunction(path []string, _ *googlesql.FindOptions) (*googlesql.Function, error) {
	parts := splitPath(path)
	if strings.EqualFold(parts[len(parts)-1], "EXTERNAL_QUERY") && c.cur != nil {
		c.cur.finding(policies.DenyExternalQuery)
	}
	// Scalar ML/AI functions the builtins lack (AI.GENERATE) are not declared: named for
	// the mlFunction rule, then unanalysable.
	if full := strings.ToUpper(strings.Join(parts, ".")); c.cur != nil && (strings.HasPrefix(full, "ML.") || strings.HasPrefix(full, "AI.")) {
		c.cur.finding(policies.DenyMLFunction)
	}
	return nil, fmt.Errorf("Function not found: %s", strings.Join(path, "."))
}

func (c *goCatalog) FindType(path []string, _ *googlesql.FindOptions) (googlesql.Googlesql_TypeNode, error) {
	return nil, fmt.Errorf("Type not found: %s", strings.Join(path, "."))
}

func (c *goCatalog) FindModel(path []string, _ *googlesql.FindOptions) (googlesql.ModelNode, error) {
	r := c.cur
	if r == nil {
		return nil, errors.New("no analysis in progress")
	}
	p, d, m, err := qualify(splitPath(path), r.jobProject, r.dsProject, r.defaultDS)
	if err != nil {
		return nil, fmt.Errorf("model %s: %v", strings.Join(path, "."), err)
	}
	return c.e.model(p + "." + d + "." + m)
}

func (c *goCatalog) FindProcedure(path []string, _ *googlesql.FindOptions) (*googlesql.Procedure, error) {
	return nil, fmt.Errorf("Procedure not found: %s (CALL is not analysed yet)", strings.Join(path, "."))
}

func (c *goCatalog) FindConnection(path []string, _ *googlesql.FindOptions) (googlesql.ConnectionNode, error) {
	return nil, fmt.Errorf("Connection not found: %s", strings.Join(path, "."))
}

func (c *goCatalog) FindSequence(path []string, _ *googlesql.FindOptions) (googlesql.SequenceNode, error) {
	return nil, fmt.Errorf("Sequence not found: %s", strings.Join(path, "."))
}

func (c *goCatalog) FindPropertyGraph2(path []string, _ *googlesql.FindOptions) (googlesql.PropertyGraphNode, error) {
	return nil, fmt.Errorf("Property graph not found: %s", strings.Join(path, "."))
}

func (c *goCatalog) FindConversion(_, _ googlesql.Googlesql_TypeNode, _ *googlesql.FindConversionOptions, _ *googlesql.Conversion) error {
	return errors.New("conversion not found")
}

func firstNonEmpty(xs ...string) string {
	for _, x := range xs {
		if x != "" {
			return x
		}
	}
	return ""
}
