package policies

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// DocRef points at one document of a Set.
type DocRef struct {
	Kind  string `json:"kind"`  // KindAgentPolicy or KindApproverGroup
	Index int    `json:"index"` // into Set.Policies or Set.ApproverGroups
}

// FieldError is one validation failure, located by document and field path
// ("spec.where.tables.allow[2]", using the YAML field names). policies/source turns the
// path into file:line:column.
type FieldError struct {
	Doc  DocRef
	Path string
	Msg  string
	// Hint is a one-line fix.
	Hint string
	// Related, when set, is another place the message refers to (a first definition).
	Related *FieldRef
}

// FieldRef is a field of a document.
type FieldRef struct {
	Doc  DocRef
	Path string
}

func (e FieldError) Error() string {
	s := fmt.Sprintf("%s #%d %s: %s", e.Doc.Kind, e.Doc.Index, e.Path, e.Msg)
	if e.Hint != "" {
		s += " (" + e.Hint + ")"
	}
	return s
}

// ErrInvalid wraps every validation and bundle failure.
var ErrInvalid = errors.New("invalid policy")

// validName reports whether s matches ^[a-z0-9]([a-z0-9-]*[a-z0-9])?$ (written out: the
// regexp package alone would add ~0.5 MB to the filter's wasm module, which compiles
// this package in).
func validName(s string) bool {
	if s == "" || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

type validator struct {
	errs []FieldError
	doc  DocRef
}

func (v *validator) add(path, msg, hint string) {
	v.errs = append(v.errs, FieldError{Doc: v.doc, Path: path, Msg: msg, Hint: hint})
}

func (v *validator) unknown(path, what, got string, known []string) {
	hint := "one of: " + strings.Join(known, ", ")
	if s := Suggest(got, known); s != "" {
		hint = fmt.Sprintf("did you mean %q?", s)
	}
	v.add(path, fmt.Sprintf("unknown %s %q", what, got), hint)
}

func (v *validator) valueErr(path string, err error) {
	var ve *ValueError
	if errors.As(err, &ve) {
		v.add(path, ve.Msg, ve.Hint)
		return
	}
	v.add(path, err.Error(), "")
}

// Validate checks every document of a set and the references between them. It returns
// nil when the set compiles.
func Validate(s Set) []FieldError {
	v := &validator{}
	groupNames := map[string]int{}
	for i := range s.ApproverGroups {
		g := &s.ApproverGroups[i]
		v.doc = DocRef{KindApproverGroup, i}
		v.header(g.APIVersion, g.Kind, KindApproverGroup, g.Metadata)
		if first, dup := groupNames[g.Metadata.Name]; dup && g.Metadata.Name != "" {
			v.errs = append(v.errs, FieldError{Doc: v.doc, Path: "metadata.name",
				Msg:  fmt.Sprintf("duplicate approver group name %q", g.Metadata.Name),
				Hint: "names must be unique across the directory; rename one", Related: &FieldRef{DocRef{KindApproverGroup, first}, "metadata.name"}})
		} else if !dup {
			groupNames[g.Metadata.Name] = i
		}
		if len(g.Spec.Members) == 0 && len(g.Spec.Groups) == 0 {
			v.add("spec", "approver group has no members", "list spec.members (approver identities) or spec.groups (OIDC groups)")
		}
		v.nonEmptyStrings("spec.members", g.Spec.Members)
		v.nonEmptyStrings("spec.groups", g.Spec.Groups)
		v.issuers("spec.issuers", g.Spec.Issuers)
	}
	groupList := make([]string, 0, len(groupNames))
	for n := range groupNames {
		groupList = append(groupList, n)
	}
	sort.Strings(groupList)

	policyNames := map[string]int{}
	for i := range s.Policies {
		p := &s.Policies[i]
		v.doc = DocRef{KindAgentPolicy, i}
		v.header(p.APIVersion, p.Kind, KindAgentPolicy, p.Metadata)
		if first, dup := policyNames[p.Metadata.Name]; dup && p.Metadata.Name != "" {
			v.errs = append(v.errs, FieldError{Doc: v.doc, Path: "metadata.name",
				Msg:  fmt.Sprintf("duplicate policy name %q", p.Metadata.Name),
				Hint: "names must be unique across the directory; rename one", Related: &FieldRef{DocRef{KindAgentPolicy, first}, "metadata.name"}})
		} else if !dup {
			policyNames[p.Metadata.Name] = i
		}
		v.spec(&p.Spec, groupNames, groupList)
	}
	return v.errs
}

func (v *validator) header(apiVersion, kind, wantKind string, m Metadata) {
	if apiVersion != APIVersion {
		v.add("apiVersion", fmt.Sprintf("unsupported apiVersion %q", apiVersion), "use apiVersion: "+APIVersion)
	}
	if kind != wantKind {
		v.add("kind", fmt.Sprintf("kind %q, want %q", kind, wantKind), "")
	}
	switch {
	case m.Name == "":
		v.add("metadata.name", "metadata.name is required", "add a name such as \"analytics-readonly\"")
	case len(m.Name) > maxPolicyNameLength || !validName(m.Name):
		v.add("metadata.name", fmt.Sprintf("bad name %q", m.Name), "use lowercase letters, digits and hyphens, at most 63 characters")
	}
}

func (v *validator) spec(s *PolicySpec, groups map[string]int, groupList []string) {
	w := &s.Who
	if len(w.Issuers) == 0 && len(w.Agents) == 0 && len(w.Groups.Any) == 0 && len(w.Groups.All) == 0 {
		v.add("spec.who", "who selects no agents", `list issuers, agents or groups; to match every agent write agents: ["*"]`)
	}
	v.issuers("spec.who.issuers", w.Issuers)
	v.patterns("spec.who.agents", w.Agents, AgentPattern)
	v.nonEmptyStrings("spec.who.groups.any", w.Groups.Any)
	v.nonEmptyStrings("spec.who.groups.all", w.Groups.All)

	wh := &s.Where
	v.patterns("spec.where.projects", wh.Projects, ProjectPattern)
	v.patterns("spec.where.datasets.allow", wh.Datasets.Allow, DatasetPattern)
	v.patterns("spec.where.datasets.deny", wh.Datasets.Deny, DatasetPattern)
	v.patterns("spec.where.tables.allow", wh.Tables.Allow, TablePattern)
	v.patterns("spec.where.tables.deny", wh.Tables.Deny, TablePattern)
	v.patterns("spec.where.writeTables", wh.WriteTables, TablePattern)
	for i, a := range wh.APIs {
		if !contains(APINames, a) {
			v.unknown(fmt.Sprintf("spec.where.apis[%d]", i), "API", a, APINames)
		}
	}

	wt := &s.What
	v.statementKinds("spec.what.statementKinds", wt.StatementKinds)
	seen := map[string]bool{}
	for i, r := range wt.DenyRules {
		p := fmt.Sprintf("spec.what.denyRules[%d]", i)
		v.ruleName(p, r.Name, seen)
		if !contains(DenyRuleKinds, r.Kind) {
			v.unknown(p+".kind", "deny rule kind", string(r.Kind), strs(DenyRuleKinds))
		}
		if len(r.Tables) > 0 && r.Kind != DenySelectStar && r.Kind != DenyMissingPartitionFilter {
			v.add(p+".tables", fmt.Sprintf("deny rule kind %s cannot be scoped to tables", r.Kind), "only selectStar and missingPartitionFilter rules take tables")
		}
		v.patterns(p+".tables", r.Tables, TablePattern)
	}
	for i, m := range wt.Masking {
		p := fmt.Sprintf("spec.what.masking[%d]", i)
		if _, err := ParsePattern(m.Columns, ColumnPattern); err != nil {
			v.valueErr(p+".columns", err)
		}
		if !contains(MaskActions, m.Action) {
			v.unknown(p+".action", "mask action", string(m.Action), strs(MaskActions))
		}
		for j, a := range m.AllowAggregates {
			ap := fmt.Sprintf("%s.allowAggregates[%d]", p, j)
			switch {
			case leakyAggregates[a]:
				v.add(ap, fmt.Sprintf("aggregate %s returns a row's value", a), "only "+strings.Join(Aggregates, ", ")+" may see masked columns")
			case !contains(Aggregates, a):
				v.unknown(ap, "aggregate", a, Aggregates)
			}
		}
	}
	v.legacySQL(s)
	for i, d := range wt.Detectors {
		if !contains(Detectors, d) {
			v.unknown(fmt.Sprintf("spec.what.detectors[%d]", i), "detector", string(d), strs(Detectors))
		}
	}
	seen = map[string]bool{}
	for i, a := range wt.Approvals {
		p := fmt.Sprintf("spec.what.approvals[%d]", i)
		v.ruleName(p, a.Name, seen)
		v.statementKinds(p+".when.statementKinds", a.When.StatementKinds)
		v.patterns(p+".when.tables", a.When.Tables, TablePattern)
		if a.When.MinBytes < 0 {
			v.add(p+".when.minBytes", "minBytes is negative", "use a size such as 10GB")
		}
		if len(a.ApproverGroups) == 0 {
			v.add(p+".approverGroups", "approval rule has no approver groups", "name at least one ApproverGroup document")
		}
		for j, g := range a.ApproverGroups {
			if _, ok := groups[g]; !ok {
				hint := "define it with kind: ApproverGroup"
				if s := Suggest(g, groupList); s != "" {
					hint = fmt.Sprintf("did you mean %q?", s)
				}
				v.add(fmt.Sprintf("%s.approverGroups[%d]", p, j), fmt.Sprintf("unknown approver group %q", g), hint)
			}
		}
		if a.TTL < 0 || a.TTL > MaxApprovalTTL || (a.TTL > 0 && a.TTL < Duration(time.Second)) {
			v.add(p+".ttl", fmt.Sprintf("approval ttl %s out of range", a.TTL), "use a duration between 1s and 168h (default 1h)")
		}
		switch a.Mode {
		case "", ApprovalHold, ApprovalReject:
		default:
			v.unknown(p+".mode", "approval mode", string(a.Mode), []string{string(ApprovalHold), string(ApprovalReject)})
		}
		if a.Uses < 0 || a.Uses > maxApprovalUses {
			v.add(p+".uses", fmt.Sprintf("uses %d out of range", a.Uses), "use a number between 1 and 1000 (default 1)")
		}
		if a.HoldTimeout < 0 || a.HoldTimeout > MaxHoldTimeout || (a.HoldTimeout > 0 && a.HoldTimeout < Duration(time.Second)) {
			v.add(p+".holdTimeout", fmt.Sprintf("hold timeout %s out of range", a.HoldTimeout), "use a duration between 1s and 4m (default 2m)")
		} else if a.HoldTimeout > 0 && a.Mode == ApprovalReject {
			v.add(p+".holdTimeout", "holdTimeout is set on a reject-mode approval", "remove it, or use mode: hold")
		}
	}

	if c := s.Credential; c != nil {
		switch c.Mode {
		case CredentialSelfSignedJWT, CredentialImpersonate:
		case "":
			v.add("spec.credential.mode", "credential mode is required", "use self-signed-jwt or impersonate")
		default:
			v.unknown("spec.credential.mode", "credential mode", string(c.Mode), []string{string(CredentialSelfSignedJWT), string(CredentialImpersonate)})
		}
		switch {
		case c.ServiceAccount == "" && c.Mode == CredentialImpersonate:
			v.add("spec.credential.serviceAccount", "impersonate needs a service account", "add serviceAccount: name@project.iam.gserviceaccount.com")
		case c.ServiceAccount != "" && !validServiceAccount(c.ServiceAccount):
			v.add("spec.credential.serviceAccount", fmt.Sprintf("bad service account %q", c.ServiceAccount), "use name@project.iam.gserviceaccount.com")
		}
		if c.TTL < 0 || c.TTL > MaxCredentialTTL || (c.TTL > 0 && c.TTL < Duration(time.Minute)) {
			v.add("spec.credential.ttl", fmt.Sprintf("credential ttl %s out of range", c.TTL), "use a duration between 1m and 1h (default 5m)")
		}
	}

	l := &s.Limits
	if l.MaxRequestBodyBytes < 0 || l.MaxRequestBodyBytes > MaxRequestBodyLimit {
		v.add("spec.limits.maxRequestBodyBytes", fmt.Sprintf("maxRequestBodyBytes %d out of range", l.MaxRequestBodyBytes), "use at most 100MiB")
	}
	if l.MaxResponseBodyBytes < 0 {
		v.add("spec.limits.maxResponseBodyBytes", "maxResponseBodyBytes is negative", "use a size such as 64MiB")
	}
	if l.MaxRows < 0 {
		v.add("spec.limits.maxRows", "maxRows is negative", "use a positive number of rows")
	}
}

func (v *validator) issuers(path string, list []string) {
	for i, iss := range list {
		if !strings.HasPrefix(iss, "https://") && !strings.HasPrefix(iss, "http://") {
			v.add(fmt.Sprintf("%s[%d]", path, i), fmt.Sprintf("bad issuer %q", iss), "an issuer is the OIDC issuer URL, e.g. https://accounts.google.com")
		}
	}
}

// legacySQL refuses what.legacySql combinations that could never allow a legacy query, so
// the author hears it at load rather than from a denied agent (the rules of other matching
// policies are only known when a call is decided: prepPolicy.legacyUnchecked).
func (v *validator) legacySQL(s *PolicySpec) {
	wt := &s.What
	const p = "spec.what.legacySql"
	if !wt.LegacySQL {
		if wt.LegacySQLAnyTable {
			v.add("spec.what.legacySqlAnyTable", "legacySqlAnyTable without legacySql", "set legacySql: true too, or remove legacySqlAnyTable")
		}
		return
	}
	if !contains(wt.StatementKinds, FamilySelect) {
		v.add(p, "legacySql grants legacy queries, which are SELECT statements, but statementKinds has no SELECT", "add SELECT to statementKinds")
	}
	const why = "legacy SQL is not analysed, so no legacy query can be allowed with "
	const move = "grant legacy SQL in a separate policy for agents without these rules, or remove legacySql"
	switch {
	case len(s.Where.Tables.Deny) > 0:
		v.add(p, why+"where.tables.deny", move)
	case len(s.Where.Datasets.Deny) > 0:
		v.add(p, why+"where.datasets.deny", move)
	case len(wt.Masking) > 0:
		v.add(p, why+"masking rules (they need column lineage)", move)
	}
	for _, d := range wt.DenyRules {
		if !d.DryRun {
			v.add(p, why+"deny rule "+d.Name+" (not a dry run)", "make the rule dryRun: true, or "+move)
			break
		}
	}
}

// CheckIssuers checks a set against the OIDC issuers the gateway trusts. An agent id (and
// an approver's identity) is unique only within its issuer: with several issuers trusted,
// a policy without who.issuers would match a token for the same id from any of them (the
// development issuer mints any id), and an approver group without spec.issuers would let
// any of them approve. So when more than one issuer is trusted, every AgentPolicy must
// list who.issuers and every ApproverGroup spec.issuers; with one (or none known) nothing
// is required. Issuers a document lists that are not trusted are not errors (the
// document may be shared between gateways); they simply match no token.
func CheckIssuers(s Set, trusted []string) []FieldError {
	if len(trusted) < 2 {
		return nil
	}
	list := strings.Join(trusted, ", ")
	hint := fmt.Sprintf("list the issuers whose identities this document is for, e.g. issuers: [%s]", trusted[0])
	var errs []FieldError
	for i := range s.ApproverGroups {
		g := &s.ApproverGroups[i]
		if len(g.Spec.Issuers) == 0 {
			errs = append(errs, FieldError{Doc: DocRef{KindApproverGroup, i}, Path: "spec",
				Msg: fmt.Sprintf("approver group %q has no spec.issuers, which is required because the gateway trusts %d issuers (%s): "+
					"without it an approver identity from any of them may approve", g.Metadata.Name, len(trusted), list), Hint: hint})
		}
	}
	for i := range s.Policies {
		p := &s.Policies[i]
		if len(p.Spec.Who.Issuers) == 0 {
			errs = append(errs, FieldError{Doc: DocRef{KindAgentPolicy, i}, Path: "spec.who",
				Msg: fmt.Sprintf("policy %q has no who.issuers, which is required because the gateway trusts %d issuers (%s): "+
					"without it the policy matches an agent id from any of them", p.Metadata.Name, len(trusted), list), Hint: hint})
		}
	}
	return errs
}

func (v *validator) ruleName(path, name string, seen map[string]bool) {
	switch {
	case name == "":
		v.add(path+".name", "rule name is required", `add name: such as "no-select-star"`)
	case len(name) > maxPolicyNameLength || !validName(name):
		v.add(path+".name", fmt.Sprintf("bad rule name %q", name), "use lowercase letters, digits and hyphens")
	case seen[name]:
		v.add(path+".name", fmt.Sprintf("duplicate rule name %q", name), "rule names must be unique within a policy")
	}
	seen[name] = true
}

func (v *validator) statementKinds(path string, kinds []string) {
	for i, k := range kinds {
		if _, ok := statementFamily[k]; !ok {
			v.unknown(fmt.Sprintf("%s[%d]", path, i), "statement kind", k, StatementKinds())
		}
	}
}

func (v *validator) patterns(path string, list []string, k PatternKind) {
	if len(list) > maxEntriesPerListField {
		v.add(path, "too many entries", fmt.Sprintf("at most %d", maxEntriesPerListField))
		return
	}
	for i, s := range list {
		if _, err := ParsePattern(s, k); err != nil {
			v.valueErr(fmt.Sprintf("%s[%d]", path, i), err)
		}
	}
}

func (v *validator) nonEmptyStrings(path string, list []string) {
	for i, s := range list {
		if strings.TrimSpace(s) == "" {
			v.add(fmt.Sprintf("%s[%d]", path, i), "empty entry", "remove it")
		}
	}
}

func validServiceAccount(s string) bool {
	at := strings.IndexByte(s, '@')
	return at > 0 && strings.HasSuffix(s, ".gserviceaccount.com") && !strings.ContainsAny(s, " \t\r\n")
}

func contains[T comparable](list []T, x T) bool {
	for _, y := range list {
		if y == x {
			return true
		}
	}
	return false
}
