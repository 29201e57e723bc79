package bqapi

import (
	"strings"
	"testing"
)

func TestClassify(t *testing.T) {
	type want struct {
		api                            API
		method                         string
		project, dataset, table, jobID string
	}
	cases := []struct {
		method, override, path string
		want                   want
	}{
		{"POST", "", "/projects/p/queries", want{api: JobsQuery, method: "POST", project: "p"}},
		{"POST", "", "/projects/p/jobs", want{api: JobsInsert, method: "POST", project: "p"}},
		{"GET", "", "/projects/p/queries/j1", want{api: JobsGetQueryResults, method: "GET", project: "p", jobID: "j1"}},
		{"GET", "", "/projects/p/jobs/j1", want{api: JobsGet, method: "GET", project: "p", jobID: "j1"}},
		{"POST", "", "/projects/p/jobs/j1/cancel", want{api: JobsCancel, method: "POST", project: "p", jobID: "j1"}},
		{"GET", "", "/projects/p/jobs", want{api: JobsList, method: "GET", project: "p"}},
		{"DELETE", "", "/projects/p/jobs/j1/delete", want{api: JobsDelete, method: "DELETE", project: "p", jobID: "j1"}},
		{"GET", "", "/projects/p/datasets/d/tables/t/data", want{api: TabledataList, method: "GET", project: "p", dataset: "d", table: "t"}},
		{"GET", "", "/projects/p/datasets/d/tables/t", want{api: TablesGet, method: "GET", project: "p", dataset: "d", table: "t"}},
		{"GET", "", "/projects/p/datasets/d/tables", want{api: TablesList, method: "GET", project: "p", dataset: "d"}},
		{"GET", "", "/projects/p/datasets/d", want{api: DatasetsGet, method: "GET", project: "p", dataset: "d"}},
		{"GET", "", "/projects/p/datasets", want{api: DatasetsList, method: "GET", project: "p"}},
		{"GET", "", "/projects", want{api: ProjectsList, method: "GET"}},
		// Identifiers are percent-decoded; domain-scoped projects keep their colon.
		{"GET", "", "/projects/example.com%3Aproj/jobs/US.job%2D1", want{api: JobsGet, method: "GET", project: "example.com:proj", jobID: "US.job-1"}},
		// Java: POST + X-HTTP-Method-Override.
		{"POST", "GET", "/projects/p/queries/j1", want{api: JobsGetQueryResults, method: "GET", project: "p", jobID: "j1"}},
		{"POST", "get", "/projects/p/jobs", want{api: JobsList, method: "GET", project: "p"}},
		{"POST", "DELETE", "/projects/p/jobs/j1/delete", want{api: JobsDelete, method: "DELETE", project: "p", jobID: "j1"}},
		{"POST", "POST", "/projects/p/queries", want{api: JobsQuery, method: "POST", project: "p"}},
	}
	for _, c := range cases {
		for _, prefix := range []string{"/bigquery/v2", ""} {
			path := prefix + c.path + "?prettyPrint=false&alt=json"
			t.Run(c.method+"+"+c.override+" "+path, func(t *testing.T) {
				call, rej := Classify(c.method, c.override, path)
				if rej != nil {
					t.Fatalf("refused: %v", rej)
				}
				got := want{call.API, call.Method, call.Project, call.Dataset, call.Table, call.JobID}
				if got != c.want {
					t.Errorf("got %+v, want %+v", got, c.want)
				}
				if call.Overridden != (c.override != "") {
					t.Errorf("Overridden = %v", call.Overridden)
				}
				wantForm := PathBare
				if prefix != "" {
					wantForm = PathPrefixed
				}
				if call.PathForm != wantForm {
					t.Errorf("PathForm = %v, want %v", call.PathForm, wantForm)
				}
				if call.Params.Alt != "json" || call.Params.PrettyPrint == nil || *call.Params.PrettyPrint {
					t.Errorf("params = %+v", call.Params)
				}
			})
		}
	}
}

