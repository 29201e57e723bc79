package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jitgate/jitgate/controlplane/audit"
)

// auditServer runs NATS with JetStream on a loopback client port (what the CLI needs; the
// embedded server in jitgated is in-process only) and an audit writer on it.
func auditServer(t *testing.T) (string, jetstream.JetStream, *audit.Writer) {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		JetStreamMaxMemory: 16 << 20, JetStreamMaxStore: 64 << 20, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats not ready")
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	w, err := audit.Open(context.Background(), js, audit.Config{Name: "cp-1"})
	if err != nil {
		t.Fatal(err)
	}
	return srv.ClientURL(), js, w
}

func session(t *testing.T, w *audit.Writer) {
	t.Helper()
	ctx := context.Background()
	add := func(r audit.Record) {
		if _, err := w.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	for i, agent := range []string{"alice", "bob", "alice"} {
		dec := fmt.Sprintf("dec_%d", i)
		add(audit.Record{Kind: audit.KindDecision, DecisionID: dec, Agent: audit.Agent{ID: agent, Issuer: "https://iss"},
			API: "jobs.query", Project: "jitgate-demo", SQL: fmt.Sprintf("SELECT\n  email FROM shop.customers -- q%d", i),
			Analysis: &audit.Analysis{StatementKind: "SELECT", ReferencedTables: []string{"jitgate-demo.shop.customers"}},
			Decision: "allow", Reason: "ok", Rule: "allow", Policy: "analysts@3", CredentialID: "jti-" + dec})
		add(audit.Record{Kind: audit.KindResponse, DecisionID: dec, Agent: audit.Agent{ID: agent},
			Response: &audit.Response{UpstreamStatus: 200, Rows: 2, CellsMasked: 2, Bytes: 99,
				BodyExcerpt: `{"rows":[{"f":[{"v":"***"}]},{"f":[{"v":"***"}]}]}`}})
	}
	add(audit.Record{Kind: audit.KindDecision, DecisionID: "dec_3", Agent: audit.Agent{ID: "alice"}, API: "jobs.query",
		SQL: "SELECT * FROM hr.salaries", Decision: "deny", Status: 403, Reason: "table_denied", Rule: "where.tables.deny", Policy: "analysts@3"})
}

func runAudit(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(append([]string{"audit"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

func TestAuditCommands(t *testing.T) {
	url, js, w := auditServer(t)
	session(t, w)

	code, out, errs := runAudit(t, "tail", "--nats-url", url, "-n", "3")
	if code != 0 || strings.Count(out, "\n") != 3 || !strings.Contains(out, "DENY") || !strings.Contains(out, "200 rows=2 masked=2") {
		t.Fatalf("tail: %d %q %q", code, out, errs)
	}
	code, out, _ = runAudit(t, "tail", "--agent", "bob", "--nats-url", url)
	if code != 0 || strings.Count(out, "\n") != 2 || strings.Contains(out, "alice") || !strings.Contains(out, "SELECT email FROM shop.customers -- q1") {
		t.Fatalf("tail --agent bob: %d %q", code, out)
	}

	code, out, _ = runAudit(t, "show", "dec_1", "--nats-url", url)
	for _, want := range []string{"decision record, seq 3", "agent:           bob", "credential id:   jti-dec_1", "SELECT\n      email", "response record, seq 4", "2 rows, 2 cells masked", "masked body:", "policy:          analysts@3"} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	if code != 0 {
		t.Fatalf("show exit %d", code)
	}
	if code, _, errs := runAudit(t, "show", "dec_nope", "--nats-url", url); code != 1 || !strings.Contains(errs, "no records") {
		t.Fatalf("show unknown: %d %q", code, errs)
	}

	code, out, _ = runAudit(t, "replay", "--agent", "alice", "--since", "1h", "--nats-url", url)
	if code != 0 {
		t.Fatalf("replay exit %d", code)
	}
	i0, i2, i3 := strings.Index(out, "q0"), strings.Index(out, "q2"), strings.Index(out, "hr.salaries")
	if i0 < 0 || i2 < i0 || i3 < i2 || strings.Contains(out, "q1") || !strings.Contains(out, "DENY  alice") ||
		!strings.Contains(out, "policy: analysts@3 where.tables.deny") || !strings.Contains(out, "reason: table_denied") ||
		!strings.Contains(out, "RESPONSE  upstream 200, 2 row(s), 2 cell(s) masked") || !strings.Contains(out, "-- 5 record(s)") {
		t.Fatalf("replay:\n%s", out)
	}
	if code, _, _ := runAudit(t, "replay", "--nats-url", url); code != 2 {
		t.Fatalf("replay without --agent exit %d", code)
	}

	code, out, _ = runAudit(t, "verify", "--nats-url", url)
	if code != 0 || !strings.Contains(out, "OK: 7 record(s), seq 1..7 intact") || !strings.Contains(out, "head: 7:") {
		t.Fatalf("verify: %d %q", code, out)
	}
	head := strings.TrimSpace(out[strings.Index(out, "head: ")+6:])
	if code, out, _ := runAudit(t, "verify", "--nats-url", url, "--anchor", head); code != 0 {
		t.Fatalf("verify --anchor: %d %q", code, out)
	}

	// Export, then check the export offline.
	file := filepath.Join(t.TempDir(), "audit.jsonl")
	if code, _, errs := runAudit(t, "export", "--format", "jsonl", "--nats-url", url, "-o", file); code != 0 || !strings.Contains(errs, "exported 7 record(s)") {
		t.Fatalf("export: %d %q", code, errs)
	}
	if code, out, _ := runAudit(t, "verify", "--file", file); code != 0 || !strings.Contains(out, "OK: 7 record(s)") {
		t.Fatalf("verify --file: %d %q", code, out)
	}
	code, out, _ = runAudit(t, "export", "--nats-url", url, "--agent", "bob")
	if code != 0 || strings.Count(out, "\n") != 2 {
		t.Fatalf("export --agent bob: %d %q", code, out)
	}
	if code, _, errs := runAudit(t, "export", "--format", "csv", "--nats-url", url); code != 2 || !strings.Contains(errs, "not supported") {
		t.Fatalf("export csv: %d %q", code, errs)
	}

	// A record forged into the stream: verify names it and exits 1.
	bad := []byte(`{"v":1,"seq":8,"prevHash":"00","hash":"11","kind":"decision","decisionId":"dec_forged","agent":{},"client":{},"time":"2026-01-01T00:00:00Z"}`)
	if _, err := js.Publish(context.Background(), "jitgate.audit.decision.=.dec_forged", bad); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runAudit(t, "verify", "--nats-url", url)
	if code != 1 || !strings.Contains(out, "BROKEN") || !strings.Contains(out, "seq 8 (decision dec_forged)") {
		t.Fatalf("verify broken: %d %q", code, out)
	}
	if code, out, _ := runAudit(t, "verify", "--file", file, "--anchor", "9:"+strings.Repeat("a", 64)); code != 0 {
		// --anchor applies to the stream only; the export is still intact.
		t.Fatalf("verify --file ignores anchors: %d %q", code, out)
	}
	os.WriteFile(file, bytes.Replace(mustRead(t, file), []byte("q1"), []byte("q9"), 1), 0o600)
	if code, out, _ := runAudit(t, "verify", "--file", file); code != 1 || !strings.Contains(out, "seq 3 (decision dec_1)") {
		t.Fatalf("verify edited export: %d %q", code, out)
	}
}

func mustRead(t *testing.T, f string) []byte {
	t.Helper()
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAuditTailFollow(t *testing.T) {
	url, _, w := auditServer(t)
	session(t, w)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	old := auditContext
	auditContext = func() (context.Context, context.CancelFunc) { return ctx, cancel }
	defer func() { auditContext = old }()

	var out, errb syncBuffer
	carol := func(id string) {
		t.Helper()
		if _, err := w.Append(context.Background(), audit.Record{Kind: audit.KindDecision, DecisionID: id, Agent: audit.Agent{ID: "carol"}, Decision: "allow", SQL: "SELECT 42"}); err != nil {
			t.Fatal(err)
		}
	}
	carol("dec_carol_1")
	done := make(chan int)
	go func() {
		done <- run([]string{"audit", "tail", "-f", "-n", "1", "--agent", "carol", "--nats-url", url}, &out, &errb)
	}()
	waitOutput(t, &out, "dec_carol_1")
	carol("dec_carol_2") // after the newest record was printed: only following can see it
	waitOutput(t, &out, "dec_carol_2")
	cancel()
	if code := <-done; code != 0 || strings.Count(out.String(), "\n") != 2 || strings.Contains(out.String(), "alice") {
		t.Fatalf("tail -f: %d %q %q", code, out.String(), errb.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitOutput(t *testing.T, b *syncBuffer, want string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(b.String(), want); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("output lacks %q after 10s: %q", want, b.String())
		}
	}
}

func TestAuditUsageAndUnreachableNATS(t *testing.T) {
	if code, out, _ := runAudit(t, "--help"); code != 0 || !strings.Contains(out, "loopback client port") || !strings.Contains(out, "verify [--anchor SEQ:HASH]") {
		t.Fatalf("help: %d %q", code, out)
	}
	if code, _, errs := runAudit(t, "verify", "-h"); code != 0 || !strings.Contains(errs, "Recomputes the hash chain") {
		t.Fatalf("verify -h: %d %q", code, errs)
	}
	if code, _, errs := runAudit(t, "nope"); code != 2 || !strings.Contains(errs, "unknown command") {
		t.Fatalf("unknown: %d %q", code, errs)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"help"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "audit tail|show|replay|verify|export") {
		t.Fatalf("top-level usage lacks audit: %q", out.String())
	}
	start := time.Now()
	code, _, errs := runAudit(t, "verify", "--nats-url", "nats://user:pw@127.0.0.1:1", "--timeout", "500ms")
	if code != 2 || !strings.Contains(errs, "connect to NATS") || strings.Contains(errs, "pw") || time.Since(start) > 5*time.Second {
		t.Fatalf("unreachable: %d %q after %s", code, errs, time.Since(start))
	}
}
