// Package maskplan turns a policy decision's masking rules (policies.MaskPlan: column
// patterns, actions, allowed aggregates; detectors) into the instruction the filter applies
// to a call's response rows (filter/authorize.Masking: output column position paths and
// actions). It owns how column lineage (controlplane/sqlanalysis) decides which output
// columns reveal a masked source column, when a query cannot be masked and must be refused
// instead, what tabledata.list on a base table is masked like (SELECT * of the table), and
// the plan kept with a job in the job ledger for its later pages. The builder is pure (no
// I/O); Step wires it into /v1/authorize.
package maskplan

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"

	"github.com/jitgate/jitgate/controlplane/sqlanalysis"
	"github.com/jitgate/jitgate/filter/authorize"
	"github.com/jitgate/jitgate/filter/masking"
	"github.com/jitgate/jitgate/policies"
)

// Refusal reasons (the deny reason the agent sees, with a 403 unless noted).
const (
	// ReasonUnresolvable: masks apply to a table the call reads, but the gateway cannot
	// tell which result columns carry its values (scripts, DML/DDL, lineage gaps, masks
	// on view columns), or the results would be written to a table unmasked.
	ReasonUnresolvable = "masking_unresolvable"
	// ReasonMaskedCondition: a masked column decides which rows or which values come
	// back (WHERE, JOIN ON, GROUP BY, ORDER BY, CASE/IF conditions ...), which reveals its
	// values by inference (see Query).
	ReasonMaskedCondition = "masked_column_in_condition"
	// ReasonKeyUnavailable: a rule hashes but the control plane has no hash key
	// (masking.hashKeyFile).
	ReasonKeyUnavailable = "masking_key_unavailable"
	// ReasonMaskingChanged: a follow-up call on a job whose masking rules changed since
	// the job ran.
	ReasonMaskingChanged = "masking_changed"
	// ReasonSchemaUnavailable: the schema a response needs to be masked could not be
	// read (503: the client retries).
	ReasonSchemaUnavailable = "masking_schema_unavailable"
)

// Refusal is a call the gateway will not answer because it cannot be masked safely.
type Refusal struct {
	Status  int
	Reason  string
	Message string
}

func (r *Refusal) Error() string { return r.Reason + ": " + r.Message }

func refuse(reason, format string, args ...any) *Refusal {
	return &Refusal{Status: http.StatusForbidden, Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// Builder builds masking instructions. Its hash key is a secret: it only ever leaves in
// Masking.HashKey of a plan that hashes.
type Builder struct {
	key []byte
}

// NewBuilder returns a builder with the deployment's HMAC key for the hash action (nil:
// hash rules are refused with ReasonKeyUnavailable).
func NewBuilder(hashKey []byte) *Builder {
	return &Builder{key: slices.Clone(hashKey)}
}

// Basis fingerprints the masking rules of a decision (mask entries and detectors, not the
// policies that asked for them): the job ledger keeps it with a job's plan, and a later
// page of the job is served only while the agent's rules are still the same. Empty when
// the decision masks nothing and runs no detector.
func Basis(plan policies.MaskPlan, detectors []policies.Detector) string {
	if len(plan) == 0 && len(detectors) == 0 {
		return ""
	}
	type entry struct {
		Columns string              `json:"c"`
		Action  policies.MaskAction `json:"a"`
		Allow   []string            `json:"g,omitempty"`
	}
	doc := struct {
		Entries   []entry             `json:"e"`
		Detectors []policies.Detector `json:"d"`
	}{Detectors: slices.Sorted(slices.Values(detectors))}
	for _, e := range plan {
		doc.Entries = append(doc.Entries, entry{strings.ToLower(e.Columns), e.Action, slices.Sorted(slices.Values(e.AllowAggregates))})
	}
	sort.Slice(doc.Entries, func(i, j int) bool { return doc.Entries[i].Columns < doc.Entries[j].Columns })
	b, _ := json.Marshal(doc)
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:8])
}

