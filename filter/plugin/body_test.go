package plugin

import (
	"bytes"
	"compress/gzip"
	"strconv"
	"strings"
	"testing"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/jitgate/jitgate/filter/bqapi"
)

func gzipped(t testing.TB, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// chunked splits data into n frames, as a chunked upload arrives.
func chunked(data []byte, n int) [][]byte {
	var out [][]byte
	size := (len(data) + n - 1) / n
	for len(data) > 0 {
		k := min(size, len(data))
		out = append(out, data[:k])
		data = data[k:]
	}
	return out
}

func TestRequestBodies(t *testing.T) {
	big := []byte(`{"query":"SELECT '` + strings.Repeat("x", 2*testLimit) + `'","useLegacySql":false}`)
	bomb := gzipped(t, []byte(`{"query":"SELECT 1","x":"`+strings.Repeat("A", 4*testLimit)+`"}`))
	gz := [][2]string{{"content-encoding", "gzip"}}
	type tc struct {
		name   string
		req    request
		reason bqapi.Reason // "" means allowed
	}
	cases := []tc{
		{"content-length over limit", request{method: "POST", path: "/bigquery/v2/projects/p/queries",
			headers: [][2]string{{"content-length", strconv.Itoa(testLimit + 1)}}, chunks: withBody("{}")}, bqapi.ReasonBodyTooLarge},
		{"streamed over limit", request{method: "POST", path: "/bigquery/v2/projects/p/queries", chunks: chunked(big, 4)}, bqapi.ReasonBodyTooLarge},
		{"opaque body over limit", request{method: "POST", path: "/bigquery/v2/projects/p/jobs/j/cancel", chunks: chunked(big, 2)}, bqapi.ReasonBodyTooLarge},
		{"gzip, chunked (Java)", request{method: "POST", path: "/bigquery/v2/projects/p/queries", headers: gz,
			chunks: chunked(gzipped(t, []byte(queryBody)), 3)}, ""},
		{"gzip bomb", request{method: "POST", path: "/bigquery/v2/projects/p/queries", headers: gz, chunks: withBody(string(bomb))}, bqapi.ReasonBodyTooLarge},
		{"bad gzip", request{method: "POST", path: "/bigquery/v2/projects/p/queries", headers: gz, chunks: withBody(queryBody)}, bqapi.ReasonBadGzip},
		{"truncated gzip", request{method: "POST", path: "/bigquery/v2/projects/p/queries", headers: gz,
			chunks: withBody(string(gzipped(t, []byte(queryBody))[:20]))}, bqapi.ReasonBadGzip},
		{"brotli", request{method: "POST", path: "/bigquery/v2/projects/p/queries", headers: [][2]string{{"content-encoding", "br"}}, chunks: withBody(queryBody)}, bqapi.ReasonUnsupportedEncoding},
		{"malformed JSON", request{method: "POST", path: "/bigquery/v2/projects/p/queries", chunks: withBody(`{"query":`)}, bqapi.ReasonMalformedJSON},
		{"wrong type", request{method: "POST", path: "/bigquery/v2/projects/p/queries", chunks: withBody(`{"query":1}`)}, bqapi.ReasonMalformedJSON},
		{"duplicate key", request{method: "POST", path: "/bigquery/v2/projects/p/queries", chunks: withBody(`{"query":"SELECT 1","query":"SELECT 2"}`)}, bqapi.ReasonAmbiguousJSON},
		{"proto-name alias", request{method: "POST", path: "/bigquery/v2/projects/p/queries", chunks: withBody(`{"query":"SELECT 1","default_dataset":{"datasetId":"d"}}`)}, bqapi.ReasonAmbiguousJSON},
		{"no body", request{method: "POST", path: "/bigquery/v2/projects/p/queries"}, bqapi.ReasonMissingBody},
		{"empty body", request{method: "POST", path: "/bigquery/v2/projects/p/queries", chunks: withBody("")}, bqapi.ReasonMissingBody},
		{"no SQL", request{method: "POST", path: "/bigquery/v2/projects/p/queries", chunks: withBody(`{"useLegacySql":false}`)}, bqapi.ReasonMissingSQL},
		{"load job", request{method: "POST", path: "/bigquery/v2/projects/p/jobs", chunks: withBody(`{"configuration":{"load":{"sourceUris":["gs://b/o"]}}}`)}, bqapi.ReasonLoadJob},
		{"extract job", request{method: "POST", path: "/projects/p/jobs", chunks: withBody(`{"configuration":{"extract":{"destinationUris":["gs://b/o"]}}}`)}, bqapi.ReasonExtractJob},
		{"copy job", request{method: "POST", path: "/bigquery/v2/projects/p/jobs", chunks: withBody(`{"configuration":{"copy":{}}}`)}, bqapi.ReasonCopyJob},
		{"no job kind", request{method: "POST", path: "/bigquery/v2/projects/p/jobs", chunks: withBody(`{"configuration":{}}`)}, bqapi.ReasonUnknownJobKind},
		{"trailers before body end", request{method: "POST", path: "/bigquery/v2/projects/p/queries", chunks: withBody(queryBody), trailers: [][2]string{{"x", "y"}}}, bqapi.ReasonUnexpectedTrailers},
		{"GET body passes unread", request{method: "GET", path: "/bigquery/v2/projects/p/jobs/j", chunks: withBody("not json")}, ""},
	}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host := configuredHost(t, vm)
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				o := send(t, host, c.req)
				if c.reason == "" {
					wantAllowed(t, o)
					return
				}
				wantRefused(t, o, c.reason)
			})
		}
	})
}

