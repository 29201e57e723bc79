package sqlanalysis

import (
	"sort"
	"strings"

	"github.com/goccy/go-googlesql"
)

// scanReads is what the table scans of one resolved statement read.
type scanReads struct {
	// counts: fully qualified table -> scans (a wildcard scan counts each table it may read).
	counts map[string]int
	// wildcards: the wildcard tables scanned (project.dataset.prefix*).
	wildcards []string
	// unfilteredPartitions: partitioned tables scanned with no filter on their partition
	// column (missingPartitionFilter).
	unfilteredPartitions []string
	// wholeRow: a table's whole row is packed into one value (TO_JSON_STRING(t),
	// FORMAT('%T', t), STRUCT of every column): as revealing as SELECT *. The tables.
	wholeRow []string
}

// readScans lists the tables stmt's scans read. A wildcard scan reads the tables its
// wildcard matches, narrowed by the _TABLE_SUFFIX conditions of a WHERE directly over it
// (=, <, <=, >, >=, BETWEEN, IN with string literals, joined by AND); any other use of
// _TABLE_SUFFIX leaves every matching table read, which is the safe direction.
func readScans(req *request, stmt googlesql.ResolvedNode) (*scanReads, error) {
	out := &scanReads{counts: map[string]int{}}
	scans, err := stmt.GetDescendantsWithKinds([]googlesql.ResolvedNodeKind{googlesql.ResolvedNodeKindResolvedTableScan})
	if err != nil {
		return nil, err
	}
	filters, err := stmt.GetDescendantsWithKinds([]googlesql.ResolvedNodeKind{googlesql.ResolvedNodeKindResolvedFilterScan})
	if err != nil {
		return nil, err
	}
	// Every column a WHERE mentions, and the conditions of WHEREs directly over a scan,
	// by column id.
	filtered := map[int32]bool{}
	direct := map[int32][]googlesql.ResolvedExprNode{}
	for _, n := range filters {
		f, ok := n.(*googlesql.ResolvedFilterScan)
		if !ok {
			continue
		}
		e, err := f.FilterExpr()
		if err != nil || e == nil {
			continue
		}
		columnRefs(e, filtered, 0)
		in, err := f.InputScan()
		if err != nil {
			continue
		}
		if ts, ok := in.(*googlesql.ResolvedTableScan); ok {
			cols, _ := ts.ColumnList()
			for _, c := range cols {
				if c == nil {
					continue
				}
				if name, _ := c.Name(); strings.EqualFold(name, tableSuffixColumn) {
					id, _ := c.ColumnId()
					direct[id] = append(direct[id], e)
				}
			}
		}
	}
	wild := map[string]bool{}
	unfiltered := map[string]bool{}
	colTable := map[int32]string{}
	for _, n := range scans {
		ts, ok := n.(*googlesql.ResolvedTableScan)
		if !ok {
			return nil, errUnexpectedScan
		}
		name, err := tableScanName(ts)
		if err != nil {
			return nil, err
		}
		cols, err := ts.ColumnList()
		if err != nil {
			return nil, err
		}
		if wt := req.wildcards[name]; wt != nil {
			wild[name] = true
			var conds []suffixPredicate
			for _, c := range cols {
				if c == nil {
					continue
				}
				if cn, _ := c.Name(); strings.EqualFold(cn, tableSuffixColumn) {
					id, _ := c.ColumnId()
					for _, e := range direct[id] {
						conds = append(conds, suffixConditions(e, id)...)
					}
				}
			}
			for _, t := range wt.tables {
				suffix := strings.TrimPrefix(t, wt.prefix)
				keep := true
				for _, p := range conds {
					if !p(suffix) {
						keep = false
						break
					}
				}
				if keep {
					out.counts[wt.project+"."+wt.dataset+"."+t]++
				}
			}
			continue
		}
		out.counts[name]++
		for _, c := range cols {
			if c != nil {
				if id, err := c.ColumnId(); err == nil {
					colTable[id] = name
				}
			}
		}
		if meta := req.seen[name]; meta != nil && (meta.PartitionField != "" || meta.IngestionTimePartitioned) {
			hit := false
			for _, c := range cols {
				if c == nil {
					continue
				}
				cn, _ := c.Name()
				if isPartitionColumn(meta, cn) {
					if id, err := c.ColumnId(); err == nil && filtered[id] {
						hit = true
					}
				}
			}
			if !hit {
				unfiltered[name] = true
			}
		}
	}
	structs, err := stmt.GetDescendantsWithKinds([]googlesql.ResolvedNodeKind{googlesql.ResolvedNodeKindResolvedMakeStruct})
	if err != nil {
		return nil, err
	}
	whole := map[string]bool{}
	for _, n := range structs {
		if ms, ok := n.(*googlesql.ResolvedMakeStruct); ok {
			if t := packsWholeRow(req, ms, colTable); t != "" {
				whole[t] = true
			}
		}
	}
	out.wholeRow = sortedKeys(whole)
	out.wildcards = sortedKeys(wild)
	out.unfilteredPartitions = sortedKeys(unfiltered)
	return out, nil
}

func isPartitionColumn(m *TableMeta, col string) bool {
	if m.PartitionField != "" {
		return strings.EqualFold(col, m.PartitionField)
	}
	return strings.EqualFold(col, "_PARTITIONTIME") || strings.EqualFold(col, "_PARTITIONDATE")
}