// matcher answers which mask entries cover a base column.
type matcher struct {
	plan    policies.MaskPlan
	columns []policies.Pattern // per entry: its first four segments (the top-level column)
	tables  []policies.Pattern // per entry: its first three segments (the table)
	memo    map[sqlanalysis.SourceColumn]columnMask
}

type columnMask struct {
	action policies.MaskAction
	allow  []string
	ok     bool
}

func newMatcher(plan policies.MaskPlan) (*matcher, error) {
	m := &matcher{plan: plan, memo: map[sqlanalysis.SourceColumn]columnMask{}}
	for _, e := range plan {
		segs := policies.SplitQualified(e.Columns)
		if len(segs) < 4 {
			return nil, fmt.Errorf("mask pattern %q has fewer than 4 segments", e.Columns)
		}
		col, err := policies.ParsePattern(strings.Join(segs[:4], "."), policies.ColumnPattern)
		if err != nil {
			return nil, err
		}
		tab, err := policies.ParsePattern(strings.Join(segs[:3], "."), policies.TablePattern)
		if err != nil {
			return nil, err
		}
		m.columns, m.tables = append(m.columns, col), append(m.tables, tab)
	}
	return m, nil
}

// column is the masking of base column s ("project.dataset.table.column", top level): the
// strongest action of every entry naming it or a field nested in it (lineage reports a
// STRUCT field's reads as its top-level column, so a mask on addr.city covers all of addr
// here: over-masking, never under-masking), and the aggregates every such entry allows.
func (m *matcher) column(s sqlanalysis.SourceColumn) (policies.MaskAction, []string, bool) {
	if c, ok := m.memo[s]; ok {
		return c.action, c.allow, c.ok
	}
	act, allow, found := m.match(s)
	m.memo[s] = columnMask{act, allow, found}
	return act, allow, found
}

func (m *matcher) match(s sqlanalysis.SourceColumn) (policies.MaskAction, []string, bool) {
	name := s.String()
	var act policies.MaskAction
	var allow []string
	found := false
	for i, e := range m.plan {
		if !m.columns[i].Match(name, true) {
			continue
		}
		if !found {
			act, allow, found = e.Action, slices.Clone(e.AllowAggregates), true
			continue
		}
		if policies.MaskStrength(e.Action) > policies.MaskStrength(act) {
			act = e.Action
		}
		allow = slices.DeleteFunc(allow, func(a string) bool { return !slices.Contains(e.AllowAggregates, a) })
	}
	return act, allow, found
}

// table reports whether some entry may mask a column of table t ("project.dataset.table").
func (m *matcher) table(t string) (string, bool) {
	for i, e := range m.plan {
		if m.tables[i].Match(t, true) {
			return e.Columns, true
		}
	}
	return "", false
}

// viewColumn reports whether some entry names a column of view v. Without the view's
// columns, any entry naming the view's table counts (fail closed).
func (m *matcher) viewColumn(v string, cols map[string][]string) (string, bool) {
	names, known := cols[v]
	if !known {
		return m.table(v)
	}
	for _, c := range names {
		if _, _, ok := m.column(sqlanalysis.SourceColumn{Table: v, Column: c}); ok {
			for i, e := range m.plan {
				if m.columns[i].Match(v+"."+c, true) {
					return e.Columns, true
				}
			}
		}
	}
	return "", false
}

// aggregateAllowed maps the analyser's aggregate name ("COUNT DISTINCT") to the policy
// language's ("COUNT_DISTINCT") and checks it against the entry's allowed aggregates.
// Anything not listed (MAX, ARRAY_AGG, COUNTIF, SUM DISTINCT ...) is not allowed.
func aggregateAllowed(name string, allow []string) bool {
	return slices.Contains(allow, strings.ReplaceAll(strings.TrimSpace(name), " ", "_"))
}

