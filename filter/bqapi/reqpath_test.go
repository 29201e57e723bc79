package bqapi

import (
	"strings"
	"testing"
)

// A decorated table id names a partition or a snapshot of a base table; policies and
// masking judge base tables, so the gateway refuses every spelling of one.
func TestClassifyRefusesTableDecorators(t *testing.T) {
	for _, c := range []struct{ path, names string }{
		{"/bigquery/v2/projects/acme/datasets/crm/tables/salaries$20250101/data", "partition decorator"},
		{"/bigquery/v2/projects/acme/datasets/crm/tables/salaries$__UNPARTITIONED__/data", "partition decorator"},
		{"/bigquery/v2/projects/acme/datasets/crm/tables/salaries%2420250101/data", "partition decorator"},
		{"/bigquery/v2/projects/acme/datasets/crm/tables/salaries@-3600000/data", "snapshot decorator"},
		{"/bigquery/v2/projects/acme/datasets/crm/tables/salaries%40-3600000/data", "snapshot decorator"},
		{"/projects/acme/datasets/crm/tables/salaries$20250101", "partition decorator"},
		{"/projects/acme/datasets/crm/tables/salaries@0", "snapshot decorator"},
		{"/projects/acme/datasets/crm$x/tables", "partition decorator"},
		{"/projects/acme/jobs/j@1", "snapshot decorator"},
	} {
		_, rej := Classify("GET", "", c.path)
		if rej == nil {
			t.Errorf("%s: allowed", c.path)
			continue
		}
		if rej.Reason != ReasonTableDecorator || rej.Reason.HTTPStatus() != 403 || !strings.Contains(rej.Detail, c.names) {
			t.Errorf("%s: %s %q, want 403 %s naming the %s", c.path, rej.Reason, rej.Detail, ReasonTableDecorator, c.names)
		}
	}
	// The base table itself is still a tabledata.list call.
	if c, rej := Classify("GET", "", "/bigquery/v2/projects/acme/datasets/crm/tables/salaries/data"); rej != nil || c.Table != "salaries" {
		t.Errorf("base table: %+v %v", c, rej)
	}
}

func TestJobInsertRefusesDecoratedDestination(t *testing.T) {
	for _, dest := range []string{
		`{"projectId":"acme","datasetId":"scratch","tableId":"locked$20250101"}`,
		`{"projectId":"acme","datasetId":"scratch","tableId":"locked\u002420250101"}`,
		`{"projectId":"acme","datasetId":"scratch","tableId":"locked@-1000"}`,
		`{"projectId":"acme","datasetId":"scratch$1","tableId":"locked"}`,
	} {
		body := `{"configuration":{"query":{"query":"SELECT 1","useLegacySql":false,"destinationTable":` + dest + `,"writeDisposition":"WRITE_TRUNCATE"}}}`
		_, rej := DecodeJobInsert([]byte(body))
		if rej == nil || rej.Reason != ReasonTableDecorator || !strings.Contains(rej.Detail, "destinationTable.") {
			t.Errorf("%s: %v, want %s", dest, rej, ReasonTableDecorator)
		}
	}
	body := `{"configuration":{"query":{"query":"SELECT 1","useLegacySql":false,"destinationTable":{"projectId":"acme","datasetId":"scratch","tableId":"locked"}}}}`
	if spec, rej := DecodeJobInsert([]byte(body)); rej != nil || spec.Destination.TableID != "locked" {
		t.Errorf("undecorated destination: %v", rej)
	}
}

