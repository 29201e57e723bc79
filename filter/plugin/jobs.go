package plugin

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/jitgate/jitgate/filter/bqapi"
	"github.com/jitgate/jitgate/filter/reqbody"
)

// The response path of an allowed call. Every upstream response of a call the control
// plane allowed is held whole (headers paused, body buffered up to maxResponseBodyBytes),
// read, masked when the decision says so (mask.go), and reported to the control plane
// (POST authorize.ResponsesPath, respreport.go) before the agent sees a byte of it: the
// control plane records the job a jobs.query, jobs.insert or jobs.get response names in
// the job ledger (the agent could otherwise never page, poll or cancel its own job
// through the gateway) and appends the response's audit record. The response is released
// (byte-identical unless masked) only when the control plane answers recorded=true.
// Every failure replaces the response with a BigQuery-shaped local reply: it is still
// possible because the response headers were never released (Envoy honours a paused
// OnHttpResponseHeaders because the control plane sets allow_on_headers_stop_iteration).

// respState is where an upstream response stands.
type respState uint8

const (
	respPassing   respState = iota // not read by the filter: passes through
	respBuffering                  // held until the end of the stream
	respReporting                  // held while the response report is in flight
	respReleased                   // read, and released to the agent
)

// reportsJob says whether a call's response names a job the ledger must record.
func reportsJob(api bqapi.API) bool {
	return api == bqapi.JobsQuery || api == bqapi.JobsInsert || api == bqapi.JobsGet
}

// identityEncoding makes upstream answer an allowed call uncompressed, so the filter
// reads (masks, counts, digests and excerpts) the response without inflating it (a gzip
// answer sent anyway is inflated). The agent's client copes: it asked for gzip, which
// permits identity. Called on allowed requests only, before they are resumed.
func (h *httpContext) identityEncoding() error {
	return removeRequestHeader("accept-encoding")
}

// holdResponse starts reading an allowed call's response: the headers stay paused.
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

// readResponse reads the complete buffered response, masks it when the decision says
// so, reads the job it names (ledger calls) and reports it (the response stays paused
// until the answer), or replaces it with an error.
func (h *httpContext) readResponse(bodySize int) types.Action {
	h.ex.ResponseBodyBytes = bodySize
	ledger := is2xx(h.ex.ResponseStatus) && reportsJob(h.ex.Call.API)
	if bodySize == 0 {
		if ledger || h.mask != nil && is2xx(h.ex.ResponseStatus) { // rows or a job were due
			return h.withhold(badUpstream("the response has no body"), "empty body")
		}
		h.released, h.releasedEncoding = nil, ""
		return h.reportResponse(nil)
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
	// What the agent gets: the upstream bytes, unless masking replaces them.
	h.released, h.releasedEncoding = raw, strings.TrimSpace(h.respEncoding)
	if h.mask != nil {
		if !h.maskDecoded(doc, inflated) {
			return types.ActionPause // replaced by an error
		}
		doc = h.released // the masked body (identity) is what the excerpt shows
	}
	if !ledger {
		return h.reportResponse(doc)
	}
	job, err := parseJobResponse(h.ex.Call.API, doc)
	if err != nil {
		return h.withhold(badUpstream("the response is not a BigQuery JSON document"), err.Error())
	}
	if job.JobReference != nil && job.JobReference.JobID != "" {
		h.ex.ResponseJob = job.JobReference
	}
	h.ex.ResponseQueryID = job.QueryID
	if h.ex.ResponseJob != nil || h.ex.ResponseQueryID != "" {
		h.ex.ResultTable = job.resultTable() // a dry run names no job: nothing for the ledger
	}
	return h.reportResponse(doc)
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

// notRecorded replaces the response with 503 backendError: the control plane did not
// record it (its job in the ledger, or its audit record). detail is shown to the agent;
// err goes to the log only.
func (h *httpContext) notRecorded(detail string, err error) types.Action {
	line := "jitgate: response report failed: " + detail
	if err != nil {
		line += ": " + bounded(err.Error())
	}
	if h.ex.ResponseJob != nil || h.ex.ResponseQueryID != "" {
		return h.withhold(bqapi.Reject(bqapi.ReasonJobNotRecorded, "the job could not be recorded ("+detail+")"), line)
	}
	return h.withhold(bqapi.Reject(bqapi.ReasonResponseNotRecorded, "the response could not be recorded in the audit trail ("+detail+")"), line)
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
