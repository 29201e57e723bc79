package policies

import (
	"sort"
	"strings"
)

// The vocabularies a policy may use. Unknown names are rejected by Validate.

// APINames are the BigQuery REST methods a policy may grant, spelled as filter/bqapi's
// API.String (a test keeps the two lists equal; this package stays standard-library only).
var APINames = []string{
	"jobs.query", "jobs.insert", "jobs.getQueryResults", "jobs.get", "jobs.cancel",
	"jobs.list", "jobs.delete", "tabledata.list", "tables.get", "tables.list",
	"datasets.get", "datasets.list", "projects.list",
}

// Statement-kind families.
const (
	FamilySelect = "SELECT"
	FamilyDML    = "DML"
	FamilyDDL    = "DDL"
	FamilyDCL    = "DCL"
	FamilyScript = "SCRIPT"
	FamilyExport = "EXPORT"
	FamilyLoad   = "LOAD"
)

// statementFamily maps every statement kind a policy or the SQL analysis may name to
// its family. A family maps to itself.
var statementFamily = map[string]string{
	"SELECT": FamilySelect,

	"DML": FamilyDML, "INSERT": FamilyDML, "UPDATE": FamilyDML, "DELETE": FamilyDML,
	"MERGE": FamilyDML, "TRUNCATE_TABLE": FamilyDML,

	"DDL": FamilyDDL, "CREATE_TABLE": FamilyDDL, "CREATE_TABLE_AS_SELECT": FamilyDDL,
	"CREATE_VIEW": FamilyDDL, "CREATE_MATERIALIZED_VIEW": FamilyDDL, "CREATE_SCHEMA": FamilyDDL,
	"CREATE_FUNCTION": FamilyDDL, "CREATE_TABLE_FUNCTION": FamilyDDL, "CREATE_PROCEDURE": FamilyDDL,
	"CREATE_MODEL": FamilyDDL, "ALTER_TABLE": FamilyDDL, "ALTER_VIEW": FamilyDDL,
	"ALTER_SCHEMA": FamilyDDL, "DROP_TABLE": FamilyDDL, "DROP_VIEW": FamilyDDL,
	"DROP_SCHEMA": FamilyDDL, "DROP_FUNCTION": FamilyDDL, "DROP_PROCEDURE": FamilyDDL,
	"DROP_MODEL": FamilyDDL,

	"DCL": FamilyDCL, "GRANT": FamilyDCL, "REVOKE": FamilyDCL,

	"SCRIPT": FamilyScript, "CALL": FamilyScript, "EXECUTE_IMMEDIATE": FamilyScript,

	"EXPORT": FamilyExport, "EXPORT_DATA": FamilyExport,

	"LOAD": FamilyLoad, "LOAD_DATA": FamilyLoad,
}

// StatementKinds lists every statement kind name, sorted.
func StatementKinds() []string { return sortedKeys(statementFamily) }

// StatementFamily returns the family of a statement kind, and false for unknown kinds.
func StatementFamily(kind string) (string, bool) {
	f, ok := statementFamily[kind]
	return f, ok
}

// DenyRuleKinds lists the deny rule kinds SQL analysis reports.
var DenyRuleKinds = []DenyRuleKind{
	DenySelectStar, DenyMissingPartitionFilter, DenyInformationSchemaJobs, DenyExternalQuery,
	DenyExportData, DenyExecuteImmediate, DenyCrossJoin, DenyTemporaryFunction,
	DenyMLFunction,
}

// MaskActions lists the mask actions, strongest first.
var MaskActions = []MaskAction{MaskRedact, MaskNull, MaskHash, MaskEmailDomain, MaskLast4}

// MaskStrength orders actions: a higher value reveals less. Unknown actions rank highest
// (they fail closed as redact in the masking engine).
func MaskStrength(a MaskAction) int {
	for i, m := range MaskActions {
		if m == a {
			return len(MaskActions) - i
		}
	}
	return len(MaskActions) + 1
}

// Detectors lists the content detectors.
var Detectors = []Detector{
	DetectEmail, DetectSSN, DetectCard, DetectPhone, DetectIBAN, DetectIP, DetectPrivateKey, DetectCloudKey,
}

// Aggregates lists the aggregate functions a mask rule may let through. MIN, MAX,
// ANY_VALUE, ARRAY_AGG and STRING_AGG return a row's value and are never allowed.
var Aggregates = []string{"COUNT", "COUNT_DISTINCT", "APPROX_COUNT_DISTINCT", "SUM", "AVG"}

// leakyAggregates get a specific hint instead of "unknown".
var leakyAggregates = map[string]bool{"MIN": true, "MAX": true, "ANY_VALUE": true, "ARRAY_AGG": true, "STRING_AGG": true}

// Suggest returns the candidate closest to word when it is close enough to be a typo
// (edit distance at most 2, or a case-insensitive match), else "".
func Suggest(word string, candidates []string) string {
	best, bestD := "", 3
	lw := strings.ToLower(word)
	for _, c := range candidates {
		if strings.ToLower(c) == lw {
			return c
		}
		if lc := strings.ToLower(c); len(lc) >= 4 && len(lw) >= 4 && len(lw)-len(lc) <= 3 && len(lc)-len(lw) <= 3 &&
			(strings.HasPrefix(lw, lc[:len(lc)-1]) || strings.HasPrefix(lc, lw[:len(lw)-1])) && bestD > 2 {
			best, bestD = c, 2 // "AgentPolicies" -> "AgentPolicy"
			continue
		}
		limit := 2
		if len(c) <= 4 {
			limit = 1
		}
		if d := editDistance(lw, strings.ToLower(c)); d <= limit && d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the optimal-string-alignment distance (a transposition is one edit,
// so "tabels" is one edit from "tables").
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 99
	}
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func strs[T ~string](xs []T) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = string(x)
	}
	return out
}
