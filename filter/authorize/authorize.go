// Package authorize owns the contract between the jitgate filter and the control plane:
// the document the filter POSTs to the control plane's /v1/authorize for every BigQuery
// call, and the decision it gets back. Both sides use these types, so the contract
// cannot drift; it is versioned, and later stages (policy, SQL analysis, approvals, cost,
// audit) extend it by adding fields, never by changing what a field means. Wasm-safe:
// standard library and filter/bqapi only.
package authorize

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/jitgate/jitgate/filter/bqapi"
	"github.com/jitgate/jitgate/filter/masking"
)

// Version is the contract version both sides must agree on.
const Version = "jitgate.dev/authorize/v1"

// Path is the control plane's endpoint for authorize calls.
const Path = "/v1/authorize"

// AbandonPath is where the filter tells the control plane that the agent's request ended
// while its authorize callout was still pending (Envoy does not cancel a Wasm filter's
// pending callout when the stream goes away, so a call held for an approval would go on
// waiting, and consume the approval when it lands, for nobody). The body is the pending
// call's own authorize Request document: the control plane stops the pending decision
// with that requestId whose token is the same, and answers 200 whatever it found.
const AbandonPath = "/v1/authorize/abandon"

// MaxDocumentBytes bounds a request or response document (SQL is at most ~1 MB in BigQuery;
// the filter's body limit applies first).
const MaxDocumentBytes = 16 << 20

// Request is what the filter knows about one agent call.
type Request struct {
	Version string `json:"version"`
	// RequestID is Envoy's x-request-id, to join the filter's, Envoy's and the control
	// plane's logs.
	RequestID string `json:"requestId"`
	// Token is the agent's raw bearer token, exactly as presented (empty when absent). The
	// control plane verifies it; nobody logs or records it.
	Token  string `json:"token,omitempty"`
	Client Client `json:"client"`
	Call   Call   `json:"call"`
	// Query is set for jobs.query and query jobs.insert calls.
	Query *Query `json:"query,omitempty"`
}

// Client describes the caller as Envoy saw it.
type Client struct {
	Address   string `json:"address,omitempty"`
	UserAgent string `json:"userAgent,omitempty"`
}

// Call is the classified BigQuery REST call.
type Call struct {
	// API is the BigQuery method, e.g. "jobs.query" (bqapi.API's String form).
	API     string `json:"api"`
	Method  string `json:"method"`
	Project string `json:"project,omitempty"`
	Dataset string `json:"dataset,omitempty"`
	Table   string `json:"table,omitempty"`
	JobID   string `json:"jobId,omitempty"`
	// Location is the location query parameter, when present.
	Location string `json:"location,omitempty"`
	// AllUsers is jobs.list's allUsers=true (every user's jobs, not only the caller's).
	AllUsers bool `json:"allUsers,omitempty"`
}

// Query is the SQL and job configuration of a query call.
type Query struct {
	SQL string `json:"sql"`
	// LegacySQL is the dialect BigQuery would use (absent useLegacySql means legacy).
	LegacySQL          bool                    `json:"legacySql"`
	DefaultDataset     *bqapi.DatasetReference `json:"defaultDataset,omitempty"`
	Parameters         []bqapi.QueryParameter  `json:"parameters,omitempty"`
	ParameterMode      string                  `json:"parameterMode,omitempty"`
	DryRun             bool                    `json:"dryRun,omitempty"`
	MaximumBytesBilled *int64                  `json:"maximumBytesBilled,omitempty"`
	Labels             map[string]string       `json:"labels,omitempty"`
	CreateSession      bool                    `json:"createSession,omitempty"`
	// SessionID is the session the query joins (connectionProperties session_id).
	SessionID         string                `json:"sessionId,omitempty"`
	ClientJobID       string                `json:"clientJobId,omitempty"`
	ClientRequestID   string                `json:"clientRequestId,omitempty"`
	Destination       *bqapi.TableReference `json:"destination,omitempty"`
	WriteDisposition  string                `json:"writeDisposition,omitempty"`
	CreateDisposition string                `json:"createDisposition,omitempty"`
	ExternalTables    []string              `json:"externalTables,omitempty"`
	Priority          string                `json:"priority,omitempty"`
}

