// Package natsembed owns the control plane's NATS connection: by default an embedded,
// in-process nats-server with JetStream on a local store directory (so one jitgated is the
// whole control plane on a laptop), or a connection to an existing NATS cluster when a URL
// is configured (how replicas share approvals, audit and the job ledger).
package natsembed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrStart wraps every failure to start or reach NATS.
var ErrStart = errors.New("nats unavailable")

// readyTimeout bounds how long an embedded server may take to accept connections; it is
// ready in milliseconds, so a timeout means something is wrong (for example a store dir
// held by another process).
const readyTimeout = 10 * time.Second

// Options say which NATS to use.
type Options struct {
	// URL of an existing NATS cluster; empty embeds a server.
	URL string
	// StoreDir is the embedded server's JetStream directory (created if missing).
	StoreDir string
	// MaxMemoryBytes and MaxStoreBytes cap the embedded JetStream; both are required,
	// because nats-server's defaults claim most of the machine's memory and disk.
	MaxMemoryBytes int64
	MaxStoreBytes  int64
	// Name identifies this client (and the embedded server) in NATS monitoring.
	Name string
	// Logger receives lifecycle logs; nil discards them.
	Logger *slog.Logger
}

// NATS is a live connection with JetStream, and the embedded server if there is one.
type NATS struct {
	// Conn is the client connection.
	Conn *nats.Conn
	// JetStream is the JetStream API on Conn.
	JetStream jetstream.JetStream

	server *server.Server
	log    *slog.Logger
}

// Start embeds a server (o.URL empty) or connects to o.URL, and returns once JetStream is
// usable.
func Start(ctx context.Context, o Options) (*NATS, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.Name == "" {
		o.Name = "jitgated"
	}
	n := &NATS{log: log}
	opts := []nats.Option{nats.Name(o.Name), nats.MaxReconnects(-1)}
	url := o.URL
	if url == "" {
		srv, err := startEmbedded(o)
		if err != nil {
			return nil, err
		}
		n.server = srv
		opts = append(opts, nats.InProcessServer(srv))
		log.Info("embedded nats started", "store_dir", o.StoreDir,
			"max_memory_bytes", o.MaxMemoryBytes, "max_store_bytes", o.MaxStoreBytes)
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		n.shutdownServer()
		return nil, fmt.Errorf("%w: connect: %v", ErrStart, err)
	}
	n.Conn = nc
	js, err := jetstream.New(nc)
	if err != nil {
		n.Close()
		return nil, fmt.Errorf("%w: jetstream: %v", ErrStart, err)
	}
	// Fail at start, not on the first approval, when the cluster has no JetStream.
	if _, err := js.AccountInfo(ctx); err != nil {
		n.Close()
		return nil, fmt.Errorf("%w: jetstream account info: %v", ErrStart, err)
	}
	n.JetStream = js
	return n, nil
}

func startEmbedded(o Options) (*server.Server, error) {
	if o.StoreDir == "" || o.MaxMemoryBytes <= 0 || o.MaxStoreBytes <= 0 {
		return nil, fmt.Errorf("%w: embedded server needs a store dir and explicit JetStream limits", ErrStart)
	}
	if err := os.MkdirAll(o.StoreDir, 0o700); err != nil {
		return nil, fmt.Errorf("%w: store dir: %v", ErrStart, err)
	}
	srv, err := server.NewServer(&server.Options{
		ServerName: o.Name,
		// In-process only: nothing else on the machine can reach this server, so it needs
		// no credentials of its own.
		DontListen:         true,
		JetStream:          true,
		StoreDir:           o.StoreDir,
		JetStreamMaxMemory: o.MaxMemoryBytes,
		JetStreamMaxStore:  o.MaxStoreBytes,
		// jitgated owns signal handling and shutdown order.
		NoSigs: true,
		NoLog:  true,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: embedded server: %v", ErrStart, err)
	}
	srv.Start()
	if !srv.ReadyForConnections(readyTimeout) {
		srv.Shutdown()
		return nil, fmt.Errorf("%w: embedded server not ready after %s", ErrStart, readyTimeout)
	}
	return srv, nil
}

// Embedded reports whether this process runs the NATS server itself.
func (n *NATS) Embedded() bool { return n.server != nil }

// Healthy reports whether the connection is up.
func (n *NATS) Healthy() bool { return n.Conn != nil && n.Conn.IsConnected() }

// Close drains the connection (flushing pending publishes) and stops the embedded server,
// waiting until its store is closed so a restart can reopen it.
func (n *NATS) Close() {
	if n.Conn != nil {
		if err := n.Conn.Drain(); err != nil {
			n.Conn.Close()
		}
		for n.Conn.IsDraining() {
			time.Sleep(10 * time.Millisecond)
		}
		n.Conn.Close()
	}
	n.shutdownServer()
}

func (n *NATS) shutdownServer() {
	if n.server != nil {
		n.server.Shutdown()
		n.server.WaitForShutdown()
		n.log.Info("embedded nats stopped")
	}
}