// outputAction is the action an output column (or nested field) needs: the strongest of
// its masked sources, except a source every path of which goes through aggregates its
// entries allow. An Unknown column is masked by every masked source it may come from.
func (m *matcher) outputAction(oc *sqlanalysis.OutputColumn) (policies.MaskAction, bool) {
	var act policies.MaskAction
	found := false
	consider := func(s sqlanalysis.SourceColumn, onlyAgg bool, aggs []string) {
		a, allow, ok := m.column(s)
		if !ok {
			return
		}
		if onlyAgg && !oc.Unknown && len(aggs) > 0 {
			all := true
			for _, g := range aggs {
				all = all && aggregateAllowed(g, allow)
			}
			if all {
				return
			}
		}
		if !found || policies.MaskStrength(a) > policies.MaskStrength(act) {
			act, found = a, true
		}
	}
	flows := map[sqlanalysis.SourceColumn]bool{}
	for _, f := range oc.Flows {
		flows[f.Source] = true
		consider(f.Source, f.OnlyAggregated, f.Aggregates)
	}
	// A source without a flow (an analysis from before flows existed) is treated as
	// revealed directly.
	for _, s := range oc.Sources {
		if !flows[s] {
			consider(s, false, nil)
		}
	}
	return act, found
}

// Query builds the masking of a query call (jobs.query, jobs.insert) from its analysis.
// It returns nil when nothing is masked and no detector runs, and a *Refusal when masks
// apply but cannot be honoured:
//
//   - the analysis has no complete lineage (scripts, DML, DDL, lineage gaps) while some
//     mask entry names a column of a table the call reads;
//   - a mask entry names a column of a view the query reads (lineage resolves views to
//     their base tables, so such an entry could never match);
//   - writesTable (a destination table) while masks apply: the rows would be stored
//     unmasked in a table the agent can read with tabledata.list;
//   - a masked column is a control read: WHERE, JOIN ON, GROUP BY, HAVING, QUALIFY,
//     ORDER BY, PARTITION BY, CASE/IF conditions, IN/EXISTS. Those return no value of the
//     column, but they let a query choose its output by it, which reveals it: one query
//     with CASE WHEN SUBSTR(ssn,1,1)='0' THEN 0 WHEN ... per character returns a whole
//     SSN as literals, and UNION ALL of filtered SELECTs does the same with rows. Masking
//     cannot hide that, so the query is refused.
//   - a rule hashes and the builder has no key.
func (b *Builder) Query(a *sqlanalysis.Analysis, plan policies.MaskPlan, detectors []policies.Detector, writesTable bool) (*authorize.Masking, error) {
	m, err := newMatcher(plan)
	if err != nil {
		return nil, err
	}
	out := &authorize.Masking{Detectors: detectorNames(detectors)}
	readsMasked := false
	if len(plan) > 0 {
		if a == nil {
			return nil, refuse(ReasonUnresolvable, "Masking rules apply to this agent, but the query could not be analysed, so the gateway cannot tell which result columns to mask.")
		}
		for _, t := range a.ReferencedTables {
			if parts := strings.SplitN(t, ".", 3); len(parts) == 3 && strings.HasPrefix(parts[1], "_") {
				// An anonymous dataset holds another query's results (or a session's
				// temporary tables), unmasked; no rule names it, so reading it with SQL
				// would return them as they are.
				return nil, refuse(ReasonUnresolvable, "Table %s is in an anonymous dataset (another query's results or a session's tables), which masking rules cannot follow; read a job's results with getQueryResults instead.", t)
			}
		}
		applies := ""
		var hit string
		for _, t := range a.ReferencedTables {
			if e, ok := m.table(t); ok {
				applies, hit = t, e
				break
			}
		}
		for _, v := range a.Views {
			if e, ok := m.viewColumn(v, a.ViewColumns); ok {
				return nil, refuse(ReasonUnresolvable, "Masking rule %q names a column of view %s; masking follows lineage to the view's base tables, so mask the base table columns instead (the query is refused rather than returned unmasked).", e, v)
			}
		}
		if applies != "" {
			switch {
			case writesTable:
				return nil, refuse(ReasonUnresolvable, "Masking rule %q applies to table %s, and this query writes its results to a table, where they would be stored unmasked; run it without a destination table.", hit, applies)
			case !a.LineageComplete || a.StatementKind != "SELECT":
				return nil, refuse(ReasonUnresolvable, "Masking rule %q applies to table %s, but the gateway cannot trace which result columns carry its values for this %s (%s); such queries are refused rather than returned unmasked.",
					hit, applies, kindName(a.StatementKind), gapSummary(a))
			}
			for _, s := range a.ControlReads {
				if _, _, ok := m.column(s); ok {
					return nil, refuse(ReasonMaskedCondition, "Column %s is masked for this agent, and the query uses it to choose rows or values (WHERE, JOIN, GROUP BY, ORDER BY or a CASE/IF condition), which would reveal it; use it only in SELECT, or in aggregates the policy allows.", s)
				}
			}
			readsMasked = true
			out.Rules = m.lineageRules(a.Lineage)
			if a.ValueTable && len(out.Rules) > 0 {
				// BigQuery returns a STRUCT value table as its fields, the emulator as one
				// RECORD column: positions would be wrong on one of them.
				return nil, refuse(ReasonUnresolvable, "Masking rule %q applies to table %s, and this query returns a value table (SELECT AS STRUCT or AS VALUE), whose result columns cannot be pinned down for masking; select the columns instead.", hit, applies)
			}
		}
	}
	res, err := b.finish(out)
	if err == nil && res == nil && readsMasked {
		// Every masked value is folded into aggregates the policy allows: no cell to
		// mask, but BigQuery's error messages can still quote a value
		// (SUM(CAST(ssn AS INT64)) fails naming the ssn). An empty instruction makes the
		// filter hold the response and withhold the messages.
		res = &authorize.Masking{}
	}
	return res, err
}