// QueryFromSpec copies what the control plane needs from a decoded request body.
func QueryFromSpec(s *bqapi.QuerySpec) *Query {
	if s == nil {
		return nil
	}
	return &Query{
		SQL: s.SQL, LegacySQL: s.LegacySQL, DefaultDataset: s.DefaultDataset,
		Parameters: s.Parameters, ParameterMode: s.ParameterMode, DryRun: s.DryRun,
		MaximumBytesBilled: s.MaximumBytesBilled, Labels: s.Labels, CreateSession: s.CreateSession,
		ClientJobID: s.JobID, ClientRequestID: s.RequestID, Destination: s.Destination,
		WriteDisposition: s.WriteDisposition, CreateDisposition: s.CreateDisposition,
		ExternalTables: s.ExternalTables, Priority: s.Priority, SessionID: s.SessionID(),
	}
}

// Session reports a query that creates or joins a BigQuery session.
func (q *Query) Session() bool { return q != nil && (q.CreateSession || q.SessionID != "") }

// Decision is the control plane's verdict.
type Decision string

const (
	// Allow: forward the call upstream with Response.Credential.
	Allow Decision = "allow"
	// Deny: answer the agent with Response.Status and the reason; nothing goes upstream.
	Deny Decision = "deny"
)

// Response is the control plane's answer.
type Response struct {
	Version string `json:"version"`
	// DecisionID names this decision in logs and (later) the audit trail.
	DecisionID string   `json:"decisionId"`
	Decision   Decision `json:"decision"`
	// Status is the HTTP status the agent sees on Deny: 401 (identity), 403 (policy),
	// 503 (a dependency of the decision is unavailable).
	Status int `json:"status,omitempty"`
	// Reason is a stable code (e.g. "token_expired"); Message is for the agent's eyes.
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
	// Identity is the verified agent, when verification succeeded.
	Identity *Identity `json:"identity,omitempty"`
	// Credential is set exactly when Decision is Allow.
	Credential *Credential `json:"credential,omitempty"`
	// Policy is the policy (name and content version) that made the decision, when the
	// control plane decides with policies; absent when the decision was made before any
	// policy was consulted (identity) or no policies are loaded.
	Policy *PolicyRef `json:"policy,omitempty"`
	// Masking is what the filter must do to the rows of the upstream response of this
	// allowed call (jobs.query, query jobs.insert, jobs.getQueryResults, tabledata.list).
	// Absent: the rows go back as they are. Present: the filter masks every page with it
	// or, when it cannot, answers with an error instead of the rows (fail closed).
	Masking *Masking `json:"masking,omitempty"`
	// NotAnalysed is set on an allow whose SQL the control plane did not analyse, saying
	// why ("legacy SQL": a policy grants legacy SQL unanalysed). The filter tells the agent
	// (header x-jitgate-analysis).
	NotAnalysed string `json:"notAnalysed,omitempty"`
}

// Masking is the control plane's masking instruction for one call's response: the
// position-based plan it resolved from the query's column lineage and the agent's
// masking rules (or, for a follow-up call, the plan the job ledger stored with the job).
type Masking struct {
	// Rules are masking.Rule: output column position paths and their actions.
	Rules []masking.Rule `json:"rules,omitempty"`
	// Detectors are the content detectors run over every cell no rule masks.
	Detectors []string `json:"detectors,omitempty"`
	// HashKey is the deployment's HMAC key for the hash action, base64 (standard
	// encoding). It is a secret: set only when a rule hashes, never logged or recorded.
	HashKey string `json:"hashKey,omitempty"`
	// Schema is the schema the response rows follow, for responses that carry none
	// (tabledata.list, later pages). When the body has a schema too, the body's is used.
	// Absent and absent from the body: the filter cannot mask and fails closed.
	Schema *masking.Schema `json:"schema,omitempty"`
}

