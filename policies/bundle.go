package policies

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"time"
)

// BundleAPIVersion versions the compiled form the control plane pushes to the filter.
const BundleAPIVersion = "jitgate.dev/bundle/v1"

// Bundle is a compiled, validated policy set: deterministic JSON (policies sorted by
// name, set-like lists sorted and de-duplicated, defaults filled in), each policy with a
// content-hash version, and a bundle version over all of them. Build it with Compile or
// ParseBundle; a Bundle made any other way is refused by Evaluate.
type Bundle struct {
	APIVersion     string           `json:"apiVersion"`
	Version        string           `json:"version"`
	Policies       []CompiledPolicy `json:"policies"`
	ApproverGroups []CompiledGroup  `json:"approverGroups,omitempty"`

	prep *prepared
}

// CompiledPolicy is one AgentPolicy in a bundle.
type CompiledPolicy struct {
	Name        string     `json:"name"`
	Description string     `json:"description,omitempty"`
	Version     string     `json:"version"`
	Spec        PolicySpec `json:"spec"`
}

// CompiledGroup is one ApproverGroup in a bundle.
type CompiledGroup struct {
	Name        string            `json:"name"`
	Description string            `json:"description,omitempty"`
	Version     string            `json:"version"`
	Spec        ApproverGroupSpec `json:"spec"`
}

// PolicyRef names a policy at a version; every decision carries the ones that made it.
type PolicyRef struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// Compile validates a set and compiles it. On failure it returns every FieldError.
func Compile(s Set) (*Bundle, []FieldError) {
	if errs := Validate(s); len(errs) > 0 {
		return nil, errs
	}
	b := &Bundle{APIVersion: BundleAPIVersion}
	for _, p := range s.Policies {
		cp := CompiledPolicy{Name: p.Metadata.Name, Description: p.Metadata.Description, Spec: normalizeSpec(p.Spec)}
		cp.Version = cp.contentVersion()
		b.Policies = append(b.Policies, cp)
	}
	for _, g := range s.ApproverGroups {
		cg := CompiledGroup{Name: g.Metadata.Name, Description: g.Metadata.Description,
			Spec: ApproverGroupSpec{Issuers: sortedSet(g.Spec.Issuers), Members: sortedSet(g.Spec.Members), Groups: sortedSet(g.Spec.Groups)}}
		cg.Version = cg.contentVersion()
		b.ApproverGroups = append(b.ApproverGroups, cg)
	}
	sort.Slice(b.Policies, func(i, j int) bool { return b.Policies[i].Name < b.Policies[j].Name })
	sort.Slice(b.ApproverGroups, func(i, j int) bool { return b.ApproverGroups[i].Name < b.ApproverGroups[j].Name })
	b.Version = b.contentVersion()
	b.prep = prepare(b)
	return b, nil
}

// Encode returns the bundle's canonical JSON.
func (b *Bundle) Encode() ([]byte, error) { return json.Marshal(b) }

// ParseBundle decodes a bundle strictly, validates every policy again and checks every
// version against the content, so a filter never enforces a half-understood or altered
// bundle.
func ParseBundle(data []byte) (*Bundle, error) {
	var b Bundle
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return nil, fmt.Errorf("%w: bundle: %v", ErrInvalid, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: bundle: trailing data", ErrInvalid)
	}
	if b.APIVersion != BundleAPIVersion {
		return nil, fmt.Errorf("%w: bundle apiVersion %q, want %q", ErrInvalid, b.APIVersion, BundleAPIVersion)
	}
	var s Set
	for i, p := range b.Policies {
		if i > 0 && b.Policies[i-1].Name >= p.Name {
			return nil, fmt.Errorf("%w: bundle policies not sorted by unique name at %q", ErrInvalid, p.Name)
		}
		s.Policies = append(s.Policies, AgentPolicy{APIVersion: APIVersion, Kind: KindAgentPolicy,
			Metadata: Metadata{Name: p.Name, Description: p.Description}, Spec: p.Spec})
		if v := p.contentVersion(); v != p.Version {
			return nil, fmt.Errorf("%w: policy %q version %q does not match its content (%s)", ErrInvalid, p.Name, p.Version, v)
		}
	}
	for i, g := range b.ApproverGroups {
		if i > 0 && b.ApproverGroups[i-1].Name >= g.Name {
			return nil, fmt.Errorf("%w: bundle approver groups not sorted by unique name at %q", ErrInvalid, g.Name)
		}
		s.ApproverGroups = append(s.ApproverGroups, ApproverGroup{APIVersion: APIVersion, Kind: KindApproverGroup,
			Metadata: Metadata{Name: g.Name, Description: g.Description}, Spec: g.Spec})
		if v := g.contentVersion(); v != g.Version {
			return nil, fmt.Errorf("%w: approver group %q version %q does not match its content", ErrInvalid, g.Name, g.Version)
		}
	}
	if errs := Validate(s); len(errs) > 0 {
		return nil, fmt.Errorf("%w: bundle: %v", ErrInvalid, errs[0])
	}
	if v := b.contentVersion(); v != b.Version {
		return nil, fmt.Errorf("%w: bundle version %q does not match its content (%s)", ErrInvalid, b.Version, v)
	}
	b.prep = prepare(&b)
	return &b, nil
}