// lineageRules walks the lineage tree: a column (or nested field) that needs masking is
// masked whole, unless the walker knows its STRUCT fields exactly; then each field is
// judged on its own (they cover the whole value).
func (m *matcher) lineageRules(lineage []sqlanalysis.OutputColumn) []masking.Rule {
	var rules []masking.Rule
	var walk func(i int) int // returns the index after the subtree of lineage[i]
	walk = func(i int) int {
		oc := &lineage[i]
		depth := len(oc.Path)
		j := i + 1
		var children []int
		for j < len(lineage) && lineage[j].Position == oc.Position && len(lineage[j].Path) > depth {
			if len(lineage[j].Path) == depth+1 {
				children = append(children, j)
			}
			j++
		}
		act, masked := m.outputAction(oc)
		if !masked {
			return j
		}
		if len(children) == 0 {
			path := append([]int{oc.Position}, oc.FieldPositions...)
			rules = append(rules, masking.Rule{Path: path, Action: masking.Action(act)})
			return j
		}
		for k := i + 1; k < j; {
			k = walk(k)
		}
		return j
	}
	for i := 0; i < len(lineage); {
		i = walk(i)
	}
	return rules
}

// Table builds the masking of tabledata.list on base table t ("project.dataset.table"),
// which reads rows without SQL: it is masked as SELECT * of the table. Nested mask
// entries are mapped onto the schema's fields exactly. The instruction always carries the
// schema (tabledata.list responses have none).
func (b *Builder) Table(t string, schema *masking.Schema, plan policies.MaskPlan, detectors []policies.Detector) (*authorize.Masking, error) {
	if len(plan) == 0 && len(detectors) == 0 {
		return nil, nil
	}
	out := &authorize.Masking{Detectors: detectorNames(detectors), Schema: schema}
	var walk func(prefix string, path []int, fields []masking.Field, inherited int)
	walk = func(prefix string, path []int, fields []masking.Field, inherited int) {
		for i, f := range fields {
			name := prefix + "." + f.Name
			p := append(slices.Clone(path), i)
			strength := inherited
			if e, ok := plan.For(name); ok && policies.MaskStrength(e.Action) > inherited {
				out.Rules = append(out.Rules, masking.Rule{Path: p, Action: masking.Action(e.Action)})
				strength = policies.MaskStrength(e.Action)
			}
			walk(name, p, f.Fields, strength)
		}
	}
	walk(t, nil, schema.Fields, 0)
	return b.finish(out)
}