// Plan turns the instruction into the masking engine's plan.
func (m *Masking) Plan() (masking.Plan, error) {
	p := masking.Plan{Rules: m.Rules, Detectors: m.Detectors}
	if m.HashKey != "" {
		k, err := base64.StdEncoding.DecodeString(m.HashKey)
		if err != nil || len(k) == 0 {
			return masking.Plan{}, fmt.Errorf("%w: masking hash key is not base64", ErrContract)
		}
		p.Key = masking.NewKey(k)
	}
	return p, nil
}

// validate checks what the filter relies on: every rule names a column and a known
// action, and a hash rule comes with a key.
func (m *Masking) validate() error {
	for _, r := range m.Rules {
		if len(r.Path) == 0 {
			return fmt.Errorf("%w: masking rule without a column path", ErrContract)
		}
		for _, i := range r.Path {
			if i < 0 {
				return fmt.Errorf("%w: masking rule path %v has a negative position", ErrContract, r.Path)
			}
		}
		switch r.Action {
		case masking.Redact, masking.Null, masking.Hash, masking.EmailDomain, masking.Last4:
		default:
			return fmt.Errorf("%w: masking rule action %q unknown", ErrContract, r.Action)
		}
		if r.Action == masking.Hash && m.HashKey == "" {
			return fmt.Errorf("%w: masking hash rule without a key", ErrContract)
		}
	}
	if _, err := m.Plan(); err != nil {
		return err
	}
	return nil
}

// PolicyRef names the policy at the version that decided (policies.PolicyRef), and the
// bundle it belongs to. Name and Version are empty when no single policy decided (no
// policy matches the agent: default deny; or the call could not be decided).
type PolicyRef struct {
	Name    string `json:"name,omitempty"`
	Version string `json:"version,omitempty"`
	// Bundle is the version of the whole policy bundle the decision was made with.
	Bundle string `json:"bundle"`
}

// Identity is a verified agent.
type Identity struct {
	AgentID string   `json:"agentId"`
	Issuer  string   `json:"issuer"`
	Groups  []string `json:"groups,omitempty"`
}

// Credential is the upstream credential minted for this one call. Authorization is a
// secret: the filter puts it on the upstream request and nowhere else.
type Credential struct {
	// Authorization is the complete header value, e.g. "Bearer <token>".
	Authorization string `json:"authorization"`
	// ID is a non-secret identifier of the credential, for logs and audit.
	ID string `json:"id"`
	// ExpiresAtUnix is when the credential stops working (seconds since the epoch).
	ExpiresAtUnix int64 `json:"expiresAtUnix"`
}

// ErrContract wraps every violation of the contract.
var ErrContract = errors.New("authorize contract violated")

// Marshal encodes r with the current version.
func (r Request) Marshal() ([]byte, error) {
	r.Version = Version
	return json.Marshal(r)
}

// ParseRequest decodes and checks a request document.
func ParseRequest(b []byte) (Request, error) {
	var r Request
	if err := decodeStrict(b, &r); err != nil {
		return Request{}, err
	}
	switch {
	case r.Version != Version:
		return Request{}, fmt.Errorf("%w: request version %q, want %q", ErrContract, r.Version, Version)
	case r.Call.API == "" || r.Call.Method == "":
		return Request{}, fmt.Errorf("%w: request has no call api or method", ErrContract)
	}
	return r, nil
}

// Marshal encodes r with the current version after checking it.
func (r Response) Marshal() ([]byte, error) {
	r.Version = Version
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(r)
}

// ParseResponse decodes and checks a response document. Anything it does not accept
// must be treated as a denial by the caller: the filter fails closed.
func ParseResponse(b []byte) (Response, error) {
	var r Response
	if err := decodeStrict(b, &r); err != nil {
		return Response{}, err
	}
	if err := r.Validate(); err != nil {
		return Response{}, err
	}
	return r, nil
}

