package plugin

import (
	"testing"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/jitgate/jitgate/filter/bqapi"
)

// Request-path bypasses found in review, through the whole filter: each is refused
// locally, BigQuery-shaped, and the control plane is never asked (it would judge a
// table, parameter or body field other than the one BigQuery uses).
func TestRequestPathBypassesAreRefusedBeforeTheCallout(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host := configuredHost(t, vm)
		for _, c := range []struct {
			name   string
			req    request
			reason bqapi.Reason
		}{
			{"partition decorator", request{method: "GET", path: "/bigquery/v2/projects/acme/datasets/crm/tables/salaries$20250101/data"}, bqapi.ReasonTableDecorator},
			{"encoded partition decorator", request{method: "GET", path: "/bigquery/v2/projects/acme/datasets/crm/tables/salaries%2420250101/data"}, bqapi.ReasonTableDecorator},
			{"snapshot decorator", request{method: "GET", path: "/bigquery/v2/projects/acme/datasets/crm/tables/salaries@-3600000/data"}, bqapi.ReasonTableDecorator},
			{"decorated destination", request{method: "POST", path: jobsInsertPath,
				chunks: withBody(`{"configuration":{"query":{"query":"SELECT 1","useLegacySql":false,"destinationTable":{"projectId":"acme","datasetId":"scratch","tableId":"locked$20250101"}}}}`)}, bqapi.ReasonTableDecorator},
			{"allUsers and all_users", request{method: "GET", path: "/bigquery/v2/projects/p/jobs?allUsers=false&all_users=true"}, bqapi.ReasonBadQueryString},
			{"repeated allUsers", request{method: "GET", path: "/bigquery/v2/projects/p/jobs?allUsers=false&allUsers=true"}, bqapi.ReasonBadQueryString},
			{"userProject", request{method: "GET", path: "/bigquery/v2/projects/p/jobs/j?%24userProject=other"}, bqapi.ReasonForbiddenParam},
			{"Unicode-folded body key", request{method: "POST", path: queryPath,
				chunks: withBody(`{"query":"SELECT * FROM t","useLegacySql":false,"defaultDataset":{"datasetId":"secret"},"defaultDataſet":{"datasetId":"public"}}`)}, bqapi.ReasonAmbiguousJSON},
		} {
			t.Run(c.name, func(t *testing.T) {
				o := send(t, host, c.req)
				wantRefused(t, o, c.reason)
				if o.callout != nil {
					t.Error("the control plane was asked")
				}
			})
		}
		// Other spellings Google's front end may read are judged as the exact name.
		for _, q := range []string{"all_users=true", "AllUsers=true", "%24allUsers=true"} {
			o := send(t, host, request{method: "GET", path: "/bigquery/v2/projects/p/jobs?" + q})
			wantAllowed(t, o)
			if !o.authz.Call.AllUsers {
				t.Errorf("%s: the control plane was asked about jobs.list without allUsers", q)
			}
		}
	})
}
