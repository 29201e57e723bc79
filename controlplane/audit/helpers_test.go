package audit

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// startServer runs a JetStream server on dir with a loopback client port (port -1 picks a
// free one).
func startServer(t testing.TB, dir string, port int) *server.Server {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true,
		StoreDir: dir, JetStreamMaxMemory: 16 << 20, JetStreamMaxStore: 256 << 20, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	return srv
}

func connect(t testing.TB, url string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url, append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(20 * time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// env is one server, one connection, a writer and a reader.
type env struct {
	srv *server.Server
	js  jetstream.JetStream
	w   *Writer
	r   *Reader
	reg *prometheus.Registry
}

func newEnv(t testing.TB, cfg Config) *env {
	t.Helper()
	srv := startServer(t, t.TempDir(), -1)
	t.Cleanup(srv.Shutdown)
	_, js := connect(t, srv.ClientURL())
	e := &env{srv: srv, js: js, reg: prometheus.NewRegistry()}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(e.reg)
	}
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	if cfg.Name == "" {
		cfg.Name = "cp-test"
	}
	ctx := context.Background()
	var err error
	if e.w, err = Open(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	if e.r, err = NewReader(ctx, js, cfg.Stream); err != nil {
		t.Fatal(err)
	}
	return e
}

func testRecord(i int, agent string) Record {
	r := Record{
		Kind:       KindDecision,
		DecisionID: fmt.Sprintf("dec_%04d", i),
		RequestID:  fmt.Sprintf("req-%d", i),
		Agent:      Agent{ID: agent, Issuer: "https://issuer.test", Groups: []string{"analysts"}},
		Client:     Client{Address: "10.0.0.7:51234", UserAgent: "gcloud-golang-bigquery/1.0"},
		API:        "jobs.query",
		Project:    "jitgate-demo",
		SQL:        fmt.Sprintf("SELECT name FROM `jitgate-demo.shop.customers` WHERE id = %d", i),
		Analysis:   &Analysis{StatementKind: "SELECT", ReferencedTables: []string{"jitgate-demo.shop.customers"}},
		Decision:   "allow",
		Reason:     "ok",
		Rule:       "allow",
		Policy:     "analysts@3",
	}
	if i%2 == 1 {
		r.Kind = KindResponse
		r.DecisionID = fmt.Sprintf("dec_%04d", i-1)
		r.Response = &Response{UpstreamStatus: 200, Rows: 3, CellsMasked: 1, Bytes: 120,
			Digest: Digest([]byte("body")), BodyExcerpt: `{"rows":[{"f":[{"v":"***"}]}]}`}
	}
	return r
}

func appendN(t testing.TB, w *Writer, from, n int, agent string) []Appended {
	t.Helper()
	var out []Appended
	for i := from; i < from+n; i++ {
		a, err := w.Append(context.Background(), testRecord(i, agent))
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		out = append(out, a)
	}
	return out
}

func mustVerify(t testing.TB, r *Reader) VerifyResult {
	t.Helper()
	res, err := r.Verify(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func counterValue(t testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue metrics
				}
			}
			switch {
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum
}
