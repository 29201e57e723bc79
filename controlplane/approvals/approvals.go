// Package approvals owns human approvals of agent queries: the approval records in the
// JetStream KV bucket jitgate_approvals (so every control-plane replica and a restart see
// the same approvals), the events on the JetStream stream JITGATE_APPROVAL_EVENTS
// (subjects jitgate.approvals.created|approved|denied|expired), the authorize step that
// requires them (Step), the approvers' HTTP API (Handler) and webhook notifications
// (Notifier).
//
// An approval is bound to the agent (issuer and id) and to a fingerprint of exactly what
// will run: the API, project, SQL text, default dataset, dialect, parameters (names, types
// and values), byte ceiling (maximumBytesBilled), destination and dry-run flag, or the
// table of a tabledata.list. The same agent sending the same call finds the same approval
// (one binding key per agent and fingerprint); anything else is a new approval.
//
// States: pending (waiting for an approver; expires after the rule's ttl), approved (uses
// left until its own expiry), denied (answers every retry of the same call with the
// denial until the request would have expired), expired, used (no uses left). Every state
// change is a compare-and-set on the record's KV revision, so two replicas consuming the
// last use of an approval, or two approvers deciding at once, cannot both win.
package approvals

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jitgate/jitgate/controlplane/audit"
	"github.com/jitgate/jitgate/filter/authorize"
	"github.com/jitgate/jitgate/filter/bqapi"
	"github.com/jitgate/jitgate/policies"
)

// Names of the NATS resources.
const (
	// Bucket holds approvals ("a.<id>") and bindings ("b.<hash>" -> approval id).
	Bucket = "jitgate_approvals"
	// EventsStream keeps approval events for notifications and `jitgate approvals watch`.
	EventsStream = "JITGATE_APPROVAL_EVENTS"
	// SubjectPrefix is the prefix of every event subject: jitgate.approvals.<event>.
	SubjectPrefix = "jitgate.approvals"
	// BucketTTL outlives the longest approval (168h) and its pending window.
	BucketTTL = 15 * 24 * time.Hour
	// EventsMaxBytes caps the events stream (oldest events go first); events are
	// notifications, the approvals themselves live in the bucket.
	EventsMaxBytes = 4 << 20
	// DefaultTimeout bounds each KV operation.
	DefaultTimeout = 2 * time.Second
)

// Event types (the last subject token).
const (
	EventCreated  = "created"
	EventApproved = "approved"
	EventDenied   = "denied"
	EventExpired  = "expired"
)

// State is an approval's state.
type State string

// Approval states.
const (
	StatePending  State = "pending"
	StateApproved State = "approved"
	StateDenied   State = "denied"
	StateExpired  State = "expired"
	StateUsed     State = "used"
)

// Errors. Handler maps them to HTTP statuses.
var (
	ErrUnavailable = errors.New("approvals unavailable")
	ErrNotFound    = errors.New("no such approval")
	ErrNotApprover = errors.New("not an approver of this approval")
	ErrSelf        = errors.New("nobody approves their own request")
	ErrNotPending  = errors.New("approval is not pending")
	ErrInvalid     = errors.New("invalid approval decision")
)

// Agent is the requesting agent.
type Agent struct {
	ID     string   `json:"id"`
	Issuer string   `json:"issuer"`
	Groups []string `json:"groups,omitempty"`
}

// Binding is exactly what an approval allows to run.
type Binding struct {
	API            string          `json:"api"`
	Project        string          `json:"project"`
	Dataset        string          `json:"dataset,omitempty"`
	Table          string          `json:"table,omitempty"`
	SQL            string          `json:"sql,omitempty"`
	LegacySQL      bool            `json:"legacySql,omitempty"`
	DefaultDataset string          `json:"defaultDataset,omitempty"`
	ParameterMode  string          `json:"parameterMode,omitempty"`
	Parameters     json.RawMessage `json:"parameters,omitempty"`
	// MaximumBytesBilled is the byte ceiling the agent sent (nil: none).
	MaximumBytesBilled *int64 `json:"maximumBytesBilled,omitempty"`
	Destination        string `json:"destination,omitempty"`
	WriteDisposition   string `json:"writeDisposition,omitempty"`
	DryRun             bool   `json:"dryRun,omitempty"`
}

