package authz_test

import (
	"bytes"
	"context"
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
