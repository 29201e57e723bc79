package plugin

import (
	"strings"
	"testing"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/jitgate/jitgate/filter/bqapi"
)

const queryBody = `{"query":"SELECT 1","useLegacySql":false}`

func withBody(body string) [][]byte { return [][]byte{[]byte(body)} }

// TestCallsAllowed sends every recognised API through the filter in both path forms.
func TestCallsAllowed(t *testing.T) {
	type tc struct {
		method, path string
		chunks       [][]byte
		api          bqapi.API
	}
	cases := []tc{
		{"POST", "/projects/p/queries", withBody(queryBody), bqapi.JobsQuery},
		{"POST", "/projects/p/jobs", withBody(`{"configuration":{"query":{"query":"SELECT 1","useLegacySql":false}}}`), bqapi.JobsInsert},
		{"GET", "/projects/p/queries/job_1?maxResults=0&location=US", nil, bqapi.JobsGetQueryResults},
		{"GET", "/projects/p/jobs/job_1?projection=full", nil, bqapi.JobsGet},
		{"POST", "/projects/p/jobs/job_1/cancel", nil, bqapi.JobsCancel},
		{"GET", "/projects/p/jobs?allUsers=false", nil, bqapi.JobsList},
		{"DELETE", "/projects/p/jobs/job_1/delete", nil, bqapi.JobsDelete},
		{"GET", "/projects/p/datasets/d/tables/t/data?startIndex=10", nil, bqapi.TabledataList},
		{"GET", "/projects/p/datasets/d/tables/t", nil, bqapi.TablesGet},
		{"GET", "/projects/p/datasets/d/tables", nil, bqapi.TablesList},
		{"GET", "/projects/p/datasets/d", nil, bqapi.DatasetsGet},
		{"GET", "/projects/p/datasets", nil, bqapi.DatasetsList},
		{"GET", "/projects", nil, bqapi.ProjectsList},
	}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host := configuredHost(t, vm)
		for _, c := range cases {
			for _, prefix := range []string{"/bigquery/v2", ""} {
				path := prefix + c.path
				t.Run(c.api.String()+"/"+path, func(t *testing.T) {
					o := send(t, host, request{method: c.method, path: path, chunks: c.chunks})
					wantAllowed(t, o)
					if line := o.logLine(t); !strings.Contains(line, "api="+c.api.String()+" ") {
						t.Errorf("log line %q does not name %s", line, c.api)
					}
				})
			}
		}
	})
}

