package policies

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// APIVersion is the only document version this package understands.
const APIVersion = "jitgate.dev/v1"

// Document kinds.
const (
	KindAgentPolicy   = "AgentPolicy"
	KindApproverGroup = "ApproverGroup"
)

// Field names below are the YAML and JSON names; policies/source decodes YAML into these
// types through their json tags, so the two spellings cannot drift.

// Metadata names a document.
type Metadata struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
}

// AgentPolicy grants a set of agents (Who) access to BigQuery resources (Where) under
// rules (What), with an upstream credential and limits.
type AgentPolicy struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Metadata   Metadata   `json:"metadata"`
	Spec       PolicySpec `json:"spec"`
}

// PolicySpec is the body of an AgentPolicy.
type PolicySpec struct {
	Who        Who         `json:"who"`
	Where      Where       `json:"where,omitzero"`
	What       What        `json:"what,omitzero"`
	Credential *Credential `json:"credential,omitempty"`
	Limits     Limits      `json:"limits,omitzero"`
}

// Who selects agents. Every non-empty field must match (AND); within a list any entry
// matches (OR), except Groups.All.
type Who struct {
	// Issuers are OIDC issuer URLs, compared exactly.
	Issuers []string `json:"issuers,omitempty"`
	// Agents are agent ids; "*" matches any run of characters ("etl-*").
	Agents []string   `json:"agents,omitempty"`
	Groups GroupMatch `json:"groups,omitzero"`
}

// GroupMatch matches the agent's groups.
type GroupMatch struct {
	// Any: the agent is in at least one of these groups.
	Any []string `json:"any,omitempty"`
	// All: the agent is in every one of these groups.
	All []string `json:"all,omitempty"`
}

// Where says which BigQuery resources and methods a policy grants.
type Where struct {
	// Projects the agent may run jobs in and call (pattern: "acme-*").
	Projects []string `json:"projects,omitempty"`
	// Datasets: "project.dataset" patterns. Allow grants reading every table in them.
	Datasets AllowDeny `json:"datasets,omitzero"`
	// Tables: "project.dataset.table" patterns.
	Tables AllowDeny `json:"tables,omitzero"`
	// WriteTables: "project.dataset.table" patterns DML, DDL and destination tables may
	// write to. Empty means the policy grants no writes.
	WriteTables []string `json:"writeTables,omitempty"`
	// APIs are BigQuery REST method names ("jobs.query").
	APIs []string `json:"apis,omitempty"`
}

// AllowDeny is a pair of pattern lists.
type AllowDeny struct {
	Allow []string `json:"allow,omitempty"`
	Deny  []string `json:"deny,omitempty"`
}

// What says which statements are allowed and how results are treated.
type What struct {
	// StatementKinds allowed: families (SELECT, DML, DDL, DCL, SCRIPT, EXPORT, LOAD) or
	// specific kinds (INSERT, CREATE_TABLE, ...).
	StatementKinds []string       `json:"statementKinds,omitempty"`
	DenyRules      []DenyRule     `json:"denyRules,omitempty"`
	Masking        []MaskRule     `json:"masking,omitempty"`
	Detectors      []Detector     `json:"detectors,omitempty"`
	Approvals      []ApprovalRule `json:"approvals,omitempty"`
	// Sessions allows BigQuery sessions: queries with createSession and queries joining a
	// session (connectionProperties session_id). Default false: denied, since a session
	// carries state (temporary tables, variables) across queries the gateway judges one
	// at a time.
	Sessions bool `json:"sessions,omitempty"`
	// ListAllUsersJobs allows jobs.list with allUsers=true, which lists every user's jobs
	// (their SQL included). Default false: denied.
	ListAllUsersJobs bool `json:"listAllUsersJobs,omitempty"`
	// LegacySQL allows legacy-SQL queries (useLegacySql true or absent, a #legacySQL
	// prefix) without analysis. Legacy SQL cannot be analysed, so nothing that needs the
	// analysis can be checked for them: the tables read, deny rules, masking. Such queries
	// count as SELECT (BigQuery's legacy dialect has no DML, DDL or scripts) and are refused
	// (RuleLegacySQLUnchecked) when any matching policy has a rule that would be lost:
	// where.tables.deny / where.datasets.deny, a denyRule that is not a dry run, masking.
	// Default false: denied legacy_sql.
	LegacySQL bool `json:"legacySql,omitempty"`
	// LegacySQLAnyTable accepts, for a policy that lists where.tables.allow or
	// where.datasets.allow, that those lists cannot bound an unanalysed legacy query: it
	// reads whatever the upstream credential can read. Without it, such a policy's
	// legacySql grant is refused (RuleLegacySQLUnchecked). Needs LegacySQL.
	LegacySQLAnyTable bool `json:"legacySqlAnyTable,omitempty"`
}

