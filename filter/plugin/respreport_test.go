package plugin

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/jitgate/jitgate/filter/authorize"
	"github.com/jitgate/jitgate/filter/bqapi"
)

// The response report: every response of an allowed call is held and reported (POST
// /v1/responses) with what the agent will receive, and released only once recorded.

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// wantNoSecretInReport fails if the report carries the agent's token or the upstream
// credential (it carries no header at all).
func wantNoSecretInReport(t *testing.T, o ledgerOutcome) {
	t.Helper()
	if o.report == nil {
		t.Fatal("no report")
	}
	for _, s := range []string{agentToken, mintedSecret, "Bearer"} {
		if strings.Contains(string(o.report.Body), s) {
			t.Errorf("the response report carries %q", s)
		}
	}
}

func TestResponseReportEveryAllowedCall(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host := configuredHost(t, vm)
		for _, c := range []struct {
			name, method, path string
			body               string
			rows               int64
		}{
			{"tables.get", "GET", "/bigquery/v2/projects/p/datasets/d/tables/t", `{"kind":"bigquery#table","id":"p:d.t","numRows":"7"}`, 0},
			{"jobs.getQueryResults", "GET", getQueryResultsPath, laterPage, 2},
			{"tabledata.list", "GET", tabledataPath, tabledataPage, 2},
			{"datasets.list", "GET", "/bigquery/v2/projects/p/datasets", `{"kind":"bigquery#datasetList","datasets":[]}`, 0},
		} {
			t.Run(c.name, func(t *testing.T) {
				up := upstreamOK(c.body)
				o := exchange(t, host, request{method: c.method, path: c.path}, up, nil)
				wantReleased(t, o, up)
				wantNoSecretInReport(t, o)
				r := o.job
				if r.API != c.name || r.NamesJob() || r.Response.Status != 200 || r.Response.Rows != c.rows ||
					r.Response.Bytes != int64(len(c.body)) || r.Response.Digest != sha256Hex(o.agentBody) ||
					r.Response.Excerpt != c.body || r.Response.ExcerptTruncated || r.Response.Masked {
					t.Errorf("report %+v", r)
				}
			})
		}
		t.Run("Envoy's own reply to an allowed call", func(t *testing.T) {
			up := upstream{status: "503", headers: [][2]string{{"content-type", "text/plain"}}, chunks: withBody("upstream connect error")}
			o := exchange(t, host, request{method: "GET", path: tabledataPath}, up, nil)
			if o.reply != nil || string(o.agentBody) != "upstream connect error" || o.report == nil || o.job.Response.Status != 503 || o.job.Response.Rows != 0 {
				t.Errorf("reply %v body %q report %+v", o.reply, o.agentBody, o.job)
			}
		})
		t.Run("no body", func(t *testing.T) {
			o := exchange(t, host, request{method: "DELETE", path: "/bigquery/v2/projects/p/jobs/job_1/delete"}, upstream{status: "204"}, nil)
			if o.reply != nil || o.report == nil || o.job.Response.Bytes != 0 || o.job.Response.Digest != sha256Hex(nil) {
				t.Errorf("reply %v report %+v", o.reply, o.job)
			}
		})
	})
}

// TestResponseReportMasked: the report of a masked response describes the masked body
// the agent gets (digest, excerpt, counts), never the upstream one.
func TestResponseReportMasked(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host := configuredHost(t, vm)
		req := request{method: "GET", path: getQueryResultsPath, answer: maskAnswer(t, maskingFor(maskSchema))}
		o := exchange(t, host, req, upstream{status: "200", chunks: withBody(laterPage)}, nil)
		if o.reply != nil {
			t.Fatalf("reply %s", o.reply.Data)
		}
		r := o.job.Response
		if !r.Masked || r.Rows != 2 || r.CellsMasked == 0 || r.DetectorHits != 1 || r.Digest != sha256Hex(o.agentBody) ||
			r.Bytes != int64(len(o.agentBody)) || r.Excerpt != string(o.agentBody) || r.Encoding != "" {
			t.Errorf("report %+v", r)
		}
		for _, canary := range []string{canaryEmail, canarySSN, "bob@corp.test", maskHashKey, maskHashKeyB64} {
			if strings.Contains(string(o.report.Body), canary) {
				t.Errorf("the report carries %q", canary)
			}
		}
		wantNoSecretInReport(t, o)
	})
}

// TestResponseReportRefused: a response the control plane did not record is replaced
// by 503 response-not-recorded (strict audit), never released.
func TestResponseReportRefused(t *testing.T) {
	refused, err := authorize.ResponseReportAck{Recorded: false, Reason: "audit_unavailable"}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host := configuredHost(t, vm)
		for name, ack := range map[string]*answer{
			"refused": ok200(refused), "timeout": {}, "job report ack": ok200([]byte(`{"version":"` + authorize.Version + `","recorded":true,"jobRecorded":true}`)),
		} {
			t.Run(name, func(t *testing.T) {
				o := exchange(t, host, request{method: "GET", path: tabledataPath}, upstreamOK(tabledataPage), ack)
				if !o.heldBeforeAck {
					t.Fatal("not held until the answer")
				}
				wantWithheld(t, o, bqapi.ReasonResponseNotRecorded, "")
				if o.reply.StatusCode != 503 || !strings.Contains(string(o.reply.Data), "could not be recorded in the audit trail") ||
					strings.Contains(string(o.reply.Data), canaryEmail) {
					t.Errorf("reply %d %s", o.reply.StatusCode, o.reply.Data)
				}
			})
		}
	})
}

// TestResponseReportExcerptSize: responseExcerptBytes bounds the excerpt (cut on a UTF-8
// boundary); -1 sends none.
func TestResponseReportExcerptSize(t *testing.T) {
	body := `{"rows":[{"f":[{"v":"ééééé"}]}]}`
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		for cfg, want := range map[string]string{
			`{"version":"jitgate.dev/filter/v1","responseExcerptBytes":22,"identityOnly":true}`: `{"rows":[{"f":[{"v":"`,
			`{"version":"jitgate.dev/filter/v1","responseExcerptBytes":23,"identityOnly":true}`: `{"rows":[{"f":[{"v":"é`,
			`{"version":"jitgate.dev/filter/v1","responseExcerptBytes":-1,"identityOnly":true}`: ``,
		} {
			t.Run(cfg, func(t *testing.T) {
				host, status := startHost(t, vm, cfg)
				if status != types.OnPluginStartStatusOK {
					t.Fatal(cfg)
				}
				o := exchange(t, host, request{method: "GET", path: tabledataPath}, upstreamOK(body), nil)
				if r := o.job.Response; r.Excerpt != want || !r.ExcerptTruncated || r.Rows != 1 || r.Bytes != int64(len(body)) {
					t.Errorf("excerpt %q truncated %v", r.Excerpt, r.ExcerptTruncated)
				}
			})
		}
	})
}
