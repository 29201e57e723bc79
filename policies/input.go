package policies

import "time"

// Input is everything the evaluator may look at for one call. The control plane fills it
// from the authorize request (filter/authorize), the verified identity, the SQL analysis
// and the job ledger; the filter may fill the parts it knows. Missing parts make the
// rules that need them undecidable, and an undecidable call is denied.
type Input struct {
	Identity Identity `json:"identity"`
	Call     Call     `json:"call"`
	// Query is the decoded request body of jobs.query / jobs.insert.
	Query *Query `json:"query,omitempty"`
	// Analysis is the SQL analysis result; required for jobs.query and jobs.insert.
	Analysis *Analysis `json:"analysis,omitempty"`
	// Job is what the job ledger knows about the job a follow-up call names; required for
	// jobs.get, jobs.getQueryResults, jobs.cancel, jobs.delete and tabledata.list on an
	// anonymous result table.
	Job *Job `json:"job,omitempty"`
}

// Identity is the verified agent (the control plane's identity package produces it).
type Identity struct {
	AgentID string   `json:"agentId"`
	Issuer  string   `json:"issuer"`
	Groups  []string `json:"groups,omitempty"`
}

// Call is the classified BigQuery REST call (filter/bqapi.Call).
type Call struct {
	// API is bqapi.API.String(), e.g. "jobs.query".
	API     string `json:"api"`
	Project string `json:"project,omitempty"`
	Dataset string `json:"dataset,omitempty"`
	Table   string `json:"table,omitempty"`
	JobID   string `json:"jobId,omitempty"`
	// AllUsers is jobs.list's allUsers=true (every user's jobs).
	AllUsers bool `json:"allUsers,omitempty"`
}

// Query is what the evaluator needs from a decoded query body (bqapi.QuerySpec).
type Query struct {
	// LegacySQL is the dialect BigQuery would use; legacy SQL cannot be analysed and is
	// denied unless a policy grants it unanalysed (What.LegacySQL).
	LegacySQL bool `json:"legacySql"`
	DryRun    bool `json:"dryRun,omitempty"`
	// Destination is the jobs.insert destination table, "project.dataset.table".
	Destination      string `json:"destination,omitempty"`
	WriteDisposition string `json:"writeDisposition,omitempty"`
	// Session is set when the query creates a BigQuery session (createSession) or joins
	// one (connectionProperties session_id).
	Session bool `json:"session,omitempty"`
}

// Analysis is the SQL analysis result (the GoogleSQL analyser in the control plane).
type Analysis struct {
	// StatementKind is a kind or family from StatementKinds(), e.g. "SELECT", "INSERT",
	// "SCRIPT". Unknown kinds are denied.
	StatementKind string `json:"statementKind"`
	// ReferencedTables are the tables read, fully qualified "project.dataset.table".
	ReferencedTables []string `json:"referencedTables,omitempty"`
	// WrittenTables are the tables DML or DDL writes, fully qualified.
	WrittenTables []string `json:"writtenTables,omitempty"`
	// Findings are the deny-rule kinds the analysis detected (DenyRuleKinds).
	Findings []DenyRuleKind `json:"findings,omitempty"`
	// FindingTables are, per finding, the tables it concerns ("project.dataset.table"),
	// for deny rules scoped with tables. A finding without an entry concerns every table
	// (a scoped rule fires: fail closed).
	FindingTables map[DenyRuleKind][]string `json:"findingTables,omitempty"`
	// EstimatedBytes is the dry-run estimate of bytes processed, when known.
	EstimatedBytes *int64 `json:"estimatedBytes,omitempty"`
}

// Job is the job ledger's record of a job.
type Job struct {
	OwnerAgentID string `json:"ownerAgentId"`
	// OwnerIssuer is the issuer of the owner's token: an agent id is unique only within
	// its issuer, so the caller owns the job only when both match.
	OwnerIssuer string `json:"ownerIssuer"`
}