// Google's front end may read all_users or AllUsers as allUsers, and which value of a
// repeated parameter it uses is its choice: every spelling is judged as allUsers, and
// a parameter sent twice in any spellings is refused, so the gateway never judges
// allUsers=false while BigQuery lists every user's jobs.
func TestQueryParamSpellingsCannotSlipPastTheGateway(t *testing.T) {
	const jobsList = "/bigquery/v2/projects/p/jobs?projection=full&"
	for _, q := range []string{"all_users=true", "AllUsers=true", "ALLUSERS=true", "%24all_users=true", "allUsers=true", "%24allUsers=true"} {
		c, rej := Classify("GET", "", jobsList+q)
		if rej != nil || !c.Params.AllUsers || c.Params.Raw.Get("allUsers") != "true" {
			t.Errorf("%s: judged AllUsers=%v (%v), want true", q, c.Params.AllUsers, rej)
		}
	}
	for _, c := range []struct {
		query  string
		reason Reason
	}{
		{"all_users=true&allUsers=false", ReasonBadQueryString},
		{"AllUsers=true&allUsers=false", ReasonBadQueryString},
		{"allUsers=false&allUsers=true", ReasonBadQueryString},
		{"allUsers=false&allUsers=true&allUsers=false", ReasonBadQueryString},
		{"allUsers=false&%24allUsers=true", ReasonBadQueryString},
		{"projection=minimal", ReasonBadQueryString}, // repeated with the prefix's projection=full
		{"userProject=other", ReasonForbiddenParam},
		{"%24userProject=other", ReasonForbiddenParam},
		{"user_project=other", ReasonForbiddenParam},
		{"%24ct=text/plain", ReasonForbiddenParam},
		{"quotaUser=someone", ReasonForbiddenParam},
		{"accessToken=t", ReasonCredentialInQuery},
		{"somethingNew=1", ReasonBadQueryString},
		{"%24.xgafv=2", ReasonBadQueryString},
		{"selectedFields=a", ReasonBadQueryString}, // a tabledata.list parameter
		{"prettyPrint=false&prettyPrint=true", ReasonBadQueryString},
	} {
		c2, rej := Classify("GET", "", jobsList+c.query)
		if rej == nil {
			t.Errorf("%s: accepted as %s with AllUsers=%v", c.query, c2.API, c2.Params.AllUsers)
			continue
		}
		if rej.Reason != c.reason {
			t.Errorf("%s: %s (%s), want %s", c.query, rej.Reason, rej.Detail, c.reason)
		}
		if strings.Contains(rej.Message(), "=other") || strings.Contains(rej.Message(), "someone") {
			t.Errorf("%s: message echoes a value: %s", c.query, rej.Message())
		}
	}
}

// A parameter in both the query string and the form body of an overridden GET is
// repeated too.
func TestFormParamRepeatingTheQueryStringIsRefused(t *testing.T) {
	c, rej := Classify("POST", "GET", "/bigquery/v2/projects/p/jobs?allUsers=false")
	if rej != nil {
		t.Fatal(rej)
	}
	if rej := c.Params.MergeForm("allUsers=true"); rej == nil || rej.Reason != ReasonBadQueryString {
		t.Errorf("form allUsers: %v", rej)
	}
	if rej := c.Params.MergeForm("all_users=true"); rej == nil || rej.Reason != ReasonBadQueryString {
		t.Errorf("form all_users: %v", rej)
	}
	if rej := c.Params.MergeForm("selected_fields=a"); rej == nil || rej.Reason != ReasonBadQueryString {
		t.Errorf("form parameter of another method: %v", rej)
	}
}

