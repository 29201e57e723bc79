package approvals_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jitgate/jitgate/controlplane/approvals"
	"github.com/jitgate/jitgate/policies"
)

// A webhook that fails twice gets the approval on the third try; a Slack-format webhook
// gets a {"text"} message naming the approval and the command.
func TestNotifierRetriesAndFormats(t *testing.T) {
	n := startNATS(t, "")
	b := openBroker(t, n, nil)
	var mu sync.Mutex
	var generic []approvals.Event
	var slack []map[string]string
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if r.URL.Path == "/slack" {
			var m map[string]string
			_ = json.Unmarshal(body, &m)
			slack = append(slack, m)
			return
		}
		calls++
		if calls <= 2 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		var ev approvals.Event
		if err := json.Unmarshal(body, &ev); err != nil {
			t.Error(err)
		}
		generic = append(generic, ev)
	}))
	defer srv.Close()
	nt := approvals.NewNotifier(n.JetStream, []approvals.Webhook{
		{Name: "generic", URL: srv.URL + "/generic", Timeout: time.Second, MaxAttempts: 5},
		{Name: "chat", URL: srv.URL + "/slack", Slack: true, Timeout: time.Second, MaxAttempts: 1},
	}, nil, nil)
	nt.SetBackoff(10*time.Millisecond, 50*time.Millisecond)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() { _ = nt.Run(ctx) }()
	time.Sleep(200 * time.Millisecond) // the consumer delivers only events after it exists

	out, err := b.Require(t.Context(), request("agent-1", "SELECT 42", policies.ApprovalReject))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		done := len(generic) == 1 && len(slack) == 1
		mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhooks not delivered: %d generic calls, %d slack", calls, len(slack))
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	ev := generic[0]
	if calls != 3 || ev.Type != approvals.EventCreated || ev.Approval.ID != out.Approval.ID || ev.Approval.Binding.SQL != "SELECT 42" ||
		ev.ApproveCommand != "jitgate approve "+out.Approval.ID {
		t.Fatalf("generic payload after %d calls: %+v", calls, ev)
	}
	if txt := slack[0]["text"]; !strings.Contains(txt, out.Approval.ID) || !strings.Contains(txt, "jitgate approve "+out.Approval.ID) {
		t.Fatalf("slack text %q", txt)
	}
}
