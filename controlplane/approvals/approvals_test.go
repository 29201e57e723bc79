package approvals_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/jitgate/jitgate/controlplane/approvals"
	"github.com/jitgate/jitgate/controlplane/audit"
	"github.com/jitgate/jitgate/controlplane/authz"
	"github.com/jitgate/jitgate/controlplane/identity"
	"github.com/jitgate/jitgate/controlplane/natsembed"
	"github.com/jitgate/jitgate/filter/authorize"
	"github.com/jitgate/jitgate/filter/bqapi"
	"github.com/jitgate/jitgate/policies"
)

func startNATS(t testing.TB, dir string) *natsembed.NATS {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	n, err := natsembed.Start(t.Context(), natsembed.Options{StoreDir: dir, MaxMemoryBytes: 16 << 20, MaxStoreBytes: 64 << 20, Name: "approvals-test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	return n
}

func startNATSB(b *testing.B) *natsembed.NATS { return startNATS(b, "") }

type recordingAuditor struct {
	mu   sync.Mutex
	recs []audit.Record
	fail bool
}

func (r *recordingAuditor) Append(_ context.Context, rec audit.Record) (audit.Appended, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return audit.Appended{}, audit.ErrUnavailable
	}
	r.recs = append(r.recs, rec)
	return audit.Appended{Seq: uint64(len(r.recs))}, nil
}

func openBroker(t *testing.T, n *natsembed.NATS, a approvals.Auditor) *approvals.Broker {
	t.Helper()
	b, err := approvals.Open(t.Context(), n.JetStream, approvals.Options{Audit: a})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var owners = approvals.Requirement{Policy: "p@sha256:1", Rule: "r", ApproverGroups: []string{"owners"},
	Members: []string{"dana"}, Groups: []string{"oncall"}}

func request(agent, sql string, mode policies.ApprovalMode) approvals.Request {
	return approvals.Request{DecisionID: "dec_1", Agent: approvals.Agent{ID: agent, Issuer: "https://iss"},
		Binding:      approvals.BindingOf(authorize.Request{Call: authorize.Call{API: "jobs.query", Project: "p"}, Query: &authorize.Query{SQL: sql}}),
		Requirements: []approvals.Requirement{owners},
		Mode:         mode, TTL: time.Hour, Uses: 1, HoldTimeout: time.Minute}
}

var dana = approvals.Approver{ID: "dana", Issuer: "https://iss"}

func TestRequireApproveConsumeOnce(t *testing.T) {
	aud := &recordingAuditor{}
	b := openBroker(t, startNATS(t, ""), aud)
	ctx := t.Context()
	out, err := b.Require(ctx, request("agent-1", "SELECT 1", policies.ApprovalReject))
	if err != nil || !out.Created || out.Consumed || out.Approval.State != approvals.StatePending {
		t.Fatalf("first call: %+v %v", out, err)
	}
	id := out.Approval.ID
	again, err := b.Require(ctx, request("agent-1", "  SELECT 1\n", policies.ApprovalReject))
	if err != nil || again.Created || again.Approval.ID != id {
		t.Fatalf("the same call must find the same pending approval %s: %+v %v", id, again, err)
	}
	other, _ := b.Require(ctx, request("agent-2", "SELECT 1", policies.ApprovalReject))
	changed, _ := b.Require(ctx, request("agent-1", "SELECT 2", policies.ApprovalReject))
	if other.Approval.ID == id || changed.Approval.ID == id || other.Approval.ID == changed.Approval.ID {
		t.Fatal("another agent or other SQL must get its own approval")
	}

	if _, err := b.Decide(ctx, id, approvals.Approver{ID: "agent-1", Issuer: "https://iss", Groups: []string{"oncall"}}, approvals.Decision{Approve: true}); !errors.Is(err, approvals.ErrSelf) {
		t.Fatalf("self-approval: %v", err)
	}
	if _, err := b.Decide(ctx, id, approvals.Approver{ID: "mallory", Issuer: "https://iss"}, approvals.Decision{Approve: true}); !errors.Is(err, approvals.ErrNotApprover) {
		t.Fatalf("non-member: %v", err)
	}
	a, err := b.Decide(ctx, id, dana, approvals.Decision{Approve: true, Reason: "looks fine"})
	if err != nil || a.State != approvals.StateApproved || a.UsesLeft != 1 {
		t.Fatalf("approve: %+v %v", a, err)
	}
	if _, err := b.Decide(ctx, id, approvals.Approver{ID: "erin", Groups: []string{"oncall"}}, approvals.Decision{Reason: "no"}); !errors.Is(err, approvals.ErrNotPending) {
		t.Fatalf("second decision: %v", err)
	}
	if len(aud.recs) != 1 || aud.recs[0].Kind != audit.KindApproval || aud.recs[0].Approver != "dana" ||
		aud.recs[0].Decision != "approved" || aud.recs[0].Agent.ID != "agent-1" || aud.recs[0].ApprovalID != id {
		t.Fatalf("audit records: %+v", aud.recs)
	}

	used, err := b.Require(ctx, request("agent-1", "SELECT 1", policies.ApprovalReject))
	if err != nil || !used.Consumed || used.Approval.ID != id || used.Approval.Approver != "dana" {
		t.Fatalf("approved call: %+v %v", used, err)
	}
	next, err := b.Require(ctx, request("agent-1", "SELECT 1", policies.ApprovalReject))
	if err != nil || next.Consumed || !next.Created || next.Approval.ID == id {
		t.Fatalf("a single-use approval must not cover a second call: %+v %v", next, err)
	}
}

func TestDenialStandsAndIsAudited(t *testing.T) {
	aud := &recordingAuditor{}
	b := openBroker(t, startNATS(t, ""), aud)
	ctx := t.Context()
	out, _ := b.Require(ctx, request("agent-1", "SELECT 1", policies.ApprovalReject))
	if _, err := b.Decide(ctx, out.Approval.ID, dana, approvals.Decision{}); !errors.Is(err, approvals.ErrInvalid) {
		t.Fatalf("a denial without reason: %v", err)
	}
	if _, err := b.Decide(ctx, out.Approval.ID, dana, approvals.Decision{Reason: "not during the freeze"}); err != nil {
		t.Fatal(err)
	}
	again, err := b.Require(ctx, request("agent-1", "SELECT 1", policies.ApprovalReject))
	if err != nil || again.Approval.State != approvals.StateDenied || again.Approval.Reason != "not during the freeze" {
		t.Fatalf("retry after a denial: %+v %v", again, err)
	}
	if len(aud.recs) != 1 || aud.recs[0].Decision != "denied" {
		t.Fatalf("audit: %+v", aud.recs)
	}
}

func TestUnauditedDecisionIsRolledBack(t *testing.T) {
	aud := &recordingAuditor{fail: true}
	b := openBroker(t, startNATS(t, ""), aud)
	ctx := t.Context()
	out, _ := b.Require(ctx, request("agent-1", "SELECT 1", policies.ApprovalReject))
	if _, err := b.Decide(ctx, out.Approval.ID, dana, approvals.Decision{Approve: true}); !errors.Is(err, approvals.ErrUnavailable) {
		t.Fatalf("decision without audit: %v", err)
	}
	again, err := b.Require(ctx, request("agent-1", "SELECT 1", policies.ApprovalReject))
	if err != nil || again.Consumed || again.Approval.State != approvals.StatePending {
		t.Fatalf("an unaudited approval must not be usable: %+v %v", again, err)
	}
}

// Two control planes on one NATS race for the uses of one approval: exactly Uses calls win.
func TestConcurrentConsumeAcrossReplicas(t *testing.T) {
	n := startNATS(t, "")
	b1, b2 := openBroker(t, n, nil), openBroker(t, n, nil)
	ctx := t.Context()
	out, _ := b1.Require(ctx, request("agent-1", "SELECT 1", policies.ApprovalReject))
	if _, err := b2.Decide(ctx, out.Approval.ID, dana, approvals.Decision{Approve: true, Uses: 3}); err != nil {
		t.Fatal(err)
	}
	var consumed atomic.Int32
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := b1
			if i%2 == 1 {
				b = b2
			}
			o, err := b.Require(ctx, request("agent-1", "SELECT 1", policies.ApprovalReject))
			if err != nil {
				t.Error(err)
				return
			}
			if o.Consumed {
				consumed.Add(1)
			}
		}()
	}
	wg.Wait()
	if got := consumed.Load(); got != 3 {
		t.Fatalf("%d calls consumed an approval of 3 uses", got)
	}
}

func TestWaitSeesDecisionAndSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	n := startNATS(t, dir)
	b := openBroker(t, n, nil)
	ctx := t.Context()
	out, _ := b.Require(ctx, request("agent-1", "SELECT 1", policies.ApprovalHold))
	id := out.Approval.ID
	n.Close()

	n2 := startNATS(t, dir)
	b2 := openBroker(t, n2, nil)
	got, err := b2.Get(ctx, id)
	if err != nil || got.State != approvals.StatePending {
		t.Fatalf("after restart: %+v %v", got, err)
	}
	go func() {
		time.Sleep(200 * time.Millisecond)
		_, _ = b2.Decide(context.Background(), id, dana, approvals.Decision{Approve: true})
	}()
	start := time.Now()
	a, err := b2.Wait(ctx, id, 10*time.Second)
	if err != nil || a.State != approvals.StateApproved {
		t.Fatalf("wait: %+v %v", a, err)
	}
	t.Logf("decision seen %s after the wait began", time.Since(start))
	if _, err := b2.Wait(ctx, id, time.Second); err != nil {
		t.Fatalf("waiting on a decided approval returns at once: %v", err)
	}
}

func call(agent string) *authz.Call {
	return &authz.Call{DecisionID: "dec_x", Identity: &identity.Identity{AgentID: agent, Issuer: "https://iss"},
		Request: authorize.Request{Call: authorize.Call{API: "jobs.query", Project: "p"},
			Query: &authorize.Query{SQL: "SELECT 1", Parameters: []bqapi.QueryParameter{}}},
		Approvals: []policies.ApprovalRequirement{{Policy: policies.PolicyRef{Name: "p", Version: "sha256:1"}, Rule: "r",
			ApproverGroups: []string{"owners"}, TTL: policies.Duration(time.Hour), Mode: policies.ApprovalReject, Uses: 1}}}
}

