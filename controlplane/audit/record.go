// Package audit is jitgate's tamper-evident audit trail: every authorize decision and every
// response summary becomes one Record appended to the JetStream stream JITGATE_AUDIT
// (subjects jitgate.audit.<kind>.<agent>.<decision id>), hash-chained so that altering,
// removing or reordering a stored record is detected by Verify.
//
// # Chain format
//
// Each stored message is the JSON of one Record. A record carries:
//
//   - seq: its position in the chain, equal to the JetStream stream sequence it was stored
//     at (the writer publishes with Nats-Expected-Last-Sequence = seq-1, so this holds by
//     construction, also with several writers on one stream);
//   - prevHash: the hash of the record stored at seq-1 (64 zeros for seq 1, the genesis);
//   - hash: hex(sha256(canonical JSON of the record with the "hash" member removed)).
//
// Canonical JSON is the record's JSON re-encoded with object members sorted by key, no
// insignificant whitespace, numbers verbatim, and strings escaped as Go's encoding/json
// escapes them with HTML escaping off (see Canonical). The hash is computed from the stored
// JSON, not from this package's struct, so a verifier also checks records carrying members
// it does not know.
//
// Verify walks the stream from its first stored message and reports the first record that
// breaks the chain: a record whose hash does not match its content, whose prevHash is not
// the previous record's hash, whose seq is not its stream position, or that is missing (a
// deleted message). Records removed from the front by the stream's retention limits (max
// age, max bytes) cannot be checked; Verify says from which seq the chain was checked.
// The chain proves integrity against anyone who cannot rewrite the whole stream tail; to
// protect against that, anchor the head (seq and hash, printed by `jitgate audit verify`)
// somewhere else from time to time.
//
// # Secrets
//
// A Record holds only strings, numbers and string slices. The upstream credential is
// represented by its id (CredentialID), the agent's token not at all, query parameters by
// a digest. A credentials.Secret cannot be stored in any field without an explicit
// Reveal(), and formats as "[REDACTED]" through every printing path.
package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jitgate/jitgate/filter/authorize"
	"github.com/jitgate/jitgate/policies"
)

// FormatVersion is the record format this package writes ("v").
const FormatVersion = 1

// GenesisHash is the prevHash of the record at seq 1.
const GenesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

// Kind says what a record describes.
type Kind string

// Record kinds.
const (
	// KindDecision is an authorize decision (allow, deny, pending).
	KindDecision Kind = "decision"
	// KindResponse is the summary of a response released to the agent.
	KindResponse Kind = "response"
	// KindApproval is an approver's decision on an approval (controlplane/approvals):
	// DecisionID and ApprovalID are the approval id, Agent the requesting agent, Approver
	// who decided, Decision "approved" or "denied", Reason the approver's reason.
	KindApproval Kind = "approval"
)

// Valid reports whether k is a known kind.
func (k Kind) Valid() bool { return k == KindDecision || k == KindResponse || k == KindApproval }

// Agent is the verified agent of a decision (empty when its identity could not be
// established).
type Agent struct {
	ID     string   `json:"id,omitempty"`
	Issuer string   `json:"issuer,omitempty"`
	Groups []string `json:"groups,omitempty"`
}

// Client is the caller as Envoy saw it.
type Client struct {
	Address   string `json:"address,omitempty"`
	UserAgent string `json:"userAgent,omitempty"`
}

// Analysis is the SQL analysis summary of a query decision.
type Analysis struct {
	StatementKind    string   `json:"statementKind,omitempty"`
	ReferencedTables []string `json:"referencedTables,omitempty"`
	WrittenTables    []string `json:"writtenTables,omitempty"`
	// NotAnalysed says why the SQL of an allowed query was not analysed ("legacy SQL",
	// granted by a policy's what.legacySql); the other fields are then empty: its tables
	// are unknown.
	NotAnalysed string `json:"notAnalysed,omitempty"`
}

// Masking is the masking instruction an allowed call's response was sent with: which
// result positions get which action, the detectors, and the basis of the agent's rules
// (never the hash key).
type Masking struct {
	// Rules are "path:action", e.g. "1.0:hash" for the first field of the second column.
	Rules     []string `json:"rules,omitempty"`
	Detectors []string `json:"detectors,omitempty"`
	Basis     string   `json:"basis,omitempty"`
}