// Policy returns the compiled policy with that name.
func (b *Bundle) Policy(name string) (*CompiledPolicy, bool) {
	i := sort.Search(len(b.Policies), func(i int) bool { return b.Policies[i].Name >= name })
	if i < len(b.Policies) && b.Policies[i].Name == name {
		return &b.Policies[i], true
	}
	return nil, false
}

// Ref returns the policy's name and version.
func (p *CompiledPolicy) Ref() PolicyRef { return PolicyRef{Name: p.Name, Version: p.Version} }

func (p CompiledPolicy) contentVersion() string {
	p.Version = ""
	return hashJSON(p)
}

func (g CompiledGroup) contentVersion() string {
	g.Version = ""
	return hashJSON(g)
}

func (b *Bundle) contentVersion() string {
	h := sha256.New()
	h.Write([]byte(b.APIVersion))
	for _, p := range b.Policies {
		fmt.Fprintf(h, "\x00p\x00%s\x00%s", p.Name, p.Version)
	}
	for _, g := range b.ApproverGroups {
		fmt.Fprintf(h, "\x00g\x00%s\x00%s", g.Name, g.Version)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))[:16]
}

func hashJSON(v any) string {
	data, err := json.Marshal(v)
	if err != nil {
		// Only plain structs are hashed; a failure is a programming error.
		panic(fmt.Sprintf("policies: hash: %v", err))
	}
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])[:16]
}

// normalizeSpec sorts and de-duplicates set-like lists and fills in defaults, so two
// spellings of one policy compile to the same bytes and version. Rule lists keep their
// written order (their names are what decisions report).
func normalizeSpec(s PolicySpec) PolicySpec {
	s.Who.Issuers = sortedSet(s.Who.Issuers)
	s.Who.Agents = sortedSet(s.Who.Agents)
	s.Who.Groups.Any = sortedSet(s.Who.Groups.Any)
	s.Who.Groups.All = sortedSet(s.Who.Groups.All)
	w := &s.Where
	w.Projects = sortedSet(w.Projects)
	w.Datasets.Allow, w.Datasets.Deny = sortedSet(w.Datasets.Allow), sortedSet(w.Datasets.Deny)
	w.Tables.Allow, w.Tables.Deny = sortedSet(w.Tables.Allow), sortedSet(w.Tables.Deny)
	w.WriteTables = sortedSet(w.WriteTables)
	w.APIs = sortedSet(w.APIs)
	t := &s.What
	t.StatementKinds = sortedSet(t.StatementKinds)
	t.DenyRules = append([]DenyRule(nil), t.DenyRules...)
	for i := range t.DenyRules {
		t.DenyRules[i].Tables = sortedSet(t.DenyRules[i].Tables)
	}
	t.Detectors = sortedSet(t.Detectors)
	masks := make([]MaskRule, len(t.Masking))
	for i, m := range t.Masking {
		m.AllowAggregates = sortedSet(m.AllowAggregates)
		masks[i] = m
	}
	t.Masking = nilIfEmpty(masks)
	apps := make([]ApprovalRule, len(t.Approvals))
	for i, a := range t.Approvals {
		a.When.StatementKinds = sortedSet(a.When.StatementKinds)
		a.When.Tables = sortedSet(a.When.Tables)
		a.ApproverGroups = sortedSet(a.ApproverGroups)
		if a.TTL == 0 {
			a.TTL = DefaultApprovalTTL
		}
		if a.Mode == "" {
			a.Mode = ApprovalHold
		}
		if a.Uses == 0 {
			a.Uses = DefaultApprovalUses
		}
		apps[i] = a
	}
	t.Approvals = nilIfEmpty(apps)
	t.DenyRules = nilIfEmpty(t.DenyRules)
	if s.Credential != nil {
		c := *s.Credential
		if c.TTL == 0 {
			c.TTL = DefaultCredentialTTL
		}
		s.Credential = &c
	}
	return s
}

func sortedSet[T ~string](xs []T) []T {
	if len(xs) == 0 {
		return nil
	}
	out := append([]T(nil), xs...)
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	n := 1
	for i := 1; i < len(out); i++ {
		if out[i] != out[n-1] {
			out[n] = out[i]
			n++
		}
	}
	return out[:n]
}

func nilIfEmpty[T any](xs []T) []T {
	if len(xs) == 0 {
		return nil
	}
	return xs
}

// LongestHoldTimeout is the longest time any hold-mode approval rule of b can keep a call
// waiting (0 when no rule holds). The filter's authorize callout must outlast it.
func (b *Bundle) LongestHoldTimeout() time.Duration {
	var longest time.Duration
	if b == nil {
		return 0
	}
	for _, p := range b.Policies {
		for _, a := range p.Spec.What.Approvals {
			if a.Mode != ApprovalHold {
				continue
			}
			if t := (ApprovalRequirement{HoldTimeout: a.HoldTimeout}).EffectiveHoldTimeout(); t > longest {
				longest = t
			}
		}
	}
	return longest
}