// What the Python, Go and Java clients send on each call stays accepted.
func TestQueryParamsStandardClientsSend(t *testing.T) {
	for _, c := range []struct{ method, path string }{
		{"POST", "/bigquery/v2/projects/p/queries?alt=json&prettyPrint=false"},
		{"POST", "/bigquery/v2/projects/p/jobs?alt=json&prettyPrint=false"},
		{"GET", "/bigquery/v2/projects/p/jobs/j?projection=full&location=US&prettyPrint=false"},
		{"GET", "/bigquery/v2/projects/p/jobs/j?alt=json&fields=status%2Cstatistics&location=US&prettyPrint=false"},
		{"GET", "/bigquery/v2/projects/p/queries/j?maxResults=0&timeoutMs=10000&location=US&formatOptions.useInt64Timestamp=true&prettyPrint=false"},
		{"GET", "/bigquery/v2/projects/p/queries/j?fields=jobReference%2CtotalRows%2CpageToken%2Crows&pageToken=x&location=US&formatOptions.timestampOutputFormat=ISO8601_STRING"},
		{"GET", "/bigquery/v2/projects/p/queries/j?startIndex=10&maxResults=5"},
		{"GET", "/bigquery/v2/projects/p/datasets/_a/tables/anon/data?maxResults=5&pageToken=t&startIndex=0&formatOptions.useInt64Timestamp=true&selectedFields=a%2Cb"},
		{"GET", "/bigquery/v2/projects/p/datasets/d/tables/t?selectedFields=a&view=FULL&alt=json"},
		{"GET", "/bigquery/v2/projects/p/datasets/d/tables?maxResults=50&pageToken=t"},
		{"GET", "/bigquery/v2/projects/p/datasets/d?datasetView=FULL&accessPolicyVersion=3"},
		{"GET", "/bigquery/v2/projects/p/datasets?all=true&filter=labels.a&maxResults=10"},
		{"GET", "/bigquery/v2/projects?maxResults=10&pageToken=t"},
		{"GET", "/bigquery/v2/projects/p/jobs?allUsers=false&stateFilter=running&stateFilter=done&minCreationTime=1&maxCreationTime=2&parentJobId=j&projection=full"},
		{"POST", "/bigquery/v2/projects/p/jobs/j/cancel?location=US"},
		{"GET", "/bigquery/v2/projects/p/jobs/j?%24alt=json&%24fields=status&%24prettyPrint=false"},
	} {
		if _, rej := Classify(c.method, "", c.path); rej != nil {
			t.Errorf("%s %s: %s", c.method, c.path, rej.Message())
		}
	}
}

// encoding/json folds keys with Unicode case folding (U+017F 'ſ' ~ 's', U+212A 'K' ~
// 'k'): such a key decodes into the modelled field while the key check saw another
// name, so the gateway would judge a default dataset BigQuery does not use.
func TestUnicodeFoldedKeysAreRefused(t *testing.T) {
	for _, body := range []string{
		`{"query":"SELECT * FROM t","useLegacySql":false,"defaultDataset":{"datasetId":"secret"},"defaultDataſet":{"datasetId":"public"}}`,
		`{"query":"SELECT * FROM t","useLegacySql":false,"defaultDataset":{"datasetId":"secret"},"defaultData\u017fet":{"datasetId":"public"}}`,
		`{"query":"SELECT * FROM t","useLegacySql":false,"defaultDataset":{"datasetId":"secret","datasetId\u212a":"x"}}`,
		`{"query":"SELECT 1","useLegacy\u017fql":true,"useLegacySql":false}`,
		`{"kind":"x","\u212aind":"y","query":"SELECT 1","useLegacySql":false}`,
	} {
		spec, rej := DecodeQueryRequest([]byte(body))
		if rej == nil {
			t.Errorf("%s: accepted (defaultDataset %+v)", body, spec.DefaultDataset)
			continue
		}
		if rej.Reason != ReasonAmbiguousJSON {
			t.Errorf("%s: %s, want %s", body, rej.Reason, ReasonAmbiguousJSON)
		}
	}
	// Free-form maps keep their keys exactly: international label keys pass.
	body := `{"query":"SELECT 1","useLegacySql":false,"labels":{"équipe":"données"}}`
	if _, rej := DecodeQueryRequest([]byte(body)); rej != nil {
		t.Errorf("non-ASCII label key refused: %s", rej.Message())
	}
	job := `{"configuration":{"query":{"query":"SELECT 1","useLegacySql":false,"destinationTable":{"projectId":"p","datasetId":"d","tableId":"t","table\u0130d":"u"}}}}`
	if _, rej := DecodeJobInsert([]byte(job)); rej == nil || rej.Reason != ReasonAmbiguousJSON {
		t.Errorf("jobs.insert with a non-ASCII key: %v", rej)
	}
}