func TestClassifyRefusals(t *testing.T) {
	cases := []struct {
		method, override, path string
		reason                 Reason
	}{
		{"POST", "", "/upload/bigquery/v2/projects/p/jobs?uploadType=multipart", ReasonUploadEndpoint},
		{"PUT", "", "/upload/bigquery/v2/projects/p/jobs?uploadType=resumable&upload_id=x", ReasonUploadEndpoint},
		{"POST", "", "/UPLOAD/bigquery/v2/projects/p/jobs", ReasonUploadEndpoint},
		{"POST", "", "/bigquery/v2/projects/p/jobs?uploadType=media", ReasonUploadEndpoint},
		{"POST", "", "/batch/bigquery/v2", ReasonBatchEndpoint},
		{"POST", "", "/batch", ReasonBatchEndpoint},
		{"POST", "", "/mcp", ReasonMCPEndpoint},
		{"GET", "", "/mcp/v1/tools?x=1", ReasonMCPEndpoint},
		{"GET", "", "/", ReasonUnknownPath},
		{"GET", "", "", ReasonUnknownPath},
		{"GET", "", "/bigquery/v2", ReasonUnknownPath},
		{"GET", "", "/bigquery/v1/projects", ReasonUnknownPath},
		{"GET", "", "/bigquery/v2/projects/p", ReasonUnknownPath},
		{"GET", "", "/bigquery/v2/projects/p/datasets/d/routines", ReasonUnknownPath},
		{"GET", "", "/bigquery/v2/projects/p/datasets/d/tables/t/rowAccessPolicies", ReasonUnknownPath},
		{"POST", "", "/bigquery/v2/projects/p/datasets/d/tables/t/insertAll", ReasonUnknownPath},
		{"GET", "", "/bigquery/v2/projects/p/jobs/j/cancel/x", ReasonUnknownPath},
		{"GET", "", "/projectsX", ReasonUnknownPath},
		{"GET", "", "/discovery/v1/apis/bigquery/v2/rest", ReasonUnknownPath},
		{"GET", "", "/bigquery/v2/projects/", ReasonBadPath},
		{"GET", "", "/bigquery/v2/projects//jobs", ReasonBadPath},
		{"GET", "", "/bigquery/v2/projects/p/datasets/../jobs", ReasonBadPath},
		{"GET", "", "/bigquery/v2/projects/p/datasets/%2e%2e", ReasonBadPath},
		{"GET", "", "/bigquery/v2/projects/p/jobs/a%2Fb", ReasonBadPath},
		{"GET", "", "/bigquery/v2/projects/p/jobs/a%0Ab", ReasonBadPath},
		{"GET", "", "/bigquery/v2/projects/p/jobs/%zz", ReasonBadPath},
		{"HEAD", "", "/bigquery/v2/projects", ReasonUnknownMethod},
		{"OPTIONS", "", "/bigquery/v2/projects", ReasonUnknownMethod},
		{"CONNECT", "", "/bigquery/v2/projects", ReasonUnknownMethod},
		{"POST", "", "/bigquery/v2/projects", ReasonUnknownMethod},
		{"PATCH", "", "/bigquery/v2/projects/p/datasets/d/tables/t", ReasonUnknownMethod},
		{"PUT", "", "/bigquery/v2/projects/p/jobs", ReasonUnknownMethod},
		{"DELETE", "", "/bigquery/v2/projects/p/datasets/d", ReasonUnknownMethod},
		{"GET", "", "/bigquery/v2/projects/p/queries", ReasonUnknownMethod},
		{"POST", "PATCH", "/bigquery/v2/projects/p/datasets/d/tables/t", ReasonUnknownMethod},
		{"POST", "TRACE", "/bigquery/v2/projects", ReasonUnknownMethod},
		{"GET", "DELETE", "/bigquery/v2/projects/p/jobs/j/delete", ReasonMethodOverride},
		{"PUT", "GET", "/bigquery/v2/projects", ReasonMethodOverride},
		{"GET", "", "/bigquery/v2/projects?access_token=t", ReasonCredentialInQuery},
		{"GET", "", "/projects?oauth_token=t", ReasonCredentialInQuery},
		{"GET", "", "/bigquery/v2/projects/p/datasets?key=k", ReasonCredentialInQuery},
		{"GET", "", "/bigquery/v2/projects/p/datasets?Access_Token=t", ReasonCredentialInQuery},
		{"GET", "", "/bigquery/v2/projects/p/jobs/j?callback=cb", ReasonCallbackParam},
		{"GET", "", "/bigquery/v2/projects/p/jobs/j?alt=media", ReasonUnsupportedAlt},
		{"GET", "", "/bigquery/v2/projects/p/jobs/j?alt=proto", ReasonUnsupportedAlt},
		{"GET", "", "/bigquery/v2/projects/p/jobs/j?%24alt=proto", ReasonUnsupportedAlt},
		{"GET", "", "/bigquery/v2/projects/p/jobs/j?$alt=proto", ReasonUnsupportedAlt},
		{"GET", "", "/bigquery/v2/projects/p/jobs/j?alt=json&%24alt=proto", ReasonUnsupportedAlt},
		{"GET", "", "/bigquery/v2/projects/p/jobs/j?alt=proto&alt=json", ReasonUnsupportedAlt},
		{"GET", "", "/bigquery/v2/projects/p/jobs/j?%24callback=cb", ReasonCallbackParam},
		{"GET", "", "/bigquery/v2/projects/p/jobs/j?%24access_token=t", ReasonCredentialInQuery},
		{"POST", "", "/bigquery/v2/projects/p/jobs?%24httpMethod=GET", ReasonBadQueryString},
		{"POST", "", "/bigquery/v2/projects/p/jobs?httpMethod=GET", ReasonBadQueryString},
		{"GET", "", "/bigquery/v2/projects/p/jobs?maxResults=-1", ReasonBadQueryString},
		{"GET", "", "/bigquery/v2/projects/p/jobs?allUsers=maybe", ReasonBadQueryString},
		{"GET", "", "/bigquery/v2/projects/p/jobs/j?a=%zz", ReasonBadQueryString},
		{"GET", "", "/bigquery/v2/projects/p/jobs/j?a=1;b=2", ReasonBadQueryString},
	}
	for _, c := range cases {
		t.Run(c.method+"+"+c.override+" "+c.path, func(t *testing.T) {
			_, rej := Classify(c.method, c.override, c.path)
			if rej == nil {
				t.Fatal("allowed")
			}
			if rej.Reason != c.reason {
				t.Fatalf("reason = %s (%s), want %s", rej.Reason, rej.Detail, c.reason)
			}
			msg := rej.Message()
			if !strings.HasPrefix(msg, "jitgate: ") || !strings.HasSuffix(msg, "("+string(c.reason)+")") {
				t.Errorf("message %q", msg)
			}
			if strings.Contains(msg, "=t") || strings.Contains(msg, "=k") {
				t.Errorf("message echoes a query-string value: %q", msg)
			}
		})
	}
}

