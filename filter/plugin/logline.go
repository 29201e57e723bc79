package plugin

import (
	"strconv"
	"strings"
)

// logLine renders the one info line per request. It names the call, the decision and
// the job the response named (job_id, query_id, whether the ledger recorded it);
// it never contains headers (the Authorization token), the upstream credential (only its
// id), query-string values, or SQL text (only its size and dialect).
func logLine(ex *Exchange) string {
	var b strings.Builder
	b.Grow(256)
	b.WriteString("jitgate: request")
	field(&b, "api", ex.Call.API.String())
	field(&b, "method", ex.Call.Method)
	quoted(&b, "project", ex.Call.Project)
	quoted(&b, "dataset", ex.Call.Dataset)
	quoted(&b, "table", ex.Call.Table)
	quoted(&b, "job", ex.Call.JobID)
	decision := ex.Decision
	if decision == DecisionPending {
		decision = "incomplete" // the stream ended before a decision (client went away)
	}
	field(&b, "decision", string(decision))
	if ex.Abandoned {
		field(&b, "authorize", "abandoned")
	}
	switch a := ex.Authz; {
	case ex.Rejection != nil:
		field(&b, "reason", string(ex.Rejection.Reason))
		field(&b, "status", strconv.Itoa(ex.Rejection.Reason.HTTPStatus()))
		if ex.ResponseStatus != "" { // the upstream response the reply replaced
			field(&b, "upstream_status", headerSafe(ex.ResponseStatus))
		}
	case a != nil && a.Status != 0:
		field(&b, "reason", headerSafe(a.Reason)) // the control plane's code, already sanitised
		field(&b, "status", strconv.Itoa(a.Status))
	case ex.ResponseStatus != "":
		field(&b, "status", ex.ResponseStatus)
	}
	if a := ex.Authz; a != nil {
		quoted(&b, "decision_id", a.DecisionID)
		quoted(&b, "agent", a.AgentID)
		quoted(&b, "credential_id", a.CredentialID)
		if a.NotAnalysed != "" {
			quoted(&b, "analysis", "not analysed: "+a.NotAnalysed)
		}
	}
	if p := ex.Policy; p != nil {
		if p.Allow {
			field(&b, "filter_policy", "allow")
		} else {
			field(&b, "filter_policy", "deny")
			field(&b, "filter_rule", headerSafe(p.Rule))
		}
		quoted(&b, "filter_policy_ref", p.Policy)
	}
	if q := ex.Query; q != nil {
		if q.JobID != "" {
			quoted(&b, "client_job", q.JobID)
		}
		field(&b, "sql_bytes", strconv.Itoa(len(q.SQL)))
		field(&b, "legacy_sql", strconv.FormatBool(q.LegacySQL))
		field(&b, "dry_run", strconv.FormatBool(q.DryRun))
		field(&b, "params", strconv.Itoa(len(q.Parameters)))
		if q.DefaultDataset != nil {
			quoted(&b, "default_dataset", q.DefaultDataset.ProjectID+"."+q.DefaultDataset.DatasetID)
		}
	}
	if ex.RequestBodyBytes > 0 {
		field(&b, "body_bytes", strconv.Itoa(ex.RequestBodyBytes))
	}
	if j := ex.ResponseJob; j != nil {
		quoted(&b, "job_id", j.JobID)
		quoted(&b, "job_location", j.Location)
	}
	quoted(&b, "query_id", ex.ResponseQueryID)
	if ex.ResponseJob != nil || ex.ResponseQueryID != "" {
		field(&b, "job_recorded", strconv.FormatBool(ex.JobRecorded))
	}
	if ex.ResponseBodyBytes > 0 {
		field(&b, "response_bytes", strconv.Itoa(ex.ResponseBodyBytes))
	}
	if ex.ResponseRecorded {
		field(&b, "response_rows", strconv.FormatInt(ex.ResponseRows, 10))
		field(&b, "audit_seq", strconv.FormatUint(ex.AuditSeq, 10))
	}
	if m := ex.Masked; m != nil {
		maskLogFields(&b, m)
	}
	return b.String()
}

func field(b *strings.Builder, k, v string) {
	b.WriteByte(' ')
	b.WriteString(k)
	b.WriteByte('=')
	b.WriteString(v)
}

// quoted writes identifiers that come from the request (they may hold spaces) quoted,
// so a crafted id cannot forge fields or lines.
func quoted(b *strings.Builder, k, v string) {
	if v == "" {
		return
	}
	field(b, k, strconv.Quote(v))
}