// columnRefs adds the ids of every column e refers to (subqueries included).
func columnRefs(n googlesql.ResolvedNode, into map[int32]bool, depth int) {
	if n == nil || depth > 500 {
		return
	}
	if r, ok := n.(*googlesql.ResolvedColumnRef); ok {
		if c, err := r.Column(); err == nil && c != nil {
			if id, err := c.ColumnId(); err == nil {
				into[id] = true
			}
		}
	}
	kids, err := n.GetChildNodes()
	if err != nil {
		return
	}
	for _, k := range kids {
		columnRefs(k, into, depth+1)
	}
}

// suffixPredicate says whether a table suffix can satisfy a condition.
type suffixPredicate func(string) bool

// suffixConditions returns the conditions on column id that e (a WHERE) implies: e itself
// or any of its AND-ed parts when they compare the column with string literals.
func suffixConditions(e googlesql.ResolvedExprNode, id int32) []suffixPredicate {
	call, ok := e.(*googlesql.ResolvedFunctionCall)
	if !ok {
		return nil
	}
	name := ""
	if fn, err := call.Function(); err == nil && fn != nil {
		name, _ = fn.Name()
	}
	args, err := call.ArgumentList()
	if err != nil {
		return nil
	}
	if name == "$and" {
		var out []suffixPredicate
		for _, a := range args {
			out = append(out, suffixConditions(a, id)...)
		}
		return out
	}
	if len(args) < 2 {
		return nil
	}
	var litArgs []googlesql.ResolvedExprNode
	colFirst := isColumn(args[0], id)
	switch {
	case colFirst:
		litArgs = args[1:]
	case len(args) == 2 && isColumn(args[1], id):
		litArgs = args[:1]
	default:
		return nil
	}
	lits := make([]string, 0, len(litArgs))
	for _, a := range litArgs {
		s, ok := stringLiteral(a)
		if !ok {
			return nil
		}
		lits = append(lits, s)
	}
	op := name
	if !colFirst { // literal OP column: mirror the comparison
		switch name {
		case "$less":
			op = "$greater"
		case "$less_or_equal":
			op = "$greater_or_equal"
		case "$greater":
			op = "$less"
		case "$greater_or_equal":
			op = "$less_or_equal"
		}
	}
	switch {
	case op == "$equal" && len(lits) == 1:
		v := lits[0]
		return []suffixPredicate{func(s string) bool { return s == v }}
	case op == "$less" && len(lits) == 1:
		v := lits[0]
		return []suffixPredicate{func(s string) bool { return s < v }}
	case op == "$less_or_equal" && len(lits) == 1:
		v := lits[0]
		return []suffixPredicate{func(s string) bool { return s <= v }}
	case op == "$greater" && len(lits) == 1:
		v := lits[0]
		return []suffixPredicate{func(s string) bool { return s > v }}
	case op == "$greater_or_equal" && len(lits) == 1:
		v := lits[0]
		return []suffixPredicate{func(s string) bool { return s >= v }}
	case op == "$between" && colFirst && len(lits) == 2:
		lo, hi := lits[0], lits[1]
		return []suffixPredicate{func(s string) bool { return s >= lo && s <= hi }}
	case op == "$in" && colFirst && len(lits) >= 1:
		set := append([]string(nil), lits...)
		sort.Strings(set)
		return []suffixPredicate{func(s string) bool {
			i := sort.SearchStrings(set, s)
			return i < len(set) && set[i] == s
		}}
	}
	return nil
}

func isColumn(e googlesql.ResolvedExprNode, id int32) bool {
	r, ok := e.(*googlesql.ResolvedColumnRef)
	if !ok {
		return false
	}
	c, err := r.Column()
	if err != nil || c == nil {
		return false
	}
	got, err := c.ColumnId()
	return err == nil && got == id
}

func stringLiteral(e googlesql.ResolvedExprNode) (string, bool) {
	l, ok := e.(*googlesql.ResolvedLiteral)
	if !ok {
		return "", false
	}
	v, err := l.Value()
	if err != nil || v == nil {
		return "", false
	}
	if null, err := v.IsNull(); err != nil || null {
		return "", false
	}
	s, err := v.StringValue()
	if err != nil {
		return "", false
	}
	return s, true
}

// packsWholeRow: every field of ms is a column of one scanned table, and every column of
// that table is there (a range variable used as a value: TO_JSON_STRING(t)). It returns
// the table, or "".
func packsWholeRow(req *request, ms *googlesql.ResolvedMakeStruct, colTable map[int32]string) string {
	fields, err := ms.FieldList()
	if err != nil || len(fields) == 0 {
		return ""
	}
	table := ""
	seen := map[int32]bool{}
	for _, f := range fields {
		r, ok := f.(*googlesql.ResolvedColumnRef)
		if !ok {
			return ""
		}
		c, err := r.Column()
		if err != nil || c == nil {
			return ""
		}
		id, err := c.ColumnId()
		if err != nil {
			return ""
		}
		t := colTable[id]
		if t == "" || (table != "" && t != table) {
			return ""
		}
		table = t
		seen[id] = true
	}
	if meta := req.seen[table]; meta != nil && len(seen) >= len(meta.Columns) {
		return table
	}
	return ""
}
