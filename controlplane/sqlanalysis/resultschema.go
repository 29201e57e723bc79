package sqlanalysis

import (
	"github.com/goccy/go-googlesql"
)

// bigQueryTypes names the analyser's scalar type kinds as BigQuery's REST schema does.
var bigQueryTypes = map[googlesql.TypeKind]string{
	googlesql.TypeKindTypeInt64: "INTEGER", googlesql.TypeKindTypeDouble: "FLOAT", googlesql.TypeKindTypeBool: "BOOLEAN",
	googlesql.TypeKindTypeString: "STRING", googlesql.TypeKindTypeBytes: "BYTES", googlesql.TypeKindTypeDate: "DATE",
	googlesql.TypeKindTypeTimestamp: "TIMESTAMP", googlesql.TypeKindTypeTime: "TIME", googlesql.TypeKindTypeDatetime: "DATETIME",
	googlesql.TypeKindTypeGeography: "GEOGRAPHY", googlesql.TypeKindTypeNumeric: "NUMERIC", googlesql.TypeKindTypeBignumeric: "BIGNUMERIC",
	googlesql.TypeKindTypeJson: "JSON", googlesql.TypeKindTypeInterval: "INTERVAL", googlesql.TypeKindTypeRange: "RANGE",
}

// resultSchema is the schema of a query's result rows in BigQuery's REST terms, from the
// analyser's resolved output types: the masking plan of a job carries it for result pages
// that have no schema and whose result table is unknown. Column names are the analyser's
// (an anonymous column is "$colN", as the emulator names it; BigQuery says "f0_"): only
// positions, types and modes matter for masking. Nil when some type cannot be expressed.
func resultSchema(stmt *googlesql.ResolvedQueryStmt) (cols []Column) {
	defer func() {
		if recover() != nil {
			cols = nil
		}
	}()
	outs, err := stmt.OutputColumnList()
	if err != nil {
		return nil
	}
	valueTable, _ := stmt.IsValueTable()
	for _, oc := range outs {
		name, _ := oc.Name()
		c, err := oc.Column()
		if err != nil || c == nil {
			return nil
		}
		t, err := c.Type()
		if err != nil || t == nil {
			return nil
		}
		col, ok := typeColumn(name, t, 0)
		if !ok {
			return nil
		}
		if valueTable && col.Type == "RECORD" && !col.Repeated {
			// A value table of STRUCTs is returned as the struct's fields.
			cols = append(cols, col.Fields...)
			continue
		}
		cols = append(cols, col)
	}
	return cols
}

func typeColumn(name string, t googlesql.Googlesql_TypeNode, depth int) (Column, bool) {
	if depth > 16 {
		return Column{}, false
	}
	col := Column{Name: name}
	if isArr, err := t.IsArray(); err != nil {
		return Column{}, false
	} else if isArr {
		at, err := t.AsArray()
		if err != nil || at == nil {
			return Column{}, false
		}
		et, err := at.ElementType()
		if err != nil || et == nil {
			return Column{}, false
		}
		el, ok := typeColumn(name, et, depth+1)
		if !ok || el.Repeated {
			return Column{}, false
		}
		el.Repeated = true
		return el, true
	}
	if isStruct, err := t.IsStruct(); err != nil {
		return Column{}, false
	} else if isStruct {
		st, err := t.AsStruct()
		if err != nil || st == nil {
			return Column{}, false
		}
		fs, err := st.Fields()
		if err != nil {
			return Column{}, false
		}
		col.Type = "RECORD"
		for _, f := range fs {
			if f == nil || f.Type_ == nil {
				return Column{}, false
			}
			fc, ok := typeColumn(f.Name, f.Type_, depth+1)
			if !ok {
				return Column{}, false
			}
			col.Fields = append(col.Fields, fc)
		}
		return col, true
	}
	k, err := t.Kind()
	if err != nil {
		return Column{}, false
	}
	tn, ok := bigQueryTypes[k]
	if !ok {
		return Column{}, false
	}
	col.Type = tn
	return col, true
}
