package natsembed

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
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
