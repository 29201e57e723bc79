package policies

import (
	"fmt"
	"strings"
)

// name is a split qualified name, as written and lower-cased.
type name struct {
	raw  string
	segs []string
	low  []string
}

func newName(s string) name {
	n := name{raw: s, segs: SplitQualified(s)}
	n.low = SplitQualified(strings.ToLower(s))
	return n
}

// decorated reports a table decorator: BigQuery reads "t$20250101" as a partition of t
// and "t@-3600000" as t at another time. Patterns name base tables, so a decorated name
// would be judged as a table no policy names; no BigQuery id contains '$' or '@'.
func (n name) decorated() bool {
	return strings.ContainsAny(n.raw, "$@")
}

// decoratorRefused says why a decorated table name is not decided.
func decoratorRefused(what string, n name) string {
	return fmt.Sprintf("%s %q carries a table decorator ($ partition or @ snapshot); decorators are refused, name the base table", what, n.raw)
}

func (n name) wellFormed(segments int) bool {
	if len(n.segs) != segments || len(n.low) != segments {
		return false
	}
	for _, s := range n.segs {
		if s == "" {
			return false
		}
	}
	return true
}

// request is an Input reduced to what policies test.
type request struct {
	api     string
	project *name
	// kind and family are set for calls that run SQL or read table data.
	kind, family string
	reads        []name
	writes       []name
	// destination: a query result is written to a table (needs DML).
	destination bool
	// meta is a table whose metadata is read (tables.get); dataset a dataset-level call.
	meta     *name
	dataset  *name
	findings []DenyRuleKind
	// findingTables: the tables a finding concerns (absent: every table).
	findingTables map[DenyRuleKind][]name
	bytes         *int64
	// jobScoped calls act on an existing job and only need API and project.
	jobScoped bool
	// approvable calls are subject to approval rules (they run SQL or read table data).
	approvable bool
	// session: the query creates or joins a BigQuery session; allUsers: jobs.list of
	// every user's jobs.
	session, allUsers bool
	// legacy: a legacy-SQL query, not analysed (reads and findings unknown).
	legacy bool
}

func (r *request) finding(k DenyRuleKind) bool { return contains(r.findings, k) }

// fires: the rule's finding is there and, for a rule scoped with tables, concerns one
// of them (or tables are unknown for it).
func (r *request) fires(rule DenyRule, scope patternSet) bool {
	if !r.finding(rule.Kind) {
		return false
	}
	if len(rule.Tables) == 0 {
		return true
	}
	tables, known := r.findingTables[rule.Kind]
	if !known {
		return true
	}
	for _, t := range tables {
		if scope.match(t.low, true) {
			return true
		}
	}
	return false
}

func (r *request) tables() []name {
	out := append(append([]name(nil), r.reads...), r.writes...)
	if r.meta != nil {
		out = append(out, *r.meta)
	}
	return out
}