func TestParams(t *testing.T) {
	p, rej := ParseParams("location=EU&pageToken=tok&maxResults=0&startIndex=5&timeoutMs=1000&fields=rows,pageToken&projection=full&formatOptions.useInt64Timestamp=true&allUsers=true&stateFilter=running&stateFilter=done&selectedFields=a,b")
	if rej != nil {
		t.Fatal(rej)
	}
	if p.Location != "EU" || p.PageToken != "tok" || p.MaxResults == nil || *p.MaxResults != 0 || *p.StartIndex != 5 ||
		*p.TimeoutMs != 1000 || p.Fields != "rows,pageToken" || p.Projection != "full" || !p.UseInt64Timestamp ||
		!p.AllUsers || len(p.StateFilter) != 2 || p.SelectedFields != "a,b" || p.Raw.Get("location") != "EU" {
		t.Errorf("%+v", p)
	}
	if err := p.MergeForm("pageToken=next&key=k"); err == nil || err.Reason != ReasonCredentialInQuery {
		t.Errorf("form credential: %v", err)
	}
}

func TestAPINames(t *testing.T) {
	for a := Unknown; a < numAPIs; a++ {
		if ParseAPI(a.String()) != a {
			t.Errorf("%d round-trips to %v", a, ParseAPI(a.String()))
		}
	}
	if API(200).String() != "unknown" || ParseAPI("tables.delete") != Unknown {
		t.Error("unknown names")
	}
}