// TestContentLengthRefusedAtHeaders: a declared oversize body is refused before any of
// it is buffered.
func TestContentLengthRefusedAtHeaders(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host := configuredHost(t, vm)
		id := host.InitializeHttpContext()
		action := host.CallOnRequestHeaders(id, [][2]string{
			{":method", "POST"}, {":path", "/bigquery/v2/projects/p/queries"},
			{"content-length", strconv.Itoa(10 * testLimit)},
		}, false)
		if action != types.ActionPause {
			t.Errorf("action = %v, want pause", action)
		}
		r := host.GetSentLocalResponse(id)
		if r == nil || r.StatusCode != 413 {
			t.Fatalf("reply = %+v, want 413 at headers", r)
		}
	})
}

// TestBodyBufferedAndForwardedUnchanged: the filter pauses until the end of the body
// and forwards it byte for byte.
func TestBodyBufferedAndForwardedUnchanged(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host := configuredHost(t, vm)
		body := gzipped(t, []byte(queryBody))
		id := host.InitializeHttpContext()
		if a := host.CallOnRequestHeaders(id, [][2]string{{":method", "POST"}, {":path", "/bigquery/v2/projects/p/queries"}, {"content-encoding", "gzip"}}, false); a != types.ActionPause {
			t.Fatalf("headers action = %v, want pause until the body is read", a)
		}
		if a := host.CallOnRequestBody(id, body[:10], false); a != types.ActionPause {
			t.Fatalf("first frame action = %v, want pause", a)
		}
		if a := host.CallOnRequestBody(id, body[10:], true); a != types.ActionPause {
			t.Fatalf("last frame action = %v, want pause until the control plane answers", a)
		}
		answerCallout(t, host, id, nil)
		if a := host.GetCurrentHttpStreamAction(id); a != types.ActionContinue || host.GetSentLocalResponse(id) != nil {
			t.Fatalf("not resumed after the allow (action %v)", a)
		}
		if got := host.GetCurrentRequestBody(id); !bytes.Equal(got, body) {
			t.Errorf("forwarded body changed: %q", got)
		}
		host.CompleteHttpContext(id)
	})
}
