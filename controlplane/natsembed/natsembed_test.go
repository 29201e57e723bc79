package natsembed

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestEmbeddedKVSurvivesRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	opts := Options{StoreDir: t.TempDir(), MaxMemoryBytes: 16 << 20, MaxStoreBytes: 64 << 20}

	n, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !n.Embedded() || !n.Healthy() {
		t.Fatalf("embedded=%v healthy=%v", n.Embedded(), n.Healthy())
	}
	kv, err := n.JetStream.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "approvals", Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "req-1", []byte("pending")); err != nil {
		t.Fatal(err)
	}
	if e, err := kv.Get(ctx, "req-1"); err != nil || string(e.Value()) != "pending" {
		t.Fatalf("get before restart = %v, %v", e, err)
	}
	n.Close()

	n, err = Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	kv, err = n.JetStream.KeyValue(ctx, "approvals")
	if err != nil {
		t.Fatalf("bucket lost across restart: %v", err)
	}
	e, err := kv.Get(ctx, "req-1")
	if err != nil || string(e.Value()) != "pending" {
		t.Fatalf("get after restart = %v, %v", e, err)
	}
}

func TestEmbeddedNeedsExplicitLimits(t *testing.T) {
	if _, err := Start(t.Context(), Options{StoreDir: t.TempDir()}); err == nil {
		t.Fatal("Start without JetStream limits succeeded")
	}
}

func TestConnectsToExistingServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true,
		StoreDir: t.TempDir(), JetStreamMaxMemory: 16 << 20, JetStreamMaxStore: 64 << 20, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	defer srv.Shutdown()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	n, err := Start(ctx, Options{URL: srv.ClientURL()})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if n.Embedded() || !n.Healthy() {
		t.Errorf("embedded=%v healthy=%v, want an external healthy connection", n.Embedded(), n.Healthy())
	}
}

// TestEmbeddedInProcessOnlyByDefault: without Listen nothing but jitgated can connect.
func TestEmbeddedInProcessOnlyByDefault(t *testing.T) {
	n, err := Start(t.Context(), Options{StoreDir: t.TempDir(), MaxMemoryBytes: 16 << 20, MaxStoreBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if u := n.ClientURL(); u != "" {
		t.Errorf("ClientURL = %q, want none without Listen", u)
	}
}

// TestEmbeddedListensOnLoopback: with Listen, a second (out-of-process style) client on
// the loopback port sees the same JetStream state as jitgated's in-process connection.
func TestEmbeddedListensOnLoopback(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	n, err := Start(ctx, Options{StoreDir: t.TempDir(), MaxMemoryBytes: 16 << 20, MaxStoreBytes: 64 << 20, Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	u := n.ClientURL()
	if !strings.HasPrefix(u, "nats://127.0.0.1:") || strings.HasSuffix(u, ":0") || strings.HasSuffix(u, ":4222") {
		t.Fatalf("ClientURL = %q, want nats://127.0.0.1:<free port>", u)
	}
	kv, err := n.JetStream.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "shared"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "k", []byte("from jitgated")); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(u)
	if err != nil {
		t.Fatalf("connect to %s: %v", u, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv2, err := js.KeyValue(ctx, "shared")
	if err != nil {
		t.Fatal(err)
	}
	if e, err := kv2.Get(ctx, "k"); err != nil || string(e.Value()) != "from jitgated" {
		t.Fatalf("get over the client port = %v, %v", e, err)
	}
	host, _, _ := net.SplitHostPort(strings.TrimPrefix(u, "nats://"))
	if !net.ParseIP(host).IsLoopback() {
		t.Errorf("listening on %s", host)
	}
}

func TestEmbeddedListenErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, listen := range []string{"127.0.0.1", ":4222", "127.0.0.1:99999", busy.Addr().String()} {
		if n, err := Start(t.Context(), Options{StoreDir: t.TempDir(), MaxMemoryBytes: 16 << 20, MaxStoreBytes: 64 << 20, Listen: listen}); err == nil {
			n.Close()
			t.Errorf("Listen %q accepted", listen)
		}
	}
}

// outageServer is a NATS server with JetStream on a fixed loopback port and store, so a
// test can stop it and start it again where the client expects it.
type outageServer struct {
	t    *testing.T
	dir  string
	port int
	srv  *server.Server
}

func (o *outageServer) start() {
	o.t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: o.port, JetStream: true, StoreDir: o.dir,
		JetStreamMaxMemory: 16 << 20, JetStreamMaxStore: 64 << 20, NoSigs: true, NoLog: true})
	if err != nil {
		o.t.Fatal(err)
	}
	srv.Start()
	o.t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		o.t.Fatal("nats not ready")
	}
	o.srv, o.port = srv, srv.Addr().(*net.TCPAddr).Port
}

func (o *outageServer) stop() {
	o.srv.Shutdown()
	o.srv.WaitForShutdown()
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestOutageReconnectsAndDropsWritesMadeWhileDown: the connection to an external NATS
// outlives an outage far longer than nats.go's default 60 reconnect attempts, the
// JetStream and KV handles taken before it work after it, and a write attempted while
// NATS was down fails instead of being buffered and applied once NATS is back (when its
// caller has long answered 503).
func TestOutageReconnectsAndDropsWritesMadeWhileDown(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	o := &outageServer{t: t, dir: t.TempDir(), port: -1}
	o.start()
	n, err := Start(ctx, Options{URL: o.srv.ClientURL(), ReconnectWait: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	kv, err := n.JetStream.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "approvals", Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "a.1", []byte("pending")); err != nil {
		t.Fatal(err)
	}

	o.stop()
	waitUntil(t, "the client to notice the outage", func() bool { return !n.Healthy() })
	wctx, wcancel := context.WithTimeout(ctx, 200*time.Millisecond)
	if _, err := kv.Put(wctx, "a.1", []byte("approved while down")); err == nil {
		t.Fatal("a KV write succeeded with NATS down")
	}
	wcancel()
	// Stay down well past nats.go's default 60 attempts (1ms apart here).
	waitUntil(t, "more than 60 reconnect attempts", func() bool {
		return n.attempts.Load() > 100
	})
	if n.Conn.IsClosed() {
		t.Fatal("the connection gave up on NATS")
	}

	o.start()
	waitUntil(t, "the client to reconnect", n.Healthy)
	e, err := kv.Get(ctx, "a.1")
	if err != nil || string(e.Value()) != "pending" {
		t.Fatalf("after the outage a.1 = %v, %v; want the value from before it (the write made while down must not land)", e, err)
	}
	if _, err := kv.Put(ctx, "a.2", []byte("after")); err != nil {
		t.Fatalf("the KV handle from before the outage: %v", err)
	}
	if _, err := n.JetStream.AccountInfo(ctx); err != nil {
		t.Fatalf("the JetStream handle from before the outage: %v", err)
	}
}
