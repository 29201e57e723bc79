package audit

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/jitgate/jitgate/controlplane/natsembed"
)

func TestAppendAndVerify(t *testing.T) {
	e := newEnv(t, Config{})
	as := appendN(t, e.w, 0, 50, "alice")
	for i, a := range as {
		if a.Seq != uint64(i+1) || len(a.Hash) != 64 {
			t.Fatalf("append %d = %+v", i, a)
		}
	}
	res := mustVerify(t, e.r)
	if !res.OK() || res.Records != 50 || res.FirstSeq != 1 || res.LastSeq != 50 || res.Truncated || res.HeadHash != as[49].Hash {
		t.Fatalf("verify = %+v broken=%v", res, res.Broken)
	}
	// The stored record is what was appended, with the chain fields set.
	got, err := e.r.Show(context.Background(), "dec_0000")
	if err != nil || len(got) != 2 {
		t.Fatalf("show = %v, %v", got, err)
	}
	r := got[0].Record
	if r.Seq != 1 || r.PrevHash != GenesisHash || r.Hash != as[0].Hash || r.Version != FormatVersion ||
		r.Writer != "cp-test" || r.Time.IsZero() || r.Agent.ID != "alice" || r.Kind != KindDecision {
		t.Fatalf("record 1 = %+v", r)
	}
	if got[1].Record.PrevHash != r.Hash || got[1].Record.Kind != KindResponse || got[1].Record.Response.Rows != 3 {
		t.Fatalf("record 2 = %+v", got[1].Record)
	}
	if n := counterValue(t, e.reg, "jitgate_audit_append_duration_seconds", map[string]string{"result": "ok"}); n != 50 {
		t.Errorf("latency observations = %v, want 50", n)
	}
}

func TestStreamConfig(t *testing.T) {
	e := newEnv(t, Config{MaxAge: 24 * time.Hour, MaxBytes: 32 << 20})
	info, err := e.w.stream.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c := info.Config
	if c.Name != DefaultStream || len(c.Subjects) != 1 || c.Subjects[0] != "jitgate.audit.>" || c.Storage != jetstream.FileStorage ||
		c.MaxAge != 24*time.Hour || c.MaxBytes != 32<<20 || c.Discard != jetstream.DiscardOld || !c.DenyDelete || !c.DenyPurge {
		t.Fatalf("stream config = %+v", c)
	}
	// Deletion is refused by the server.
	appendN(t, e.w, 0, 2, "a")
	if err := e.w.stream.DeleteMsg(context.Background(), 1); err == nil {
		t.Fatal("deny_delete stream deleted a record")
	}
	if err := e.w.stream.Purge(context.Background()); err == nil {
		t.Fatal("deny_purge stream purged")
	}
}

func TestAppendValidates(t *testing.T) {
	e := newEnv(t, Config{})
	for _, r := range []Record{{Kind: "other", DecisionID: "dec_1"}, {Kind: KindDecision}} {
		if _, err := e.w.Append(context.Background(), r); err == nil {
			t.Errorf("append %+v succeeded", r)
		}
	}
	if res := mustVerify(t, e.r); res.Records != 0 || !res.OK() {
		t.Fatalf("verify = %+v", res)
	}
	if n := counterValue(t, e.reg, "jitgate_audit_append_failures_total", map[string]string{"reason": FailureInvalid}); n != 2 {
		t.Errorf("invalid failures = %v", n)
	}
}