// Validate checks the rules both sides rely on. Messages never include the credential.
func (r Response) Validate() error {
	if r.Version != Version {
		return fmt.Errorf("%w: response version %q, want %q", ErrContract, r.Version, Version)
	}
	if r.DecisionID == "" {
		return fmt.Errorf("%w: response has no decision id", ErrContract)
	}
	switch r.Decision {
	case Allow:
		c := r.Credential
		if c == nil || c.ID == "" || c.ExpiresAtUnix == 0 || !strings.HasPrefix(c.Authorization, "Bearer ") ||
			len(c.Authorization) <= len("Bearer ") || strings.ContainsAny(c.Authorization, "\r\n") {
			return fmt.Errorf("%w: allow without a usable credential", ErrContract)
		}
		if r.Identity == nil || r.Identity.AgentID == "" {
			return fmt.Errorf("%w: allow without a verified identity", ErrContract)
		}
		if r.Masking != nil {
			if err := r.Masking.validate(); err != nil {
				return err
			}
		}
	case Deny:
		if r.Masking != nil {
			return fmt.Errorf("%w: deny carries a masking instruction", ErrContract)
		}
		if r.Credential != nil {
			return fmt.Errorf("%w: deny carries a credential", ErrContract)
		}
		switch r.Status {
		case 401, 403, 429, 503:
		default:
			return fmt.Errorf("%w: deny status %d not one of 401, 403, 429, 503", ErrContract, r.Status)
		}
		if r.Reason == "" {
			return fmt.Errorf("%w: deny without a reason", ErrContract)
		}
	default:
		return fmt.Errorf("%w: unknown decision %q", ErrContract, r.Decision)
	}
	return nil
}

func decodeStrict(b []byte, v any) error {
	if len(b) > MaxDocumentBytes {
		return fmt.Errorf("%w: document of %d bytes exceeds %d", ErrContract, len(b), MaxDocumentBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", ErrContract, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: trailing data", ErrContract)
	}
	return nil
}

// ResponsesPath is where the filter reports every response of an allowed call before it
// releases it to the agent: the control plane records the job it names in the job ledger
// (which agent owns which job, so that follow-up calls on it are allowed only for that
// agent) and appends a response record to the audit trail, joined to the decision by its
// id. One callout per response; the filter releases the response only
// when the answer says Recorded (fail closed: 503 otherwise).
const ResponsesPath = "/v1/responses"

// DefaultExcerptBytes is how much of the released body the filter sends with a response
// report when its configuration does not say (the control plane's audit.maxExcerptBytes
// default).
const DefaultExcerptBytes = 16 << 10

// ResponseReport describes one response of an allowed call, as the agent receives it.
type ResponseReport struct {
	Version string `json:"version"`
	// DecisionID is the authorize decision that allowed the call.
	DecisionID string `json:"decisionId"`
	RequestID  string `json:"requestId,omitempty"`
	// API is the call whose response this is ("jobs.query").
	API string `json:"api"`
	// Job, QueryID and ResultTable are what a jobs.query, jobs.insert or jobs.get response
	// named: its jobReference (absent for stateless queries), the queryId of a stateless
	// query (jobCreationMode JOB_CREATION_OPTIONAL) and the job's destination (for
	// queries the anonymous result table). When Job or QueryID is set the control plane
	// records the job in the ledger before the audit record, and refuses the report when
	// it cannot.
	Job         *bqapi.JobReference   `json:"job,omitempty"`
	QueryID     string                `json:"queryId,omitempty"`
	ResultTable *bqapi.TableReference `json:"resultTable,omitempty"`
	// Response summarises the body the agent receives.
	Response ResponseSummary `json:"response"`
}

