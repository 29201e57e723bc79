package audit

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"regexp"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Stream defaults.
const (
	// DefaultStream is the audit stream's name.
	DefaultStream = "JITGATE_AUDIT"
	// SubjectPrefix prefixes every audit subject:
	// jitgate.audit.<kind>.<agent>.<decision id>, where <agent> and <decision id> are the
	// values themselves when they consist of [A-Za-z0-9_-], else "=" and their unpadded
	// base64url ("=" alone for an empty agent: a call whose identity failed).
	SubjectPrefix = "jitgate.audit"
	// DefaultTimeout bounds one Append (all its retries); the filter's callout times out
	// at 2s and must get the 503 before that.
	DefaultTimeout = time.Second
	// DefaultMaxExcerptBytes caps Response.BodyExcerpt.
	DefaultMaxExcerptBytes = 16 << 10
	// maxAttempts bounds optimistic-concurrency retries of one Append.
	maxAttempts = 64
)

// ErrUnavailable wraps every failure to write (or read) the audit stream. A caller in
// strict mode fails the call it describes closed (503).
var ErrUnavailable = errors.New("audit trail unavailable")

// Config configures the audit stream and a Writer.
type Config struct {
	// Stream is the stream name. Default DefaultStream.
	Stream string
	// MaxAge drops records older than this (0 keeps them until MaxBytes).
	MaxAge time.Duration
	// MaxBytes caps the stream's size; the oldest records are dropped beyond it (with
	// DiscardNew, appends fail instead and the gateway fails closed). 0 or -1 is unlimited
	// (bounded only by the JetStream account/server store limit, past which appends fail).
	MaxBytes int64
	// DiscardNew refuses appends when MaxBytes is reached instead of dropping old records.
	DiscardNew bool
	// Replicas of the stream in a NATS cluster. Default 1.
	Replicas int
	// AllowDelete leaves the stream's message delete and purge APIs enabled. By default the
	// stream is created with deny_delete and deny_purge (which NATS never lets anyone turn
	// off again), so records leave only through the retention limits.
	AllowDelete bool
	// Name identifies this writer in its records ("writer"). Default the host name.
	Name string
	// Timeout bounds one Append. Default DefaultTimeout.
	Timeout time.Duration
	// MaxExcerptBytes caps Response.BodyExcerpt; 0 means DefaultMaxExcerptBytes, a
	// negative value stores no excerpt.
	MaxExcerptBytes int
	// Metrics records append latency and failures; nil records into a private registry.
	Metrics *Metrics
	// Logger receives failures. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = -1
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.Name == "" {
		c.Name, _ = os.Hostname()
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxExcerptBytes == 0 {
		c.MaxExcerptBytes = DefaultMaxExcerptBytes
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(prometheus.NewRegistry())
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// StreamConfig is the JetStream configuration of the audit stream for c.
func (c Config) StreamConfig() jetstream.StreamConfig {
	c = c.withDefaults()
	discard := jetstream.DiscardOld
	if c.DiscardNew {
		discard = jetstream.DiscardNew
	}
	return jetstream.StreamConfig{
		Name:        c.Stream,
		Description: "jitgate: hash-chained audit records of every decision and response",
		Subjects:    []string{SubjectPrefix + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      c.MaxAge,
		MaxBytes:    c.MaxBytes,
		MaxMsgs:     -1,
		Discard:     discard,
		Replicas:    c.Replicas,
		DenyDelete:  !c.AllowDelete,
		DenyPurge:   !c.AllowDelete,
	}
}

// Writer appends records to the audit stream. It is safe for concurrent use, and several
// Writers (in several control planes) on one stream produce one valid chain.
type Writer struct {
	js      jetstream.JetStream
	stream  jetstream.Stream
	cfg     Config
	subject string

	mu       sync.Mutex
	loaded   bool
	lastSeq  uint64 // the stream's last sequence, as far as this writer knows
	lastHash string // the hash the next record links to

	statusMu sync.Mutex // separate from mu: Status must not wait behind a slow Append
	status   Status
}

// Status is what a Writer reports for operators (jitgated's /v1/status).
type Status struct {
	// Stream is the audit stream's name.
	Stream string `json:"stream"`
	// LastSeq is the sequence of the last record this writer appended (at Open: the
	// chain's last record); LastAppend when it did.
	LastSeq    uint64    `json:"lastSeq"`
	LastAppend time.Time `json:"lastAppend,omitzero"`
	// Appended and Failed count this writer's appends since Open.
	Appended uint64 `json:"appended"`
	Failed   uint64 `json:"failed"`
	// LastError is the last failure ("" when none) and LastErrorAt when it happened; it
	// stays after later successes so an operator sees what happened.
	LastError   string    `json:"lastError,omitempty"`
	LastErrorAt time.Time `json:"lastErrorAt,omitzero"`
}

// Status reports the writer's state.
func (w *Writer) Status() Status {
	w.statusMu.Lock()
	defer w.statusMu.Unlock()
	return w.status
}

// Appended says where a record was stored.
type Appended struct {
	Seq  uint64
	Hash string
	// Duplicate is true when an earlier attempt of the same Append had already been
	// stored (its acknowledgement was lost); Hash is then that stored record's hash.
	Duplicate bool
}

// Open creates the audit stream (or updates it to cfg) and returns a Writer on it; it
// reads the chain's tail so the first Append links to the last stored record.
func Open(ctx context.Context, js jetstream.JetStream, cfg Config) (*Writer, error) {
	if js == nil {
		return nil, errors.New("audit: JetStream is required")
	}
	cfg = cfg.withDefaults()
	st, err := js.CreateOrUpdateStream(ctx, cfg.StreamConfig())
	if err != nil {
		return nil, fmt.Errorf("%w: stream %s: %v", ErrUnavailable, cfg.Stream, err)
	}
	w := &Writer{js: js, stream: st, cfg: cfg, subject: SubjectPrefix}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.loadTail(ctx); err != nil {
		return nil, err
	}
	w.status = Status{Stream: cfg.Stream, LastSeq: w.lastSeq}
	return w, nil
}

// Metrics returns the writer's metrics.
func (w *Writer) Metrics() *Metrics { return w.cfg.Metrics }

// Subject is the subject a record is stored under.
func Subject(r *Record) string {
	return SubjectPrefix + "." + string(r.Kind) + "." + token(r.Agent.ID) + "." + token(r.DecisionID)
}

var plainToken = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// token makes s a subject token; injective (a plain token never starts with "=").
func token(s string) string {
	if plainToken.MatchString(s) {
		return s
	}
	return "=" + base64.RawURLEncoding.EncodeToString([]byte(s))
}

// Append stores r as the next record of the chain and returns its place. The writer sets
// Version, Writer, Seq, PrevHash, Hash and (when zero) Time, and caps the body excerpt. An
// error wrapping ErrUnavailable means the record was not written (or, after a timeout,
// may not have been): the caller must not forward or release what it describes. Append
// never drops a record silently and never waits longer than the configured Timeout.
func (w *Writer) Append(ctx context.Context, r Record) (Appended, error) {
	start := time.Now()
	if err := r.validate(); err != nil {
		w.cfg.Metrics.failed(FailureInvalid, time.Since(start))
		w.noteFailure(err)
		return Appended{}, err
	}
	if r.Time.IsZero() {
		r.Time = w.cfg.Now()
	}
	r.Time = r.Time.UTC()
	r.Version, r.Writer = FormatVersion, w.cfg.Name
	if resp := r.Response; resp != nil {
		c := *resp
		if w.cfg.MaxExcerptBytes < 0 {
			c.BodyExcerpt, c.ExcerptTruncated = "", c.Bytes > 0 || c.BodyExcerpt != ""
		} else if len(c.BodyExcerpt) > w.cfg.MaxExcerptBytes {
			c.BodyExcerpt, c.ExcerptTruncated = truncateUTF8(c.BodyExcerpt, w.cfg.MaxExcerptBytes), true
		}
		r.Response = &c
	}
	subject := Subject(&r)
	msgID := newMsgID()

	ctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	w.mu.Lock()
	defer w.mu.Unlock()
	a, reason, err := w.append(ctx, &r, subject, msgID)
	if err != nil {
		w.cfg.Metrics.failed(reason, time.Since(start))
		w.cfg.Logger.LogAttrs(ctx, slog.LevelError, "audit record not written",
			slog.String("decision_id", r.DecisionID), slog.String("kind", string(r.Kind)),
			slog.String("reason", reason), slog.String("error", err.Error()))
		w.noteFailure(err)
		return Appended{}, err
	}
	w.cfg.Metrics.appended(time.Since(start))
	w.statusMu.Lock()
	w.status.LastSeq, w.status.LastAppend = a.Seq, w.cfg.Now().UTC()
	w.status.Appended++
	w.statusMu.Unlock()
	return a, nil
}

func (w *Writer) noteFailure(err error) {
	w.statusMu.Lock()
	defer w.statusMu.Unlock()
	w.status.Failed++
	w.status.LastError, w.status.LastErrorAt = err.Error(), w.cfg.Now().UTC()
}

func (w *Writer) append(ctx context.Context, r *Record, subject, msgID string) (Appended, string, error) {
	for attempt := 1; ; attempt++ {
		// Fail at once while the connection is down instead of buffering the publish until
		// the timeout: the agent gets its 503 quickly and retries.
		if nc := w.js.Conn(); nc != nil && !nc.IsConnected() {
			w.loaded = false
			return Appended{}, FailureUnavailable, fmt.Errorf("%w: nats connection %s", ErrUnavailable, nc.Status())
		}
		if !w.loaded {
			if err := w.loadTail(ctx); err != nil {
				return Appended{}, FailureUnavailable, err
			}
		}
		r.Seq, r.PrevHash = w.lastSeq+1, w.lastHash
		doc, err := seal(r)
		if err != nil {
			return Appended{}, FailureInvalid, fmt.Errorf("audit: encode record: %w", err)
		}
		ack, err := w.js.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: doc},
			jetstream.WithExpectStream(w.cfg.Stream),
			jetstream.WithExpectLastSequence(w.lastSeq),
			jetstream.WithMsgID(msgID))
		if err == nil && ack.Duplicate {
			// An earlier attempt was stored after all; report it and re-read the tail.
			w.loaded = false
			a := Appended{Seq: ack.Sequence, Duplicate: true}
			if m, gerr := w.stream.GetMsg(ctx, ack.Sequence); gerr == nil {
				_, a.Hash, _ = HashOf(m.Data)
			}
			return a, "", nil
		}
		if err == nil {
			if ack.Sequence != r.Seq {
				// Cannot happen with Nats-Expected-Last-Sequence; Verify would name it.
				w.loaded = false
				w.cfg.Logger.Error("audit record stored out of chain position",
					"decision_id", r.DecisionID, "seq", r.Seq, "stream_seq", ack.Sequence)
			} else {
				w.lastSeq, w.lastHash = r.Seq, r.Hash
			}
			return Appended{Seq: ack.Sequence, Hash: r.Hash}, "", nil
		}
		w.loaded = false
		if !isWrongLastSequence(err) {
			return Appended{}, FailureUnavailable, fmt.Errorf("%w: publish: %v", ErrUnavailable, err)
		}
		// Another writer extended the chain first: re-read the tail and link to it.
		w.cfg.Metrics.conflict()
		if attempt >= maxAttempts {
			return Appended{}, FailureConflict, fmt.Errorf("%w: chain still contended after %d attempts", ErrUnavailable, attempt)
		}
		if err := sleepJitter(ctx, attempt); err != nil {
			return Appended{}, FailureUnavailable, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
	}
}

// loadTail reads the stream's last sequence and the hash of its last stored record.
func (w *Writer) loadTail(ctx context.Context) error {
	info, err := w.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("%w: stream info: %v", ErrUnavailable, err)
	}
	last := info.State.LastSeq
	hash := GenesisHash
	if info.State.Msgs > 0 && last > 0 {
		m, err := w.stream.GetMsg(ctx, last)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			// The last message was deleted: link to the last one left; the gap stays
			// visible to Verify.
			m, err = w.stream.GetLastMsgForSubject(ctx, SubjectPrefix+".>")
		}
		if err != nil {
			return fmt.Errorf("%w: read chain tail: %v", ErrUnavailable, err)
		}
		if m.Sequence > last {
			last = m.Sequence
		}
		hash = linkHash(m.Data)
	} else if last > 0 && w.lastSeq == last && w.lastHash != "" {
		// Every record expired or was purged, but this writer knows the hash of the last.
		hash = w.lastHash
	}
	w.lastSeq, w.lastHash, w.loaded = last, hash, true
	return nil
}

// linkHash is what the record after doc links to: doc's stored hash, or (for a record
// without one, or not even JSON) the sha256 of its bytes, so the chain goes on and Verify
// names the broken record.
func linkHash(doc []byte) string {
	if _, stored, err := HashOf(doc); err == nil && stored != "" {
		return stored
	}
	return Digest(doc)[len("sha256:"):]
}

func isWrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
	}
	return false
}

func sleepJitter(ctx context.Context, attempt int) error {
	limit := int64(min(attempt, 10)) * int64(200*time.Microsecond)
	n, _ := rand.Int(rand.Reader, big.NewInt(limit))
	t := time.NewTimer(time.Duration(n.Int64()))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func newMsgID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "audit-" + hex.EncodeToString(b[:])
}

// Decision returns the stored decision record with this decision id, or nil when the
// stream holds none (never decided here, expired by the retention limits, or not
// written: relaxed mode). The response records of a decision join to it by id.
func (w *Writer) Decision(ctx context.Context, decisionID string) (*Record, error) {
	if decisionID == "" {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	subj := SubjectPrefix + "." + string(KindDecision) + ".*." + token(decisionID)
	m, err := w.stream.GetLastMsgForSubject(ctx, subj)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: read decision %s: %v", ErrUnavailable, decisionID, err)
	}
	var r Record
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return nil, fmt.Errorf("%w: decision %s unreadable: %v", ErrUnavailable, decisionID, err)
	}
	return &r, nil
}