type ownersBundle struct{ b *policies.Bundle }

func (o ownersBundle) Bundle() *policies.Bundle { return o.b }

func bundle(t *testing.T) ownersBundle {
	t.Helper()
	b, errs := policies.Compile(policies.Set{ApproverGroups: []policies.ApproverGroup{{APIVersion: policies.APIVersion,
		Kind: policies.KindApproverGroup, Metadata: policies.Metadata{Name: "owners"},
		Spec: policies.ApproverGroupSpec{Members: []string{"dana"}, Groups: []string{"oncall"}}}}})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	return ownersBundle{b}
}

func TestStepRejectModeNamesApprovalAndCommand(t *testing.T) {
	b := openBroker(t, startNATS(t, ""), nil)
	st := b.Step(bundle(t))
	c := call("agent-1")
	d := st.Run(t.Context(), c)
	if d == nil || d.Status != http.StatusForbidden || d.Reason != approvals.ReasonRequired || c.ApprovalID == "" {
		t.Fatalf("denial %+v", d)
	}
	for _, want := range []string{c.ApprovalID, "jitgate approve " + c.ApprovalID, "SELECT 1", "owners", "policy p@sha256:1 rule r"} {
		if !strings.Contains(d.Message, want) {
			t.Errorf("message %q lacks %q", d.Message, want)
		}
	}
}

// An approver identity is unique only within its issuer: an approver group that names its
// issuers accepts its members' tokens only from those (the development issuer mints any
// identity, "dana" included).
func TestApproverGroupIssuersBindApprovers(t *testing.T) {
	b := openBroker(t, startNATS(t, ""), nil)
	set := policies.Set{ApproverGroups: []policies.ApproverGroup{{APIVersion: policies.APIVersion,
		Kind: policies.KindApproverGroup, Metadata: policies.Metadata{Name: "owners"},
		Spec: policies.ApproverGroupSpec{Issuers: []string{"https://iss"}, Members: []string{"dana"}, Groups: []string{"oncall"}}}}}
	bun, errs := policies.Compile(set)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	c := call("agent-1")
	if d := b.Step(ownersBundle{bun}).Run(t.Context(), c); d == nil || d.Reason != approvals.ReasonRequired {
		t.Fatalf("denial %+v", d)
	}
	for _, who := range []approvals.Approver{
		{ID: "dana", Issuer: "http://127.0.0.1:18002"},
		{ID: "erin", Issuer: "http://127.0.0.1:18002", Groups: []string{"oncall"}},
	} {
		if _, err := b.Decide(t.Context(), c.ApprovalID, who, approvals.Decision{Approve: true}); !errors.Is(err, approvals.ErrNotApprover) {
			t.Fatalf("%s from another issuer: %v, want ErrNotApprover", who.ID, err)
		}
	}
	if a, err := b.Decide(t.Context(), c.ApprovalID, dana, approvals.Decision{Approve: true}); err != nil || a.State != approvals.StateApproved {
		t.Fatalf("dana from the group's issuer: %+v %v", a, err)
	}
}

