package approvals_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/jitgate/jitgate/controlplane/approvals"
	"github.com/jitgate/jitgate/policies"
)

// BenchmarkDecideToRelease: an approver's decision until a waiting (held) call sees it,
// on embedded NATS with a file store: the control plane's share of the approval round trip.
func BenchmarkDecideToRelease(b *testing.B) {
	n := startNATSB(b)
	br, err := approvals.Open(b.Context(), n.JetStream, approvals.Options{})
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		out, err := br.Require(b.Context(), request("agent-1", fmt.Sprintf("SELECT %d", i), policies.ApprovalHold))
		if err != nil {
			b.Fatal(err)
		}
		released := make(chan error, 1)
		go func() {
			_, err := br.Wait(b.Context(), out.Approval.ID, 10*time.Second)
			released <- err
		}()
		time.Sleep(2 * time.Millisecond) // let the watch start
		b.StartTimer()
		if _, err := br.Decide(b.Context(), out.Approval.ID, dana, approvals.Decision{Approve: true}); err != nil {
			b.Fatal(err)
		}
		if err := <-released; err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRequireConsume: one approved call consuming a use (get binding, get approval,
// compare-and-set).
func BenchmarkRequireConsume(b *testing.B) {
	n := startNATSB(b)
	br, err := approvals.Open(b.Context(), n.JetStream, approvals.Options{})
	if err != nil {
		b.Fatal(err)
	}
	out, err := br.Require(b.Context(), request("agent-1", "SELECT 1", policies.ApprovalReject))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := br.Decide(b.Context(), out.Approval.ID, dana, approvals.Decision{Approve: true, Uses: 1000}); err != nil {
		b.Fatal(err)
	}
	used := 0
	for b.Loop() {
		if used == 1000 {
			b.StopTimer()
			o, _ := br.Require(b.Context(), request("agent-1", "SELECT 1", policies.ApprovalReject))
			if _, err := br.Decide(b.Context(), o.Approval.ID, dana, approvals.Decision{Approve: true, Uses: 1000}); err != nil {
				b.Fatal(err)
			}
			used = 0
			b.StartTimer()
		}
		o, err := br.Require(b.Context(), request("agent-1", "SELECT 1", policies.ApprovalReject))
		if err != nil || !o.Consumed {
			b.Fatalf("%+v %v", o, err)
		}
		used++
	}
}
