package authz_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/jitgate/jitgate/controlplane/audit"
	"github.com/jitgate/jitgate/controlplane/authz"
	"github.com/jitgate/jitgate/controlplane/devissuer"
	"github.com/jitgate/jitgate/controlplane/identity"
	"github.com/jitgate/jitgate/filter/authorize"
	"github.com/jitgate/jitgate/filter/bqapi"
	"github.com/jitgate/jitgate/policies"
)

// auditNATS is an in-process NATS server with JetStream on a loopback port (so a test can
// stop it and start it again on the same port and store), a client connection that
// reconnects, and an audit writer and reader on it.
type auditNATS struct {
	dir    string
	port   int
	srv    *server.Server
	nc     *nats.Conn
	writer *audit.Writer
	reader *audit.Reader
	reg    *prometheus.Registry
}

func startAuditNATS(t *testing.T) *auditNATS {
	t.Helper()
	a := &auditNATS{dir: t.TempDir(), reg: prometheus.NewRegistry()}
	a.start(t, -1)
	var err error
	a.nc, err = nats.Connect(a.srv.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.nc.Close)
	js, err := jetstream.New(a.nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if a.writer, err = audit.Open(ctx, js, audit.Config{Name: "cp-test", Metrics: audit.NewMetrics(a.reg), Timeout: 500 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)}); err != nil {
		t.Fatal(err)
	}
	if a.reader, err = audit.NewReader(ctx, js, ""); err != nil {
		t.Fatal(err)
	}
	return a
}

func (a *auditNATS) start(t *testing.T, port int) {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: a.dir,
		JetStreamMaxMemory: 16 << 20, JetStreamMaxStore: 64 << 20, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats not ready")
	}
	a.srv, a.port = srv, srv.Addr().(*net.TCPAddr).Port
}

// stop shuts the server down and waits until the client knows.
func (a *auditNATS) stop(t *testing.T) {
	t.Helper()
	a.srv.Shutdown()
	a.srv.WaitForShutdown()
	waitUntil(t, func() bool { return !a.nc.IsConnected() })
}

// restart brings the server back on the same port and store and waits for the client.
func (a *auditNATS) restart(t *testing.T) {
	t.Helper()
	a.start(t, a.port)
	waitUntil(t, a.nc.IsConnected)
}