func TestStepHoldTimesOutNamingTheTimeout(t *testing.T) {
	b := openBroker(t, startNATS(t, ""), nil)
	st := b.Step(bundle(t))
	c := call("agent-1")
	c.Approvals[0].Mode, c.Approvals[0].HoldTimeout = policies.ApprovalHold, policies.Duration(300*time.Millisecond)
	d := st.Run(t.Context(), c)
	if d == nil || d.Status != http.StatusForbidden || d.Reason != approvals.ReasonTimeout || !strings.Contains(d.Message, "hold timeout of 300ms") {
		t.Fatalf("denial %+v", d)
	}

	// Approved while it waits: the held call goes through, consuming the use.
	c2 := call("agent-1")
	c2.Approvals[0].Mode, c2.Approvals[0].HoldTimeout = policies.ApprovalHold, policies.Duration(10*time.Second)
	go func() {
		time.Sleep(300 * time.Millisecond)
		if _, err := b.Decide(context.Background(), c.ApprovalID, dana, approvals.Decision{Approve: true}); err != nil {
			t.Error(err)
		}
	}()
	if d := st.Run(t.Context(), c2); d != nil || !c2.Approved || c2.ApprovalID != c.ApprovalID || c2.Approver != "dana" {
		t.Fatalf("held call after approval: %+v %+v", d, c2)
	}
}

// NATS down: the step fails closed with 503 (clients retry); nothing is decided. Back up
// on the same store, the pending approval is still there and can be decided.
func TestNATSDownFailsClosedAndNothingIsLost(t *testing.T) {
	dir := t.TempDir()
	n := startNATS(t, dir)
	b := openBroker(t, n, nil)
	st := b.Step(bundle(t))
	c := call("agent-1")
	if d := st.Run(t.Context(), c); d == nil || d.Reason != approvals.ReasonRequired {
		t.Fatalf("first call: %+v", d)
	}
	id := c.ApprovalID
	n.Close()
	c2 := call("agent-1")
	if d := st.Run(t.Context(), c2); d == nil || d.Status != http.StatusServiceUnavailable || d.Reason != approvals.ReasonUnavailable || c2.Approved {
		t.Fatalf("with NATS down: %+v", d)
	}
	if _, err := b.Decide(t.Context(), id, dana, approvals.Decision{Approve: true}); !errors.Is(err, approvals.ErrUnavailable) {
		t.Fatalf("deciding with NATS down: %v", err)
	}

	b2 := openBroker(t, startNATS(t, dir), nil)
	if _, err := b2.Decide(t.Context(), id, dana, approvals.Decision{Approve: true}); err != nil {
		t.Fatalf("deciding once NATS is back: %v", err)
	}
	c3 := call("agent-1")
	if d := b2.Step(bundle(t)).Run(t.Context(), c3); d != nil || !c3.Approved || c3.ApprovalID != id {
		t.Fatalf("after NATS is back: %+v %+v", d, c3)
	}
}

// A call that consumed an approval's use and then did not run (authz abandons it: a later
// step denied, the audit record could not be written, the agent hung up) gives the use
// back: the approved call still runs once.
func TestAbandonedCallReturnsItsUse(t *testing.T) {
	b := openBroker(t, startNATS(t, ""), nil)
	st := b.Step(bundle(t))
	ctx := t.Context()
	c := call("agent-1")
	if d := st.Run(ctx, c); d == nil || d.Reason != approvals.ReasonRequired {
		t.Fatalf("first call: %+v", d)
	}
	id := c.ApprovalID
	if _, err := b.Decide(ctx, id, dana, approvals.Decision{Approve: true}); err != nil {
		t.Fatal(err)
	}
	c2 := call("agent-1")
	if d := st.Run(ctx, c2); d != nil || !c2.Approved {
		t.Fatalf("approved call: %+v", d)
	}
	if a, _ := b.Get(ctx, id); a.UsesLeft != 0 {
		t.Fatalf("uses left after the consuming call: %d", a.UsesLeft)
	}
	c2.Abandon(ctx)
	if a, err := b.Get(ctx, id); err != nil || a.State != approvals.StateApproved || a.UsesLeft != 1 {
		t.Fatalf("after the consuming call was abandoned: %+v %v, want its use back", a, err)
	}
	c3 := call("agent-1")
	if d := st.Run(ctx, c3); d != nil || !c3.Approved || c3.ApprovalID != id {
		t.Fatalf("the approved call after an abandoned attempt: %+v %+v", d, c3)
	}
	c4 := call("agent-1")
	if d := st.Run(ctx, c4); d == nil || d.Reason != approvals.ReasonRequired || c4.ApprovalID == id {
		t.Fatalf("a single use ran twice: %+v", d)
	}
}