// ResponseSummary is what the audit trail keeps of a released response. It never holds
// a header: the upstream credential and the agent's token travel only in headers.
type ResponseSummary struct {
	// Status is the upstream HTTP status.
	Status int `json:"status"`
	// Rows is the number of rows in the body (0 when it carries none).
	Rows int64 `json:"rows"`
	// Masked says the body was masked (the decision carried a masking instruction);
	// CellsMasked and DetectorHits count what was masked.
	Masked       bool  `json:"masked,omitempty"`
	CellsMasked  int64 `json:"cellsMasked,omitempty"`
	DetectorHits int64 `json:"detectorHits,omitempty"`
	// MessagesWithheld: BigQuery's error messages in the body were replaced (masked
	// calls).
	MessagesWithheld bool `json:"messagesWithheld,omitempty"`
	// Bytes is the size of the body the agent receives, and Digest "sha256:<hex>" of it.
	Bytes  int64  `json:"bytes"`
	Digest string `json:"digest"`
	// Encoding is the body's Content-Encoding as released ("" for identity).
	Encoding string `json:"encoding,omitempty"`
	// Excerpt is the start of the released body (decoded when it was sent compressed),
	// at most the configured excerpt size; ExcerptTruncated says it is shorter than the
	// body. It is the masked body on masked calls, never the upstream one.
	Excerpt          string `json:"excerpt,omitempty"`
	ExcerptTruncated bool   `json:"excerptTruncated,omitempty"`
}

// ResponseReportAck is the control plane's answer to a response report.
type ResponseReportAck struct {
	Version string `json:"version"`
	// Recorded: release the response. False: replace it with a 503 (Reason says why).
	Recorded bool   `json:"recorded"`
	Reason   string `json:"reason,omitempty"`
	// AuditSeq is the audit record's position in the chain (0 when the control plane
	// released the response without a record: audit.mode relaxed, or no audit trail).
	AuditSeq uint64 `json:"auditSeq,omitempty"`
}

// Marshal encodes r with the current version.
func (r ResponseReport) Marshal() ([]byte, error) {
	r.Version = Version
	return json.Marshal(r)
}

// NamesJob reports whether the response named a job or stateless query for the ledger.
func (r ResponseReport) NamesJob() bool {
	return (r.Job != nil && r.Job.JobID != "") || r.QueryID != ""
}

// ParseResponseReport decodes and checks a response report.
func ParseResponseReport(b []byte) (ResponseReport, error) {
	var r ResponseReport
	if err := decodeStrict(b, &r); err != nil {
		return ResponseReport{}, err
	}
	s := &r.Response
	switch {
	case r.Version != Version:
		return ResponseReport{}, fmt.Errorf("%w: response report version %q, want %q", ErrContract, r.Version, Version)
	case r.DecisionID == "" || r.API == "":
		return ResponseReport{}, fmt.Errorf("%w: response report without decision id or api", ErrContract)
	case s.Status < 100 || s.Status > 999:
		return ResponseReport{}, fmt.Errorf("%w: response status %d", ErrContract, s.Status)
	case s.Rows < 0 || s.CellsMasked < 0 || s.DetectorHits < 0 || s.Bytes < 0:
		return ResponseReport{}, fmt.Errorf("%w: negative count in response summary", ErrContract)
	case !validDigest(s.Digest):
		return ResponseReport{}, fmt.Errorf("%w: response digest is not sha256:<64 hex>", ErrContract)
	case r.ResultTable != nil && !r.NamesJob():
		return ResponseReport{}, fmt.Errorf("%w: result table without a job", ErrContract)
	}
	return r, nil
}

func validDigest(d string) bool {
	h, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(h) != 64 {
		return false
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Marshal encodes a with the current version.
func (a ResponseReportAck) Marshal() ([]byte, error) {
	a.Version = Version
	return json.Marshal(a)
}

// ParseResponseReportAck decodes and checks an acknowledgement.
func ParseResponseReportAck(b []byte) (ResponseReportAck, error) {
	var a ResponseReportAck
	if err := decodeStrict(b, &a); err != nil {
		return ResponseReportAck{}, err
	}
	if a.Version != Version {
		return ResponseReportAck{}, fmt.Errorf("%w: response report ack version %q, want %q", ErrContract, a.Version, Version)
	}
	return a, nil
}