// BindingOf extracts the binding of an authorize request.
func BindingOf(req authorize.Request) Binding {
	b := Binding{API: req.Call.API, Project: req.Call.Project, Dataset: req.Call.Dataset, Table: req.Call.Table}
	if q := req.Query; q != nil {
		b.SQL, b.LegacySQL, b.ParameterMode = strings.TrimSpace(q.SQL), q.LegacySQL, q.ParameterMode
		b.DryRun, b.WriteDisposition = q.DryRun, q.WriteDisposition
		if d := q.DefaultDataset; d != nil {
			b.DefaultDataset = d.ProjectID + "." + d.DatasetID
		}
		if len(q.Parameters) > 0 {
			if doc, err := json.Marshal(q.Parameters); err == nil {
				if c, err := audit.Canonical(doc); err == nil {
					doc = c
				}
				b.Parameters = doc
			}
		}
		if q.MaximumBytesBilled != nil {
			v := *q.MaximumBytesBilled
			b.MaximumBytesBilled = &v
		}
		if d := q.Destination; d != nil {
			b.Destination = tableName(req.Call.Project, d)
		}
	}
	return b
}

func tableName(project string, t *bqapi.TableReference) string {
	if t.ProjectID != "" {
		project = t.ProjectID
	}
	return project + "." + t.DatasetID + "." + t.TableID
}

// Fingerprint is "sha256:<hex>" over the canonical JSON of b.
func (b Binding) Fingerprint() string {
	doc, _ := json.Marshal(b)
	if c, err := audit.Canonical(doc); err == nil {
		doc = c
	}
	return audit.Digest(doc)
}

// Requirement is one approval rule the call is subject to, with who may approve it
// (resolved from the policy bundle's ApproverGroups when the approval was created).
type Requirement struct {
	Policy         string   `json:"policy"` // name@version
	Rule           string   `json:"rule"`
	ApproverGroups []string `json:"approverGroups"`
	// Members and Groups are the union of the approver groups' members and OIDC groups.
	Members []string `json:"members,omitempty"`
	Groups  []string `json:"groups,omitempty"`
	// Approvers are the approver groups one by one, each with the issuers its approvers'
	// tokens must come from (an identity is unique only within its issuer). When set,
	// they decide instead of Members and Groups (kept for display and older records).
	Approvers []ApproverSet `json:"approvers,omitempty"`
}

// ApproverSet is one approver group's members and OIDC groups, valid from Issuers (empty:
// any trusted issuer).
type ApproverSet struct {
	Issuers []string `json:"issuers,omitempty"`
	Members []string `json:"members,omitempty"`
	Groups  []string `json:"groups,omitempty"`
}

// allows reports whether the approver (identity, issuer and groups) may approve this
// requirement.
func (r Requirement) allows(who Approver) bool {
	if len(r.Approvers) > 0 {
		for _, s := range r.Approvers {
			if len(s.Issuers) > 0 && !slices.Contains(s.Issuers, who.Issuer) {
				continue
			}
			if (Requirement{Members: s.Members, Groups: s.Groups}).allows(Approver{ID: who.ID, Groups: who.Groups}) {
				return true
			}
		}
		return false
	}
	id, groups := who.ID, who.Groups
	if slices.Contains(r.Members, id) {
		return true
	}
	for _, g := range groups {
		if slices.Contains(r.Groups, g) {
			return true
		}
	}
	return false
}

