package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/bigquery"
	"golang.org/x/oauth2"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"

	"github.com/jitgate/jitgate/e2e/stack"
)

const customersSQL = "SELECT id, name FROM `jitgate-demo.crm.customers` ORDER BY id"

// wantCustomers is tools/demo/bigquery-data.yaml's crm.customers, (id, name).
var wantCustomers = [][]string{
	{"1", "Ada Lovelace"}, {"2", "Grace Hopper"}, {"3", "Alan Turing"}, {"4", "Edsger Dijkstra"},
	{"5", "Barbara Liskov"}, {"6", "Donald Knuth"}, {"7", "Margaret Hamilton"}, {"8", "Tim Berners-Lee"},
	{"9", "Frances Allen"}, {"10", "John McCarthy"}, {"11", "Niklaus Wirth"}, {"12", "Karen Sparck Jones"},
}

// goClient is the standard Go client pointed at the gateway, as an agent would configure it
// (endpoint and token), with the transport under it recording what the agent received.
func goClient(t *testing.T) *bigquery.Client {
	return goClientWithToken(t, agentToken)
}

func goClientWithToken(t *testing.T, token string) *bigquery.Client {
	t.Helper()
	hc := &http.Client{Transport: &oauth2.Transport{
		Source: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: token}),
		Base:   agentSaw,
	}}
	c, err := bigquery.NewClient(context.Background(), project,
		option.WithEndpoint(gw.Gateway+"/bigquery/v2/"), option.WithHTTPClient(hc))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func readAll(t *testing.T, it *bigquery.RowIterator) [][]string {
	t.Helper()
	var got [][]string
	for {
		var row []bigquery.Value
		err := it.Next(&row)
		if errors.Is(err, iterator.Done) {
			return got
		}
		if err != nil {
			t.Fatalf("reading rows through the gateway: %v", err)
		}
		cells := make([]string, len(row))
		for i, v := range row {
			cells[i] = fmt.Sprint(v)
		}
		got = append(got, cells)
	}
}

// upstreamRequests counts the requests the upstream has received (behind the tap, which
// only Envoy's bigquery cluster reaches).
func upstreamRequests(t *testing.T) int64 {
	t.Helper()
	return int64(len(gw.Tap.Requests()))
}

func TestGoClientSelectThroughEnvoy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	before := upstreamRequests(t)
	it, err := goClient(t).Query(customersSQL).Read(ctx)
	if err != nil {
		t.Fatalf("query through the gateway: %v", err)
	}
	if got := readAll(t, it); !reflect.DeepEqual(got, wantCustomers) {
		t.Fatalf("rows = %v\nwant %v", got, wantCustomers)
	}
	if upstreamRequests(t) == before {
		t.Fatal("the query did not go through Envoy's bigquery cluster")
	}
}

func TestGoClientPagedResultReturnsEveryRow(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	before := upstreamRequests(t)
	it, err := goClient(t).Query(customersSQL).Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	it.PageInfo().MaxSize = 5
	if got := readAll(t, it); !reflect.DeepEqual(got, wantCustomers) {
		t.Fatalf("rows = %v\nwant %v", got, wantCustomers)
	}
	// jobs.query (or insert) plus at least two more pages of getQueryResults.
	if n := upstreamRequests(t) - before; n < 3 {
		t.Fatalf("%d upstream requests for 12 rows in pages of 5; want at least 3", n)
	}
}

func TestDeniedUploadIsBigQueryErrorAndNeverReachesUpstream(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	before := upstreamRequests(t)
	src := bigquery.NewReaderSource(strings.NewReader("1,x\n"))
	_, err := goClient(t).Dataset("crm").Table("uploaded").LoaderFrom(src).Run(ctx)
	var gerr *googleapi.Error
	if !errors.As(err, &gerr) {
		t.Fatalf("load job upload: err = %v, want a googleapi error", err)
	}
	if gerr.Code != 403 || len(gerr.Errors) == 0 || gerr.Errors[0].Reason != "accessDenied" {
		t.Fatalf("load job upload: code %d errors %+v, want 403 accessDenied", gerr.Code, gerr.Errors)
	}
	if !strings.Contains(gerr.Message, "jitgate") || !strings.Contains(strings.ToLower(gerr.Message), "upload") {
		t.Fatalf("message %q does not say jitgate denied an upload", gerr.Message)
	}
	if after := upstreamRequests(t); after != before {
		t.Fatalf("a denied upload reached the upstream (%d -> %d requests)", before, after)
	}
}

