package plugin

import (
	"bytes"
	"strconv"
	"strings"
	"time"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"

	"github.com/jitgate/jitgate/filter/authorize"
	"github.com/jitgate/jitgate/filter/bqapi"
	"github.com/jitgate/jitgate/filter/masking"
)

// Masking. When the control plane allows a call with a masking instruction
// (authorize.Response.Masking), the filter holds the upstream response whatever its
// status (headers paused, body buffered up to maxResponseBodyBytes, gzip inflated),
// masks its rows with masking.MaskResponse, and releases the masked body uncompressed
// with a corrected content-length. It never releases a body it could not read:
//
//   - a 2xx body that is not a BigQuery JSON document, has rows without a schema (in the
//     body or in Masking.Schema), or is over the limit is replaced by 502 backendError;
//   - a non-2xx body (BigQuery's error) passes only when it carries no rows;
//   - BigQuery's error messages (error documents, a query response's errors, a job's
//     status) are replaced: they can quote the values the plan masks;
//   - a response with trailers, or an encoding other than gzip/identity, is replaced.
//
// The masked response is then held for the response report (jobs.go, respreport.go)
// like every response of an allowed call: one hold, masked first, released once recorded.

// maskState is the masking instruction of one allowed call. plan.Key is the HMAC key;
// masking.Key redacts itself when printed, and nothing here logs it.
type maskState struct {
	plan   masking.Plan
	schema *masking.Schema
}

// MaskSummary is what the log line says about a masked response (never a value).
type MaskSummary struct {
	Rows         int
	CellsMasked  int
	DetectorHits int
	// Decoded: upstream sent gzip, and the agent got the decoded (masked) body.
	Decoded bool
	// MessagesWithheld: BigQuery error messages in the response were replaced.
	MessagesWithheld bool
	// Micros is the time spent masking (and withholding messages), for the log line.
	Micros int64
}

// takeMasking keeps the decision's masking instruction for the response. The hash key
// is decoded into the plan and the decision's base64 copy is dropped.
func (h *httpContext) takeMasking(resp *authorize.Response) error {
	m := resp.Masking
	resp.Masking = nil
	if m == nil {
		return nil
	}
	plan, err := m.Plan()
	m.HashKey = ""
	if err != nil {
		return err
	}
	h.mask = &maskState{plan: plan, schema: m.Schema}
	return nil
}

// maskedCallShape refuses, on a masked call, what would make the response's columns
// differ from the ones the plan was built for: the plan's rules are column positions, so
// a response with other columns, or in another order, would be masked at the wrong
// places (DESIGN invariant 3: refuse rather than guess).
//
//   - selectedFields (tabledata.list, tables.get): a column subset in the caller's order.
//   - A partial response (the fields parameter, or the X-Goog-FieldMask header it can
//     travel in; every occurrence of each is judged) that selects inside a member ("schema/fields(name)", "rows/f"): it can
//     drop a schema's types or nested fields. Top-level members only ("rows,pageToken,
//     totalRows", what the Python, Go and Java clients send) are accepted: the members
//     keep their shape, and rows without a schema fail closed in maskDecoded.
//
// Parameter names are matched the way Google's front end reads them: "selected_fields"
// and "$fields" mean the same.
func (h *httpContext) maskedCallShape() *bqapi.Rejection {
	for name, vals := range h.ex.Call.Params.Raw {
		switch canonicalParam(name) {
		case "selectedfields":
			return bqapi.Reject(bqapi.ReasonMaskedSelectedFields, "selectedFields cannot be used on a call whose results are masked (the masking follows the table's columns); list all columns, or select the columns in a query")
		case "fields":
			for _, v := range vals {
				if !topLevelFields(v) {
					return partialResponseRefused()
				}
			}
		}
	}
	masks, err := requestHeaderValues("x-goog-fieldmask")
	if err != nil {
		return bqapi.Reject(bqapi.ReasonInternal, "the gateway could not read the request headers")
	}
	for _, v := range masks {
		if !topLevelFields(v) {
			return partialResponseRefused()
		}
	}
	return nil
}

// requestHeaderValues returns every value of a request header, in order. Envoy's
// single-value getter (proxy_get_header_map_value, proxywasm.GetHttpRequestHeader)
// returns only the first of repeated headers (Envoy 1.40, e2e
// TestMaskingRepeatedFieldMaskHeaders), so a check that must judge all of them reads the
// whole map. Names compare case-insensitively (Envoy hands them over lower-cased).
func requestHeaderValues(name string) ([]string, error) {
	all, err := proxywasm.GetHttpRequestHeaders()
	if err != nil {
		return nil, err
	}
	var vals []string
	for _, kv := range all {
		if strings.EqualFold(kv[0], name) {
			vals = append(vals, kv[1])
		}
	}
	return vals, nil
}