// Approval is one record of the bucket.
type Approval struct {
	ID          string  `json:"id"`
	State       State   `json:"state"`
	Agent       Agent   `json:"agent"`
	Binding     Binding `json:"binding"`
	Fingerprint string  `json:"fingerprint"`
	// Requirements: an approver must be allowed by every one.
	Requirements []Requirement         `json:"requirements"`
	Mode         policies.ApprovalMode `json:"mode"`
	// TTL and Uses are what an approval grants unless the approver says otherwise.
	TTL         policies.Duration `json:"ttl"`
	Uses        int               `json:"uses"`
	HoldTimeout policies.Duration `json:"holdTimeout,omitempty"`
	// DecisionID is the authorize decision that created the approval.
	DecisionID string    `json:"decisionId"`
	CreatedAt  time.Time `json:"createdAt"`
	// ExpiresAt: a pending approval's request expires, a granted one stops being usable.
	ExpiresAt time.Time `json:"expiresAt"`
	DecidedAt time.Time `json:"decidedAt,omitzero"`
	Approver  string    `json:"approver,omitempty"`
	// ApproverIssuer is the issuer of the approver's token.
	ApproverIssuer string `json:"approverIssuer,omitempty"`
	Reason         string `json:"reason,omitempty"`
	UsesLeft       int    `json:"usesLeft"`

	revision uint64
}

// effective is the state at now (a pending or approved record past its expiry is
// expired; an approved one without uses is used).
func (a *Approval) effective(now time.Time) State {
	switch a.State {
	case StatePending, StateApproved:
		if !now.Before(a.ExpiresAt) {
			return StateExpired
		}
		if a.State == StateApproved && a.UsesLeft <= 0 {
			return StateUsed
		}
	}
	return a.State
}

// Waiting describes what is waiting, in one line, for messages and notifications.
func (a *Approval) Waiting() string {
	b := a.Binding
	what := b.API + " in " + b.Project
	switch {
	case b.SQL != "":
		what = fmt.Sprintf("%s by agent %s: %s", b.API, a.Agent.ID, oneLine(b.SQL, 200))
	case b.Table != "":
		what = fmt.Sprintf("%s of %s.%s.%s by agent %s", b.API, b.Project, b.Dataset, b.Table, a.Agent.ID)
	}
	return what
}

// ApproverGroupNames lists every approver group named by the requirements.
func (a *Approval) ApproverGroupNames() []string {
	var out []string
	for _, r := range a.Requirements {
		for _, g := range r.ApproverGroups {
			if !slices.Contains(out, g) {
				out = append(out, g)
			}
		}
	}
	return out
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}

// Auditor appends audit records (*audit.Writer).
type Auditor interface {
	Append(ctx context.Context, r audit.Record) (audit.Appended, error)
}

// Options configure a Broker.
type Options struct {
	Logger  *slog.Logger
	Metrics *Metrics
	// Audit records every approver decision; required in jitgated (nil: not recorded).
	Audit   Auditor
	Timeout time.Duration
	// Replicas of the bucket and stream (a NATS cluster); default 1.
	Replicas int
	Now      func() time.Time
}

// Broker creates, finds, consumes and decides approvals. It keeps no state of its own.
type Broker struct {
	kv      jetstream.KeyValue
	js      jetstream.JetStream
	log     *slog.Logger
	metrics *Metrics
	audit   Auditor
	timeout time.Duration
	now     func() time.Time
}

// Open creates (or adopts) the bucket and the events stream.
func Open(ctx context.Context, js jetstream.JetStream, o Options) (*Broker, error) {
	if js == nil {
		return nil, errors.New("approvals: JetStream is required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: Bucket, History: 1, TTL: BucketTTL,
		Storage: jetstream.FileStorage, Replicas: o.Replicas,
		Description: "jitgate: human approvals (a.<id>) and their bindings (b.<agent+fingerprint>)"})
	if err != nil {
		return nil, fmt.Errorf("%w: bucket %s: %v", ErrUnavailable, Bucket, natsError(err))
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: EventsStream,
		Subjects: []string{SubjectPrefix + ".>"}, Storage: jetstream.FileStorage, Replicas: o.Replicas,
		MaxAge: BucketTTL, MaxBytes: EventsMaxBytes, Discard: jetstream.DiscardOld,
		Description: "jitgate: approval events (created, approved, denied, expired)"}); err != nil {
		return nil, fmt.Errorf("%w: stream %s: %v", ErrUnavailable, EventsStream, natsError(err))
	}
	return &Broker{kv: kv, js: js, log: o.Logger, metrics: o.Metrics, audit: o.Audit, timeout: o.Timeout, now: o.Now}, nil
}

