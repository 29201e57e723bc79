package audit

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Reader reads the audit stream: tail, show, replay, verify and export. It never writes.
type Reader struct {
	stream jetstream.Stream
	name   string
}

// NewReader opens the existing audit stream name (DefaultStream when empty).
func NewReader(ctx context.Context, js jetstream.JetStream, name string) (*Reader, error) {
	if name == "" {
		name = DefaultStream
	}
	st, err := js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("%w: stream %s does not exist (no control plane has written an audit record on this NATS yet)", ErrUnavailable, name)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: stream %s: %v", ErrUnavailable, name, err)
	}
	return &Reader{stream: st, name: name}, nil
}

// Entry is one stored record.
type Entry struct {
	// StreamSeq is the JetStream sequence the record is stored at.
	StreamSeq uint64
	Subject   string
	// Data is the record exactly as stored (what Export writes and Verify hashes).
	Data []byte
	// Record is Data decoded; Err says why it could not be.
	Record Record
	Err    error
}

func newEntry(seq uint64, subject string, data []byte) Entry {
	e := Entry{StreamSeq: seq, Subject: subject, Data: data}
	if err := json.Unmarshal(data, &e.Record); err != nil {
		e.Err = fmt.Errorf("record at stream seq %d is unreadable: %v", seq, err)
	}
	return e
}

// Filter selects records. Zero fields select everything.
type Filter struct {
	// Agent is an agent id (any issuer).
	Agent      string
	DecisionID string
	Kind       Kind
	// Since skips records stored before this time.
	Since time.Time
	// StartSeq skips records before this stream sequence.
	StartSeq uint64
}

// subject is the stream subject filter that selects f's records.
func (f Filter) subject() string {
	if f.Kind == "" && f.Agent == "" && f.DecisionID == "" {
		return SubjectPrefix + ".>"
	}
	kind, agent, dec := "*", "*", "*"
	if f.Kind != "" {
		kind = token(string(f.Kind))
	}
	if f.Agent != "" {
		agent = token(f.Agent)
	}
	if f.DecisionID != "" {
		dec = token(f.DecisionID)
	}
	return SubjectPrefix + "." + kind + "." + agent + "." + dec
}

// ErrStop ends a Scan early without an error.
var ErrStop = errors.New("stop")

// Scan calls fn with every record f selects, in stream order. Without follow it returns
// once it has passed the last matching record stored when it started; with follow it
// waits for new records until ctx ends (and then returns nil). fn returning ErrStop ends
// the scan with nil.
func (r *Reader) Scan(ctx context.Context, f Filter, follow bool, fn func(Entry) error) error {
	err := r.scan(ctx, f, follow, fn)
	if errors.Is(err, ErrStop) || (follow && ctx.Err() != nil) {
		return nil
	}
	return err
}

func (r *Reader) scan(ctx context.Context, f Filter, follow bool, fn func(Entry) error) error {
	subj := f.subject()
	var end uint64
	if !follow {
		m, err := r.stream.GetLastMsgForSubject(ctx, subj)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: last record: %v", ErrUnavailable, err)
		}
		if m.Sequence < f.StartSeq || (!f.Since.IsZero() && m.Time.Before(f.Since)) {
			return nil
		}
		end = m.Sequence
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{subj}, DeliverPolicy: jetstream.DeliverAllPolicy}
	switch {
	case f.StartSeq > 0:
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, f.StartSeq
	case !f.Since.IsZero():
		since := f.Since
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &since
	}
	cons, err := r.stream.OrderedConsumer(ctx, cfg)
	if err != nil {
		return fmt.Errorf("%w: consumer: %v", ErrUnavailable, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("%w: consumer: %v", ErrUnavailable, err)
	}
	defer it.Stop()
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%w: read: %v", ErrUnavailable, err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			return fmt.Errorf("%w: metadata: %v", ErrUnavailable, err)
		}
		seq := meta.Sequence.Stream
		if !f.Since.IsZero() && f.StartSeq > 0 && meta.Timestamp.Before(f.Since) {
			continue
		}
		if err := fn(newEntry(seq, msg.Subject(), msg.Data())); err != nil {
			return err
		}
		if !follow && (seq >= end || meta.NumPending == 0) {
			return nil
		}
	}
}

// Show returns the records of one decision (its decision record and response records).
func (r *Reader) Show(ctx context.Context, decisionID string) ([]Entry, error) {
	var out []Entry
	err := r.Scan(ctx, Filter{DecisionID: decisionID}, false, func(e Entry) error {
		out = append(out, e)
		return nil
	})
	return out, err
}