func partialResponseRefused() *bqapi.Rejection {
	return bqapi.Reject(bqapi.ReasonMaskedPartialResponse, "on a call whose results are masked, a partial response (fields) may only name top-level members such as rows,pageToken,totalRows")
}

// canonicalParam is a query parameter's name as Google's front end matches it: without
// a leading "$", case and underscores.
func canonicalParam(name string) string {
	name = strings.TrimPrefix(name, "$")
	return strings.ToLower(strings.ReplaceAll(name, "_", ""))
}

// topLevelFields says whether a partial-response selector names top-level members
// only: comma-separated names of letters, digits and underscores, or "*".
func topLevelFields(v string) bool {
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f == "*" {
			continue
		}
		if f == "" {
			return false
		}
		for i := 0; i < len(f); i++ {
			c := f[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
				return false
			}
		}
	}
	return true
}

// maskDecoded masks a complete, decoded response body and puts the result in place of
// the upstream body (decoded says the upstream body was compressed, so it must be
// replaced even when masking changed nothing). It returns false after replacing the
// response with an error.
func (h *httpContext) maskDecoded(doc []byte, decoded bool) bool {
	ok2xx := is2xx(h.ex.ResponseStatus)
	if !ok2xx && !looksLikeObject(doc) {
		// Envoy's or a front end's plain-text error: no rows to mask.
		return h.replaceBody(doc, decoded)
	}
	start := time.Now()
	out, stats, _, err := masking.MaskResponse(doc, h.mask.schema, h.mask.plan)
	if err != nil {
		h.withhold(maskFailed(), "masking failed: "+err.Error())
		return false
	}
	if !ok2xx && stats.Rows > 0 {
		h.withhold(maskFailed(), "an error response (status "+headerSafe(h.ex.ResponseStatus)+") carries rows")
		return false
	}
	sum := &MaskSummary{Rows: stats.Rows, CellsMasked: stats.CellsMasked, Decoded: decoded}
	for _, n := range stats.DetectorHits {
		sum.DetectorHits += n
	}
	h.ex.Masked = sum
	changed := decoded || !sameBytes(out, doc)
	// BigQuery's error messages quote values (bqapi.WithholdErrorMessages).
	scrubbed, withheld, err := bqapi.WithholdErrorMessages(out)
	if err != nil {
		h.withhold(maskFailed(), "error messages: "+err.Error())
		return false
	}
	if withheld {
		out, changed, sum.MessagesWithheld = scrubbed, true, true
	}
	sum.Micros = time.Since(start).Microseconds()
	return h.replaceBody(out, changed)
}

// replaceBody makes body the response the agent gets when changed, with the headers
// that describe it (identity encoding, its length).
func (h *httpContext) replaceBody(body []byte, changed bool) bool {
	if !changed {
		return true
	}
	h.released, h.releasedEncoding = body, ""
	if err := proxywasm.ReplaceHttpResponseBody(body); err != nil {
		h.withhold(bqapi.Reject(bqapi.ReasonInternal, "the gateway could not replace the response body"), "replace body: "+err.Error())
		return false
	}
	for _, name := range []string{"content-encoding", "etag"} {
		if err := proxywasm.RemoveHttpResponseHeader(name); err != nil {
			h.withhold(bqapi.Reject(bqapi.ReasonInternal, "the gateway could not replace the response headers"), "remove "+name+": "+err.Error())
			return false
		}
	}
	if err := proxywasm.ReplaceHttpResponseHeader("content-length", strconv.Itoa(len(body))); err != nil {
		h.withhold(bqapi.Reject(bqapi.ReasonInternal, "the gateway could not replace the response headers"), "content-length: "+err.Error())
		return false
	}
	return true
}

// maskFailed is the agent's answer when a response that must be masked cannot be.
// Clients retry backendError; the message says what happened without any value.
func maskFailed() *bqapi.Rejection {
	return bqapi.Reject(bqapi.ReasonMaskingFailed, "the gateway could not mask this response")
}

func looksLikeObject(doc []byte) bool {
	t := bytes.TrimLeft(doc, " \t\r\n")
	return len(t) > 0 && t[0] == '{'
}

// sameBytes reports whether a and b are the same slice (MaskResponse returns its input
// when nothing changed) or equal.
func sameBytes(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	if len(a) == 0 || &a[0] == &b[0] {
		return true
	}
	return bytes.Equal(a, b)
}

// maskLogFields writes the masking fields of the log line.
func maskLogFields(b *strings.Builder, m *MaskSummary) {
	field(b, "masked", "true")
	field(b, "masked_rows", strconv.Itoa(m.Rows))
	field(b, "masked_cells", strconv.Itoa(m.CellsMasked))
	field(b, "detector_hits", strconv.Itoa(m.DetectorHits))
	if m.Decoded {
		field(b, "response_decoded", "gzip")
	}
	if m.MessagesWithheld {
		field(b, "error_messages", "withheld")
	}
	field(b, "mask_us", strconv.FormatInt(m.Micros, 10))
}