// MaskingOf is the audit summary of a masking instruction (nil for nil).
func MaskingOf(m *authorize.Masking, basis string) *Masking {
	if m == nil && basis == "" {
		return nil
	}
	out := &Masking{Basis: basis}
	if m != nil {
		for _, r := range m.Rules {
			p := make([]string, len(r.Path))
			for i, x := range r.Path {
				p[i] = strconv.Itoa(x)
			}
			out.Rules = append(out.Rules, strings.Join(p, ".")+":"+string(r.Action))
		}
		out.Detectors = m.Detectors
	}
	return out
}

// Response summarises what the agent received (kind "response").
type Response struct {
	// UpstreamStatus is BigQuery's HTTP status.
	UpstreamStatus int `json:"upstreamStatus,omitempty"`
	// Rows is the number of rows returned to the agent.
	Rows int64 `json:"rows"`
	// CellsMasked is the number of cells the filter masked.
	CellsMasked int64 `json:"cellsMasked"`
	// Masked says the body was masked by the decision's masking instruction;
	// DetectorHits counts the cells content detectors redacted.
	Masked       bool  `json:"masked,omitempty"`
	DetectorHits int64 `json:"detectorHits,omitempty"`
	// MessagesWithheld: BigQuery's error messages in the body were replaced.
	MessagesWithheld bool `json:"messagesWithheld,omitempty"`
	// Encoding is the released body's Content-Encoding ("" for identity); the excerpt
	// is always decoded.
	Encoding string `json:"encoding,omitempty"`
	// Bytes is the size of the body released to the agent.
	Bytes int64 `json:"bytes"`
	// Digest is "sha256:<hex>" of the body released to the agent (after masking).
	Digest string `json:"digest,omitempty"`
	// BodyExcerpt is the start of the masked body, at most the writer's excerpt cap.
	BodyExcerpt string `json:"bodyExcerpt,omitempty"`
	// ExcerptTruncated is true when BodyExcerpt is shorter than the body.
	ExcerptTruncated bool `json:"excerptTruncated,omitempty"`
}

// Record is one audit record. Every field is plain data that is safe to store; see the
// package documentation for why no secret can be put in one.
type Record struct {
	// Version is the record format (FormatVersion). Set by the writer.
	Version int `json:"v"`
	// Seq, PrevHash and Hash chain the record; set by the writer.
	Seq      uint64 `json:"seq"`
	PrevHash string `json:"prevHash"`
	Hash     string `json:"hash,omitempty"`
	// Writer names the control plane that appended the record; set by the writer.
	Writer string `json:"writer,omitempty"`

	Kind Kind `json:"kind"`
	// Time is when the decision was made or the response released; the writer sets it
	// when zero.
	Time       time.Time `json:"time"`
	DecisionID string    `json:"decisionId"`
	RequestID  string    `json:"requestId,omitempty"`
	Agent      Agent     `json:"agent"`
	Client     Client    `json:"client"`

	API      string `json:"api,omitempty"`
	Project  string `json:"project,omitempty"`
	Dataset  string `json:"dataset,omitempty"`
	Table    string `json:"table,omitempty"`
	JobID    string `json:"jobId,omitempty"`
	Location string `json:"location,omitempty"`

	// SQL is the query text as the agent sent it.
	SQL string `json:"sql,omitempty"`
	// ParametersDigest is "sha256:<hex>" of the query parameters' JSON (ParametersDigest),
	// so equal parameters can be matched without storing their values.
	ParametersDigest string    `json:"parametersDigest,omitempty"`
	Analysis         *Analysis `json:"analysis,omitempty"`

	// Decision is "allow", "deny" or "pending" (kind decision).
	Decision string `json:"decision,omitempty"`
	// Status is the HTTP status the agent got for a denied call.
	Status int `json:"status,omitempty"`
	// Reason is the decision's stable reason code ("table_denied", "ok").
	Reason string `json:"reason,omitempty"`
	// Rule is the policy rule that decided ("no-select-star", "where.tables.deny").
	Rule string `json:"rule,omitempty"`
	// Step is the pipeline step that denied ("identity", "policy").
	Step string `json:"step,omitempty"`
	// Policy is "name@version" of the deciding policy; PolicyBundle the bundle version.
	Policy       string `json:"policy,omitempty"`
	PolicyBundle string `json:"policyBundle,omitempty"`

	ApprovalID string `json:"approvalId,omitempty"`
	Approver   string `json:"approver,omitempty"`

	// CredentialID identifies the minted upstream credential (credentials.Credential.ID),
	// never the credential itself.
	CredentialID string `json:"credentialId,omitempty"`
	// Masking is what the filter was told to mask in the response of an allowed call.
	Masking *Masking `json:"masking,omitempty"`

	// Response is set on kind response.
	Response *Response `json:"response,omitempty"`
}