// Metrics returns the broker's metrics.
func (b *Broker) Metrics() *Metrics { return b.metrics }

func (b *Broker) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, b.timeout)
}

func approvalKey(id string) string { return "a." + id }

func bindingKey(agent Agent, fingerprint string) string {
	sum := sha256.Sum256([]byte(agent.Issuer + "\x00" + agent.ID + "\x00" + fingerprint))
	return "b." + hex.EncodeToString(sum[:20])
}

// NewID returns a fresh approval id: "apr-" and 16 hex digits.
func NewID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "apr-" + hex.EncodeToString(b[:])
}

// ValidID reports whether s looks like an approval id.
func ValidID(s string) bool {
	if len(s) != 20 || !strings.HasPrefix(s, "apr-") {
		return false
	}
	_, err := hex.DecodeString(s[4:])
	return err == nil
}

// Get returns approval id.
func (b *Broker) Get(ctx context.Context, id string) (*Approval, error) {
	if !ValidID(id) {
		return nil, ErrNotFound
	}
	ctx, cancel := b.ctx(ctx)
	defer cancel()
	return b.get(ctx, id)
}

func (b *Broker) get(ctx context.Context, id string) (*Approval, error) {
	e, err := b.kv.Get(ctx, approvalKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("%w: get %s: %v", ErrUnavailable, id, natsError(err))
	}
	return decode(e)
}

func decode(e jetstream.KeyValueEntry) (*Approval, error) {
	var a Approval
	if err := json.Unmarshal(e.Value(), &a); err != nil {
		return nil, fmt.Errorf("%w: approval %s is not readable: %v", ErrUnavailable, e.Key(), err)
	}
	a.revision = e.Revision()
	return &a, nil
}

// update stores a at its revision (compare-and-set); jetstream's wrong-sequence error
// means someone else changed it first.
func (b *Broker) update(ctx context.Context, a *Approval) error {
	doc, err := json.Marshal(a)
	if err != nil {
		return err
	}
	rev, err := b.kv.Update(ctx, approvalKey(a.ID), doc, a.revision)
	if err != nil {
		return err
	}
	a.revision = rev
	return nil
}

// List returns every approval in the bucket (newest first), with expired and used states
// as of now.
func (b *Broker) List(ctx context.Context) ([]*Approval, error) {
	ctx, cancel := context.WithTimeout(ctx, 4*b.timeout)
	defer cancel()
	lister, err := b.kv.ListKeysFiltered(ctx, "a.*")
	if err != nil {
		return nil, fmt.Errorf("%w: list: %v", ErrUnavailable, natsError(err))
	}
	var out []*Approval
	now := b.now()
	for k := range lister.Keys() {
		a, err := b.get(ctx, strings.TrimPrefix(k, "a."))
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			_ = lister.Stop()
			return nil, err
		}
		a.State = a.effective(now)
		out = append(out, a)
	}
	slices.SortFunc(out, func(x, y *Approval) int { return y.CreatedAt.Compare(x.CreatedAt) })
	return out, nil
}

// Request is what the authorize step asks for.
type Request struct {
	DecisionID   string
	Agent        Agent
	Binding      Binding
	Requirements []Requirement
	Mode         policies.ApprovalMode
	TTL          time.Duration
	Uses         int
	HoldTimeout  time.Duration
}

// Outcome is what Require found.
type Outcome struct {
	// Approval is the approval (consumed, pending or denied).
	Approval *Approval
	// Consumed: one use was taken and the call may run.
	Consumed bool
	// Created: the approval was created by this call.
	Created bool
}

