package sqlanalysis

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/goccy/go-googlesql"
)

// Column lineage: which base-table columns each output column of a query is derived
// from, and how. The masking stage (issue 6) builds its per-column plan from this, so the
// walker fails towards "Unknown" (mask everything / deny), never towards "no sources".

// How a value reaches an output column (OutputColumn.Via).
const (
	// ViaDirect: a plain reference, alias, CTE/subquery/view pass-through, UNNEST element
	// or struct field access; the value is returned unchanged.
	ViaDirect = "direct"
	// ViaFunction: through some scalar computation (function, operator, CASE, CAST,
	// STRUCT/ARRAY packing, TO_JSON_STRING of a row ...); the value may be recoverable.
	ViaFunction = "function"
	// ViaAggregate: every path passes through an aggregate or analytic function
	// (OutputColumn.Aggregates names them; ValueRevealing says whether they can reveal a
	// value).
	ViaAggregate = "aggregate"
)

// SourceColumn is one column of a base table (views are resolved to the tables their
// bodies read).
type SourceColumn struct {
	// Table is "project.dataset.table".
	Table string `json:"table"`
	// Column is the top-level column name. A STRUCT field access is over-approximated to
	// its top-level column (a read of addr.city is reported as addr).
	Column string `json:"column"`
}

// String is "project.dataset.table.column".
func (s SourceColumn) String() string { return s.Table + "." + s.Column }

// OutputColumn is the lineage of one result column, or of one nested field of it.
type OutputColumn struct {
	// Name is the result column's name as the analyser resolved it (anonymous columns are
	// "$colN"; BigQuery calls them f0_, f1_...: match on Position, not on Name).
	Name string `json:"name"`
	// Position is the 0-based index of the column in the result schema.
	Position int `json:"position"`
	// Path is empty for the column itself and names the STRUCT fields below it for a
	// nested entry. Nested entries are listed only where the walker knows them exactly
	// (STRUCT(...), SELECT AS STRUCT, a row used as a value); any path without an entry
	// has the lineage of its nearest listed ancestor, which always covers it. ARRAY
	// elements share the lineage of their array.
	Path []string `json:"path,omitempty"`
	// Sources are the base columns whose values flow into this column (the union over
	// every field below it), sorted by table then column. Columns used only to decide
	// which rows or which branch are not here: see Analysis.ControlReads.
	Sources []SourceColumn `json:"sources,omitempty"`
	// Via is ViaDirect, ViaFunction or ViaAggregate: the least transformed path from any
	// source (a column fed both directly and through MAX is "direct"). A column with no
	// source (a literal, COUNT(*)) is "function" or "aggregate". Empty when Unknown.
	Via string `json:"via,omitempty"`
	// Aggregates are the aggregate and analytic functions on any path, upper case,
	// "COUNT DISTINCT" style for DISTINCT, sorted.
	Aggregates []string `json:"aggregates,omitempty"`
	// ValueRevealing is true when some source value can reach this column other than
	// through a counting aggregate (COUNT, COUNT DISTINCT, COUNTIF,
	// APPROX_COUNT_DISTINCT): every direct or function path, and every path through a
	// value-revealing aggregate (MAX, MIN, ANY_VALUE, ARRAY_AGG, STRING_AGG, SUM, AVG,
	// FIRST_VALUE, LAG ... anything not counting). Always true when Unknown.
	ValueRevealing bool `json:"valueRevealing"`
	// Unknown: the column's value passes through something the walker does not model.
	// Sources then list every column the statement reads (a sound over-approximation:
	// values can only come from scanned tables), but how they flow is not known; treat
	// the column as derived from everything.
	Unknown bool `json:"unknown,omitempty"`
	// FieldPositions are the 0-based positions of the Path fields in their STRUCTs (the
	// same length as Path), so a nested entry maps to a result schema position path
	// [Position, FieldPositions...] even where field names repeat or are anonymous.
	FieldPositions []int `json:"fieldPositions,omitempty"`
	// Flows say, per source (same order as Sources), how it reaches this column: masking
	// needs to know whether every path from one given source is an aggregate it allows,
	// which the column-wide Via and Aggregates cannot say when several sources mix.
	Flows []SourceFlow `json:"flows,omitempty"`
}

// SourceFlow is how one source column reaches an output column, over all its paths.
type SourceFlow struct {
	Source SourceColumn `json:"source"`
	// OnlyAggregated: every path from the source passes through an aggregate or analytic
	// function (Aggregates names all of them). False when any path is direct or a plain
	// computation, and whenever the column is Unknown.
	OnlyAggregated bool `json:"onlyAggregated"`
	// Aggregates are the aggregate and analytic functions on the paths from this source,
	// named as in OutputColumn.Aggregates, sorted.
	Aggregates []string `json:"aggregates,omitempty"`
}

// countingAggregates reveal how many rows or distinct values there were, not a value.
var countingAggregates = map[string]bool{
	"COUNT": true, "$COUNT_STAR": true, "COUNTIF": true, "APPROX_COUNT_DISTINCT": true,
}

// Path classes, as bits of a set: a source may reach a column along several paths.
const (
	classDirect uint8 = 1 << iota
	classFunction
	classAggregate
)

// flow is how one source reaches a value along all its paths.
type flow struct {
	classes   uint8
	revealing bool
	// aggs are the aggregates on this source's paths: a sorted set, never modified in
	// place (flows are copied by value).
	aggs []string
}