// TestCallsRefused covers every classification refusal through the filter.
func TestCallsRefused(t *testing.T) {
	type tc struct {
		name    string
		req     request
		reason  bqapi.Reason
		message string // a fragment the agent must see
	}
	cases := []tc{
		{"upload", request{method: "POST", path: "/upload/bigquery/v2/projects/p/jobs?uploadType=multipart", chunks: withBody("x")}, bqapi.ReasonUploadEndpoint, "jitgate: denied: uploads are not allowed through the gateway (upload-endpoint)"},
		{"batch", request{method: "POST", path: "/batch/bigquery/v2", chunks: withBody("x")}, bqapi.ReasonBatchEndpoint, "batch"},
		{"mcp", request{method: "POST", path: "/mcp", chunks: withBody("{}")}, bqapi.ReasonMCPEndpoint, "MCP"},
		{"mcp below", request{method: "GET", path: "/mcp/tools"}, bqapi.ReasonMCPEndpoint, "MCP"},
		{"unknown path", request{method: "GET", path: "/bigquery/v2/projects/p/datasets/d/routines"}, bqapi.ReasonUnknownPath, "path"},
		{"storage api", request{method: "POST", path: "/v1/projects/p/locations/us/sessions"}, bqapi.ReasonUnknownPath, "path"},
		{"unknown method", request{method: "TRACE", path: "/bigquery/v2/projects"}, bqapi.ReasonUnknownMethod, "TRACE"},
		{"method not on path", request{method: "DELETE", path: "/bigquery/v2/projects/p/datasets/d"}, bqapi.ReasonUnknownMethod, "datasets.get"},
		{"patch override", request{method: "POST", path: "/bigquery/v2/projects/p/datasets/d/tables/t", headers: [][2]string{{"X-HTTP-Method-Override", "PATCH"}}, chunks: withBody("{}")}, bqapi.ReasonUnknownMethod, "PATCH"},
		{"override on GET", request{method: "GET", path: "/bigquery/v2/projects", headers: [][2]string{{"X-HTTP-Method-Override", "DELETE"}}}, bqapi.ReasonMethodOverride, "only honoured on POST"},
		// Envoy forwards repeated override headers and its single-value getter returns the first.
		{"override sent twice", request{method: "POST", path: "/bigquery/v2/projects/p/datasets/d", headers: [][2]string{{"x-http-method-override", "GET"}, {"x-http-method-override", "DELETE"}}}, bqapi.ReasonAmbiguousHeader, "more than once"},
		{"override JSON body", request{method: "POST", path: "/bigquery/v2/projects/p/jobs/j", headers: [][2]string{{"X-HTTP-Method-Override", "GET"}, {"content-type", "application/json"}}, chunks: withBody("{}")}, bqapi.ReasonMethodOverrideBody, "form-encoded"},
		{"access_token", request{method: "GET", path: "/bigquery/v2/projects?access_token=abc"}, bqapi.ReasonCredentialInQuery, "Authorization header"},
		{"oauth_token", request{method: "GET", path: "/projects/p/jobs/j?oauth_token=abc"}, bqapi.ReasonCredentialInQuery, "Authorization header"},
		{"key", request{method: "GET", path: "/bigquery/v2/projects/p/datasets?key=abc"}, bqapi.ReasonCredentialInQuery, "Authorization header"},
		{"callback", request{method: "GET", path: "/bigquery/v2/projects?callback=f"}, bqapi.ReasonCallbackParam, "JSONP"},
		{"alt=media", request{method: "GET", path: "/bigquery/v2/projects/p/jobs/j?alt=media"}, bqapi.ReasonUnsupportedAlt, "alt=json"},
		{"bad query string", request{method: "GET", path: "/bigquery/v2/projects/p/jobs/j?maxResults=%zz"}, bqapi.ReasonBadQueryString, "query string"},
		{"encoded slash", request{method: "GET", path: "/bigquery/v2/projects/p/datasets/a%2Fb"}, bqapi.ReasonBadPath, "segment"},
	}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host := configuredHost(t, vm)
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				o := send(t, host, c.req)
				wantRefused(t, o, c.reason)
				if !strings.Contains(string(o.reply.Data), c.message) {
					t.Errorf("reply %s does not say %q", o.reply.Data, c.message)
				}
				if strings.Contains(o.logLine(t), "abc") {
					t.Errorf("log line leaks a query-string credential: %q", o.logLine(t))
				}
			})
		}
	})
}

// TestMethodOverride: Java sends long GETs as POST + X-HTTP-Method-Override: GET with
// the parameters in a form body; the filter treats it as the GET it is.
func TestMethodOverride(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host := configuredHost(t, vm)
		t.Run("GET with form body", func(t *testing.T) {
			o := send(t, host, request{
				method: "POST", path: "/bigquery/v2/projects/p/queries/job_1",
				headers: [][2]string{{"X-HTTP-Method-Override", "GET"}, {"Content-Type", "application/x-www-form-urlencoded"}},
				chunks:  withBody("maxResults=10&pageToken=abc"),
			})
			wantAllowed(t, o)
			if line := o.logLine(t); !strings.Contains(line, "api=jobs.getQueryResults method=GET ") || !strings.Contains(line, `job="job_1"`) {
				t.Errorf("log line %q", line)
			}
		})
		t.Run("credential in form body", func(t *testing.T) {
			o := send(t, host, request{
				method: "POST", path: "/bigquery/v2/projects/p/jobs",
				headers: [][2]string{{"X-HTTP-Method-Override", "GET"}, {"Content-Type", "application/x-www-form-urlencoded"}},
				chunks:  withBody("access_token=abc"),
			})
			wantRefused(t, o, bqapi.ReasonCredentialInQuery)
		})
		t.Run("DELETE without body", func(t *testing.T) {
			o := send(t, host, request{method: "POST", path: "/projects/p/jobs/j/delete", headers: [][2]string{{"X-HTTP-Method-Override", "delete"}}})
			wantAllowed(t, o)
		})
	})
}
