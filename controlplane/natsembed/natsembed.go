// Package natsembed owns the control plane's NATS connection: by default an embedded,
// in-process nats-server with JetStream on a local store directory (so one jitgated is the
// whole control plane on a laptop), or a connection to an existing NATS cluster when a URL
// is configured (how replicas share approvals, audit and the job ledger).
//
// The embedded server is in-process only by default: nothing outside jitgated can reach it.
// Options.Listen additionally opens a client port (loopback, for `jitgate audit ...` and
// the nats CLI on the same machine). That port has no authentication of its own: whoever
// can connect to it can read and write every stream and bucket (the job ledger, the audit
// trail; the audit chain makes tampering detectable, not impossible), so keep it on
// loopback of a machine whose local users are trusted.
package natsembed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrStart wraps every failure to start or reach NATS.
var ErrStart = errors.New("nats unavailable")

// DefaultReconnectWait is how long the client waits between attempts to reach a NATS that
// went away (plus up to a fifth of it as jitter). It retries forever: jitgated fails calls
// closed (503) while NATS is away and serves again as soon as it is back, without a restart.
const DefaultReconnectWait = 500 * time.Millisecond

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
	// Listen, when set, makes the embedded server also accept client connections on this
	// host:port (port 0 picks a free one; ClientURL reports it). Empty keeps it in-process
	// only. The port has no authentication: callers must keep it on loopback (jitgated's
	// config validation does, unless explicitly allowed). Ignored with URL.
	Listen string
	// Name identifies this client (and the embedded server) in NATS monitoring.
	Name string
	// Logger receives lifecycle logs; nil discards them.
	Logger *slog.Logger
	// ReconnectWait overrides DefaultReconnectWait (tests shorten it).
	ReconnectWait time.Duration
}

// NATS is a live connection with JetStream, and the embedded server if there is one.
type NATS struct {
	// Conn is the client connection.
	Conn *nats.Conn
	// JetStream is the JetStream API on Conn.
	JetStream jetstream.JetStream

	server *server.Server
	log    *slog.Logger
	// attempts counts failed reconnect attempts of the current outage; down is when it
	// began (unix nanoseconds), for the reconnect log line.
	attempts atomic.Int64
	down     atomic.Int64
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
	wait := o.ReconnectWait
	if wait <= 0 {
		wait = DefaultReconnectWait
	}
	opts := []nats.Option{nats.Name(o.Name),
		// Never give up on NATS: a finite count would leave jitgated failing every call
		// after a long outage until someone restarts it.
		nats.MaxReconnects(-1), nats.ReconnectWait(wait), nats.ReconnectJitter(wait/5, wait/5),
		// Nothing is buffered while disconnected: a write fails at once (the caller fails
		// closed) instead of waiting in the client and being sent after reconnecting, when
		// the caller has long given up (an approval decided or consumed, a ledger entry
		// written, for a call that was answered 503).
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(func(c *nats.Conn, err error) {
			if c.IsClosed() {
				return // Close, not an outage
			}
			n.down.Store(time.Now().UnixNano())
			n.attempts.Store(0)
			log.Warn("nats disconnected; calls fail closed (503) until it is back", "error", errString(err))
		}),
		nats.ReconnectErrHandler(func(*nats.Conn, error) { n.attempts.Add(1) }),
		nats.ReconnectHandler(func(c *nats.Conn) {
			attrs := []any{"server", c.ConnectedUrlRedacted(), "failed_attempts", n.attempts.Load()}
			if d := n.down.Load(); d != 0 {
				attrs = append(attrs, "down_for", time.Since(time.Unix(0, d)).String())
			}
			log.Info("nats reconnected", attrs...)
		}),
		nats.ClosedHandler(func(*nats.Conn) { log.Info("nats connection closed") }),
	}
	url := o.URL
	if url == "" {
		srv, err := startEmbedded(o)
		if err != nil {
			return nil, err
		}
		n.server = srv
		// jitgated's own connection stays in-process even when a client port is open.
		opts = append(opts, nats.InProcessServer(srv))
		attrs := []any{"store_dir", o.StoreDir, "max_memory_bytes", o.MaxMemoryBytes, "max_store_bytes", o.MaxStoreBytes}
		if u := n.ClientURL(); u != "" {
			attrs = append(attrs, "client_url", u)
		}
		log.Info("embedded nats started", attrs...)
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
	sopts := &server.Options{
		ServerName: o.Name,
		// In-process only unless Listen is set: then whoever reaches the client port can use
		// the server (it has no credentials of its own), which is why jitgated keeps that
		// port on loopback.
		DontListen:         o.Listen == "",
		JetStream:          true,
		StoreDir:           o.StoreDir,
		JetStreamMaxMemory: o.MaxMemoryBytes,
		JetStreamMaxStore:  o.MaxStoreBytes,
		// jitgated owns signal handling and shutdown order.
		NoSigs: true,
		NoLog:  true,
	}
	if o.Listen != "" {
		host, port, err := splitListen(o.Listen)
		if err != nil {
			return nil, fmt.Errorf("%w: listen %q: %v", ErrStart, o.Listen, err)
		}
		// nats-server reports a port clash only in its (silenced) log and then never
		// becomes ready; probe the port first so a clash fails at once, naming it.
		if port != server.RANDOM_PORT {
			l, err := net.Listen("tcp", o.Listen)
			if err != nil {
				return nil, fmt.Errorf("%w: listen: %v", ErrStart, err)
			}
			_ = l.Close()
		}
		sopts.Host, sopts.Port = host, port
	}
	srv, err := server.NewServer(sopts)
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

// splitListen turns host:port into nats-server's Host and Port (port 0 becomes
// server.RANDOM_PORT: nats-server reads 0 as its default 4222).
func splitListen(hostport string) (string, int, error) {
	host, portStr, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("port %q: %v", portStr, err)
	}
	if host == "" {
		return "", 0, errors.New("a host is required (for example 127.0.0.1)")
	}
	if port == 0 {
		return host, server.RANDOM_PORT, nil
	}
	return host, int(port), nil
}

// ClientURL is the nats:// URL of the embedded server's client port, or "" when it has
// none (in-process only, or not embedded).
func (n *NATS) ClientURL() string {
	if n.server == nil {
		return ""
	}
	addr, ok := n.server.Addr().(*net.TCPAddr)
	if !ok || addr == nil {
		return ""
	}
	return "nats://" + addr.String()
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
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