// DenyRule denies a query when SQL analysis reports a finding of Kind.
type DenyRule struct {
	Name string       `json:"name"`
	Kind DenyRuleKind `json:"kind"`
	// DryRun reports what the rule would have denied without denying it.
	DryRun bool `json:"dryRun,omitempty"`
	// Tables ("project.dataset.table" patterns) scope a selectStar or
	// missingPartitionFilter rule: it fires only when the finding concerns one of these
	// tables (Analysis.FindingTables). Empty: any table.
	Tables []string `json:"tables,omitempty"`
}

// DenyRuleKind names a finding of the SQL analysis.
type DenyRuleKind string

// Deny rule kinds. SQL analysis (control plane) reports them as Analysis.Findings.
const (
	DenySelectStar             DenyRuleKind = "selectStar"
	DenyMissingPartitionFilter DenyRuleKind = "missingPartitionFilter"
	DenyInformationSchemaJobs  DenyRuleKind = "informationSchemaJobs"
	DenyExternalQuery          DenyRuleKind = "externalQuery"
	DenyExportData             DenyRuleKind = "exportData"
	DenyExecuteImmediate       DenyRuleKind = "executeImmediate"
	DenyCrossJoin              DenyRuleKind = "crossJoin"
	DenyTemporaryFunction      DenyRuleKind = "temporaryFunction"
	// DenyMLFunction: ML.* / AI.* table-valued functions (models read the tables passed
	// to them; their output's lineage is unknown).
	DenyMLFunction DenyRuleKind = "mlFunction"
)

// MaskRule masks the columns matching a "project.dataset.table.column" pattern.
type MaskRule struct {
	Columns string     `json:"columns"`
	Action  MaskAction `json:"action"`
	// AllowAggregates are aggregate functions whose result over a masked column is
	// returned unmasked (COUNT, COUNT_DISTINCT, APPROX_COUNT_DISTINCT, SUM, AVG).
	AllowAggregates []string `json:"allowAggregates,omitempty"`
}

// MaskAction says what a masked cell becomes.
type MaskAction string

// Mask actions, strongest first (MaskStrength).
const (
	MaskRedact      MaskAction = "redact"
	MaskNull        MaskAction = "null"
	MaskHash        MaskAction = "hash"
	MaskEmailDomain MaskAction = "email-domain"
	MaskLast4       MaskAction = "last4"
)

// Detector names a content detector run over every response cell.
type Detector string

// Content detectors (implemented by the masking engine).
const (
	DetectEmail      Detector = "email"
	DetectSSN        Detector = "ssn"
	DetectCard       Detector = "card"
	DetectPhone      Detector = "phone"
	DetectIBAN       Detector = "iban"
	DetectIP         Detector = "ip"
	DetectPrivateKey Detector = "privateKey"
	DetectCloudKey   Detector = "cloudKey"
)

// ApprovalRule says which calls need a human's approval first.
type ApprovalRule struct {
	Name string       `json:"name"`
	When ApprovalWhen `json:"when,omitzero"`
	// ApproverGroups name ApproverGroup documents whose members may approve.
	ApproverGroups []string `json:"approverGroups"`
	// TTL is how long a granted approval stays usable (default 1h, at most 168h).
	TTL Duration `json:"ttl,omitempty"`
	// Mode hold parks the call until decided; reject answers 403 with the approval id.
	Mode ApprovalMode `json:"mode,omitempty"`
	// Uses is how many calls one approval covers (default 1).
	Uses int `json:"uses,omitempty"`
	// HoldTimeout bounds how long a held call waits for a decision (mode hold only;
	// default 2m, at most 4m: Envoy's stream idle timeout of 5m must not cut it first).
	HoldTimeout Duration `json:"holdTimeout,omitempty"`
}

// ApprovalWhen: every non-empty condition must hold; an empty When matches every call.
type ApprovalWhen struct {
	StatementKinds []string `json:"statementKinds,omitempty"`
	// Tables: the call reads or writes a table matching one of these patterns.
	Tables []string `json:"tables,omitempty"`
	// MinBytes: the analysis estimates at least this many bytes processed (unknown
	// estimates count as matching: fail closed).
	MinBytes ByteSize `json:"minBytes,omitempty"`
}

// ApprovalMode is hold or reject.
type ApprovalMode string

// Approval modes.
const (
	ApprovalHold   ApprovalMode = "hold"
	ApprovalReject ApprovalMode = "reject"
)

