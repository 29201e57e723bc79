package plugin

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/jitgate/jitgate/filter/authorize"
	"github.com/jitgate/jitgate/filter/bqapi"
	"github.com/jitgate/jitgate/filter/reqbody"
)

// The job ledger's filter side. The upstream response of an allowed jobs.query,
// jobs.insert or jobs.get names a job (jobReference) or a stateless query (queryId). The
// control plane must record it (POST authorize.JobsPath) before the agent learns it, or
// the agent could never page, poll or cancel its own job through the gateway. So for
// these calls a 2xx response is held whole (headers paused, body buffered up to
// maxResponseBodyBytes), read, reported, and released byte-identical only when the
// control plane acknowledges it with recorded=true. Every failure replaces the response
// with a BigQuery-shaped local reply: it is still possible because the response headers
// were never released (Envoy honours a paused OnHttpResponseHeaders because the control
// plane sets allow_on_headers_stop_iteration).
//
// Non-2xx responses and responses that name neither a job nor a query id (dry runs) go
// to the agent unchanged and are not reported.

// respState is where an upstream response stands.
type respState uint8

const (
	respPassing   respState = iota // not read by the filter: passes through
	respBuffering                  // held until the end of the stream
	respReporting                  // held while the job report is in flight
	respReleased                   // read, and released to the agent
)

// reportsJob says whether a call's response names a job the ledger must record.
func reportsJob(api bqapi.API) bool {
	return api == bqapi.JobsQuery || api == bqapi.JobsInsert || api == bqapi.JobsGet
}

// identityEncoding makes upstream answer a ledger call or a masked call uncompressed,
// so the filter reads the response without inflating it (a gzip answer sent anyway is
// inflated). The agent's client copes: it asked for gzip, which permits identity.
// Called on allowed requests only, before they are resumed.
func (h *httpContext) identityEncoding() error {
	if !reportsJob(h.ex.Call.API) && h.mask == nil {
		return nil
	}
	return removeRequestHeader("accept-encoding")
}

// holdResponse starts reading a ledger call's 2xx response: the headers stay paused.
func (h *httpContext) holdResponse(endOfStream bool) types.Action {
	limit := h.cfg.MaxResponseBodyBytes
	if cl := responseHeader("content-length"); cl != "" {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n > limit {
			return h.withhold(responseTooLarge(limit), "content-length "+cl)
		}
	}
	h.respEncoding = responseHeader("content-encoding")
	h.resp = respBuffering
	if endOfStream {
		return h.readResponse(0)
	}
	return types.ActionPause
}

// readResponse reads the complete buffered response and either releases it (nothing
// to record), reports its job (the response stays paused until the answer) or replaces
// it with an error.
func (h *httpContext) readResponse(bodySize int) types.Action {
	h.ex.ResponseBodyBytes = bodySize
	ok2xx := is2xx(h.ex.ResponseStatus)
	if bodySize == 0 {
		if !ok2xx {
			h.resp = respReleased // a masked call's bodiless error: nothing to mask
			return types.ActionContinue
		}
		return h.withhold(badUpstream("the response has no body"), "empty body")
	}
	raw, err := proxywasm.GetHttpResponseBody(0, bodySize)
	if err != nil {
		return h.withhold(bqapi.Reject(bqapi.ReasonInternal, "the gateway could not read the response"), err.Error())
	}
	limit := h.cfg.MaxResponseBodyBytes
	doc, inflated := raw, false
	switch strings.ToLower(strings.TrimSpace(h.respEncoding)) {
	case "", "identity":
	case "gzip", "x-gzip":
		doc, err = reqbody.Inflate(raw, limit)
		inflated = true
		if errors.Is(err, reqbody.ErrTooLarge) {
			return h.withhold(responseTooLarge(limit), "inflated body")
		} else if err != nil {
			return h.withhold(badUpstream("the gzip-encoded response cannot be decoded"), err.Error())
		}
	default:
		return h.withhold(badUpstream("the response's Content-Encoding cannot be decoded"), "content-encoding "+bounded(h.respEncoding))
	}
	if h.mask != nil {
		if !h.maskDecoded(doc, inflated) {
			return types.ActionPause // replaced by an error
		}
		if !ok2xx || !reportsJob(h.ex.Call.API) {
			h.resp = respReleased
			return types.ActionContinue
		}
	}
	job, err := parseJobResponse(h.ex.Call.API, doc)
	if err != nil {
		return h.withhold(badUpstream("the response is not a BigQuery JSON document"), err.Error())
	}
	if job.JobReference != nil && job.JobReference.JobID != "" {
		h.ex.ResponseJob = job.JobReference
	}
	h.ex.ResponseQueryID = job.QueryID
	h.ex.ResultTable = job.resultTable()
	if h.ex.ResponseJob == nil && h.ex.ResponseQueryID == "" {
		h.resp = respReleased // a dry run: nothing to record
		return types.ActionContinue
	}
	return h.reportJob()
}

// jobResponse is what the ledger needs from a jobs.query response (QueryResponse) or a
// jobs.insert / jobs.get response (Job).
type jobResponse struct {
	JobReference  *bqapi.JobReference `json:"jobReference"`
	QueryID       string              `json:"queryId"`
	Configuration *struct {
		Query *struct {
			DestinationTable *bqapi.TableReference `json:"destinationTable"`
		} `json:"query"`
	} `json:"configuration"`
}

