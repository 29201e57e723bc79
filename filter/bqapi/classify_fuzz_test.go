package bqapi

import (
	"strings"
	"testing"
)

// FuzzClassify: the classifier never panics, and a call it accepts is a known API whose
// identifiers carry no path separators (so a crafted path cannot smuggle a second
// resource into the typed call the control plane decides on).
func FuzzClassify(f *testing.F) {
	for _, seed := range [][3]string{
		{"POST", "", "/bigquery/v2/projects/p/queries?prettyPrint=false"},
		{"GET", "", "/projects/p/queries/job-1?pageToken=x&maxResults=5"},
		{"POST", "GET", "/bigquery/v2/projects/p/jobs/j"},
		{"GET", "", "/bigquery/v2/projects/p/datasets/d/tables/t/data?startIndex=10"},
		{"POST", "", "/upload/bigquery/v2/projects/p/jobs?uploadType=multipart"},
		{"GET", "", "/bigquery/v2/projects/p/datasets/%2e%2e/tables/t"},
		{"GET", "", "/bigquery/v2/projects/p/jobs?access_token=x"},
	} {
		f.Add(seed[0], seed[1], seed[2])
	}
	f.Fuzz(func(t *testing.T, method, override, path string) {
		call, rej := Classify(method, override, path)
		if rej != nil {
			return
		}
		if call.API == Unknown {
			t.Fatalf("accepted an unknown API: %q %q %q", method, override, path)
		}
		for _, id := range []string{call.Project, call.Dataset, call.Table, call.JobID} {
			if strings.ContainsAny(id, "/?#") {
				t.Fatalf("identifier %q from %q carries a separator", id, path)
			}
		}
	})
}
