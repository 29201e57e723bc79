package authz_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jitgate/jitgate/controlplane/audit"
	"github.com/jitgate/jitgate/controlplane/authz"
	"github.com/jitgate/jitgate/controlplane/credentials"
	"github.com/jitgate/jitgate/filter/authorize"
)

// memoryAuditor keeps the records it is given.
type memoryAuditor struct {
	mu   sync.Mutex
	recs []audit.Record
}

func (m *memoryAuditor) Append(_ context.Context, r audit.Record) (audit.Appended, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.recs = append(m.recs, r)
	return audit.Appended{Seq: uint64(len(m.recs))}, nil
}

func (m *memoryAuditor) last() audit.Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.recs) == 0 {
		return audit.Record{}
	}
	return m.recs[len(m.recs)-1]
}

// hangingUpMinter hangs up the filter's side of the callout (cancels the client request)
// while the credential is minted, and mints once the server has seen the hang-up: the
// decision is complete, but nobody is left to receive it.
type hangingUpMinter struct {
	next   credentials.Minter
	hangUp atomic.Pointer[context.CancelFunc]
}

func (m *hangingUpMinter) Mint(ctx context.Context, req credentials.Request) (credentials.Credential, error) {
	if f := m.hangUp.Load(); f != nil {
		(*f)()
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Second):
		}
	}
	return m.next.Mint(context.WithoutCancel(ctx), req)
}

// TestAbandonedCallsGiveBackWhatStepsSpent: what a step spent on a call (an approval's
// use) is given back when the call does not end in an allow the filter receives: a later
// step denies, or the filter hangs up before the answer (Envoy cancels the callout when
// the agent's stream ends); the hung-up allow is recorded as the cancelled deny it became.
func TestAbandonedCallsGiveBackWhatStepsSpent(t *testing.T) {
	var undone atomic.Int32
	spend := authz.NewStep("spend", func(_ context.Context, c *authz.Call) *authz.Denial {
		c.OnUndo(func(context.Context) { undone.Add(1) })
		return nil
	})
	refuse := authz.NewStep("refuse", func(context.Context, *authz.Call) *authz.Denial {
		return authz.Forbidden("nope", "No.", nil)
	})

	g := newGateway(t, options{steps: []authz.Step{spend}})
	if resp := g.authorizeCall(t, request(g.mint(t, "etl-bot", nil))); resp.Decision != authorize.Allow || undone.Load() != 0 {
		t.Fatalf("an allow the filter receives: %+v, undone %d", resp, undone.Load())
	}
	g = newGateway(t, options{steps: []authz.Step{spend, refuse}})
	if resp := g.authorizeCall(t, request(g.mint(t, "etl-bot", nil))); resp.Decision != authorize.Deny || undone.Load() != 1 {
		t.Fatalf("denied after spending: %+v, undone %d", resp, undone.Load())
	}

	undone.Store(0)
	aud := &memoryAuditor{}
	hanging := &hangingUpMinter{}
	path := keyFile(t)
	next, err := credentials.New(credentials.Config{KeyFile: path})
	if err != nil {
		t.Fatal(err)
	}
	hanging.next = next
	g = newGateway(t, options{steps: []authz.Step{spend}, minter: hanging, audit: aud})
	body, err := request(g.mint(t, "etl-bot", nil)).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	ctx, hangUp := context.WithCancel(t.Context())
	defer hangUp()
	hanging.hangUp.Store(&hangUp)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, g.url+authorize.Path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("the hung-up request got an answer")
	}
	deadline := time.Now().Add(10 * time.Second)
	for undone.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := undone.Load(); n != 1 {
		t.Fatalf("an allow nobody received: undone %d times, want once", n)
	}
	rec := aud.last()
	if rec.Decision != string(authorize.Deny) || rec.Reason != authz.ReasonCancelled || rec.Step != "answer" || rec.CredentialID != "" {
		t.Fatalf("audit record of the hung-up call: %+v", rec)
	}
	if logs := g.logs.String(); !strings.Contains(logs, `"reason":"cancelled"`) || !strings.Contains(logs, `"step":"answer"`) {
		t.Fatalf("decision log lacks the cancelled answer:\n%s", logs)
	}
}

// TestAbandonStopsThePendingDecision: Envoy keeps a Wasm filter's pending callout running
// after the agent's stream is gone, so the filter posts the pending call's document to
// authorize.AbandonPath; the decision with that request id and the same token stops
// (cancelled, recorded, what it spent given back). The same request id with another token
// stops nothing.
func TestAbandonStopsThePendingDecision(t *testing.T) {
	entered := make(chan struct{}, 1)
	var undone atomic.Bool
	causes := make(chan error, 1)
	hold := authz.NewStep("hold", func(ctx context.Context, c *authz.Call) *authz.Denial {
		c.OnUndo(func(context.Context) { undone.Store(true) })
		entered <- struct{}{}
		select {
		case <-ctx.Done():
			causes <- context.Cause(ctx)
			return authz.Unavailable(authz.ReasonCancelled, "stopped", ctx.Err())
		case <-time.After(20 * time.Second):
			return nil
		}
	})
	aud := &memoryAuditor{}
	g := newGateway(t, options{steps: []authz.Step{hold}, audit: aud})
	req := request(g.mint(t, "held-bot", nil))
	req.RequestID = "req-held-1"
	body, _ := req.Marshal()
	answered := make(chan authorize.Response, 1)
	go func() { answered <- g.authorizeCall(t, req) }()
	<-entered

	abandon := func(r authorize.Request) string {
		doc, _ := r.Marshal()
		resp, err := http.Post(g.url+authorize.AbandonPath, "application/json", bytes.NewReader(doc))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(b.String()))
	}
	other := req
	other.Token = g.mint(t, "mallory", nil)
	if got := abandon(other); got != `200 {"stopped":0}` {
		t.Fatalf("abandon with another token: %s", got)
	}
	select {
	case resp := <-answered:
		t.Fatalf("another agent's abandon stopped the call: %+v", resp)
	case <-time.After(200 * time.Millisecond):
	}
	var same authorize.Request
	if err := json.Unmarshal(body, &same); err != nil {
		t.Fatal(err)
	}
	if got := abandon(same); got != `200 {"stopped":1}` {
		t.Fatalf("abandon: %s", got)
	}
	resp := <-answered
	if resp.Decision != authorize.Deny || resp.Status != 503 || resp.Reason != authz.ReasonCancelled || resp.Credential != nil {
		t.Fatalf("abandoned call answered %+v", resp)
	}
	if err := <-causes; !errors.Is(err, authz.ErrAbandoned) {
		t.Errorf("the held step stopped because %v, want %v", err, authz.ErrAbandoned)
	}
	if !undone.Load() {
		t.Error("what the abandoned call spent was not given back")
	}
	if rec := aud.last(); rec.Decision != "deny" || rec.Reason != authz.ReasonCancelled || rec.Agent.ID != "held-bot" {
		t.Errorf("audit record of the abandoned call: %+v", rec)
	}
	if logs := g.logs.String(); !strings.Contains(logs, "authorize call abandoned by the filter") || strings.Contains(logs, req.Token) {
		t.Errorf("log of the abandon (must name it, never the token):\n%s", logs)
	}
}