// mergeAggs is the sorted union of two aggregate sets (a new slice when they differ).
func mergeAggs(a, b []string) []string {
	if len(b) == 0 {
		return a
	}
	if len(a) == 0 {
		return b
	}
	out := make([]string, 0, len(a)+len(b))
	out = append(out, a...)
	for _, x := range b {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	sort.Strings(out)
	return out
}

// pseudoSource stands for "no column" (a literal, COUNT(*)), so that a column without
// sources still carries its class and aggregates.
var pseudoSource = SourceColumn{}

// lin is the lineage of one value.
type lin struct {
	unknown bool
	srcs    map[SourceColumn]flow
	aggs    map[string]bool
	// fields, when non-nil, is the exact lineage of each STRUCT field (names gives their
	// names); srcs is always the union over them.
	fields []*lin
	names  []string
}

func newLin() *lin { return &lin{srcs: map[SourceColumn]flow{}} }

func unknownLin() *lin { return &lin{unknown: true, srcs: map[SourceColumn]flow{}} }

// constLin is a computed value read from no column.
func constLin() *lin {
	l := newLin()
	l.srcs[pseudoSource] = flow{classes: classFunction}
	return l
}

func sourceLin(s SourceColumn) *lin {
	l := newLin()
	l.srcs[s] = flow{classes: classDirect, revealing: true}
	return l
}

// addAll merges o's paths into l (a union of paths; fields are dropped).
func (l *lin) addAll(o *lin) {
	if o.unknown {
		l.unknown = true
	}
	for s, f := range o.srcs {
		g := l.srcs[s]
		g.classes |= f.classes
		g.revealing = g.revealing || f.revealing
		g.aggs = mergeAggs(g.aggs, f.aggs)
		l.srcs[s] = g
	}
	for a := range o.aggs {
		l.addAgg(a)
	}
}

func (l *lin) addAgg(a string) {
	if l.aggs == nil {
		l.aggs = map[string]bool{}
	}
	l.aggs[a] = true
}

// union is the lineage of a value that is one of xs (set operations, CTE columns). Fields
// survive when every input has the same shape.
func union(xs ...*lin) *lin {
	out := newLin()
	for _, x := range xs {
		out.addAll(x)
	}
	if len(xs) > 0 && xs[0].fields != nil {
		n := len(xs[0].fields)
		same := true
		for _, x := range xs[1:] {
			if len(x.fields) != n {
				same = false
			}
		}
		if same {
			out.names = xs[0].names
			out.fields = make([]*lin, n)
			for i := range n {
				parts := make([]*lin, len(xs))
				for j, x := range xs {
					parts[j] = x.fields[i]
				}
				out.fields[i] = union(parts...)
			}
		}
	}
	return out
}

// computed is the lineage of a scalar computation over xs.
func computed(xs ...*lin) *lin {
	out := newLin()
	for _, x := range xs {
		out.addAll(x)
	}
	for s, f := range out.srcs {
		if f.classes&classDirect != 0 {
			f.classes = f.classes&^classDirect | classFunction
		}
		out.srcs[s] = f
	}
	if len(out.srcs) == 0 {
		out.srcs[pseudoSource] = flow{classes: classFunction}
	}
	return out
}

// aggregated is the lineage of aggregate name over xs (fields kept: ARRAY_AGG of a
// STRUCT keeps its shape).
func aggregated(name string, counting bool, xs ...*lin) *lin {
	var apply func(x *lin) *lin
	apply = func(x *lin) *lin {
		out := newLin()
		out.addAll(x)
		for s, f := range out.srcs {
			f.classes = classAggregate
			if counting {
				f.revealing = false
			}
			f.aggs = mergeAggs(f.aggs, []string{name})
			out.srcs[s] = f
		}
		if len(out.srcs) == 0 {
			out.srcs[pseudoSource] = flow{classes: classAggregate}
		}
		out.addAgg(name)
		if x.fields != nil {
			out.names = x.names
			out.fields = make([]*lin, len(x.fields))
			for i, f := range x.fields {
				out.fields[i] = apply(f)
			}
		}
		return out
	}
	if len(xs) == 1 {
		return apply(xs[0])
	}
	return apply(union(xs...))
}

// crossClasses is the class set of a path through a then b: each pair's stronger class.
func crossClasses(a, b uint8) uint8 {
	var out uint8
	for _, x := range []uint8{classDirect, classFunction, classAggregate} {
		if a&x == 0 {
			continue
		}
		for _, y := range []uint8{classDirect, classFunction, classAggregate} {
			if b&y != 0 {
				out |= max(x, y)
			}
		}
	}
	return out
}

// ---- the walker ----

// colDef says how a column (by id) is defined.
type colDef struct {
	expr   googlesql.ResolvedExprNode // ComputedColumn / element of an ArrayScan
	source *SourceColumn              // TableScan column
	// sources: a wildcard table's column is every matching table's column.
	sources []SourceColumn
	from    []int32 // WithRefScan / set operation: union of these columns
	konst   bool    // array offset, sample weight: no source
	lambda  *lin    // lambda argument: set while its function is walked
}

// walker computes the lineage of one resolved statement.
type walker struct {
	defs    map[int32]*colDef
	memo    map[int32]*lin
	busy    map[int32]bool
	control []controlItem
	reads   map[SourceColumn]bool // control reads (raw: may name view columns)
	gaps    map[string]bool       // node kinds not modelled
	unknown bool                  // some control expression was unknown
	scopes  []map[string][]int32  // WITH names in scope
	scanned map[SourceColumn]bool // every column a table scan reads
	nodes   int
	// wildcards maps a wildcard table (project.dataset.prefix*) to the tables it matches.
	wildcards map[string][]string
}

type controlItem struct {
	expr googlesql.ResolvedExprNode
	col  int32
}

// maxLineageNodes bounds the walk (the analyser itself bounds nesting depth).
const maxLineageNodes = 200000

func newWalker() *walker {
	return &walker{defs: map[int32]*colDef{}, memo: map[int32]*lin{}, busy: map[int32]bool{}, reads: map[SourceColumn]bool{}, gaps: map[string]bool{}, scanned: map[SourceColumn]bool{}}
}

func (w *walker) gap(what string) { w.gaps[what] = true }

func (w *walker) gapErr(what string, err error) {
	w.gap(fmt.Sprintf("%s: %s", what, cleanMessage(err)))
}

// rawLineage is one statement's lineage before views are resolved.
type rawLineage struct {
	outputs  []rawOutput
	reads    map[SourceColumn]bool
	gaps     map[string]bool
	complete bool
	schema   []Column // resultSchema of the statement
	// valueTable: SELECT AS STRUCT / AS VALUE at the top level.
	valueTable bool
}

type rawOutput struct {
	name string
	lin  *lin
}

// statementLineage walks a resolved query statement.
// wildcards maps each wildcard table the statement names to the tables it matches.
func statementLineage(stmt *googlesql.ResolvedQueryStmt, wildcards map[string][]string) *rawLineage {
	w := newWalker()
	w.wildcards = wildcards
	res := &rawLineage{}
	defer func() {
		if r := recover(); r != nil {
			w.gap(fmt.Sprintf("walker failure: %v", r))
			res.outputs = []rawOutput{{name: "", lin: w.overApproximate(unknownLin())}}
			res.reads, res.gaps, res.complete = w.reads, w.gaps, false
		}
	}()
	q, err := stmt.Query()
	if err != nil || q == nil {
		w.gapErr("query", errOrNil(err))
		return &rawLineage{outputs: []rawOutput{{lin: unknownLin()}}, gaps: w.gaps}
	}
	w.visit(q)
	outs, err := stmt.OutputColumnList()
	if err != nil {
		w.gapErr("output columns", err)
		return &rawLineage{outputs: []rawOutput{{lin: w.overApproximate(unknownLin())}}, gaps: w.gaps}
	}
	// Output columns first (a lambda's argument is bound only while its function is
	// evaluated), then every other defined column and control expression is evaluated, so that a CASE condition
	// in a column nobody selects still counts as a control read.
	for _, oc := range outs {
		if c, err := oc.Column(); err == nil && c != nil {
			w.col(columnID(w, c))
		}
	}
	ids := make([]int32, 0, len(w.defs))
	for id := range w.defs {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		w.col(id)
	}
	for i := 0; i < len(w.control); i++ { // evaluation may append more
		c := w.control[i]
		var l *lin
		if c.expr != nil {
			l = w.expr(c.expr)
		} else {
			l = w.col(c.col)
		}
		w.addReads(l)
	}
	valueTable, _ := stmt.IsValueTable()
	res.valueTable = valueTable
	for _, oc := range outs {
		name, _ := oc.Name()
		c, err := oc.Column()
		if err != nil || c == nil {
			w.gapErr("output column", errOrNil(err))
			res.outputs = append(res.outputs, rawOutput{name: name, lin: unknownLin()})
			continue
		}
		l := w.col(columnID(w, c))
		if valueTable {
			// BigQuery returns a value table of STRUCTs as the struct's fields.
			names := l.names
			if l.fields == nil {
				if t, err := c.Type(); err == nil {
					names = structFieldNames(t)
				}
			}
			if names != nil {
				for i, n := range names {
					fl := l
					if l.fields != nil {
						fl = l.fields[i]
					}
					res.outputs = append(res.outputs, rawOutput{name: n, lin: fl})
				}
				continue
			}
		}
		res.outputs = append(res.outputs, rawOutput{name: name, lin: l})
	}
	res.reads, res.gaps = w.reads, w.gaps
	res.complete = len(w.gaps) == 0 && !w.unknown
	for i, o := range res.outputs {
		if hasUnknown(o.lin) {
			res.complete = false
			res.outputs[i].lin = w.overApproximate(o.lin)
		}
	}
	return res
}

// overApproximate gives an Unknown value every column the statement scans as sources:
// whatever the unmodelled node did, its values can only come from those.
func (w *walker) overApproximate(l *lin) *lin {
	out := newLin()
	out.addAll(l)
	out.unknown = true
	for s := range w.scanned {
		g := out.srcs[s]
		g.classes |= classFunction
		g.revealing = true
		out.srcs[s] = g
	}
	if l.fields != nil {
		out.names = l.names
		out.fields = make([]*lin, len(l.fields))
		for i, f := range l.fields {
			if hasUnknown(f) {
				out.fields[i] = w.overApproximate(f)
			} else {
				out.fields[i] = f
			}
		}
	}
	return out
}

// scanColumns is a scan's column_list (ResolvedScanNode does not declare ColumnList).
func scanColumns(s googlesql.ResolvedScanNode) ([]*googlesql.ResolvedColumn, error) {
	if c, ok := s.(interface {
		ColumnList() ([]*googlesql.ResolvedColumn, error)
	}); ok {
		return c.ColumnList()
	}
	return nil, fmt.Errorf("scan %T has no column list", s)
}

func errOrNil(err error) error {
	if err == nil {
		return fmt.Errorf("missing")
	}
	return err
}

func hasUnknown(l *lin) bool {
	if l.unknown {
		return true
	}
	for _, f := range l.fields {
		if hasUnknown(f) {
			return true
		}
	}
	return false
}

func structFieldNames(t googlesql.Googlesql_TypeNode) []string {
	if t == nil {
		return nil
	}
	ok, err := t.IsStruct()
	if err != nil || !ok {
		return nil
	}
	st, err := t.AsStruct()
	if err != nil || st == nil {
		return nil
	}
	fs, err := st.Fields()
	if err != nil {
		return nil
	}
	names := make([]string, len(fs))
	for i, f := range fs {
		names[i] = f.Name
	}
	return names
}

func columnID(w *walker, c *googlesql.ResolvedColumn) int32 {
	id, err := c.ColumnId()
	if err != nil {
		w.gapErr("column id", err)
		return -1
	}
	return id
}

func (w *walker) addReads(l *lin) {
	if l.unknown {
		w.unknown = true
	}
	for s := range l.srcs {
		if s != pseudoSource {
			w.reads[s] = true
		}
	}
}

func (w *walker) controlExpr(e googlesql.ResolvedExprNode, err error) {
	if err != nil {
		w.gapErr("control expression", err)
		return
	}
	if e != nil {
		w.control = append(w.control, controlItem{expr: e})
	}
}

func (w *walker) define(c *googlesql.ResolvedColumn, d *colDef) {
	if c == nil {
		return
	}
	w.defs[columnID(w, c)] = d
}

// visit registers the columns a node (and everything below it) defines and the
// expressions it uses as control.
func (w *walker) visit(n googlesql.ResolvedNode) {
	if n == nil {
		return
	}
	w.nodes++
	if w.nodes > maxLineageNodes {
		if w.nodes == maxLineageNodes+1 {
			w.gap("query too large for lineage")
		}
		return
	}
	switch x := n.(type) {
	case *googlesql.ResolvedWithScan:
		entries, err := x.WithEntryList()
		if err != nil {
			w.gapErr("WITH", err)
		}
		if rec, _ := x.Recursive(); rec {
			w.gap("WITH RECURSIVE")
		}
		w.scopes = append(w.scopes, map[string][]int32{})
		for _, e := range entries {
			name, _ := e.WithQueryName()
			sub, err := e.WithSubquery()
			if err != nil || sub == nil {
				w.gapErr("WITH entry "+name, errOrNil(err))
				continue
			}
			w.visit(sub)
			cols, err := scanColumns(sub)
			if err != nil {
				w.gapErr("WITH entry "+name, err)
				continue
			}
			ids := make([]int32, len(cols))
			for i, c := range cols {
				ids[i] = columnID(w, c)
			}
			w.scopes[len(w.scopes)-1][name] = ids
		}
		q, err := x.Query()
		if err != nil {
			w.gapErr("WITH query", err)
		}
		w.visit(q)
		w.scopes = w.scopes[:len(w.scopes)-1]
		return // children handled
	case *googlesql.ResolvedWithRefScan:
		name, _ := x.WithQueryName()
		var ids []int32
		found := false
		for i := len(w.scopes) - 1; i >= 0 && !found; i-- {
			ids, found = w.scopes[i][name]
		}
		cols, err := x.ColumnList()
		if !found || err != nil || len(cols) != len(ids) {
			w.gap("WITH reference " + name)
			return
		}
		for i, c := range cols {
			w.define(c, &colDef{from: []int32{ids[i]}})
		}
		return
	case *googlesql.ResolvedTableScan:
		t, err := x.Table()
		if err != nil || t == nil {
			w.gapErr("table scan", errOrNil(err))
			return
		}
		fq, err := t.FullName()
		if err != nil {
			w.gapErr("table scan", err)
			return
		}
		cols, err := x.ColumnList()
		if err != nil {
			w.gapErr("table scan", err)
			return
		}
		for _, c := range cols {
			name, err := c.Name()
			if err != nil {
				w.gapErr("table column", err)
				continue
			}
			if tables, ok := w.wildcards[fq]; ok {
				// A wildcard's column is the column of every table it matches; the
				// _TABLE_SUFFIX pseudo-column is part of a table name, not data.
				if strings.EqualFold(name, tableSuffixColumn) {
					w.define(c, &colDef{konst: true})
					continue
				}
				d := &colDef{}
				for _, t := range tables {
					src := SourceColumn{Table: t, Column: name}
					w.scanned[src] = true
					d.sources = append(d.sources, src)
				}
				w.define(c, d)
				continue
			}
			src := SourceColumn{Table: fq, Column: name}
			w.scanned[src] = true
			w.define(c, &colDef{source: &src})
		}
		w.controlExpr(x.ForSystemTimeExpr())
	case *googlesql.ResolvedComputedColumn:
		c, err := x.Column()
		e, err2 := x.Expr()
		if err != nil || err2 != nil {
			w.gap("computed column")
		} else {
			w.define(c, &colDef{expr: e})
		}
	case *googlesql.ResolvedDeferredComputedColumn:
		c, err := x.Column()
		e, err2 := x.Expr()
		if err != nil || err2 != nil {
			w.gap("computed column")
		} else {
			w.define(c, &colDef{expr: e})
		}
		if sc, err := x.SideEffectColumn(); err == nil && sc != nil {
			w.define(sc, &colDef{konst: true})
		}
	case *googlesql.ResolvedSetOperationScan:
		items, err := x.InputItemList()
		cols, err2 := x.ColumnList()
		if err != nil || err2 != nil {
			w.gap("set operation")
			break
		}
		per := make([][]int32, len(cols))
		ok := true
		for _, it := range items {
			oc, err := it.OutputColumnList()
			if err != nil || len(oc) != len(cols) {
				ok = false
				break
			}
			for i, c := range oc {
				per[i] = append(per[i], columnID(w, c))
			}
		}
		if !ok {
			w.gap("set operation with unaligned columns")
			break
		}
		for i, c := range cols {
			w.define(c, &colDef{from: per[i]})
		}
	case *googlesql.ResolvedArrayScan:
		exprs, err := x.ArrayExprList()
		elems, err2 := x.ElementColumnList()
		if err != nil || err2 != nil || len(exprs) != len(elems) {
			w.gap("array scan")
			break
		}
		for i, c := range elems {
			w.define(c, &colDef{expr: exprs[i]})
		}
		if h, err := x.ArrayOffsetColumn(); err == nil && h != nil {
			if c, err := h.Column(); err == nil {
				w.define(c, &colDef{konst: true})
			}
		}
		w.controlExpr(x.JoinExpr())
	case *googlesql.ResolvedFilterScan:
		w.controlExpr(x.FilterExpr())
	case *googlesql.ResolvedJoinScan:
		w.controlExpr(x.JoinExpr())
	case *googlesql.ResolvedLimitOffsetScan:
		w.controlExpr(x.Limit())
		w.controlExpr(x.Offset())
	case *googlesql.ResolvedAggregateScan:
		gb, err := x.GroupByList()
		if err != nil {
			w.gapErr("GROUP BY", err)
		}
		for _, g := range gb {
			if c, err := g.Column(); err == nil {
				w.control = append(w.control, controlItem{col: columnID(w, c)})
			}
		}
		if n, _ := x.GroupingCallListSize(); n > 0 {
			w.gap("GROUPING()")
		}
	case *googlesql.ResolvedOrderByItem:
		if cr, err := x.ColumnRef(); err == nil && cr != nil {
			w.control = append(w.control, controlItem{expr: cr})
		}
	case *googlesql.ResolvedWindowPartitioning:
		refs, err := x.PartitionByList()
		if err != nil {
			w.gapErr("PARTITION BY", err)
		}
		for _, r := range refs {
			w.control = append(w.control, controlItem{expr: r})
		}
	case *googlesql.ResolvedWindowFrameExpr:
		w.controlExpr(x.Expression())
	case *googlesql.ResolvedAggregateHavingModifier:
		w.controlExpr(x.HavingExpr())
	case *googlesql.ResolvedAggregateFunctionCall:
		w.controlExpr(x.WhereExpr())
		w.controlExpr(x.HavingExpr())
		w.controlExpr(x.Limit())
	case *googlesql.ResolvedAnalyticFunctionCall:
		w.controlExpr(x.WhereExpr())
	case *googlesql.ResolvedSampleScan:
		if h, err := x.WeightColumn(); err == nil && h != nil {
			if c, err := h.Column(); err == nil {
				w.define(c, &colDef{konst: true})
			}
		}
		ps, _ := x.PartitionByList()
		for _, p := range ps {
			w.control = append(w.control, controlItem{expr: p})
		}
	case *googlesql.ResolvedProjectScan, *googlesql.ResolvedOrderByScan, *googlesql.ResolvedAnalyticScan,
		*googlesql.ResolvedAnalyticFunctionGroup, *googlesql.ResolvedWindowOrdering, *googlesql.ResolvedWindowFrame,
		*googlesql.ResolvedSingleRowScan, *googlesql.ResolvedSetOperationItem, *googlesql.ResolvedOption,
		*googlesql.ResolvedFunctionArgument, *googlesql.ResolvedInlineLambda, *googlesql.ResolvedWithExpr,
		*googlesql.ResolvedSubqueryExpr, *googlesql.ResolvedColumnHolder,
		*googlesql.ResolvedGroupingSet, *googlesql.ResolvedRollup, *googlesql.ResolvedCube,
		*googlesql.ResolvedGroupingSetMultiColumn, *googlesql.ResolvedGroupingSetList, *googlesql.ResolvedGroupingSetProduct:
		// Structure only: their columns and expressions are handled where they are used.
	case googlesql.ResolvedExprNode:
		// Expressions are judged when evaluated (an unknown kind makes its value Unknown).
	default:
		k, _ := n.NodeKindString()
		if k == "" {
			k = fmt.Sprintf("%T", n)
		}
		w.gap(k)
	}
	kids, err := n.GetChildNodes()
	if err != nil {
		w.gapErr("children", err)
		return
	}
	for _, k := range kids {
		w.visit(k)
	}
}

// col is the lineage of column id.
func (w *walker) col(id int32) *lin {
	if l, ok := w.memo[id]; ok {
		return l
	}
	d := w.defs[id]
	if d == nil || w.busy[id] {
		// A column nobody defined comes from a node the walker does not model.
		return unknownLin()
	}
	w.busy[id] = true
	var l *lin
	switch {
	case d.lambda != nil:
		l = d.lambda
	case d.source != nil:
		l = sourceLin(*d.source)
	case len(d.sources) > 0:
		xs := make([]*lin, len(d.sources))
		for i, src := range d.sources {
			xs[i] = sourceLin(src)
		}
		l = union(xs...)
	case d.konst:
		l = constLin()
	case d.from != nil:
		xs := make([]*lin, len(d.from))
		for i, f := range d.from {
			xs[i] = w.col(f)
		}
		l = union(xs...)
	default:
		l = w.expr(d.expr)
	}
	delete(w.busy, id)
	if d.lambda == nil {
		w.memo[id] = l
	}
	return l
}

func (w *walker) exprs(es []googlesql.ResolvedExprNode, err error) []*lin {
	if err != nil {
		return []*lin{unknownLin()}
	}
	out := make([]*lin, len(es))
	for i, e := range es {
		out[i] = w.expr(e)
	}
	return out
}

// expr is the lineage of an expression's value. It records the control reads the
// expression makes (CASE conditions, IN and EXISTS subqueries).
func (w *walker) expr(e googlesql.ResolvedExprNode) *lin {
	if e == nil {
		return constLin()
	}
	switch x := e.(type) {
	case *googlesql.ResolvedColumnRef:
		c, err := x.Column()
		if err != nil || c == nil {
			return unknownLin()
		}
		return w.col(columnID(w, c))
	case *googlesql.ResolvedLiteral, *googlesql.ResolvedParameter, *googlesql.ResolvedSystemVariable,
		*googlesql.ResolvedFlattenedArg, *googlesql.ResolvedDMLDefault:
		// No column: literals, query parameters (the client's own values), @@variables,
		// and the current element inside FLATTEN (its array is counted by FLATTEN).
		return constLin()
	case *googlesql.ResolvedCast:
		v, err := x.Expr()
		if err != nil {
			return unknownLin()
		}
		f, _ := x.Format()
		tz, _ := x.TimeZone()
		return computed(w.expr(v), w.expr(f), w.expr(tz))
	case *googlesql.ResolvedMakeStruct:
		fs, err := x.FieldList()
		if err != nil {
			return unknownLin()
		}
		t, _ := x.Type()
		names := structFieldNames(t)
		ls := make([]*lin, len(fs))
		for i, f := range fs {
			ls[i] = w.expr(f)
		}
		out := newLin()
		for _, l := range ls {
			out.addAll(l)
		}
		if len(ls) == 0 {
			out.srcs[pseudoSource] = flow{classes: classFunction}
		}
		if len(names) == len(ls) {
			out.fields, out.names = ls, names
		}
		return out
	case *googlesql.ResolvedGetStructField:
		v, err := x.Expr()
		idx, err2 := x.FieldIdx()
		if err != nil || err2 != nil {
			return unknownLin()
		}
		l := w.expr(v)
		if l.fields != nil && int(idx) >= 0 && int(idx) < len(l.fields) {
			return l.fields[idx]
		}
		return stripFields(l)
	case *googlesql.ResolvedGetJsonField:
		v, err := x.Expr()
		if err != nil {
			return unknownLin()
		}
		return stripFields(w.expr(v))
	case *googlesql.ResolvedFlatten:
		v, err := x.Expr()
		if err != nil {
			return unknownLin()
		}
		parts := append([]*lin{stripFields(w.expr(v))}, w.exprs(x.GetFieldList())...)
		return union(parts...)
	case *googlesql.ResolvedWithExpr:
		v, err := x.Expr()
		if err != nil {
			return unknownLin()
		}
		return w.expr(v)
	case *googlesql.ResolvedSubqueryExpr:
		return w.subquery(x)
	case *googlesql.ResolvedFunctionCall:
		return w.function(x.ResolvedFunctionCallBase)
	case *googlesql.ResolvedAggregateFunctionCall:
		if n, _ := x.GroupByListSize(); n > 0 {
			w.gap("multi-level aggregate")
			return unknownLin()
		}
		name, counting := aggregateName(x.ResolvedFunctionCallBase, x.Distinct)
		args := w.exprs(x.ArgumentList())
		w.countifReads(name, args)
		return aggregated(name, counting, w.withGeneric(x.ResolvedFunctionCallBase, args)...)
	case *googlesql.ResolvedAnalyticFunctionCall:
		name, counting := aggregateName(x.ResolvedFunctionCallBase, x.Distinct)
		args := w.exprs(x.ArgumentList())
		w.countifReads(name, args)
		return aggregated(name, counting, w.withGeneric(x.ResolvedFunctionCallBase, args)...)
	default:
		k, _ := e.NodeKindString()
		if k == "" {
			k = fmt.Sprintf("%T", e)
		}
		w.gap(k)
		return unknownLin()
	}
}

// countifReads: COUNTIF's argument is a condition (COUNTIF(ssn = '...') probes ssn like
// a WHERE would), so it is a control read as well as the counted value.
func (w *walker) countifReads(name string, args []*lin) {
	if strings.HasPrefix(name, "COUNTIF") {
		for _, a := range args {
			w.addReads(a)
		}
	}
}

func stripFields(l *lin) *lin {
	if l.fields == nil {
		return l
	}
	c := *l
	c.fields, c.names = nil, nil
	return &c
}

func aggregateName(f *googlesql.ResolvedFunctionCallBase, distinct func() (bool, error)) (string, bool) {
	name := "UNKNOWN_AGGREGATE"
	if fn, err := f.Function(); err == nil && fn != nil {
		if n, err := fn.Name(); err == nil {
			name = strings.ToUpper(n)
		}
	}
	counting := countingAggregates[name]
	if name == "$COUNT_STAR" {
		name = "COUNT"
	}
	if d, err := distinct(); err == nil && d {
		name += " DISTINCT"
	}
	return name, counting
}

// withGeneric appends the lineage of generic arguments (lambdas and named arguments).
func (w *walker) withGeneric(f *googlesql.ResolvedFunctionCallBase, args []*lin) []*lin {
	n, err := f.GenericArgumentListSize()
	if err != nil {
		return append(args, unknownLin())
	}
	if n == 0 {
		return args
	}
	gs, err := f.GenericArgumentList()
	if err != nil {
		return append(args, unknownLin())
	}
	// Lambda arguments are bound to the elements of the other arguments.
	var plain []*lin
	var lambdas []*googlesql.ResolvedInlineLambda
	for _, g := range gs {
		if e, err := g.Expr(); err == nil && e != nil {
			plain = append(plain, w.expr(e))
			continue
		}
		if l, err := g.InlineLambda(); err == nil && l != nil {
			lambdas = append(lambdas, l)
			continue
		}
		w.gap("function argument (table, model, connection or descriptor)")
		plain = append(plain, unknownLin())
	}
	args = append(args, plain...)
	bound := union(args...)
	for _, l := range lambdas {
		cols, err := l.ArgumentList()
		body, err2 := l.Body()
		if err != nil || err2 != nil {
			args = append(args, unknownLin())
			continue
		}
		for _, c := range cols {
			id := columnID(w, c)
			w.defs[id] = &colDef{lambda: bound}
		}
		args = append(args, w.expr(body))
		for _, c := range cols {
			delete(w.defs, columnID(w, c))
		}
	}
	return args
}

// function is the lineage of a scalar function call. Conditions (CASE WHEN, IF, the
// value NULLIF compares with) are control reads, not values.
func (w *walker) function(f *googlesql.ResolvedFunctionCallBase) *lin {
	name := ""
	if fn, err := f.Function(); err == nil && fn != nil {
		name, _ = fn.Name()
	}
	args := w.exprs(f.ArgumentList())
	if name == "$make_array" {
		// ARRAY[a, b] packs its values unchanged (like STRUCT): elements keep their class
		// and STRUCT shape.
		if len(args) == 0 {
			return constLin()
		}
		return union(args...)
	}
	n := len(args)
	isControl := func(i int) bool {
		switch name {
		case "$case_no_value": // WHEN c THEN v ... [ELSE v]
			return !(n%2 == 1 && i == n-1) && i%2 == 0
		case "$case_with_value": // CASE x WHEN w THEN v ... [ELSE v]
			if i == 0 {
				return true
			}
			return !((n-1)%2 == 1 && i == n-1) && (i-1)%2 == 0
		case "if", "nullif":
			return (name == "if" && i == 0) || (name == "nullif" && i == 1)
		}
		return false
	}
	var vals []*lin
	for i, a := range args {
		if isControl(i) {
			w.addReads(a)
			continue
		}
		vals = append(vals, a)
	}
	return computed(w.withGeneric(f, vals)...)
}

// subquery: SCALAR and ARRAY subqueries carry their column's values; EXISTS, IN and
// LIKE ANY/ALL only decide (their columns are control reads).
func (w *walker) subquery(x *googlesql.ResolvedSubqueryExpr) *lin {
	typ, err := x.SubqueryType()
	sub, err2 := x.Subquery()
	if err != nil || err2 != nil || sub == nil {
		return unknownLin()
	}
	cols, err := scanColumns(sub)
	if err != nil {
		return unknownLin()
	}
	colLins := make([]*lin, len(cols))
	for i, c := range cols {
		colLins[i] = w.col(columnID(w, c))
	}
	switch typ {
	case googlesql.ResolvedSubqueryExprEnums_SubqueryTypeScalar, googlesql.ResolvedSubqueryExprEnums_SubqueryTypeArray:
		if len(colLins) != 1 {
			return unknownLin()
		}
		return colLins[0]
	default:
		for _, l := range colLins {
			w.addReads(l)
		}
		if in, err := x.InExpr(); err == nil && in != nil {
			w.addReads(w.expr(in))
		}
		return constLin()
	}
}

// ---- resolving views and building the output ----

// viewLineage resolves sources that are view columns into the base columns of the view
// bodies (recursively).
type viewLineage struct {
	views map[string]*rawLineage // view full name -> its body's lineage
	memo  map[SourceColumn]*lin
	busy  map[SourceColumn]bool
}

// viewColumn is the resolved lineage of one view column, nil if s is not a view column.
func (v *viewLineage) viewColumn(s SourceColumn) *lin {
	body, ok := v.views[s.Table]
	if !ok {
		return nil
	}
	if l, ok := v.memo[s]; ok {
		return l
	}
	// A view column the walker cannot resolve stays as its own source, Unknown.
	opaque := func() *lin {
		l := unknownLin()
		l.srcs[s] = flow{classes: classFunction, revealing: true}
		return l
	}
	if v.busy[s] {
		return opaque()
	}
	v.busy[s] = true
	defer delete(v.busy, s)
	var l *lin
	if body == nil {
		l = opaque()
	} else {
		for _, o := range body.outputs {
			if strings.EqualFold(o.name, s.Column) {
				l = v.resolve(o.lin)
				break
			}
		}
		if l == nil {
			l = opaque()
		}
	}
	l = stripFields(l)
	v.memo[s] = l
	return l
}

// resolve replaces view columns in l by their own lineage.
func (v *viewLineage) resolve(l *lin) *lin {
	out := newLin()
	out.unknown = l.unknown
	for a := range l.aggs {
		out.addAgg(a)
	}
	for s, f := range l.srcs {
		inner := v.viewColumn(s)
		if inner == nil {
			g := out.srcs[s]
			g.classes |= f.classes
			g.revealing = g.revealing || f.revealing
			g.aggs = mergeAggs(g.aggs, f.aggs)
			out.srcs[s] = g
			continue
		}
		if inner.unknown {
			out.unknown = true
		}
		for a := range inner.aggs {
			out.addAgg(a)
		}
		for bs, bf := range inner.srcs {
			g := out.srcs[bs]
			g.classes |= crossClasses(bf.classes, f.classes)
			g.revealing = g.revealing || (bf.revealing && f.revealing)
			g.aggs = mergeAggs(g.aggs, mergeAggs(bf.aggs, f.aggs))
			out.srcs[bs] = g
		}
	}
	if l.fields != nil {
		out.names = l.names
		out.fields = make([]*lin, len(l.fields))
		for i, f := range l.fields {
			out.fields[i] = v.resolve(f)
		}
	}
	return out
}

// build turns the statement's raw lineage into the exported shape.
func (v *viewLineage) build(raw *rawLineage) (cols []OutputColumn, reads []SourceColumn, complete bool) {
	complete = raw.complete
	for i, o := range raw.outputs {
		l := v.resolve(o.lin)
		if hasUnknown(l) {
			complete = false
		}
		cols = appendOutput(cols, o.name, i, nil, nil, l)
	}
	rs := map[SourceColumn]bool{}
	for s := range raw.reads {
		inner := v.viewColumn(s)
		if inner == nil {
			rs[s] = true
			continue
		}
		if inner.unknown {
			complete = false
		}
		for bs := range inner.srcs {
			if bs != pseudoSource {
				rs[bs] = true
			}
		}
	}
	reads = sortedSources(rs)
	return cols, reads, complete
}

func appendOutput(cols []OutputColumn, name string, pos int, path []string, fieldPos []int, l *lin) []OutputColumn {
	oc := OutputColumn{Name: name, Position: pos, Path: path, FieldPositions: fieldPos, Unknown: hasUnknown(l)}
	// Via is the least transformed path of a real source; literals only count for a
	// column without any (MAX(email) || 'x' is an aggregate, not a function).
	var least uint8
	srcs := map[SourceColumn]bool{}
	for s, f := range l.srcs {
		if s == pseudoSource {
			continue
		}
		srcs[s] = true
		oc.ValueRevealing = oc.ValueRevealing || f.revealing
		if least == 0 || lowest(f.classes) < least {
			least = lowest(f.classes)
		}
	}
	if least == 0 {
		least = lowest(l.srcs[pseudoSource].classes)
	}
	oc.Sources = sortedSources(srcs)
	for _, s := range oc.Sources {
		f := l.srcs[s]
		oc.Flows = append(oc.Flows, SourceFlow{Source: s, OnlyAggregated: !oc.Unknown && f.classes == classAggregate,
			Aggregates: slices.Clone(f.aggs)})
	}
	for a := range l.aggs {
		oc.Aggregates = append(oc.Aggregates, a)
	}
	sort.Strings(oc.Aggregates)
	switch {
	case oc.Unknown:
		oc.ValueRevealing = true
	case least == classDirect:
		oc.Via = ViaDirect
	case least == classAggregate:
		oc.Via = ViaAggregate
	default:
		oc.Via = ViaFunction
	}
	cols = append(cols, oc)
	for i, f := range l.fields {
		cols = appendOutput(cols, name, pos, append(append([]string{}, path...), l.names[i]),
			append(append([]int{}, fieldPos...), i), f)
	}
	return cols
}

// lowest is the least transformed class in a set.
func lowest(c uint8) uint8 {
	for _, x := range []uint8{classDirect, classFunction, classAggregate} {
		if c&x != 0 {
			return x
		}
	}
	return classFunction
}

func sortedSources(m map[SourceColumn]bool) []SourceColumn {
	if len(m) == 0 {
		return nil
	}
	out := make([]SourceColumn, 0, len(m))
	for s := range m {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Table != out[j].Table {
			return out[i].Table < out[j].Table
		}
		return out[i].Column < out[j].Column
	})
	return out
}

func cloneLineage(cols []OutputColumn) []OutputColumn {
	if cols == nil {
		return nil
	}
	out := make([]OutputColumn, len(cols))
	for i, c := range cols {
		c.Path = append([]string(nil), c.Path...)
		if len(c.Path) == 0 {
			c.Path = nil
		}
		c.Sources = append([]SourceColumn(nil), c.Sources...)
		c.Aggregates = append([]string(nil), c.Aggregates...)
		c.FieldPositions = slices.Clone(c.FieldPositions)
		if len(c.FieldPositions) == 0 {
			c.FieldPositions = nil
		}
		if c.Flows != nil {
			fl := make([]SourceFlow, len(c.Flows))
			for j, f := range c.Flows {
				f.Aggregates = slices.Clone(f.Aggregates)
				fl[j] = f
			}
			c.Flows = fl
		}
		if len(c.Sources) == 0 {
			c.Sources = nil
		}
		if len(c.Aggregates) == 0 {
			c.Aggregates = nil
		}
		out[i] = c
	}
	return out
}