func (j *jobResponse) resultTable() *bqapi.TableReference {
	if j.Configuration == nil || j.Configuration.Query == nil {
		return nil
	}
	t := j.Configuration.Query.DestinationTable
	if t == nil || t.TableID == "" {
		return nil
	}
	return t
}

// parseJobResponse decodes the fields the ledger needs. The document must be one JSON
// object; the rest of it (rows, schema, statistics) is validated but not kept.
func parseJobResponse(api bqapi.API, doc []byte) (jobResponse, error) {
	var j jobResponse
	if t := bytes.TrimLeft(doc, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return j, errors.New("not a JSON object")
	}
	if err := json.Unmarshal(doc, &j); err != nil {
		return jobResponse{}, err
	}
	if api == bqapi.JobsQuery {
		j.Configuration = nil // a QueryResponse has no job configuration
	}
	return j, nil
}

// reportJob sends the job report; the response stays paused until the answer
// (onJobReportResponse).
func (h *httpContext) reportJob() types.Action {
	a := h.ex.Authz
	if a == nil || a.DecisionID == "" {
		return h.withhold(bqapi.Reject(bqapi.ReasonInternal, "the gateway lost the decision that allowed this call"), "no decision id")
	}
	doc, err := authorize.JobReport{
		DecisionID: a.DecisionID, RequestID: h.caller.requestID, API: h.ex.Call.API.String(),
		Job: h.ex.ResponseJob, QueryID: h.ex.ResponseQueryID, ResultTable: h.ex.ResultTable,
	}.Marshal()
	if err != nil {
		return h.notRecorded("the report could not be encoded", err)
	}
	if err := h.callControlPlane(authorize.JobsPath, doc, h.cfg.ControlPlane.TimeoutMillis, h.onJobReportResponse); err != nil {
		return h.notRecorded("the report could not be dispatched", err)
	}
	h.resp = respReporting
	return types.ActionPause
}

// onJobReportResponse is the job report's callback: it releases the response unchanged
// when the ledger recorded the job, and replaces it with a 503 otherwise.
func (h *httpContext) onJobReportResponse(numHeaders, bodySize, _ int) {
	defer func() {
		if r := recover(); r != nil {
			proxywasm.LogCriticalf("jitgate: recovered panic in job-report-response: %s", panicText(r))
			h.withhold(bqapi.Reject(bqapi.ReasonInternal, "the gateway failed while handling this response"), "panic")
		}
	}()
	if h.replied || h.resp != respReporting {
		return
	}
	h.plugin.fault("job-report-response")
	body, detail, err := readCalloutBody(numHeaders, bodySize)
	if detail != "" {
		h.notRecorded(detail, err)
		return
	}
	ack, err := authorize.ParseJobReportAck(body)
	if err != nil {
		h.notRecorded("invalid response", err)
		return
	}
	if !ack.Recorded {
		detail := "refused"
		if ack.Reason != "" {
			detail += ": " + headerSafe(ack.Reason)
		}
		h.notRecorded(detail, nil)
		return
	}
	h.ex.JobRecorded = true
	h.resp = respReleased
	if err := proxywasm.ResumeHttpResponse(); err != nil {
		h.ex.JobRecorded = false
		proxywasm.LogCriticalf("jitgate: could not resume the response: %v", err)
		h.withhold(bqapi.Reject(bqapi.ReasonInternal, "the gateway could not release the response"), "resume failed")
	}
}

// notRecorded replaces the response with 503 backendError: the job could not be
// recorded. detail is shown to the agent; err goes to the log only.
func (h *httpContext) notRecorded(detail string, err error) types.Action {
	line := "jitgate: job report failed: " + detail
	if err != nil {
		line += ": " + bounded(err.Error())
	}
	return h.withhold(bqapi.Reject(bqapi.ReasonJobNotRecorded, "the job could not be recorded ("+detail+")"), line)
}

// withhold replaces the held upstream response with a local reply. why is logged (with
// the request id), never shown to the agent.
func (h *httpContext) withhold(rej *bqapi.Rejection, why string) types.Action {
	if h.replied {
		return types.ActionPause
	}
	if !strings.HasPrefix(why, "jitgate: ") {
		why = "jitgate: response withheld: " + bounded(why)
	}
	if h.caller.requestID != "" {
		why += " request_id=" + strconv.Quote(h.caller.requestID)
	}
	proxywasm.LogWarn(why)
	h.resp = respPassing
	return h.reject(rej)
}

func responseTooLarge(limit int64) *bqapi.Rejection {
	return bqapi.Reject(bqapi.ReasonResponseTooLarge, "the BigQuery response exceeds the gateway limit of "+strconv.FormatInt(limit, 10)+" bytes")
}

func badUpstream(detail string) *bqapi.Rejection {
	return bqapi.Reject(bqapi.ReasonBadUpstreamResponse, detail)
}

// is2xx reports whether an upstream :status is a success.
func is2xx(status string) bool {
	return len(status) == 3 && status[0] == '2' && status[1] >= '0' && status[1] <= '9' && status[2] >= '0' && status[2] <= '9'
}