// newRequest builds the request or says why the call cannot be decided. callOnly (the
// filter's EvaluateCall) leaves out what needs the SQL analysis or the job ledger: a
// query's statement kind, tables read and written, findings and byte estimate, and a job
// follow-up's owner.
func newRequest(in Input, callOnly bool) (*request, string, string) {
	c := in.Call
	r := &request{api: c.API, allUsers: c.API == "jobs.list" && c.AllUsers}
	if ids := newName(c.Project + "." + c.Dataset + "." + c.Table); ids.decorated() {
		// Every call kind, the anonymous result datasets' tables too.
		return nil, RuleInvalidInput, decoratorRefused("the call's table", ids)
	}
	if c.API != "projects.list" {
		if c.Project == "" {
			return nil, RuleInvalidInput, fmt.Sprintf("%s call names no project", c.API)
		}
		p := newName(c.Project)
		if !p.wellFormed(1) {
			return nil, RuleInvalidInput, fmt.Sprintf("project %q is not a project id", c.Project)
		}
		r.project = &p
	}
	table := func() (*name, string, string) {
		if c.Dataset == "" || c.Table == "" {
			return nil, RuleInvalidInput, fmt.Sprintf("%s call names no dataset or table", c.API)
		}
		t := newName(c.Project + "." + c.Dataset + "." + c.Table)
		if !t.wellFormed(3) {
			return nil, RuleInvalidInput, fmt.Sprintf("table %q is not project.dataset.table", t.raw)
		}
		return &t, "", ""
	}
	jobOwner := func() (string, string) {
		switch {
		case in.Job == nil || in.Job.OwnerAgentID == "":
			return RuleNotDecidable, fmt.Sprintf("%s: the job's owner is unknown (job ledger)", c.API)
		case in.Job.OwnerAgentID != in.Identity.AgentID || in.Job.OwnerIssuer != in.Identity.Issuer:
			return RuleJobNotOwned, fmt.Sprintf("job %s belongs to another agent", c.JobID)
		}
		return "", ""
	}

	switch c.API {
	case "jobs.query", "jobs.insert":
		q := in.Query
		switch {
		case q == nil:
			return nil, RuleNotDecidable, "the query body was not decoded"
		}
		r.session = q.Session
		if q.LegacySQL {
			// Not analysed (what.legacySql decides): BigQuery's legacy dialect runs queries
			// only (no DML, DDL or scripts), so it is a SELECT; the tables it reads are
			// unknown. Decided from the call alone, so the filter reaches the same decision.
			r.legacy, r.kind, r.family, r.approvable = true, FamilySelect, FamilySelect, true
		} else if !callOnly {
			if r, code, why := r.analysed(in.Analysis); code != "" {
				return r, code, why
			}
		}
		if q.Destination != "" {
			n := newName(q.Destination)
			if n.decorated() {
				return r, RuleNotDecidable, decoratorRefused("destination table", n)
			}
			if !n.wellFormed(3) {
				return r, RuleNotDecidable, fmt.Sprintf("destination table %q is not fully qualified", q.Destination)
			}
			r.writes = append(r.writes, n)
			r.destination = true
		}
	case "jobs.get", "jobs.getQueryResults", "jobs.cancel", "jobs.delete":
		if code, why := jobOwner(); code != "" && !callOnly {
			return nil, code, why
		}
		r.jobScoped = true
	case "tabledata.list":
		if strings.HasPrefix(c.Dataset, "_") {
			// An anonymous result dataset: reading a job's results, not a table.
			if code, why := jobOwner(); code != "" && !callOnly {
				return nil, code, why
			}
			r.jobScoped = true
			break
		}
		t, code, why := table()
		if code != "" {
			return nil, code, why
		}
		r.reads = []name{*t}
		r.kind, r.family, r.approvable = FamilySelect, FamilySelect, true
	case "tables.get":
		t, code, why := table()
		if code != "" {
			return nil, code, why
		}
		r.meta = t
	case "datasets.get", "tables.list":
		if c.Dataset == "" {
			return nil, RuleInvalidInput, fmt.Sprintf("%s call names no dataset", c.API)
		}
		ds := newName(c.Project + "." + c.Dataset)
		if !ds.wellFormed(2) {
			return nil, RuleInvalidInput, fmt.Sprintf("dataset %q is not project.dataset", ds.raw)
		}
		r.dataset = &ds
	}
	return r, "", ""
}

// analysed adds the SQL analysis of a query call to r, or says why it cannot be decided.
func (r *request) analysed(a *Analysis) (*request, string, string) {
	if a == nil {
		return nil, RuleNotDecidable, "SQL analysis is unavailable, so statement kind and tables cannot be decided"
	}
	r.findings, r.bytes, r.approvable = a.Findings, a.EstimatedBytes, true
	for k, ts := range a.FindingTables {
		if r.findingTables == nil {
			r.findingTables = map[DenyRuleKind][]name{}
		}
		ns := []name{}
		for _, t := range ts {
			n := newName(t)
			if !n.wellFormed(3) {
				ns = nil // not a table: treat the finding as concerning every table
				break
			}
			ns = append(ns, n)
		}
		if ns != nil {
			r.findingTables[k] = ns
		}
	}
	fam, ok := statementFamily[a.StatementKind]
	if !ok {
		return r, RuleUnknownStatementKind, fmt.Sprintf("statement kind %q is not one policies know", a.StatementKind)
	}
	r.kind, r.family = a.StatementKind, fam
	for _, t := range a.ReferencedTables {
		n := newName(t)
		if n.decorated() {
			return r, RuleNotDecidable, decoratorRefused("referenced table", n)
		}
		if !n.wellFormed(3) {
			return r, RuleNotDecidable, fmt.Sprintf("referenced table %q is not fully qualified", t)
		}
		r.reads = append(r.reads, n)
	}
	for _, t := range a.WrittenTables {
		n := newName(t)
		if n.decorated() {
			return r, RuleNotDecidable, decoratorRefused("written table", n)
		}
		if !n.wellFormed(3) {
			return r, RuleNotDecidable, fmt.Sprintf("written table %q is not fully qualified", t)
		}
		r.writes = append(r.writes, n)
	}
	return r, "", ""
}
