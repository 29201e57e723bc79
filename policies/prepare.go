package policies

import (
	"fmt"
	"sort"
	"strings"
)

// prepared is a bundle's evaluation index, built once by Compile or ParseBundle.
type prepared struct {
	pols []prepPolicy
	// byAgent indexes policies whose who.agents are all literal ids; scan holds the rest.
	byAgent map[string][]int
	scan    []int
}

type prepPolicy struct {
	ref  PolicyRef
	spec *PolicySpec

	agents                         patternSet
	projects                       patternSet
	dsAllow, dsDeny, tAllow, tDeny patternSet
	writes                         patternSet
	apis                           map[string]bool
	kinds                          map[string]bool
	approvals                      []prepApproval
	// ruleTables are the compiled tables of spec.What.DenyRules, by index.
	ruleTables []patternSet
}

type prepApproval struct {
	rule   ApprovalRule
	tables patternSet
	kinds  map[string]bool
}

func mustPatterns(list []string, k PatternKind) patternSet {
	out := make(patternSet, 0, len(list))
	for _, s := range list {
		p, err := ParsePattern(s, k)
		if err != nil {
			continue // Validate has refused it already
		}
		out = append(out, p)
	}
	return out
}

func setOf(list []string) map[string]bool {
	m := make(map[string]bool, len(list))
	for _, s := range list {
		m[s] = true
	}
	return m
}

func prepare(b *Bundle) *prepared {
	pr := &prepared{byAgent: map[string][]int{}}
	for i := range b.Policies {
		cp := &b.Policies[i]
		s := &cp.Spec
		p := prepPolicy{
			ref: cp.Ref(), spec: s,
			agents:   mustPatterns(s.Who.Agents, AgentPattern),
			projects: mustPatterns(s.Where.Projects, ProjectPattern),
			dsAllow:  mustPatterns(s.Where.Datasets.Allow, DatasetPattern),
			dsDeny:   mustPatterns(s.Where.Datasets.Deny, DatasetPattern),
			tAllow:   mustPatterns(s.Where.Tables.Allow, TablePattern),
			tDeny:    mustPatterns(s.Where.Tables.Deny, TablePattern),
			writes:   mustPatterns(s.Where.WriteTables, TablePattern),
			apis:     setOf(s.Where.APIs),
			kinds:    setOf(s.What.StatementKinds),
		}
		for _, r := range s.What.DenyRules {
			p.ruleTables = append(p.ruleTables, mustPatterns(r.Tables, TablePattern))
		}
		for _, a := range s.What.Approvals {
			p.approvals = append(p.approvals, prepApproval{rule: a, tables: mustPatterns(a.When.Tables, TablePattern), kinds: setOf(a.When.StatementKinds)})
		}
		pr.pols = append(pr.pols, p)
		literal := len(s.Who.Agents) > 0
		for _, a := range s.Who.Agents {
			if strings.Contains(a, "*") {
				literal = false
			}
		}
		if literal {
			for _, a := range s.Who.Agents {
				pr.byAgent[a] = append(pr.byAgent[a], i)
			}
		} else {
			pr.scan = append(pr.scan, i)
		}
	}
	return pr
}

// match returns the policies whose who matches, in name order.
func (pr *prepared) match(id Identity) []*prepPolicy {
	idx := pr.byAgent[id.AgentID]
	if len(pr.scan) > 0 {
		idx = append(append([]int(nil), idx...), pr.scan...)
		sort.Ints(idx)
	}
	var out []*prepPolicy
	for k, i := range idx {
		if k > 0 && idx[k-1] == i {
			continue
		}
		if p := &pr.pols[i]; p.who(id) {
			out = append(out, p)
		}
	}
	return out
}