// bqError is BigQuery's error document, which every client parses.
type bqError struct {
	Error struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Status  string `json:"status"`
		Errors  []struct {
			Reason  string `json:"reason"`
			Domain  string `json:"domain"`
			Message string `json:"message"`
		} `json:"errors"`
	} `json:"error"`
}

// rawClient bounds every raw call, so a gateway that holds a request fails the test quickly.
var rawClient = &http.Client{Timeout: 30 * time.Second, Transport: agentSaw}

func rawCall(t *testing.T, method, path string, body []byte, header http.Header) (*http.Response, []byte) {
	t.Helper()
	return rawCallAs(t, "Bearer "+agentToken, method, path, body, header)
}

// rawCallAs sends one request with the given Authorization value ("" sends none).
func rawCallAs(t *testing.T, authorization, method, path string, body []byte, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, gw.Gateway+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := rawClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func assertBQError(t *testing.T, resp *http.Response, body []byte, code int, reason string) bqError {
	t.Helper()
	if resp.StatusCode != code {
		t.Fatalf("status %d, want %d; body %s", resp.StatusCode, code, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type %q, want application/json (Java ignores other error bodies)", ct)
	}
	var e bqError
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body is not BigQuery's JSON shape: %v: %s", err, body)
	}
	if e.Error.Code != code || len(e.Error.Errors) == 0 || e.Error.Errors[0].Reason != reason || e.Error.Status == "" {
		t.Fatalf("error %+v, want code %d reason %s", e.Error, code, reason)
	}
	return e
}

func TestGatewayErrorsAreBigQueryShaped(t *testing.T) {
	before := upstreamRequests(t)
	for _, tc := range []struct {
		name, method, path string
		body               []byte
		header             http.Header
		code               int
		reason             string
	}{
		{"unknown endpoint", "GET", "/bigquery/v2/projects/jitgate-demo/secrets", nil, nil, 403, "accessDenied"},
		{"batch endpoint", "POST", "/batch/bigquery/v2", []byte("--b--"), nil, 403, "accessDenied"},
		{"remote MCP endpoint", "POST", "/mcp", []byte("{}"), nil, 403, "accessDenied"},
		{"token in query string", "GET", "/bigquery/v2/projects/jitgate-demo/datasets?access_token=x", nil, nil, 403, "accessDenied"},
		{"malformed JSON", "POST", "/bigquery/v2/projects/jitgate-demo/queries", []byte(`{"query": "SELECT 1"`),
			http.Header{"Content-Type": {"application/json"}}, 400, "invalid"},
		{"bad gzip", "POST", "/bigquery/v2/projects/jitgate-demo/queries", []byte("not gzip"),
			http.Header{"Content-Type": {"application/json"}, "Content-Encoding": {"gzip"}}, 400, "invalid"},
		{"body over the limit", "POST", "/bigquery/v2/projects/jitgate-demo/queries",
			append(append([]byte(`{"query":"SELECT '`), bytes.Repeat([]byte("a"), 11<<20)...), []byte(`'"}`)...),
			http.Header{"Content-Type": {"application/json"}}, 413, "invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := rawCall(t, tc.method, tc.path, tc.body, tc.header)
			e := assertBQError(t, resp, body, tc.code, tc.reason)
			if !strings.Contains(e.Error.Message, "jitgate") {
				t.Fatalf("message %q does not say it came from jitgate", e.Error.Message)
			}
		})
	}
	if after := upstreamRequests(t); after != before {
		t.Fatalf("refused calls reached the upstream (%d -> %d requests)", before, after)
	}
}

