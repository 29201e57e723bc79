package sqlanalysis

import (
	"fmt"
	"strings"

	"github.com/goccy/go-googlesql"
	"github.com/jitgate/jitgate/policies"
)

// Scripts with variables (DECLARE, SET). The analyser rejects procedural statements, so
// the script is walked here (GOOGLESQL.md, "Scripts"): each DECLARE becomes a named
// constant of its type in a catalog placed before the Go catalog, so later statements
// resolve the variable; the DEFAULT and SET expressions are analysed on their own, and
// every table they read counts (SET x = (SELECT MAX(ssn) FROM hr.people) reads
// hr.people). The values themselves are never needed. Control flow (IF, loops,
// BEGIN...END, EXCEPTION), SET of system variables and multi-variable SET stay denied.

// scriptState is one script's variables.
type scriptState struct {
	a    *Analyzer
	vars *googlesql.SimpleCatalog
	// declared are the variables' names, lower case (BigQuery's are case-insensitive).
	declared map[string]bool
}

func (a *Analyzer) newScript(req *request) (*scriptState, error) {
	e := a.e
	vars, err := googlesql.NewSimpleCatalog("script", e.tf)
	if err != nil {
		return nil, unanalysable("SCRIPT", req.findings, "script catalog: %s", cleanMessage(err))
	}
	multi, err := googlesql.NewMultiCatalogCreate("jitgate-script", []googlesql.CatalogNode{e.builtins, vars, e.gocat})
	if err != nil {
		return nil, unanalysable("SCRIPT", req.findings, "script catalog: %s", cleanMessage(err))
	}
	req.scriptCatalog = use(e, multi)
	use(e, vars)
	return &scriptState{a: a, vars: vars, declared: map[string]bool{}}, nil
}

// statement handles one DECLARE or SET.
func (sc *scriptState) statement(req *request, s googlesql.ASTStatementNode, kind, sql string) (*stmtResult, error) {
	switch kind {
	case "VariableDeclaration":
		return sc.declare(req, s, sql)
	case "SingleAssignment":
		return sc.assign(req, s, sql)
	}
	return nil, unanalysable("SCRIPT", req.findings, "scripts with %s are not analysed", kind)
}

func (sc *scriptState) declare(req *request, s googlesql.ASTStatementNode, sql string) (*stmtResult, error) {
	d, ok := s.(*googlesql.ASTVariableDeclaration)
	if !ok {
		return nil, unanalysable("SCRIPT", req.findings, "unexpected DECLARE node %T", s)
	}
	list, err := d.VariableList()
	if err != nil || list == nil {
		return nil, unanalysable("SCRIPT", req.findings, "DECLARE without variables")
	}
	n, err := list.NumChildren()
	if err != nil {
		return nil, unanalysable("SCRIPT", req.findings, "%s", cleanMessage(err))
	}
	var names []string
	for i := int32(0); i < n; i++ {
		id, err := list.IdentifierList(i)
		if err != nil || id == nil {
			return nil, unanalysable("SCRIPT", req.findings, "DECLARE variable %d", i)
		}
		name, err := id.GetAsString()
		if err != nil || name == "" {
			return nil, unanalysable("SCRIPT", req.findings, "DECLARE variable %d", i)
		}
		if sc.declared[strings.ToLower(name)] {
			return nil, unanalysable("SCRIPT", req.findings, "variable %s is declared twice", name)
		}
		names = append(names, name)
	}
	r := &stmtResult{kind: "DECLARE"}
	var typ googlesql.Googlesql_TypeNode
	if t, err := d.Type(); err == nil && t != nil {
		text, err := nodeText(t, sql)
		if err != nil {
			return nil, unanalysable("SCRIPT", req.findings, "DECLARE type: %s", err)
		}
		typ, err = googlesql.AnalyzeType(text, sc.a.e.opts, req.catalog(sc.a.e), sc.a.e.tf)
		if err != nil || typ == nil {
			return nil, unanalysable("SCRIPT", req.findings, "DECLARE type %s: %s", text, cleanMessage(errOrNil(err)))
		}
	}
	if def, err := d.DefaultValue(); err == nil && def != nil {
		exprType, err := sc.expression(req, def, sql, r)
		if err != nil {
			return nil, err
		}
		if typ == nil {
			typ = exprType
		}
	}
	if typ == nil {
		return nil, unanalysable("SCRIPT", req.findings, "DECLARE %s has neither a type nor a default", strings.Join(names, ", "))
	}
	for _, name := range names {
		v, err := googlesql.NewValueNull(typ)
		if err != nil {
			return nil, unanalysable("SCRIPT", req.findings, "variable %s: %s", name, cleanMessage(err))
		}
		c, err := googlesql.NewSimpleConstantCreate([]string{name}, v)
		if err != nil {
			return nil, unanalysable("SCRIPT", req.findings, "variable %s: %s", name, cleanMessage(err))
		}
		if err := sc.vars.AddConstant(c); err != nil {
			return nil, unanalysable("SCRIPT", req.findings, "variable %s: %s", name, cleanMessage(err))
		}
		sc.declared[strings.ToLower(name)] = true
	}
	return r, nil
}