// A held call whose caller hangs up (Envoy cancels the callout when the agent's stream
// ends) stops waiting, consumes nothing and says so; the approval, approved later, still
// has its use for the next attempt of the same call. Deciding and hanging up at the same
// moment never loses the use either (the Service abandons an allow nobody receives).
func TestHeldCallerGoneConsumesNothing(t *testing.T) {
	b := openBroker(t, startNATS(t, ""), nil)
	st := b.Step(bundle(t))
	held := func(agent string) *authz.Call {
		c := call(agent)
		c.Approvals[0].Mode, c.Approvals[0].HoldTimeout = policies.ApprovalHold, policies.Duration(time.Minute)
		return c
	}
	pendingOf := func(agent string) string {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			all, err := b.List(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range all {
				if a.Agent.ID == agent && a.State == approvals.StatePending {
					return a.ID
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Fatalf("no pending approval of %s", agent)
		return ""
	}

	for i := range 12 {
		agent := "held-agent-" + string(rune('a'+i))
		ctx, hangUp := context.WithCancel(t.Context())
		c := held(agent)
		done := make(chan *authz.Denial, 1)
		go func() { done <- st.Run(ctx, c) }()
		id := pendingOf(agent)
		switch i % 3 {
		case 0: // hang up, then approve
			hangUp()
			if _, err := b.Decide(t.Context(), id, dana, approvals.Decision{Approve: true}); err != nil {
				t.Fatal(err)
			}
		case 1: // approve and hang up at once
			go hangUp()
			if _, err := b.Decide(t.Context(), id, dana, approvals.Decision{Approve: true}); err != nil {
				t.Fatal(err)
			}
		case 2: // approve, then hang up as the answer is about to go out
			if _, err := b.Decide(t.Context(), id, dana, approvals.Decision{Approve: true}); err != nil {
				t.Fatal(err)
			}
			hangUp()
		}
		d := <-done
		if d != nil && (d.Status != http.StatusServiceUnavailable || d.Reason != authz.ReasonCancelled || !strings.Contains(d.Message, id)) {
			t.Fatalf("round %d: held call of a caller that hung up: %+v", i, d)
		}
		if d == nil {
			// Allowed after all: the Service sees the hang-up and abandons the call.
			c.Abandon(context.Background())
		}
		if a, err := b.Get(t.Context(), id); err != nil || a.State != approvals.StateApproved || a.UsesLeft != 1 {
			t.Fatalf("round %d: approval after the caller hung up: %+v %v, want approved with its use", i, a, err)
		}
		next := held(agent)
		if d := st.Run(t.Context(), next); d != nil || !next.Approved || next.ApprovalID != id {
			t.Fatalf("round %d: the next attempt: %+v %+v", i, d, next)
		}
		hangUp()
	}
}

// With NATS unreachable, deciding fails with an error that says so in words.
func TestDecideWithNATSDownSaysSo(t *testing.T) {
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		JetStreamMaxMemory: 16 << 20, JetStreamMaxStore: 64 << 20, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	defer srv.Shutdown()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats not ready")
	}
	n, err := natsembed.Start(t.Context(), natsembed.Options{URL: srv.ClientURL()})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	b := openBroker(t, n, nil)
	out, err := b.Require(t.Context(), request("agent-1", "SELECT 1", policies.ApprovalReject))
	if err != nil {
		t.Fatal(err)
	}
	srv.Shutdown()
	srv.WaitForShutdown()
	for n.Healthy() {
		time.Sleep(5 * time.Millisecond)
	}
	_, err = b.Decide(t.Context(), out.Approval.ID, dana, approvals.Decision{Approve: true})
	if !errors.Is(err, approvals.ErrUnavailable) || !strings.Contains(err.Error(), "NATS is not reachable") {
		t.Fatalf("deciding with NATS down: %v", err)
	}
}