// TestRepeatedRequestHeaders: Envoy joins a repeated Authorization header with ","
// (one inline header) but forwards other repeated headers as they came, and the filter's
// single-value getter returns only the first of those. A second X-HTTP-Method-Override
// ("GET" then "DELETE": judged a datasets.get, forwarded with both) is refused, and two
// Authorization headers fail as one malformed token; neither reaches the upstream.
func TestRepeatedRequestHeaders(t *testing.T) {
	crm := "/bigquery/v2/projects/" + project + "/datasets/crm"
	before := upstreamRequests(t)
	resp, body := rawCall(t, "POST", crm, nil, http.Header{"X-Http-Method-Override": {"GET", "DELETE"}})
	assertBQError(t, resp, body, 400, "invalid")
	if r := resp.Header.Get("x-jitgate-deny-reason"); r != "ambiguous-header" {
		t.Errorf("deny reason %q", r)
	}
	resp, body = rawCallAs(t, "", "GET", crm, nil, http.Header{"Authorization": {"Bearer " + agentToken, "Bearer " + agentToken}})
	assertBQError(t, resp, body, 401, "authError")
	if after := upstreamRequests(t); after != before {
		t.Fatalf("refused calls reached the upstream (%d -> %d requests)", before, after)
	}
	// One override is what Java sends: it passes.
	if resp, body := rawCall(t, "POST", crm, nil, http.Header{"X-Http-Method-Override": {"GET"}}); resp.StatusCode != 200 {
		t.Errorf("single override: %d %s", resp.StatusCode, body)
	}
}

func TestGzipQueryBodyLikeJava(t *testing.T) {
	// The Java client sends jobs.query gzip-compressed; the filter must read it and let it through.
	var z bytes.Buffer
	w := gzip.NewWriter(&z)
	fmt.Fprintf(w, `{"query":%q,"useLegacySql":false}`, customersSQL)
	w.Close()
	resp, body := rawCall(t, "POST", "/bigquery/v2/projects/jitgate-demo/queries", z.Bytes(),
		http.Header{"Content-Type": {"application/json"}, "Content-Encoding": {"gzip"}})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var r struct {
		TotalRows string `json:"totalRows"`
		Rows      []struct {
			F []struct {
				V any `json:"v"`
			} `json:"f"`
		} `json:"rows"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Rows) != len(wantCustomers) || r.Rows[0].F[1].V != "Ada Lovelace" {
		t.Fatalf("rows = %+v", r.Rows)
	}
}

// pythonQuery runs the standard Python client (google-cloud-bigquery from the project's
// venv) as an agent against the gateway.
func pythonQuery(t *testing.T, mode string, pageSize int, sql string) [][]string {
	t.Helper()
	args := []string{root + "/tools/agent/bq_query.py", "--endpoint", gw.Gateway, "--project", project,
		"--token", agentToken, "--mode", mode, sql}
	if pageSize > 0 {
		args = append(args, "--page-size", fmt.Sprint(pageSize))
	}
	cmd := exec.Command(stack.Python(root), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python client (%s): %v\nstdout: %s\nstderr: %s", mode, err, out, stderr.String())
	}
	var res struct {
		Columns []string `json:"columns"`
		Rows    [][]any  `json:"rows"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("python client output %q: %v", out, err)
	}
	var rows [][]string
	for _, r := range res.Rows {
		cells := make([]string, len(r))
		for i, v := range r {
			cells[i] = fmt.Sprint(v)
		}
		rows = append(rows, cells)
	}
	return rows
}

func TestPythonClientBothQueryPaths(t *testing.T) {
	for _, mode := range []string{"query_and_wait", "job"} {
		t.Run(mode, func(t *testing.T) {
			if got := pythonQuery(t, mode, 5, customersSQL); !reflect.DeepEqual(got, wantCustomers) {
				t.Fatalf("rows = %v\nwant %v", got, wantCustomers)
			}
		})
	}
}

func TestEnvoyRestartReconnectsToControlPlane(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	gw.StopEnvoy()
	if _, err := http.Get(gw.Gateway + "/bigquery/v2/projects/jitgate-demo/datasets"); err == nil {
		t.Fatal("the gateway still answers with Envoy stopped")
	}
	if err := gw.StartEnvoy(ctx); err != nil {
		t.Fatalf("envoy did not come back with its xDS config: %v", err)
	}
	it, err := goClient(t).Query(customersSQL).Read(ctx)
	if err != nil {
		t.Fatalf("query after restart: %v", err)
	}
	if got := readAll(t, it); !reflect.DeepEqual(got, wantCustomers) {
		t.Fatalf("rows after restart = %v", got)
	}
}