// Require finds the approval of r's binding. An approved one with uses left loses one use
// (compare-and-set) and Consumed is set; a pending or denied one is returned as it is;
// otherwise (none, expired, used up) a new pending approval is created and announced.
func (b *Broker) Require(ctx context.Context, r Request) (Outcome, error) {
	fp := r.Binding.Fingerprint()
	bkey := bindingKey(r.Agent, fp)
	ctx, cancel := context.WithTimeout(ctx, 4*b.timeout)
	defer cancel()
	for attempt := 0; attempt < 8; attempt++ {
		be, err := b.kv.Get(ctx, bkey)
		if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return Outcome{}, fmt.Errorf("%w: binding: %v", ErrUnavailable, natsError(err))
		}
		var bindingRev uint64
		if be != nil {
			bindingRev = be.Revision()
			a, err := b.get(ctx, string(be.Value()))
			if err != nil && !errors.Is(err, ErrNotFound) {
				return Outcome{}, err
			}
			if a != nil && a.Fingerprint == fp && a.Agent.ID == r.Agent.ID && a.Agent.Issuer == r.Agent.Issuer {
				now := b.now()
				switch a.effective(now) {
				case StateApproved:
					if err := ctx.Err(); err != nil {
						// The caller is gone: never spend a use on an answer nobody receives.
						return Outcome{}, fmt.Errorf("%w: %v", ErrUnavailable, natsError(err))
					}
					a.UsesLeft--
					// The write runs to its end even if the caller goes away meanwhile: a
					// write cancelled in flight may still land, and a use spent without the
					// caller knowing could never be given back (the caller's undo does that
					// once it learns the outcome).
					uctx, ucancel := context.WithTimeout(context.WithoutCancel(ctx), b.timeout)
					err := b.update(uctx, a)
					ucancel()
					if err != nil {
						if isConflict(err) {
							continue
						}
						return Outcome{}, fmt.Errorf("%w: consume %s: %v", ErrUnavailable, a.ID, natsError(err))
					}
					b.metrics.consumed()
					return Outcome{Approval: a, Consumed: true}, nil
				case StatePending:
					return Outcome{Approval: a}, nil
				case StateDenied:
					if now.Before(a.ExpiresAt) {
						return Outcome{Approval: a}, nil // a denial stands for the request's lifetime
					}
				case StateExpired:
					b.markExpired(ctx, a)
				}
			}
		}
		// Creating and binding an approval is finished even if the caller goes away
		// meanwhile (cctx): a half-made approval (stored, never bound) would be listed and
		// decidable but never found by the call's next attempt.
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 2*b.timeout)
		a, err := b.create(cctx, r, fp)
		if err != nil {
			ccancel()
			return Outcome{}, err
		}
		if be == nil {
			_, err = b.kv.Create(cctx, bkey, []byte(a.ID))
		} else {
			_, err = b.kv.Update(cctx, bkey, []byte(a.ID), bindingRev)
		}
		if err != nil {
			// Another replica bound the call first: drop ours and use theirs.
			_ = b.kv.Delete(cctx, approvalKey(a.ID))
			ccancel()
			if isConflict(err) || errors.Is(err, jetstream.ErrKeyExists) {
				continue
			}
			return Outcome{}, fmt.Errorf("%w: bind %s: %v", ErrUnavailable, a.ID, natsError(err))
		}
		ccancel()
		b.metrics.created()
		b.publish(ctx, EventCreated, a)
		b.log.LogAttrs(ctx, slog.LevelInfo, "approval created", slog.String("approval_id", a.ID),
			slog.String("agent", a.Agent.ID), slog.String("mode", string(a.Mode)), slog.String("decision_id", r.DecisionID),
			slog.Any("approver_groups", a.ApproverGroupNames()), slog.String("fingerprint", a.Fingerprint))
		return Outcome{Approval: a, Created: true}, nil
	}
	return Outcome{}, fmt.Errorf("%w: too much contention on the approval of this call", ErrUnavailable)
}

