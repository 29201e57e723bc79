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