// Canonical re-encodes a JSON document canonically: object members sorted by key, no
// insignificant whitespace, numbers verbatim, strings as encoding/json escapes them with
// HTML escaping off. Two documents with the same members and values have the same
// canonical form.
func Canonical(doc []byte) ([]byte, error) {
	v, err := decodeJSON(doc)
	if err != nil {
		return nil, err
	}
	return encodeCanonical(v)
}

func decodeJSON(doc []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data after JSON document")
	}
	return v, nil
}

func encodeCanonical(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil { // maps encode with sorted keys
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// HashOf returns the chain hash of a stored record: hex sha256 of the canonical JSON of
// doc with its top-level "hash" member removed. It also returns the "hash" member as
// stored ("" when absent or not a string).
func HashOf(doc []byte) (computed, stored string, err error) {
	v, err := decodeJSON(doc)
	if err != nil {
		return "", "", err
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return "", "", errors.New("record is not a JSON object")
	}
	if h, ok := obj["hash"].(string); ok {
		stored = h
	}
	delete(obj, "hash")
	c, err := encodeCanonical(obj)
	if err != nil {
		return "", "", err
	}
	sum := sha256.Sum256(c)
	return hex.EncodeToString(sum[:]), stored, nil
}

// seal sets r.Hash and returns the JSON to store.
func seal(r *Record) ([]byte, error) {
	r.Hash = ""
	doc, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	h, _, err := HashOf(doc)
	if err != nil {
		return nil, err
	}
	r.Hash = h
	return json.Marshal(r)
}

// Digest returns "sha256:<hex>" of b.
func Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// ParametersDigest is the digest of a query's parameters: Digest of their canonical JSON,
// or "" when there are none.
func ParametersDigest(q *authorize.Query) string {
	if q == nil || len(q.Parameters) == 0 {
		return ""
	}
	doc, err := json.Marshal(q.Parameters)
	if err != nil {
		return ""
	}
	if c, err := Canonical(doc); err == nil {
		doc = c
	}
	return Digest(doc)
}

// FromRequest starts a decision record from the filter's authorize request: request id,
// client, call and query. The agent's token is never copied.
func FromRequest(decisionID string, req authorize.Request) Record {
	r := Record{
		Kind:       KindDecision,
		DecisionID: decisionID,
		RequestID:  req.RequestID,
		Client:     Client{Address: req.Client.Address, UserAgent: req.Client.UserAgent},
		API:        req.Call.API,
		Project:    req.Call.Project,
		Dataset:    req.Call.Dataset,
		Table:      req.Call.Table,
		JobID:      req.Call.JobID,
		Location:   req.Call.Location,
	}
	if q := req.Query; q != nil {
		r.SQL = q.SQL
		r.ParametersDigest = ParametersDigest(q)
	}
	return r
}

// SummaryOf is the audit summary of a SQL analysis (nil for nil).
func SummaryOf(a *policies.Analysis) *Analysis {
	if a == nil {
		return nil
	}
	return &Analysis{StatementKind: a.StatementKind, ReferencedTables: a.ReferencedTables, WrittenTables: a.WrittenTables}
}

// truncateUTF8 cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// validate checks what the caller must fill in.
func (r *Record) validate() error {
	if !r.Kind.Valid() {
		return fmt.Errorf("audit: record kind %q is not %q, %q or %q", r.Kind, KindDecision, KindResponse, KindApproval)
	}
	if r.DecisionID == "" {
		return errors.New("audit: record has no decision id")
	}
	return nil
}
