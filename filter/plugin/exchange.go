package plugin

import "github.com/jitgate/jitgate/filter/bqapi"

// Decision is the filter's verdict on a request.
type Decision string

// Decisions as they appear in the log line.
const (
	DecisionPending Decision = ""      // not decided yet (body or the control plane's answer still awaited)
	DecisionAllow   Decision = "allow" // forwarded upstream with a minted credential
	DecisionDeny    Decision = "deny"  // answered locally (denied, invalid, or failed closed)
)

// Exchange is everything the filter knows about one request. Each stage reads it and
// adds to it; the next stages (rewrite, masking) take it from httpContext.Exchange.
//
// It holds no secret: neither the agent's token nor the upstream credential is ever
// stored here (only the credential's non-secret id), so logging or printing an Exchange
// cannot leak one.
type Exchange struct {
	// Call is the classified request (API, ids, effective method, query-string params).
	Call bqapi.Call
	// Query is the decoded jobs.query / jobs.insert body; nil for other calls.
	Query *bqapi.QuerySpec
	// RequestBodyBytes is the size of the body as received (before inflating).
	RequestBodyBytes int
	Decision         Decision
	// Rejection is set when the filter itself refused the request (local rules, a
	// failure, or the control plane being unavailable).
	Rejection *bqapi.Rejection
	// Authz is the control plane's answer, when one was accepted.
	Authz *Authz
	// Policy is the filter's own policy check of a call the control plane allowed
	// (policy.go); nil when not made (no bundle, or the call was not allowed).
	Policy *PolicyCheck
	// ResponseStatus is the upstream :status, when a response arrived.
	ResponseStatus string
	// ResponseBodyBytes is the size of a response the filter read (as received).
	ResponseBodyBytes int
	// ResponseJob, ResponseQueryID and ResultTable are what a jobs.query, jobs.insert or
	// jobs.get response named: the job, the stateless query's id, the job's destination.
	ResponseJob     *bqapi.JobReference
	ResponseQueryID string
	ResultTable     *bqapi.TableReference
	// JobRecorded: the control plane's job ledger acknowledged the job or query id, and
	// the response was released.
	JobRecorded bool
	// ResponseRows is the number of rows in the response the agent got.
	ResponseRows int64
	// ResponseRecorded: the control plane acknowledged the response report (job ledger
	// and audit record) and the response was released; AuditSeq is the response
	// record's position in the audit chain (0: released without a record, relaxed mode).
	ResponseRecorded bool
	AuditSeq         uint64
	// Masked summarises the masking of the response (nil when it was not masked).
	Masked *MaskSummary
	// Abandoned: the stream ended while the authorize callout was pending, and the control
	// plane was told to stop deciding (authorize.AbandonPath).
	Abandoned bool
}

// Authz is the non-secret part of the control plane's decision.
type Authz struct {
	// DecisionID names the decision in logs, the audit trail and the agent's error.
	DecisionID string
	// AgentID is the verified agent, when verification succeeded.
	AgentID string
	// CredentialID is the minted credential's non-secret id (allow only).
	CredentialID string
	// Status and Reason are the denial's HTTP status and stable code (deny only).
	Status int
	Reason string
	// NotAnalysed says why an allowed query's SQL was not analysed ("legacy SQL", under
	// a policy's what.legacySql), from the control plane's answer or the filter's own
	// policy check; the agent's response says so (AnalysisHeader).
	NotAnalysed string
}