func (sc *scriptState) assign(req *request, s googlesql.ASTStatementNode, sql string) (*stmtResult, error) {
	as, ok := s.(*googlesql.ASTSingleAssignment)
	if !ok {
		return nil, unanalysable("SCRIPT", req.findings, "unexpected SET node %T", s)
	}
	id, err := as.Variable()
	if err != nil || id == nil {
		return nil, unanalysable("SCRIPT", req.findings, "SET without a variable")
	}
	name, _ := id.GetAsString()
	if !sc.declared[strings.ToLower(name)] {
		return nil, unanalysable("SCRIPT", req.findings, "SET of undeclared variable %s", name)
	}
	expr, err := as.Expression()
	if err != nil || expr == nil {
		return nil, unanalysable("SCRIPT", req.findings, "SET %s without a value", name)
	}
	r := &stmtResult{kind: "SET"}
	if _, err := sc.expression(req, expr, sql, r); err != nil {
		return nil, err
	}
	return r, nil
}

// expression analyses a DEFAULT or SET expression and adds what it reads to r.
func (sc *scriptState) expression(req *request, expr googlesql.ASTNode, sql string, r *stmtResult) (googlesql.Googlesql_TypeNode, error) {
	e := sc.a.e
	text, err := nodeText(expr, sql)
	if err != nil {
		return nil, unanalysable("SCRIPT", req.findings, "script expression: %s", err)
	}
	e.cat.cur = req
	out, err := googlesql.AnalyzeExpression(text, e.opts, req.catalog(e), e.tf)
	e.cat.cur = nil
	if err != nil || out == nil {
		if req.sourceErr != nil {
			return nil, &AnalysisError{Kind: ErrCatalogUnavailable, Reason: cleanMessage(req.sourceErr), Findings: sortedFindings(req.findings)}
		}
		return nil, unanalysable("SCRIPT", req.findings, "%s", cleanMessage(errOrNil(err)))
	}
	res, err := out.ResolvedExpr()
	if err != nil || res == nil {
		return nil, unanalysable("SCRIPT", req.findings, "script expression did not resolve")
	}
	sr, err := readScans(req, res)
	if err != nil {
		return nil, unanalysable("SCRIPT", req.findings, "%s", cleanMessage(err))
	}
	for t := range sr.counts {
		r.reads = append(r.reads, t)
	}
	r.wildcards = append(r.wildcards, sr.wildcards...)
	if len(sr.wholeRow) > 0 {
		r.findings = append(r.findings, policies.DenySelectStar)
		r.wholeRowTables = append(r.wholeRowTables, sr.wholeRow...)
	}
	r.unfilteredPartitions = append(r.unfilteredPartitions, sr.unfilteredPartitions...)
	if len(sr.unfilteredPartitions) > 0 {
		r.findings = append(r.findings, policies.DenyMissingPartitionFilter)
	}
	return res.Type()
}

// nodeText is the SQL text a parse node covers.
func nodeText(n googlesql.ASTNode, sql string) (string, error) {
	loc, err := n.Location()
	if err != nil || loc == nil {
		return "", fmt.Errorf("node without location")
	}
	s, e1 := loc.Start()
	en, e2 := loc.End()
	if e1 != nil || e2 != nil || s == nil || en == nil {
		return "", fmt.Errorf("node without location")
	}
	so, _ := s.GetByteOffset()
	eo, _ := en.GetByteOffset()
	if so < 0 || int(eo) > len(sql) || so >= eo {
		return "", fmt.Errorf("unexpected node location")
	}
	return sql[so:eo], nil
}
