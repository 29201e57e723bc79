package policies

import (
	"fmt"
	"strings"
)

// PatternKind says what a pattern names, which fixes its number of dotted segments.
type PatternKind uint8

// Pattern kinds.
const (
	ProjectPattern PatternKind = iota + 1 // "acme-prod", "acme-*"
	DatasetPattern                        // "acme-prod.crm"
	TablePattern                          // "acme-prod.crm.*"
	ColumnPattern                         // "acme-prod.crm.customers.email" (nested: ".address.city")
	AgentPattern                          // an agent id, "*" anywhere, dots not special
)

func (k PatternKind) segments() int {
	switch k {
	case ProjectPattern:
		return 1
	case DatasetPattern:
		return 2
	case TablePattern:
		return 3
	case ColumnPattern:
		return 4
	}
	return 0
}

func (k PatternKind) example() string {
	switch k {
	case ProjectPattern:
		return `a project id such as "acme-prod" or "acme-*"`
	case DatasetPattern:
		return `"project.dataset", e.g. "acme-prod.crm" or "acme-prod.*"`
	case TablePattern:
		return `"project.dataset.table", e.g. "acme-prod.crm.*" or "acme-prod.*.users"`
	case ColumnPattern:
		return `"project.dataset.table.column", e.g. "acme-prod.crm.customers.email" or "acme-prod.*.*.ssn"`
	}
	return `an agent id, "*" matches any characters`
}

// Pattern is a parsed, validated name pattern. Segments are separated by dots; "*" inside
// a segment matches any run of characters within that segment, never across a dot.
type Pattern struct {
	Kind PatternKind
	Raw  string
	segs []string // as written
	low  []string // lower-cased, for case-insensitive matching
}

// ParsePattern validates s as a pattern of kind k.
func ParsePattern(s string, k PatternKind) (Pattern, error) {
	bad := func(msg string) (Pattern, error) {
		return Pattern{}, &ValueError{Msg: fmt.Sprintf("bad pattern %q: %s", s, msg), Hint: "write " + k.example()}
	}
	if s == "" {
		return bad("empty")
	}
	if len(s) > maxPatternLength {
		return bad("too long")
	}
	if strings.Contains(s, "**") {
		return bad(`"**" is not supported`)
	}
	if strings.ContainsAny(s, "`'\"\\ \t\r\n") {
		return bad("no quotes, backslashes or spaces")
	}
	if k == AgentPattern {
		return Pattern{Kind: k, Raw: s, segs: []string{s}, low: []string{strings.ToLower(s)}}, nil
	}
	segs := SplitQualified(s)
	want := k.segments()
	switch {
	case k == ColumnPattern && len(segs) < want:
		return bad(fmt.Sprintf("has %d segments, want at least %d", len(segs), want))
	case k != ColumnPattern && len(segs) != want:
		return bad(fmt.Sprintf("has %d segments, want %d", len(segs), want))
	}
	for i, seg := range segs {
		if seg == "" {
			return bad("empty segment")
		}
		if i == 0 {
			for _, r := range seg {
				if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '*' || r == ':' || r == '.') {
					return bad("project ids use lowercase letters, digits, hyphens (and domain: prefixes)")
				}
			}
			continue
		}
		if i == 1 {
			for _, r := range seg {
				if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '*') {
					return bad("dataset ids use letters, digits and underscores")
				}
			}
		}
	}
	p := Pattern{Kind: k, Raw: s, segs: segs, low: make([]string, len(segs))}
	for i, seg := range segs {
		p.low[i] = strings.ToLower(seg)
	}
	return p, nil
}

// SplitQualified splits a qualified name "project.dataset.table" on dots, keeping a
// domain-scoped project ("example.com:proj") whole.
func SplitQualified(s string) []string {
	if c := strings.IndexByte(s, ':'); c >= 0 {
		first := s
		rest := ""
		if d := strings.IndexByte(s[c:], '.'); d >= 0 {
			first, rest = s[:c+d], s[c+d+1:]
			return append([]string{first}, strings.Split(rest, ".")...)
		}
		return []string{first}
	}
	return strings.Split(s, ".")
}

// Match reports whether name (already split) matches. fold makes the match
// case-insensitive; then the name segments must already be lower-cased.
func (p *Pattern) match(name []string, fold bool) bool {
	segs := p.segs
	if fold {
		segs = p.low
	}
	if p.Kind == ColumnPattern {
		// A column pattern matches the column and its nested fields.
		if len(name) < len(segs) {
			return false
		}
	} else if len(name) != len(segs) {
		return false
	}
	for i, s := range segs {
		if !glob(s, name[i]) {
			return false
		}
	}
	return true
}

// Match reports whether the qualified name matches, case-sensitively unless fold.
func (p *Pattern) Match(name string, fold bool) bool {
	if p.Kind == AgentPattern {
		if fold {
			return glob(p.low[0], strings.ToLower(name))
		}
		return glob(p.segs[0], name)
	}
	if fold {
		name = strings.ToLower(name)
	}
	return p.match(SplitQualified(name), fold)
}

// glob matches s against a pattern where '*' matches any run of characters.
func glob(pat, s string) bool {
	if pat == "*" {
		return true
	}
	if !strings.Contains(pat, "*") {
		return pat == s
	}
	parts := strings.Split(pat, "*")
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	last := parts[len(parts)-1]
	for _, part := range parts[1 : len(parts)-1] {
		i := strings.Index(s, part)
		if i < 0 {
			return false
		}
		s = s[i+len(part):]
	}
	return len(s) >= len(last) && strings.HasSuffix(s, last)
}

// patternSet is a list of patterns of one kind.
type patternSet []Pattern

func (ps patternSet) match(name []string, fold bool) bool {
	for i := range ps {
		if ps[i].match(name, fold) {
			return true
		}
	}
	return false
}

// matchPrefix reports whether some table pattern's project.dataset part matches a
// dataset name (for dataset-level calls on a dataset where some tables are granted).
func (ps patternSet) matchDataset(ds []string, fold bool) bool {
	for i := range ps {
		p := &ps[i]
		segs := p.segs
		if fold {
			segs = p.low
		}
		if len(segs) >= 2 && len(ds) == 2 && glob(segs[0], ds[0]) && glob(segs[1], ds[1]) {
			return true
		}
	}
	return false
}
