package policies

import (
	"sort"
	"strings"
)

// MaskPlan is the merged masking of every policy matching the agent: one entry per column
// pattern, sorted. A response column may match several entries; MaskPlan.For picks the
// strongest.
type MaskPlan []MaskEntry

// MaskEntry masks the columns matching Columns (lower-cased: masks match
// case-insensitively, as BigQuery column names do).
type MaskEntry struct {
	Columns string     `json:"columns"`
	Action  MaskAction `json:"action"`
	// AllowAggregates: aggregates over the column that are returned unmasked.
	AllowAggregates []string `json:"allowAggregates,omitempty"`
	// Policies that asked for this entry.
	Policies []string `json:"policies"`

	pattern Pattern
}

// addMask merges a rule into the plan: the same pattern (case-insensitively) keeps the
// strongest action and only the aggregates every rule allows.
func (m MaskPlan) add(r MaskRule, policy string) MaskPlan {
	key := strings.ToLower(r.Columns)
	for i := range m {
		e := &m[i]
		if strings.ToLower(e.Columns) != key {
			continue
		}
		if MaskStrength(r.Action) > MaskStrength(e.Action) {
			e.Action = r.Action
		}
		e.AllowAggregates = intersect(e.AllowAggregates, r.AllowAggregates)
		if !contains(e.Policies, policy) {
			e.Policies = append(e.Policies, policy)
		}
		return m
	}
	p, _ := ParsePattern(key, ColumnPattern)
	return append(m, MaskEntry{Columns: key, Action: r.Action,
		AllowAggregates: append([]string(nil), r.AllowAggregates...), Policies: []string{policy}, pattern: p})
}

func (m MaskPlan) sorted() MaskPlan {
	sort.Slice(m, func(i, j int) bool { return m[i].Columns < m[j].Columns })
	return m
}

// For returns the strongest entry whose pattern matches the fully qualified column
// ("project.dataset.table.column", nested fields dotted), case-insensitively; when
// several match, their allowed aggregates are intersected.
func (m MaskPlan) For(column string) (MaskEntry, bool) {
	var best MaskEntry
	found := false
	for i := range m {
		e := &m[i]
		p := e.pattern
		if p.Raw == "" { // a plan decoded from JSON
			p, _ = ParsePattern(e.Columns, ColumnPattern)
		}
		if p.Raw == "" || !p.Match(column, true) {
			continue
		}
		if !found {
			best, found = *e, true
			continue
		}
		if MaskStrength(e.Action) > MaskStrength(best.Action) {
			best.Action, best.Columns = e.Action, e.Columns
		}
		best.AllowAggregates = intersect(best.AllowAggregates, e.AllowAggregates)
	}
	return best, found
}

func intersect(a, b []string) []string {
	var out []string
	for _, x := range a {
		if contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}
