package maskplan

import (
	"context"
	"testing"

	"github.com/jitgate/jitgate/controlplane/sqlanalysis"
	"github.com/jitgate/jitgate/policies"
)

// BenchmarkQueryPlan measures building a plan from an analysis (the masking step's own
// work; the analysis itself is the policy step's, cached by fingerprint).
func BenchmarkQueryPlan(b *testing.B) {
	an, err := sqlanalysis.New(sqlanalysis.Options{Catalog: catalog()})
	if err != nil {
		b.Fatal(err)
	}
	in := sqlanalysis.Input{SQL: "WITH x AS (SELECT * FROM crm.users) SELECT id, name, UPPER(email) AS e, STRUCT(ssn, addr, country) AS s, " +
		"ARRAY_AGG(amount) OVER (PARTITION BY country) AS a, TO_JSON_STRING(x) AS j FROM x", DefaultProject: "acme"}
	a, err := an.Analyze(context.Background(), in)
	if err != nil {
		b.Fatal(err)
	}
	bld := NewBuilder(testKey)
	b.Run("build", func(b *testing.B) {
		for b.Loop() {
			if _, err := bld.Query(a, rules, []policies.Detector{"ssn"}, false); err != nil {
				b.Fatal(err)
			}
		}
	})
	// What the step pays to get the lineage again: a cache hit of the analyser.
	b.Run("cached analysis", func(b *testing.B) {
		for b.Loop() {
			if _, err := an.Analyze(context.Background(), in); err != nil {
				b.Fatal(err)
			}
		}
	})
}