// Return gives back the use of approval id that a call consumed and then did not run
// (see authz.Call.OnUndo): compare-and-set, so a concurrent consumer or sweep is never
// overwritten. An approval that was denied or expired meanwhile is left as it is.
func (b *Broker) Return(ctx context.Context, id, decisionID string) error {
	ctx, cancel := context.WithTimeout(ctx, 4*b.timeout)
	defer cancel()
	for attempt := 0; attempt < 8; attempt++ {
		a, err := b.get(ctx, id)
		if err != nil {
			b.metrics.returnedUse("failed")
			return err
		}
		if a.State != StateApproved {
			b.metrics.returnedUse("failed")
			return fmt.Errorf("%w: %s is %s", ErrNotPending, id, a.State)
		}
		a.UsesLeft++
		if err := b.update(ctx, a); err != nil {
			if isConflict(err) {
				continue
			}
			b.metrics.returnedUse("failed")
			return fmt.Errorf("%w: return a use of %s: %v", ErrUnavailable, id, natsError(err))
		}
		b.metrics.returnedUse("returned")
		b.log.LogAttrs(ctx, slog.LevelInfo, "approval use returned", slog.String("approval_id", id),
			slog.String("decision_id", decisionID), slog.Int("uses_left", a.UsesLeft))
		return nil
	}
	b.metrics.returnedUse("failed")
	return fmt.Errorf("%w: too much contention on approval %s", ErrUnavailable, id)
}

func (b *Broker) create(ctx context.Context, r Request, fp string) (*Approval, error) {
	now := b.now().UTC()
	a := &Approval{
		ID: NewID(), State: StatePending, Agent: r.Agent, Binding: r.Binding, Fingerprint: fp,
		Requirements: r.Requirements, Mode: r.Mode, TTL: policies.Duration(r.TTL), Uses: r.Uses,
		HoldTimeout: policies.Duration(r.HoldTimeout), DecisionID: r.DecisionID,
		CreatedAt: now, ExpiresAt: now.Add(r.TTL),
	}
	if r.Mode != policies.ApprovalHold {
		a.HoldTimeout = 0
	}
	doc, err := json.Marshal(a)
	if err != nil {
		return nil, err
	}
	rev, err := b.kv.Create(ctx, approvalKey(a.ID), doc)
	if err != nil {
		return nil, fmt.Errorf("%w: create approval: %v", ErrUnavailable, natsError(err))
	}
	a.revision = rev
	return a, nil
}

// natsError says in words what nats.go reports tersely when jitgated's connection to NATS
// is down (writes fail at once instead of being buffered: controlplane/natsembed).
func natsError(err error) error {
	if errors.Is(err, nats.ErrReconnectBufExceeded) || errors.Is(err, nats.ErrConnectionReconnecting) ||
		errors.Is(err, nats.ErrNoServers) || errors.Is(err, nats.ErrConnectionClosed) {
		return fmt.Errorf("NATS is not reachable (%v)", err)
	}
	return err
}

func isConflict(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
		return true
	}
	return errors.Is(err, jetstream.ErrKeyExists)
}

// markExpired records that a is expired and announces it (once: compare-and-set).
func (b *Broker) markExpired(ctx context.Context, a *Approval) {
	if a.State != StatePending && a.State != StateApproved {
		return
	}
	was := a.State
	a.State = StateExpired
	if err := b.update(ctx, a); err != nil {
		a.State = was
		return
	}
	if was == StatePending {
		b.metrics.decided("expired", a.CreatedAt, b.now())
	}
	b.publish(ctx, EventExpired, a)
}

// Event is the JSON of an approval event.
type Event struct {
	Type     string    `json:"type"`
	Time     time.Time `json:"time"`
	Approval *Approval `json:"approval"`
	// Waiting is Approval.Waiting(), for readers that only print a line.
	Waiting string `json:"waiting"`
	// ApproveCommand is the command an approver runs.
	ApproveCommand string `json:"approveCommand"`
}