// Replay calls fn with an agent's records since a time, in the order they were stored.
// An empty agent replays everyone.
func (r *Reader) Replay(ctx context.Context, agent string, since time.Time, fn func(Entry) error) error {
	return r.Scan(ctx, Filter{Agent: agent, Since: since}, false, fn)
}

// Tail calls fn with the last n records (of one agent when agent is set) and, with
// follow, every later one until ctx ends.
func (r *Reader) Tail(ctx context.Context, agent string, n int, follow bool, fn func(Entry) error) error {
	info, err := r.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("%w: stream info: %v", ErrUnavailable, err)
	}
	last := info.State.LastSeq
	if n > 0 {
		f := Filter{Agent: agent}
		if agent == "" && last >= uint64(n) {
			f.StartSeq = max(info.State.FirstSeq, last-uint64(n)+1)
		}
		ring := make([]Entry, 0, n)
		err := r.Scan(ctx, f, false, func(e Entry) error {
			if len(ring) == n {
				ring = append(ring[:0], ring[1:]...)
			}
			ring = append(ring, e)
			last = max(last, e.StreamSeq)
			return nil
		})
		if err != nil {
			return err
		}
		for _, e := range ring {
			if err := fn(e); err != nil {
				if errors.Is(err, ErrStop) {
					return nil
				}
				return err
			}
		}
	}
	if !follow {
		return nil
	}
	return r.Scan(ctx, Filter{Agent: agent, StartSeq: last + 1}, true, fn)
}

// Export writes every record f selects as JSON lines, exactly as stored (so an exported
// file can be verified with VerifyJSONL), and returns how many it wrote.
func (r *Reader) Export(ctx context.Context, w io.Writer, f Filter) (int, error) {
	bw := bufio.NewWriterSize(w, 64<<10)
	n := 0
	err := r.Scan(ctx, f, false, func(e Entry) error {
		if _, err := bw.Write(e.Data); err != nil {
			return err
		}
		n++
		return bw.WriteByte('\n')
	})
	if ferr := bw.Flush(); err == nil {
		err = ferr
	}
	return n, err
}

// Break is the first record that breaks the chain.
type Break struct {
	// Seq is the chain position (stream sequence) of the broken or missing record.
	Seq uint64
	// DecisionID is the broken record's decision id ("" for a missing record).
	DecisionID string
	// Reason says what is wrong.
	Reason string
}

func (b *Break) String() string {
	if b.DecisionID == "" {
		return fmt.Sprintf("seq %d: %s", b.Seq, b.Reason)
	}
	return fmt.Sprintf("seq %d (decision %s): %s", b.Seq, b.DecisionID, b.Reason)
}

// VerifyResult is the outcome of a chain verification.
type VerifyResult struct {
	// Records is how many records were checked (up to and including a broken one).
	Records int
	// FirstSeq and LastSeq are the chain positions checked.
	FirstSeq, LastSeq uint64
	// HeadHash is the hash of the last record checked; anchor it elsewhere to detect a
	// rewrite of the whole tail.
	HeadHash string
	// Truncated is true when the chain starts after seq 1: the earlier records were removed
	// by the retention limits (or a purge), and the first record's link is not checked.
	Truncated bool
	// Broken is the first broken record, nil when the chain is intact.
	Broken *Break
}

// OK reports whether the checked chain is intact.
func (v VerifyResult) OK() bool { return v.Broken == nil }

// Anchor is a chain position and hash recorded outside the stream (the HeadHash of an
// earlier verify). A store that lost or rewrote its newest records can present a shorter
// chain that is valid in itself; an anchor says how long it was.
type Anchor struct {
	Seq  uint64
	Hash string
}

// ParseAnchor reads "SEQ:HASH".
func ParseAnchor(s string) (Anchor, error) {
	seq, hash, ok := strings.Cut(s, ":")
	n, err := strconv.ParseUint(seq, 10, 64)
	if !ok || err != nil || n == 0 || len(hash) != 64 {
		return Anchor{}, fmt.Errorf("anchor %q is not SEQ:HASH (as printed by jitgate audit verify)", s)
	}
	return Anchor{Seq: n, Hash: strings.ToLower(hash)}, nil
}

func (a Anchor) String() string { return strconv.FormatUint(a.Seq, 10) + ":" + a.Hash }

// chain checks records one by one, in order.
type chain struct {
	res      VerifyResult
	prevPos  uint64
	prevHash string
	anchors  map[uint64]string
}

