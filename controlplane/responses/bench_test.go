package responses

import (
	"testing"

	"github.com/jitgate/jitgate/controlplane/audit"
	"github.com/jitgate/jitgate/filter/bqapi"
)

// BenchmarkRecord is one response report handled in process against embedded NATS: the
// decision record lookup and the response record append (with a job: plus the ledger).
func BenchmarkRecord(b *testing.B) {
	for _, withJob := range []bool{false, true} {
		b.Run(map[bool]string{false: "response", true: "response+job"}[withJob], func(b *testing.B) {
			e := newEnvB(b)
			rec := audit.Record{Kind: audit.KindDecision, DecisionID: "d", API: "jobs.query", Project: "p",
				Agent: audit.Agent{ID: "agent-a", Issuer: "https://issuer"}, Decision: "allow"}
			if _, err := e.trail.Append(b.Context(), rec); err != nil {
				b.Fatal(err)
			}
			if err := e.ledger.RecordDecision(b.Context(), ledgerDecision("d")); err != nil {
				b.Fatal(err)
			}
			rep := report("d", "jobs.query")
			if withJob {
				rep.Job = &bqapi.JobReference{ProjectID: "p", JobID: "job_1"}
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				out, err := e.h.Record(b.Context(), rep)
				if err != nil || !out.Recorded {
					b.Fatalf("%+v %v", out, err)
				}
			}
		})
	}
}