// ApproveCommand is the command an approver runs for id.
func ApproveCommand(id string) string { return "jitgate approve " + id }

// publish announces an event on jitgate.approvals.<type>; a failure is logged and counted
// (the approval itself is stored and listed either way).
func (b *Broker) publish(ctx context.Context, typ string, a *Approval) {
	ev := Event{Type: typ, Time: b.now().UTC(), Approval: a, Waiting: a.Waiting(), ApproveCommand: ApproveCommand(a.ID)}
	doc, err := json.Marshal(ev)
	if err == nil {
		_, err = b.js.Publish(ctx, SubjectPrefix+"."+typ, doc, jetstream.WithMsgID(typ+"-"+a.ID+"-"+fmt.Sprint(a.revision)))
	}
	if err != nil {
		b.metrics.eventFailed()
		b.log.LogAttrs(ctx, slog.LevelError, "approval event not published", slog.String("approval_id", a.ID),
			slog.String("event", typ), slog.String("error", err.Error()))
	}
}

// Wait watches approval id until it is no longer pending, ctx ends or timeout passes; it
// returns the approval as last seen (still pending on timeout).
func (b *Broker) Wait(ctx context.Context, id string, timeout time.Duration) (*Approval, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	w, err := b.kv.Watch(ctx, approvalKey(id))
	if err != nil {
		return nil, fmt.Errorf("%w: watch %s: %v", ErrUnavailable, id, natsError(err))
	}
	defer func() { _ = w.Stop() }()
	var last *Approval
	for {
		select {
		case <-ctx.Done():
			if last == nil {
				return nil, ctx.Err()
			}
			return last, ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return last, fmt.Errorf("%w: watch of %s ended", ErrUnavailable, id)
			}
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue // end of the initial values, or a delete
			}
			a, err := decode(e)
			if err != nil {
				return nil, err
			}
			last = a
			if a.effective(b.now()) != StatePending {
				return a, nil
			}
		}
	}
}

// Approver is the verified identity of a person deciding.
type Approver struct {
	ID     string
	Issuer string
	Groups []string
}

// Decision is an approver's answer.
type Decision struct {
	Approve bool
	// Uses and TTL override the rule's defaults when approving (0: the rule's).
	Uses   int
	TTL    time.Duration
	Reason string
}

// MayDecide reports whether who may decide a (and why not).
func (a *Approval) MayDecide(who Approver) error {
	if who.ID == a.Agent.ID && who.Issuer == a.Agent.Issuer {
		return ErrSelf
	}
	for _, r := range a.Requirements {
		if !r.allows(who) {
			return fmt.Errorf("%w: %s is not in approver groups %s of policy %s rule %s", ErrNotApprover, who.ID,
				strings.Join(r.ApproverGroups, ", "), r.Policy, r.Rule)
		}
	}
	return nil
}