func (p *prepPolicy) who(id Identity) bool {
	w := &p.spec.Who
	if len(w.Issuers) > 0 && !contains(w.Issuers, id.Issuer) {
		return false
	}
	if len(p.agents) > 0 {
		ok := false
		for i := range p.agents {
			if p.agents[i].Match(id.AgentID, false) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if len(w.Groups.Any) > 0 {
		ok := false
		for _, g := range w.Groups.Any {
			if contains(id.Groups, g) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	for _, g := range w.Groups.All {
		if !contains(id.Groups, g) {
			return false
		}
	}
	return true
}

// explicitDeny applies the policy's deny lists and deny rules to the call.
func (p *prepPolicy) explicitDeny(r *request) (code, ruleName, why string) {
	for _, t := range r.tables() {
		for i := range p.tDeny {
			if p.tDeny[i].match(t.low, true) {
				return RuleTableDenied, "where.tables.deny", fmt.Sprintf("table %s matches where.tables.deny %q", t.raw, p.tDeny[i].Raw)
			}
		}
		for i := range p.dsDeny {
			if p.dsDeny[i].match(t.low[:2], true) {
				return RuleDatasetDenied, "where.datasets.deny", fmt.Sprintf("table %s is in a dataset matching where.datasets.deny %q", t.raw, p.dsDeny[i].Raw)
			}
		}
	}
	if r.dataset != nil {
		for i := range p.dsDeny {
			if p.dsDeny[i].match(r.dataset.low, true) {
				return RuleDatasetDenied, "where.datasets.deny", fmt.Sprintf("dataset %s matches where.datasets.deny %q", r.dataset.raw, p.dsDeny[i].Raw)
			}
		}
	}
	if r.legacy {
		if code, field, why := p.legacyUnchecked(); code != "" {
			return code, field, why
		}
	}
	for i, d := range p.spec.What.DenyRules {
		if !d.DryRun && r.fires(d, p.ruleTables[i]) {
			return RuleDenyRule, d.Name, fmt.Sprintf("deny rule %s (%s) matched the query", d.Name, d.Kind)
		}
	}
	return "", "", ""
}

// legacyUnchecked: the rules of this policy an unanalysed legacy query would escape.
// Explicit denies, deny rules and masking bind every matching policy (overlays too), so a
// legacy grant elsewhere cannot lift them: the query is refused.
func (p *prepPolicy) legacyUnchecked() (code, field, why string) {
	const tail = "; send standard SQL (useLegacySql: false)"
	w := &p.spec.What
	switch {
	case len(p.tDeny) > 0:
		return RuleLegacySQLUnchecked, "where.tables.deny", "legacy SQL is not analysed, so where.tables.deny cannot be checked" + tail
	case len(p.dsDeny) > 0:
		return RuleLegacySQLUnchecked, "where.datasets.deny", "legacy SQL is not analysed, so where.datasets.deny cannot be checked" + tail
	case len(w.Masking) > 0:
		return RuleLegacySQLUnchecked, "what.masking", "legacy SQL is not analysed, so masking rules cannot follow its columns (no lineage)" + tail
	}
	for _, d := range w.DenyRules {
		if !d.DryRun {
			return RuleLegacySQLUnchecked, "what.denyRules", fmt.Sprintf("legacy SQL is not analysed, so deny rule %s (%s) cannot be checked", d.Name, d.Kind) + tail
		}
	}
	return "", "", ""
}

// refusal is why one policy does not grant a call; stage orders how far it got.
type refusal struct {
	stage int
	code  string
	field string
	why   string
}

// grant checks whether this one policy grants the whole call.
func (p *prepPolicy) grant(r *request) *refusal {
	if len(p.apis) == 0 {
		return &refusal{0, RuleAPINotAllowed, "where.apis", "the policy grants no access (where.apis is empty)"}
	}
	if !p.apis[r.api] {
		return &refusal{1, RuleAPINotAllowed, "where.apis", fmt.Sprintf("API %s is not in where.apis", r.api)}
	}
	if r.project != nil && !p.projects.match(r.project.segs, false) {
		return &refusal{2, RuleProjectNotAllowed, "where.projects", fmt.Sprintf("project %s is not in where.projects", r.project.raw)}
	}
	if r.session && !p.spec.What.Sessions {
		return &refusal{3, RuleSessionNotAllowed, "what.sessions", "the query creates or joins a BigQuery session, and what.sessions is not true"}
	}
	if r.allUsers && !p.spec.What.ListAllUsersJobs {
		return &refusal{3, RuleAllUsersNotAllowed, "what.listAllUsersJobs", "jobs.list with allUsers=true lists every user's jobs, and what.listAllUsersJobs is not true"}
	}
	if r.legacy && !p.spec.What.LegacySQL {
		return &refusal{3, RuleLegacySQL, "what.legacySql", "the query is legacy SQL, which is not analysed, and what.legacySql is not true"}
	}
	if r.jobScoped {
		return nil
	}
	if r.kind != "" && !p.kinds[r.kind] && !p.kinds[r.family] {
		return &refusal{3, RuleStatementKindNotAllowed, "what.statementKinds", fmt.Sprintf("statement kind %s is not in what.statementKinds", r.kind)}
	}
	if r.destination && !p.kinds[FamilyDML] && !p.kinds["INSERT"] {
		return &refusal{3, RuleStatementKindNotAllowed, "what.statementKinds", "writing query results to a destination table needs DML in what.statementKinds"}
	}
	if r.legacy && !p.spec.What.LegacySQLAnyTable && (len(p.tAllow) > 0 || len(p.dsAllow) > 0) {
		return &refusal{4, RuleLegacySQLUnchecked, "what.legacySqlAnyTable", "legacy SQL is not analysed, so where.tables.allow and where.datasets.allow cannot bound the tables it reads, and what.legacySqlAnyTable is not true to accept that"}
	}
	for _, t := range r.reads {
		if !p.readable(t) {
			return &refusal{4, RuleTableNotAllowed, "where.tables.allow", fmt.Sprintf("table %s is not in where.tables.allow or where.datasets.allow", t.raw)}
		}
	}
	if r.meta != nil && !p.readable(*r.meta) && !p.writes.match(r.meta.segs, false) {
		return &refusal{4, RuleTableNotAllowed, "where.tables.allow", fmt.Sprintf("table %s is not in where.tables.allow, where.datasets.allow or where.writeTables", r.meta.raw)}
	}
	if ds := r.dataset; ds != nil && !p.dsAllow.match(ds.segs, false) && !p.tAllow.matchDataset(ds.segs, false) && !p.writes.matchDataset(ds.segs, false) {
		return &refusal{4, RuleDatasetNotAllowed, "where.datasets.allow", fmt.Sprintf("dataset %s is not in where.datasets.allow and no granted table is in it", ds.raw)}
	}
	for _, t := range r.writes {
		if !p.writes.match(t.segs, false) {
			return &refusal{5, RuleWriteNotAllowed, "where.writeTables", fmt.Sprintf("table %s is written but not in where.writeTables", t.raw)}
		}
	}
	return nil
}

func (p *prepPolicy) readable(t name) bool {
	return p.tAllow.match(t.segs, false) || p.dsAllow.match(t.segs[:2], false)
}

func (a *prepApproval) applies(r *request) bool {
	w := &a.rule.When
	if len(w.StatementKinds) > 0 && (r.kind == "" || (!a.kinds[r.kind] && !a.kinds[r.family])) {
		return false
	}
	if len(w.Tables) > 0 && !r.legacy { // a legacy query's tables are unknown: it applies
		hit := false
		for _, t := range r.tables() {
			if a.tables.match(t.low, true) {
				hit = true
				break
			}
		}
		if !hit {
			return false
		}
	}
	if w.MinBytes > 0 && r.bytes != nil && *r.bytes < int64(w.MinBytes) {
		return false // an unknown estimate keeps the rule applicable: fail closed
	}
	return true
}

func mergeCredentials(granting []*prepPolicy) (*Credential, string) {
	var out *Credential
	var from string
	for _, p := range granting {
		c := p.spec.Credential
		if c == nil {
			continue
		}
		if out == nil {
			cc := *c
			out, from = &cc, p.ref.Name
			continue
		}
		if c.Mode != out.Mode || c.ServiceAccount != out.ServiceAccount {
			return nil, fmt.Sprintf("policies %s and %s both grant this call with different credentials (%s %s vs %s %s); make them agree or narrow one policy",
				from, p.ref.Name, out.Mode, orDefault(out.ServiceAccount), c.Mode, orDefault(c.ServiceAccount))
		}
		out.TTL = min(out.TTL, c.TTL)
	}
	if out == nil {
		out = &Credential{Mode: CredentialSelfSignedJWT, TTL: DefaultCredentialTTL}
	}
	return out, ""
}

func orDefault(sa string) string {
	if sa == "" {
		return "(default account)"
	}
	return sa
}

func minLimits(a, b Limits) Limits {
	pick := func(x, y int64) int64 {
		switch {
		case x == 0:
			return y
		case y == 0:
			return x
		}
		return min(x, y)
	}
	return Limits{
		MaxRequestBodyBytes:  ByteSize(pick(int64(a.MaxRequestBodyBytes), int64(b.MaxRequestBodyBytes))),
		MaxResponseBodyBytes: ByteSize(pick(int64(a.MaxResponseBodyBytes), int64(b.MaxResponseBodyBytes))),
		MaxRows:              pick(a.MaxRows, b.MaxRows),
	}
}