// Stored is the plan the job ledger keeps with a job, for its later pages: the rules and
// detectors (never the key) and the Basis they were built from.
type Stored struct {
	Rules     []masking.Rule `json:"rules,omitempty"`
	Detectors []string       `json:"detectors,omitempty"`
	Basis     string         `json:"basis"`
	// Withhold: the job was answered with a masking instruction (perhaps without rules:
	// its masked values all folded into allowed aggregates), so its later pages and job
	// resource withhold BigQuery's error messages too.
	Withhold bool `json:"withhold,omitempty"`
}

// FollowUp builds the masking of a later page of a job (getQueryResults, tabledata.list
// of its result table) from the plan stored with it. The agent's current rules must be
// those the plan was built from (basis): otherwise the call is refused, so a policy change
// never leaves a job's pages masked by stale rules. schema is the result table's schema
// (nil when unknown).
func (b *Builder) FollowUp(st *Stored, basis string, schema *masking.Schema) (*authorize.Masking, error) {
	stored := ""
	if st != nil {
		stored = st.Basis
	}
	if stored != basis {
		return nil, refuse(ReasonMaskingChanged, "The masking rules for this agent changed after this job ran, so its results cannot be served with the rules they were prepared for; run the query again.")
	}
	if st == nil || len(st.Rules) == 0 && len(st.Detectors) == 0 {
		if st != nil && st.Withhold {
			// No cell to mask; the instruction withholds error messages.
			return &authorize.Masking{Schema: schema}, nil
		}
		return nil, nil
	}
	return b.finish(&authorize.Masking{Rules: slices.Clone(st.Rules), Detectors: slices.Clone(st.Detectors), Schema: schema})
}

// Job builds the masking of a job resource (jobs.get, jobs.cancel) of a job whose results
// are masked with st. The resource has no rows; the instruction makes the filter
// withhold BigQuery's error messages. Unlike FollowUp, a changed basis is no refusal:
// polling a job must keep working, and its messages are withheld either way.
func (b *Builder) Job(st *Stored) (*authorize.Masking, error) {
	if st == nil {
		return nil, nil
	}
	if len(st.Rules) == 0 && len(st.Detectors) == 0 && st.Withhold {
		return &authorize.Masking{}, nil
	}
	return b.finish(&authorize.Masking{Rules: slices.Clone(st.Rules), Detectors: slices.Clone(st.Detectors)})
}

// finish drops an empty instruction and attaches the key when a rule hashes.
func (b *Builder) finish(m *authorize.Masking) (*authorize.Masking, error) {
	if len(m.Rules) == 0 && len(m.Detectors) == 0 {
		return nil, nil
	}
	for _, r := range m.Rules {
		if r.Action != masking.Hash {
			continue
		}
		if len(b.key) == 0 {
			return nil, refuse(ReasonKeyUnavailable, "A masking rule for this agent hashes a column, but the gateway has no hash key configured (masking.hashKeyFile); ask the operator to configure one.")
		}
		m.HashKey = base64.StdEncoding.EncodeToString(b.key)
		break
	}
	return m, nil
}

func detectorNames(ds []policies.Detector) []string {
	if len(ds) == 0 {
		return nil
	}
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = string(d)
	}
	sort.Strings(out)
	return out
}

func kindName(k string) string {
	if k == "" {
		return "statement"
	}
	return k + " statement"
}

func gapSummary(a *sqlanalysis.Analysis) string {
	switch {
	case len(a.Statements) > 1 || a.StatementKind == "SCRIPT":
		return "a multi-statement script"
	case a.StatementKind != "SELECT":
		return "only single SELECT statements have column lineage"
	case len(a.LineageGaps) > 0:
		g := a.LineageGaps
		if len(g) > 3 {
			g = append(slices.Clone(g[:3]), "...")
		}
		return "not traced: " + strings.Join(g, ", ")
	}
	return "its lineage is incomplete"
}