// Credential is the upstream credential jitgate mints per call for this policy.
type Credential struct {
	Mode CredentialMode `json:"mode"`
	// ServiceAccount is required for impersonate; for self-signed-jwt it must be the
	// account of the control plane's key (empty: that account).
	ServiceAccount string `json:"serviceAccount,omitempty"`
	// TTL of each minted credential (default 5m, at most 1h).
	TTL Duration `json:"ttl,omitempty"`
}

// CredentialMode says how the control plane mints the upstream credential.
type CredentialMode string

// Credential modes.
const (
	CredentialSelfSignedJWT CredentialMode = "self-signed-jwt"
	CredentialImpersonate   CredentialMode = "impersonate"
)

// Defaults and bounds.
const (
	DefaultCredentialTTL   = Duration(5 * time.Minute)
	MaxCredentialTTL       = Duration(time.Hour)
	DefaultApprovalTTL     = Duration(time.Hour)
	MaxApprovalTTL         = Duration(168 * time.Hour)
	MaxRequestBodyLimit    = ByteSize(100 << 20) // the filter's own ceiling (filter/config)
	DefaultApprovalUses    = 1
	DefaultHoldTimeout     = Duration(2 * time.Minute)
	MaxHoldTimeout         = Duration(4 * time.Minute)
	maxPolicyNameLength    = 63
	maxApprovalUses        = 1000
	maxPatternLength       = 1024
	maxEntriesPerListField = 10000
)

// Limits bound one call. Zero means "not set by this policy" (the gateway default).
type Limits struct {
	MaxRequestBodyBytes  ByteSize `json:"maxRequestBodyBytes,omitempty"`
	MaxResponseBodyBytes ByteSize `json:"maxResponseBodyBytes,omitempty"`
	MaxRows              int64    `json:"maxRows,omitempty"`
}

// ApproverGroup names the humans who may approve (members by identity, or everyone in
// an OIDC group).
type ApproverGroup struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   Metadata          `json:"metadata"`
	Spec       ApproverGroupSpec `json:"spec"`
}

// ApproverGroupSpec lists an approver group's members.
type ApproverGroupSpec struct {
	// Issuers are the OIDC issuer URLs the approvers' tokens must come from (compared
	// exactly); empty: any trusted issuer. Required when the gateway trusts several
	// issuers (CheckIssuers), since an identity is only unique within its issuer.
	Issuers []string `json:"issuers,omitempty"`
	// Members are approver identities (e-mail or subject).
	Members []string `json:"members,omitempty"`
	// Groups are OIDC groups whose members may approve.
	Groups []string `json:"groups,omitempty"`
}

// Set is every document of a policy directory.
type Set struct {
	Policies       []AgentPolicy   `json:"policies"`
	ApproverGroups []ApproverGroup `json:"approverGroups,omitempty"`
}

// Duration is a time.Duration written as a Go duration string ("5m", "1h30m").
type Duration time.Duration

// MarshalText writes the duration as time.Duration.String does.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil || strings.TrimSpace(string(b)) == "" {
		return &ValueError{Msg: fmt.Sprintf("bad duration %q", string(b)), Hint: "use a Go duration such as 30s, 5m or 1h"}
	}
	*d = Duration(v)
	return nil
}

// String returns the duration as a Go duration string.
func (d Duration) String() string { return time.Duration(d).String() }

// ByteSize is a number of bytes; in YAML it may carry a unit ("10MiB", "5GB").
type ByteSize int64

var byteUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1},
}

// UnmarshalText parses an integer with an optional unit (B, KB, MB, GB, TB, KiB ... TiB).
func (s *ByteSize) UnmarshalText(b []byte) error {
	text := strings.TrimSpace(string(b))
	mult := int64(1)
	num := text
	for _, u := range byteUnits {
		if n, ok := strings.CutSuffix(text, u.suffix); ok {
			num, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil || v < 0 || (mult > 1 && v > (1<<62)/mult) {
		return &ValueError{Msg: fmt.Sprintf("bad byte size %q", text), Hint: "use a non-negative integer with an optional unit, e.g. 1048576, 10MiB or 5GB"}
	}
	*s = ByteSize(v * mult)
	return nil
}

// UnmarshalJSON reads a JSON number (the compiled form).
func (s *ByteSize) UnmarshalJSON(b []byte) error {
	var v int64
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*s = ByteSize(v)
	return nil
}

// ValueError is a bad scalar value, with a one-line fix hint.
type ValueError struct {
	Msg  string
	Hint string
}

func (e *ValueError) Error() string {
	if e.Hint == "" {
		return e.Msg
	}
	return e.Msg + " (" + e.Hint + ")"
}