// Decision is the evaluator's verdict. Allow with a non-empty Approvals list means: allowed
// once a human approves (see Approvals[].Mode).
type Decision struct {
	Allow bool `json:"allow"`
	// Rule is a stable code (the Rule* constants).
	Rule string `json:"rule"`
	// RuleName is the policy's named rule or field that decided, e.g. "no-select-star" or
	// "where.tables.deny".
	RuleName string `json:"ruleName,omitempty"`
	// Policy is the policy that decided: the first granting policy on allow, the denying
	// (or, when nothing granted, the closest) policy on deny.
	Policy        *PolicyRef `json:"policy,omitempty"`
	BundleVersion string     `json:"bundleVersion,omitempty"`
	// Reasons explain the decision in words, one line each.
	Reasons []string `json:"reasons,omitempty"`
	// Matched are all policies whose who matched the agent; Granting those that granted.
	Matched  []PolicyRef `json:"matched,omitempty"`
	Granting []PolicyRef `json:"granting,omitempty"`
	// The rest is set on allow only.
	MaskPlan   MaskPlan              `json:"maskPlan,omitempty"`
	Detectors  []Detector            `json:"detectors,omitempty"`
	Approvals  []ApprovalRequirement `json:"approvals,omitempty"`
	Credential *Credential           `json:"credential,omitempty"`
	Limits     Limits                `json:"limits,omitzero"`
	// DryRunWouldDeny lists the dry-run deny rules that fired (on allow and deny).
	DryRunWouldDeny []DryRunHit `json:"dryRunWouldDeny,omitempty"`
	// NotAnalysed is set on an allow whose SQL was not analysed, saying why
	// (NotAnalysedLegacySQL): its tables, deny rules and masking were not checked.
	NotAnalysed string `json:"notAnalysed,omitempty"`
	// CallOnly marks a decision of EvaluateCall (the filter's part: no SQL analysis, job
	// ledger, approvals or credential); never a complete decision.
	CallOnly bool `json:"callOnly,omitempty"`
}

// NotAnalysedLegacySQL is Decision.NotAnalysed for an allowed legacy-SQL query.
const NotAnalysedLegacySQL = "legacy SQL"

// ApprovalRequirement is one approval rule that applies to the call.
type ApprovalRequirement struct {
	Policy         PolicyRef    `json:"policy"`
	Rule           string       `json:"rule"`
	ApproverGroups []string     `json:"approverGroups"`
	TTL            Duration     `json:"ttl"`
	Mode           ApprovalMode `json:"mode"`
	Uses           int          `json:"uses"`
	// HoldTimeout is the rule's holdTimeout as written (0: DefaultHoldTimeout); see
	// EffectiveHoldTimeout.
	HoldTimeout Duration `json:"holdTimeout,omitempty"`
}

// EffectiveHoldTimeout is how long a held call waits: the rule's holdTimeout or
// DefaultHoldTimeout.
func (r ApprovalRequirement) EffectiveHoldTimeout() time.Duration {
	if r.HoldTimeout > 0 {
		return time.Duration(r.HoldTimeout)
	}
	return time.Duration(DefaultHoldTimeout)
}

// DryRunHit is a dry-run deny rule that would have denied the call.
type DryRunHit struct {
	Policy PolicyRef    `json:"policy"`
	Rule   string       `json:"rule"`
	Kind   DenyRuleKind `json:"kind"`
}

// Stable decision codes.
const (
	RuleAllow         = "allow"
	RuleDefaultDeny   = "default_deny"
	RuleInvalidBundle = "invalid_bundle"
	RuleInvalidInput  = "invalid_input"
	RuleUnknownAPI    = "unknown_api"
	RuleNotDecidable  = "not_decidable"
	RuleLegacySQL     = "legacy_sql"
	// RuleLegacySQLUnchecked: a policy grants legacy SQL (what.legacySql), but a rule the
	// call is subject to needs SQL analysis, which legacy SQL cannot have.
	RuleLegacySQLUnchecked      = "legacy_sql_unchecked"
	RuleUnknownStatementKind    = "unknown_statement_kind"
	RuleJobNotOwned             = "job_not_owned"
	RuleTableDenied             = "table_denied"
	RuleDatasetDenied           = "dataset_denied"
	RuleDenyRule                = "deny_rule"
	RuleAPINotAllowed           = "api_not_allowed"
	RuleProjectNotAllowed       = "project_not_allowed"
	RuleStatementKindNotAllowed = "statement_kind_not_allowed"
	RuleTableNotAllowed         = "table_not_allowed"
	RuleDatasetNotAllowed       = "dataset_not_allowed"
	RuleWriteNotAllowed         = "write_not_allowed"
	RuleCredentialConflict      = "credential_conflict"
	RuleSessionNotAllowed       = "session_not_allowed"
	RuleAllUsersNotAllowed      = "all_users_not_allowed"
)