func TestExcerptCap(t *testing.T) {
	e := newEnv(t, Config{MaxExcerptBytes: 10})
	r := testRecord(1, "alice")
	r.Response.BodyExcerpt = "abcdefghé€xyz" // é starts at byte 8, € at 10
	if _, err := e.w.Append(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	got, _ := e.r.Show(context.Background(), r.DecisionID)
	resp := got[0].Record.Response
	if resp.BodyExcerpt != "abcdefghé" || !resp.ExcerptTruncated {
		t.Fatalf("excerpt = %q truncated=%v", resp.BodyExcerpt, resp.ExcerptTruncated)
	}
	if r.Response.BodyExcerpt != "abcdefghé€xyz" {
		t.Error("Append modified the caller's response")
	}
}

// tamperPublish stores doc as the next stream message, bypassing the writer.
func tamperPublish(t *testing.T, js jetstream.JetStream, subject string, doc []byte) {
	t.Helper()
	if _, err := js.Publish(context.Background(), subject, doc); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyNamesAlteredRecord(t *testing.T) {
	e := newEnv(t, Config{})
	as := appendN(t, e.w, 0, 10, "alice")
	// Record 11 is sealed like the writer would, then its SQL is changed after hashing.
	r := testRecord(10, "alice")
	r.DecisionID = "dec_tampered"
	r.Version, r.Seq, r.PrevHash, r.Time = FormatVersion, 11, as[9].Hash, time.Now().UTC()
	doc, err := seal(&r)
	if err != nil {
		t.Fatal(err)
	}
	altered := bytes.Replace(doc, []byte("WHERE id = 10"), []byte("WHERE id = 99"), 1)
	if bytes.Equal(altered, doc) {
		t.Fatal("tamper did not change the record")
	}
	tamperPublish(t, e.js, Subject(&r), altered)
	// The writer links later records to the stored hash; only record 11 is broken.
	appendN(t, e.w, 20, 5, "alice")
	res := mustVerify(t, e.r)
	if res.OK() || res.Broken.Seq != 11 || res.Broken.DecisionID != "dec_tampered" || !strings.Contains(res.Broken.Reason, "altered") {
		t.Fatalf("verify = %+v broken=%v", res, res.Broken)
	}
	if res.Records != 11 {
		t.Errorf("records checked = %d, want 11", res.Records)
	}
}

func TestVerifyNamesForgedLink(t *testing.T) {
	e := newEnv(t, Config{})
	appendN(t, e.w, 0, 5, "alice")
	// A correctly hashed record that links to the wrong predecessor (a record inserted by
	// someone who cannot see the chain) is named by its prevHash.
	r := testRecord(6, "mallory")
	r.DecisionID = "dec_forged"
	r.Version, r.Seq, r.PrevHash = FormatVersion, 6, strings.Repeat("ab", 32)
	doc, err := seal(&r)
	if err != nil {
		t.Fatal(err)
	}
	tamperPublish(t, e.js, Subject(&r), doc)
	appendN(t, e.w, 7, 3, "alice")
	res := mustVerify(t, e.r)
	if res.OK() || res.Broken.Seq != 6 || res.Broken.DecisionID != "dec_forged" || !strings.Contains(res.Broken.Reason, "prevHash") {
		t.Fatalf("verify = %+v broken=%v", res, res.Broken)
	}

	// A record claiming another position is named too.
	e2 := newEnv(t, Config{})
	as := appendN(t, e2.w, 0, 3, "alice")
	r.Seq, r.PrevHash = 7, as[2].Hash
	doc, _ = seal(&r)
	tamperPublish(t, e2.js, Subject(&r), doc)
	res = mustVerify(t, e2.r)
	if res.OK() || res.Broken.Seq != 4 || !strings.Contains(res.Broken.Reason, "stored at seq 4") {
		t.Fatalf("verify = %+v broken=%v", res, res.Broken)
	}
}

func TestVerifyNamesDeletedRecord(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, Config{AllowDelete: true})
	appendN(t, e.w, 0, 10, "alice")
	if err := e.w.stream.DeleteMsg(ctx, 4); err != nil {
		t.Fatal(err)
	}
	res := mustVerify(t, e.r)
	if res.OK() || res.Broken.Seq != 4 || !strings.Contains(res.Broken.Reason, "missing") || !strings.Contains(res.Broken.Reason, "seq 5") {
		t.Fatalf("verify = %+v broken=%v", res, res.Broken)
	}

	// Deleting the newest record is seen too, also once later records link past it.
	e = newEnv(t, Config{AllowDelete: true})
	appendN(t, e.w, 0, 6, "alice")
	if err := e.w.stream.DeleteMsg(ctx, 6); err != nil {
		t.Fatal(err)
	}
	if res := mustVerify(t, e.r); res.OK() || res.Broken.Seq != 6 {
		t.Fatalf("verify after tail delete = %+v broken=%v", res, res.Broken)
	}
	w2, err := Open(ctx, e.js, Config{AllowDelete: true, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if a := appendN(t, w2, 10, 2, "alice"); a[0].Seq != 7 {
		t.Fatalf("append after tail delete stored at %d", a[0].Seq)
	}
	if res := mustVerify(t, e.r); res.OK() || res.Broken.Seq != 6 {
		t.Fatalf("verify after tail delete and appends = %+v broken=%v", res, res.Broken)
	}
}

// TestVerifyNamesRecordAlteredOnDisk edits a record inside the JetStream file store while
// the server is down, the way someone with access to the disk would. The store notices the
// damaged message (its checksum) and stops serving it: Verify names it as missing. When the
// stream's index is removed too, the store silently truncates the stream before the damaged
// message, leaving a shorter chain that is valid in itself: only an anchor (the head
// printed by an earlier verify) shows the loss.
func TestVerifyNamesRecordAlteredOnDisk(t *testing.T) {
	for _, dropIndex := range []bool{false, true} {
		t.Run(map[bool]string{false: "edit", true: "edit-and-drop-index"}[dropIndex], func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			srv := startServer(t, dir, -1)
			_, js := connect(t, srv.ClientURL())
			w, err := Open(ctx, js, Config{Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			as := appendN(t, w, 0, 12, "alice")
			head := Anchor{Seq: 12, Hash: as[11].Hash}
			srv.Shutdown()
			srv.WaitForShutdown()

			msgs := filepath.Join(dir, "jetstream", "$G", "streams", DefaultStream, "msgs")
			blocks, _ := filepath.Glob(filepath.Join(msgs, "*.blk"))
			edited := false
			for _, b := range blocks {
				data, err := os.ReadFile(b)
				if err != nil {
					t.Fatal(err)
				}
				if i := bytes.Index(data, []byte("WHERE id = 6")); i >= 0 { // record 7
					copy(data[i:], "WHERE id = 7")
					if err := os.WriteFile(b, data, 0o600); err != nil {
						t.Fatal(err)
					}
					edited = true
				}
			}
			if !edited {
				t.Fatalf("record 7 not found in the store blocks %v", blocks)
			}
			if dropIndex {
				if err := os.Remove(filepath.Join(msgs, "index.db")); err != nil {
					t.Fatal(err)
				}
			}

			srv = startServer(t, dir, -1)
			defer srv.Shutdown()
			_, js = connect(t, srv.ClientURL())
			r, err := NewReader(ctx, js, "")
			if err != nil {
				t.Fatal(err)
			}
			res := mustVerify(t, r)
			if dropIndex {
				if !res.OK() || res.LastSeq != 6 {
					t.Fatalf("truncated store: verify without anchor = %+v broken=%v (expected a valid 6-record chain)", res, res.Broken)
				}
				res, err = r.Verify(ctx, head)
				if err != nil {
					t.Fatal(err)
				}
			}
			if res.OK() || res.Broken.Seq != 7 {
				t.Fatalf("verify = %+v broken=%v", res, res.Broken)
			}
			t.Logf("on-disk edit detected: %v", res.Broken)
		})
	}
}

func TestVerifyAnchor(t *testing.T) {
	e := newEnv(t, Config{})
	as := appendN(t, e.w, 0, 5, "alice")
	if res, _ := e.r.Verify(context.Background(), Anchor{3, as[2].Hash}, Anchor{5, as[4].Hash}); !res.OK() {
		t.Fatalf("verify with true anchors = %v", res.Broken)
	}
	res, _ := e.r.Verify(context.Background(), Anchor{3, as[1].Hash})
	if res.OK() || res.Broken.Seq != 3 || !strings.Contains(res.Broken.Reason, "anchor") {
		t.Fatalf("verify with a wrong anchor = %+v %v", res, res.Broken)
	}
	res, _ = e.r.Verify(context.Background(), Anchor{9, as[1].Hash})
	if res.OK() || res.Broken.Seq != 6 {
		t.Fatalf("verify with an anchor past the end = %+v %v", res, res.Broken)
	}
	if a, err := ParseAnchor("5:" + strings.ToUpper(as[4].Hash)); err != nil || a != (Anchor{5, as[4].Hash}) {
		t.Fatalf("ParseAnchor = %v, %v", a, err)
	}
	for _, bad := range []string{"", "5", "x:" + as[0].Hash, "0:" + as[0].Hash, "5:abc"} {
		if _, err := ParseAnchor(bad); err == nil {
			t.Errorf("ParseAnchor(%q) accepted", bad)
		}
	}
}

func TestChainSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	opts := natsembed.Options{StoreDir: t.TempDir(), MaxMemoryBytes: 16 << 20, MaxStoreBytes: 64 << 20, Logger: quiet}
	n, err := natsembed.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	w, err := Open(ctx, n.JetStream, Config{Logger: quiet, Name: "first"})
	if err != nil {
		t.Fatal(err)
	}
	before := appendN(t, w, 0, 5, "alice")
	n.Close()

	n, err = natsembed.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	w, err = Open(ctx, n.JetStream, Config{Logger: quiet, Name: "second"})
	if err != nil {
		t.Fatal(err)
	}
	after := appendN(t, w, 5, 5, "alice")
	if after[0].Seq != 6 {
		t.Fatalf("first append after restart at seq %d", after[0].Seq)
	}
	r, err := NewReader(ctx, n.JetStream, "")
	if err != nil {
		t.Fatal(err)
	}
	var rec6 Record
	_ = r.Scan(ctx, Filter{StartSeq: 6}, false, func(e Entry) error { rec6 = e.Record; return ErrStop })
	if rec6.PrevHash != before[4].Hash || rec6.Writer != "second" {
		t.Fatalf("record 6 = %+v, want prevHash %s", rec6, before[4].Hash)
	}
	if res := mustVerify(t, r); !res.OK() || res.Records != 10 {
		t.Fatalf("verify = %+v broken=%v", res, res.Broken)
	}
}

func TestConcurrentWritersMakeOneChain(t *testing.T) {
	ctx := context.Background()
	srv := startServer(t, t.TempDir(), -1)
	defer srv.Shutdown()
	const writers, goroutines, each = 2, 4, 40
	var ws []*Writer
	var regs []*prometheus.Registry
	e := &env{}
	for i := range writers {
		_, js := connect(t, srv.ClientURL())
		e.js = js
		reg := prometheus.NewRegistry()
		regs = append(regs, reg)
		w, err := Open(ctx, js, Config{Logger: quiet, Name: []string{"cp-a", "cp-b"}[i], Timeout: 5 * time.Second, Metrics: NewMetrics(reg)})
		if err != nil {
			t.Fatal(err)
		}
		ws = append(ws, w)
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers*goroutines*each)
	for _, w := range ws {
		for g := range goroutines {
			wg.Go(func() {
				for i := range each {
					r := testRecord(0, "alice")
					r.DecisionID = strings.Join([]string{"dec", w.cfg.Name, string(rune('a' + g)), string(rune('a' + i%26)), string(rune('a' + i/26))}, "_")
					r.RequestID = r.DecisionID
					if _, err := w.Append(ctx, r); err != nil {
						errs <- err
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	r, err := NewReader(ctx, e.js, "")
	if err != nil {
		t.Fatal(err)
	}
	res := mustVerify(t, r)
	if !res.OK() || res.Records != writers*goroutines*each {
		t.Fatalf("verify = %+v broken=%v", res, res.Broken)
	}
	perWriter := map[string]int{}
	seen := map[string]bool{}
	_ = r.Scan(ctx, Filter{}, false, func(e Entry) error {
		perWriter[e.Record.Writer]++
		if seen[e.Record.DecisionID] {
			t.Errorf("decision %s stored twice", e.Record.DecisionID)
		}
		seen[e.Record.DecisionID] = true
		return nil
	})
	if perWriter["cp-a"] != goroutines*each || perWriter["cp-b"] != goroutines*each {
		t.Fatalf("records per writer = %v", perWriter)
	}
	t.Logf("conflicts retried: cp-a %v, cp-b %v",
		counterValue(t, regs[0], "jitgate_audit_append_conflicts_total", nil),
		counterValue(t, regs[1], "jitgate_audit_append_conflicts_total", nil))
}

func TestStrictModeFailsFastWhenNATSIsDown(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	srv := startServer(t, dir, -1)
	port := srv.Addr().(*net.TCPAddr).Port
	nc, js := connect(t, srv.ClientURL())
	reg := prometheus.NewRegistry()
	// A long write timeout: failing fast must not mean "waited for the timeout".
	w, err := Open(ctx, js, Config{Logger: quiet, Metrics: NewMetrics(reg), Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, w, 0, 3, "alice")
	srv.Shutdown()
	srv.WaitForShutdown()
	waitFor(t, func() bool { return !nc.IsConnected() })

	start := time.Now()
	_, err = w.Append(ctx, testRecord(3, "alice"))
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("append with NATS down = %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("append took %s to fail: it waited for the write timeout instead of failing at once", d)
	}
	if n := counterValue(t, reg, "jitgate_audit_append_failures_total", map[string]string{"reason": FailureUnavailable}); n != 1 {
		t.Errorf("unavailable failures = %v", n)
	}
	if st := w.Status(); st.Stream != DefaultStream || st.LastSeq != 3 || st.Appended != 3 || st.Failed != 1 ||
		!strings.Contains(st.LastError, ErrUnavailable.Error()) || st.LastErrorAt.IsZero() {
		t.Errorf("status while down = %+v", st)
	}

	// Same port and store: the client reconnects and the chain goes on where it stopped.
	srv = startServer(t, dir, port)
	defer srv.Shutdown()
	waitFor(t, nc.IsConnected)
	a, err := w.Append(ctx, testRecord(4, "alice"))
	if err != nil || a.Seq != 4 {
		t.Fatalf("append after reconnect = %+v, %v", a, err)
	}
	if st := w.Status(); st.LastSeq != 4 || st.Appended != 4 || st.LastError == "" {
		t.Errorf("status after reconnect = %+v (the last error stays visible)", st)
	}
	r, _ := NewReader(ctx, js, "")
	if res := mustVerify(t, r); !res.OK() || res.Records != 4 {
		t.Fatalf("verify = %+v broken=%v", res, res.Broken)
	}
}

func TestStrictModeTimesOutWhenJetStreamDoesNotAnswer(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, Config{Timeout: 150 * time.Millisecond})
	appendN(t, e.w, 0, 1, "alice")
	// The stream disappears (someone deleted it): publishes get no stream to land in.
	if err := e.js.DeleteStream(ctx, DefaultStream); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := e.w.Append(ctx, testRecord(1, "alice")); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("append without stream = %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("append took %s to fail", d)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