// records returns every stored record, raw and decoded.
func (a *auditNATS) records(t *testing.T) ([]audit.Entry, string) {
	t.Helper()
	var entries []audit.Entry
	var raw bytes.Buffer
	err := a.reader.Scan(context.Background(), audit.Filter{}, false, func(e audit.Entry) error {
		if e.Err != nil {
			t.Errorf("unreadable record: %v", e.Err)
		}
		entries = append(entries, e)
		raw.Write(e.Data)
		raw.WriteByte('\n')
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return entries, raw.String()
}

func (a *auditNATS) record(t *testing.T, decisionID string) audit.Record {
	t.Helper()
	entries, err := a.reader.Show(context.Background(), decisionID)
	if err != nil || len(entries) != 1 {
		t.Fatalf("records of %s = %d, %v; want 1", decisionID, len(entries), err)
	}
	return entries[0].Record
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// policyStandIn decides like the policy step: it names the policy and rule, attaches an
// analysis summary, and denies agent "intruder".
func policyStandIn() authz.Step {
	return authz.NewStep("policy", func(_ context.Context, c *authz.Call) *authz.Denial {
		c.Policy = &authorize.PolicyRef{Name: "analysts", Version: "7", Bundle: "sha256:bundle-canary"}
		c.Analysis = &policies.Analysis{StatementKind: "SELECT", ReferencedTables: []string{"demo-project.demo.people"}}
		if c.Identity.AgentID == "intruder" {
			c.PolicyRule = "table_denied"
			return authz.Forbidden("table_denied", "Denied by rule no-people.", nil)
		}
		c.PolicyRule = "allow"
		return nil
	})
}

const paramCanary = "param-value-canary-4711"

func auditedRequest(token string) authorize.Request {
	req := request(token)
	req.Call.JobID = "job_42"
	v := paramCanary
	req.Query.Parameters = []bqapi.QueryParameter{{Name: "name", ParameterType: &bqapi.QueryParameterType{Type: "STRING"},
		ParameterValue: &bqapi.QueryParameterValue{Value: &v}}}
	return req
}

// TestAuditRecordsEveryDecision: allow, a step's deny and identity failures each leave
// one record with the decision's details before the answer; the chain verifies; no record
// holds the agent's token, the credential or a parameter value.
func TestAuditRecordsEveryDecision(t *testing.T) {
	an := startAuditNATS(t)
	g := newGateway(t, options{steps: []authz.Step{policyStandIn()}, audit: an.writer})
	token := g.mint(t, "etl-bot", []string{"analysts"})

	allow := g.authorizeCall(t, auditedRequest(token))
	if allow.Decision != authorize.Allow || allow.Credential == nil {
		t.Fatalf("allow = %+v", allow)
	}
	intruderToken := g.mint(t, "intruder", nil)
	deny := g.authorizeCall(t, auditedRequest(intruderToken))
	if deny.Status != 403 || deny.Reason != "table_denied" {
		t.Fatalf("deny = %+v", deny)
	}
	noToken := g.authorizeCall(t, auditedRequest(""))
	expired, _ := g.issuer.MintWith(devissuer.Claims{Subject: "etl-bot", Audience: []string{audience}, Expiry: time.Now().Add(-time.Hour)}, devissuer.MintOptions{})
	badToken := g.authorizeCall(t, auditedRequest(expired))
	if noToken.Status != 401 || badToken.Status != 401 {
		t.Fatalf("identity denials = %+v / %+v", noToken, badToken)
	}

	rec := an.record(t, allow.DecisionID)
	if rec.Kind != audit.KindDecision || rec.Agent.ID != "etl-bot" || rec.Agent.Issuer != g.issuer.URL() || len(rec.Agent.Groups) != 1 ||
		rec.Client.Address != "127.0.0.1:50000" || rec.Client.UserAgent != "gcloud-python/3.27" ||
		rec.API != "jobs.query" || rec.Project != "demo-project" || rec.JobID != "job_42" ||
		rec.SQL != "SELECT name FROM demo.people -- sql-canary" || !strings.HasPrefix(rec.ParametersDigest, "sha256:") ||
		rec.Analysis == nil || rec.Analysis.StatementKind != "SELECT" || len(rec.Analysis.ReferencedTables) != 1 ||
		rec.Decision != "allow" || rec.Reason != "ok" || rec.Rule != "allow" || rec.Policy != "analysts@7" ||
		rec.PolicyBundle != "sha256:bundle-canary" || rec.CredentialID != allow.Credential.ID || rec.CredentialID == "" ||
		rec.RequestID == "" || rec.Time.IsZero() || rec.Status != 0 || rec.Step != "" {
		t.Errorf("allow record = %+v", rec)
	}
	rec = an.record(t, deny.DecisionID)
	if rec.Agent.ID != "intruder" || rec.Decision != "deny" || rec.Status != 403 || rec.Reason != "table_denied" ||
		rec.Rule != "table_denied" || rec.Step != "policy" || rec.Policy != "analysts@7" || rec.CredentialID != "" {
		t.Errorf("deny record = %+v", rec)
	}
	for _, d := range []authorize.Response{noToken, badToken} {
		rec = an.record(t, d.DecisionID)
		if rec.Agent.ID != "" || rec.Decision != "deny" || rec.Status != 401 || rec.Reason != d.Reason || rec.Step != "identity" ||
			rec.SQL == "" || rec.Client.Address == "" {
			t.Errorf("identity denial record = %+v", rec)
		}
	}
	if line := g.logs.decisionLine(t, allow.DecisionID); line["audit_seq"] != float64(1) {
		t.Errorf("decision log line has audit_seq %v, want 1", line["audit_seq"])
	}

	res, err := an.reader.Verify(context.Background())
	if err != nil || !res.OK() || res.Records != 4 {
		t.Fatalf("verify = %+v, %v (broken %v)", res, err, res.Broken)
	}

	// Canary: nothing secret in the stored records.
	_, raw := an.records(t)
	secrets := []string{token, intruderToken, expired, strings.TrimPrefix(allow.Credential.Authorization, "Bearer ")}
	for _, s := range secrets {
		for _, part := range append(strings.Split(s, "."), s) {
			if len(part) >= 16 && strings.Contains(raw, part) {
				t.Errorf("an audit record contains a secret segment %.12s...", part)
			}
		}
	}
	if strings.Contains(raw, paramCanary) {
		t.Error("an audit record contains a parameter value; only its digest belongs there")
	}
}

// TestAuditUnavailableFailsClosed: in strict mode (the default) a decision whose record
// cannot be written is answered 503 audit_unavailable without a credential — allows and
// denies alike — and the minter's credential never leaves; once NATS is back, decisions
// are recorded again and the chain goes on intact.
func TestAuditUnavailableFailsClosed(t *testing.T) {
	an := startAuditNATS(t)
	g := newGateway(t, options{steps: []authz.Step{policyStandIn()}, audit: an.writer})
	token := g.mint(t, "etl-bot", nil)
	if resp := g.authorizeCall(t, auditedRequest(token)); resp.Decision != authorize.Allow {
		t.Fatalf("before: %+v", resp)
	}

	an.stop(t)
	start := time.Now()
	resp := g.authorizeCall(t, auditedRequest(token))
	if resp.Decision != authorize.Deny || resp.Status != 503 || resp.Reason != authz.ReasonAuditUnavailable || resp.Credential != nil {
		t.Fatalf("allow with audit down = %+v, want deny 503 %s without credential", resp, authz.ReasonAuditUnavailable)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("fail-closed answer took %s", d)
	}
	if resp.Identity == nil || resp.Identity.AgentID != "etl-bot" || !strings.Contains(resp.Message, "audit") {
		t.Errorf("503 = %+v", resp)
	}
	line := g.logs.decisionLine(t, resp.DecisionID)
	if line["decision"] != "deny" || line["reason"] != authz.ReasonAuditUnavailable || line["decided"] != "allow" ||
		line["step"] != "audit" || line["credential_id"] != nil {
		t.Errorf("log line %v", line)
	}
	// A deny that cannot be recorded is also answered 503: the agent retries and its
	// eventual answer is on record.
	if resp := g.authorizeCall(t, auditedRequest(g.mint(t, "intruder", nil))); resp.Status != 503 || resp.Reason != authz.ReasonAuditUnavailable {
		t.Errorf("deny with audit down = %+v", resp)
	}
	if resp := g.authorizeCall(t, auditedRequest("")); resp.Status != 503 || resp.Reason != authz.ReasonAuditUnavailable {
		t.Errorf("identity failure with audit down = %+v", resp)
	}
	rec := httptest.NewRecorder()
	g.metrics.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), `jitgate_authorize_decisions_total{decision="deny",reason="audit_unavailable"} 3`) {
		t.Errorf("metrics:\n%s", rec.Body.String())
	}

	an.restart(t)
	after := g.authorizeCall(t, auditedRequest(token))
	if after.Decision != authorize.Allow || after.Credential == nil {
		t.Fatalf("after NATS is back: %+v", after)
	}
	if rec := an.record(t, after.DecisionID); rec.Seq != 2 || rec.CredentialID != after.Credential.ID {
		t.Errorf("record after restart = %+v", rec)
	}
	res, err := an.reader.Verify(context.Background())
	if err != nil || !res.OK() || res.Records != 2 {
		t.Fatalf("verify = %+v, %v", res, err)
	}
}

// TestAuditClosedConnectionFailsClosed: a connection that is gone for good (closed, not
// reconnecting) also fails calls closed.
func TestAuditClosedConnectionFailsClosed(t *testing.T) {
	an := startAuditNATS(t)
	var minted atomic.Int64
	g := newGateway(t, options{minter: mintCounter{&minted}, audit: an.writer})
	an.nc.Close()
	resp := g.authorizeCall(t, request(g.mint(t, "etl-bot", nil)))
	if resp.Status != 503 || resp.Reason != authz.ReasonAuditUnavailable || resp.Credential != nil {
		t.Fatalf("= %+v", resp)
	}
	if minted.Load() != 1 {
		t.Errorf("minted %d; the credential is minted (its id is recorded) and then withheld", minted.Load())
	}
}

// TestAuditRelaxedAnswersAsDecided: relaxed mode answers as decided with the audit trail
// down, and says so loudly (an ERROR per unrecorded decision).
func TestAuditRelaxedAnswersAsDecided(t *testing.T) {
	an := startAuditNATS(t)
	g := newGateway(t, options{steps: []authz.Step{policyStandIn()}, audit: an.writer, auditMode: authz.AuditRelaxed})
	an.stop(t)
	allow := g.authorizeCall(t, auditedRequest(g.mint(t, "etl-bot", nil)))
	if allow.Decision != authorize.Allow || allow.Credential == nil {
		t.Fatalf("relaxed allow = %+v", allow)
	}
	deny := g.authorizeCall(t, auditedRequest(g.mint(t, "intruder", nil)))
	if deny.Status != 403 || deny.Reason != "table_denied" {
		t.Fatalf("relaxed deny = %+v", deny)
	}
	logs := g.logs.String()
	if n := strings.Count(logs, `"level":"ERROR","msg":"AUDIT RECORD NOT WRITTEN`); n != 2 {
		t.Errorf("%d ERROR lines for 2 unrecorded decisions:\n%s", n, logs)
	}
	if line := g.logs.decisionLine(t, allow.DecisionID); line["audit_error"] == nil || line["decided"] != nil {
		t.Errorf("log line %v", line)
	}
	if _, err := authz.New(authz.Options{Verifier: nopVerifier{}, Minter: mintCounter{&atomic.Int64{}}, AuditMode: "lenient"}); err == nil {
		t.Error("unknown audit mode accepted")
	}
}

type nopVerifier struct{}

func (nopVerifier) Verify(context.Context, string) (identity.Identity, error) {
	return identity.Identity{}, errors.New("no")
}