// Decide records who's decision on approval id (compare-and-set: exactly one decision
// wins), appends it to the audit trail and announces it. If the audit record cannot be
// written the decision is rolled back and ErrUnavailable returned.
func (b *Broker) Decide(ctx context.Context, id string, who Approver, d Decision) (*Approval, error) {
	if d.Uses < 0 || d.Uses > 1000 {
		return nil, fmt.Errorf("%w: uses %d outside 1..1000", ErrInvalid, d.Uses)
	}
	if d.TTL < 0 || d.TTL > time.Duration(policies.MaxApprovalTTL) {
		return nil, fmt.Errorf("%w: ttl %s outside 1s..168h", ErrInvalid, d.TTL)
	}
	if !d.Approve && strings.TrimSpace(d.Reason) == "" {
		return nil, fmt.Errorf("%w: a denial needs a reason", ErrInvalid)
	}
	if len(d.Reason) > 1000 {
		return nil, fmt.Errorf("%w: reason longer than 1000 bytes", ErrInvalid)
	}
	a, err := b.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	ctx, cancel := b.ctx(ctx)
	defer cancel()
	if err := a.MayDecide(who); err != nil {
		return nil, err
	}
	now := b.now().UTC()
	if st := a.effective(now); st != StatePending {
		if st == StateExpired {
			b.markExpired(ctx, a)
		}
		return a, fmt.Errorf("%w: %s is %s", ErrNotPending, id, st)
	}
	prev := *a
	a.DecidedAt, a.Approver, a.ApproverIssuer, a.Reason = now, who.ID, who.Issuer, strings.TrimSpace(d.Reason)
	event := EventDenied
	if d.Approve {
		event = EventApproved
		a.State = StateApproved
		a.UsesLeft = a.Uses
		if d.Uses > 0 {
			a.UsesLeft = d.Uses
		}
		ttl := time.Duration(a.TTL)
		if d.TTL > 0 {
			ttl = d.TTL
		}
		a.ExpiresAt = now.Add(ttl)
	} else {
		a.State = StateDenied
	}
	if err := b.update(ctx, a); err != nil {
		if isConflict(err) {
			return nil, fmt.Errorf("%w: %s was decided by someone else at the same time", ErrNotPending, id)
		}
		return nil, fmt.Errorf("%w: decide %s: %v", ErrUnavailable, id, natsError(err))
	}
	if b.audit != nil {
		rec := audit.Record{Kind: audit.KindApproval, DecisionID: a.ID, Time: now,
			Agent: audit.Agent{ID: a.Agent.ID, Issuer: a.Agent.Issuer, Groups: a.Agent.Groups},
			API:   a.Binding.API, Project: a.Binding.Project, Dataset: a.Binding.Dataset, Table: a.Binding.Table,
			SQL: a.Binding.SQL, Decision: string(a.State), Reason: a.Reason, ApprovalID: a.ID, Approver: who.ID,
			Policy: requirementPolicies(a)}
		if len(a.Binding.Parameters) > 0 {
			rec.ParametersDigest = audit.Digest(a.Binding.Parameters)
		}
		if _, err := b.audit.Append(context.WithoutCancel(ctx), rec); err != nil {
			// Not recorded: undo, so no call runs on an unaudited approval.
			prev.revision = a.revision
			if uerr := b.update(context.WithoutCancel(ctx), &prev); uerr != nil {
				b.log.LogAttrs(ctx, slog.LevelError, "approval decision not audited and not rolled back",
					slog.String("approval_id", id), slog.String("error", uerr.Error()))
			}
			return nil, fmt.Errorf("%w: the decision could not be recorded in the audit trail: %v", ErrUnavailable, natsError(err))
		}
	}
	b.metrics.decided(string(a.State), a.CreatedAt, now)
	b.publish(ctx, event, a)
	b.log.LogAttrs(ctx, slog.LevelInfo, "approval decided", slog.String("approval_id", a.ID),
		slog.String("state", string(a.State)), slog.String("approver", who.ID), slog.String("agent", a.Agent.ID),
		slog.Int("uses", a.UsesLeft), slog.Time("expires_at", a.ExpiresAt))
	return a, nil
}

func requirementPolicies(a *Approval) string {
	var ps []string
	for _, r := range a.Requirements {
		ps = append(ps, r.Policy+"/"+r.Rule)
	}
	return strings.Join(ps, ",")
}

// Sweep marks expired approvals (announcing each once) and sets the pending gauge.
func (b *Broker) Sweep(ctx context.Context) error {
	all, err := b.List(ctx)
	if err != nil {
		return err
	}
	pending := 0
	for _, a := range all {
		switch a.State {
		case StatePending:
			pending++
		case StateExpired:
			// List reports the effective state; reload to see whether it is stored so.
			if cur, err := b.Get(ctx, a.ID); err == nil && cur.State != StateExpired {
				b.markExpired(ctx, cur)
			}
		}
	}
	b.metrics.setPending(pending)
	return nil
}

// Run sweeps every interval until ctx ends.
func (b *Broker) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := b.Sweep(ctx); err != nil && ctx.Err() == nil {
			b.log.Warn("approval sweep failed", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