// finish checks that the chain reached every anchor.
func (c *chain) finish() {
	if c.res.Broken != nil {
		return
	}
	var beyond uint64
	for seq := range c.anchors {
		beyond = max(beyond, seq)
	}
	if beyond > c.res.LastSeq {
		c.res.Broken = &Break{Seq: c.res.LastSeq + 1, Reason: fmt.Sprintf(
			"record missing: the chain ends at seq %d but an anchor says seq %d existed (records lost or removed from the store)", c.res.LastSeq, beyond)}
	}
}

type chainFields struct {
	Seq        uint64 `json:"seq"`
	PrevHash   string `json:"prevHash"`
	DecisionID string `json:"decisionId"`
}

// add checks the record at chain position pos (the stream sequence, or for an export the
// record's own seq when pos is 0); it returns false once the chain is broken.
func (c *chain) add(pos uint64, data []byte) bool {
	var f chainFields
	ferr := json.Unmarshal(data, &f)
	if pos == 0 {
		pos = f.Seq
	}
	brk := func(reason string, args ...any) bool {
		c.res.Broken = &Break{Seq: pos, DecisionID: f.DecisionID, Reason: fmt.Sprintf(reason, args...)}
		c.res.Records++
		c.res.LastSeq = pos
		return false
	}
	first := c.res.Records == 0
	if !first && pos != c.prevPos+1 {
		if pos <= c.prevPos {
			return brk("out of order: follows seq %d", c.prevPos)
		}
		next := fmt.Sprintf("seq %d", pos)
		if f.DecisionID != "" {
			next += " (decision " + f.DecisionID + ")"
		}
		c.res.Broken = &Break{Seq: c.prevPos + 1, Reason: fmt.Sprintf("record missing (deleted, or damaged in the store); the next stored record is %s", next)}
		return false
	}
	if first {
		c.res.FirstSeq = pos
		c.res.Truncated = pos > 1
	}
	computed, stored, err := HashOf(data)
	if err != nil || ferr != nil {
		return brk("not a JSON audit record")
	}
	if stored != computed {
		return brk("content does not match its hash (record altered)")
	}
	if f.Seq != pos {
		return brk("record says seq %d but is stored at seq %d", f.Seq, pos)
	}
	switch {
	case !first && f.PrevHash != c.prevHash:
		return brk("prevHash does not match the hash of record seq %d", c.prevPos)
	case first && pos == 1 && f.PrevHash != GenesisHash:
		return brk("first record's prevHash is not the genesis hash")
	}
	if want, ok := c.anchors[pos]; ok && want != stored {
		return brk("hash does not match the anchor %s (the chain was rewritten from here or earlier)", Anchor{pos, want})
	}
	c.prevPos, c.prevHash = pos, stored
	c.res.Records++
	c.res.LastSeq, c.res.HeadHash = pos, stored
	return true
}

// Verify recomputes the chain from the first stored record to the last one stored when
// it started and names the first broken record; each anchor must be on the chain (anchors
// before the first stored record cannot be checked). An error means the stream could not
// be read (nothing is known about the chain).
func (r *Reader) Verify(ctx context.Context, anchors ...Anchor) (VerifyResult, error) {
	info, err := r.stream.Info(ctx)
	if err != nil {
		return VerifyResult{}, fmt.Errorf("%w: stream info: %v", ErrUnavailable, err)
	}
	last := info.State.LastSeq
	c := chain{anchors: map[uint64]string{}}
	for _, a := range anchors {
		if a.Seq >= info.State.FirstSeq {
			c.anchors[a.Seq] = a.Hash
		}
	}
	if info.State.Msgs > 0 {
		err = r.Scan(ctx, Filter{}, false, func(e Entry) error {
			if e.StreamSeq > last {
				return ErrStop
			}
			if !c.add(e.StreamSeq, e.Data) {
				return ErrStop
			}
			return nil
		})
		if err != nil {
			return VerifyResult{}, err
		}
	}
	if c.res.Broken == nil && c.res.LastSeq < last {
		// The newest records were deleted (their sequences are still the stream's last).
		if c.res.Records == 0 {
			c.res.FirstSeq, c.res.Truncated = last+1, last > 0
		} else {
			c.res.Broken = &Break{Seq: c.res.LastSeq + 1, Reason: fmt.Sprintf("record missing (deleted, or damaged in the store); the stream's last sequence is %d", last)}
		}
	}
	if c.res.Records > 0 {
		c.finish()
	}
	return c.res, nil
}

// VerifyJSONL checks the chain of an exported file (jitgate audit export): consecutive
// seqs, each prevHash the previous hash, each hash its content.
func VerifyJSONL(rd io.Reader) (VerifyResult, error) {
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	var c chain
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 {
			continue
		}
		if !c.add(0, append([]byte(nil), line...)) {
			break
		}
	}
	return c.res, sc.Err()
}
