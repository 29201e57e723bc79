package bqapi

import (
	"bytes"
	"encoding/json"
	"errors"
)

// BigQuery's error messages quote data: `SELECT CAST(email AS INT64)` fails with
// "Bad int64 value: alice@example.com", and the job resource, the error document and the
// query response all carry that text. On a call whose results are masked, the message
// is a way around the mask, so the gateway withholds it and keeps everything a client
// decides on (HTTP status, code, status, reasons, locations).

// WithheldMessage replaces every error message of a masked call's response.
const WithheldMessage = "jitgate: BigQuery's error message is withheld because this query's results are masked and the message may quote their values"

// WithholdErrorMessages returns doc with the free text of every BigQuery error it
// carries replaced by WithheldMessage: an error document's error.message,
// error.errors[].message and error.details[] (google.rpc detail types, see
// scrubDetails); a query response's errors[].message; a job resource's
// status.errorResult.message and status.errors[].message, also inside jobs.cancel's
// {"job": ...}. Errors keep only the members a client decides on (code, status, reason,
// domain, locationType, and a location that is a field path such as "query"); others
// (debugInfo, extendedHelp, unknown members) are dropped. doc must be one JSON object;
// changed is false (and out is doc) when it carries no free text.
// Documents with messages are re-encoded (members keep their values, not their order);
// those without are only scanned, so large row pages cost no copy.
func WithholdErrorMessages(doc []byte) (out []byte, changed bool, err error) {
	// Every member that can carry a message starts with "error ("error", "errors",
	// "errorResult"); a string value holding that text has its quote escaped and still
	// matches, so this only skips documents that cannot have one.
	if !bytes.Contains(doc, []byte(`"error`)) {
		return doc, false, nil
	}
	var top struct {
		Error  json.RawMessage `json:"error"`
		Errors json.RawMessage `json:"errors"`
		Status json.RawMessage `json:"status"`
		Job    json.RawMessage `json:"job"` // jobs.cancel: {"kind":...,"job":{job resource}}
	}
	if err := json.Unmarshal(doc, &top); err != nil {
		return nil, false, err
	}
	if isNull(top.Error) && isNull(top.Errors) && (isNull(top.Status) || !hasErrorMembers(top.Status)) && isNull(top.Job) {
		return doc, false, nil
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber() // numbers keep their exact text
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, false, err
	}
	if m == nil {
		return nil, false, errors.New("not a JSON object")
	}
	switch e := m["error"].(type) {
	case map[string]any:
		changed = withholdErrorBody(e) || changed
	case nil:
	default: // not BigQuery's shape ({"error":"text"}): text all the same
		changed = withholdText(m, "error", e) || changed
	}
	changed = withholdList(m, "errors") || changed
	changed = withholdStatus(m["status"]) || changed
	if j, ok := m["job"].(map[string]any); ok {
		changed = withholdStatus(j["status"]) || changed
	}
	if !changed {
		return doc, false, nil
	}
	out, err = json.Marshal(m)
	if err != nil {
		return nil, false, err
	}
	return out, true, nil
}

// withholdStatus replaces the messages of a job resource's status.
func withholdStatus(v any) bool {
	s, ok := v.(map[string]any)
	if !ok {
		return false
	}
	changed := false
	if er, ok := s["errorResult"].(map[string]any); ok {
		changed = withholdIn(er) || changed
	}
	return withholdList(s, "errors") || changed
}

func isNull(r json.RawMessage) bool {
	return len(r) == 0 || string(r) == "null"
}

// hasErrorMembers says whether a job status ({"state":...}) names an error.
func hasErrorMembers(status json.RawMessage) bool {
	var s struct {
		ErrorResult json.RawMessage `json:"errorResult"`
		Errors      json.RawMessage `json:"errors"`
	}
	if json.Unmarshal(status, &s) != nil {
		return true // not the expected shape: let the full decode judge it
	}
	return !isNull(s.ErrorResult) || !isNull(s.Errors)
}

// withholdList scrubs the ErrorProtos of parent[key]; members of another shape (not a
// list, items that are not objects) are dropped.
func withholdList(parent map[string]any, key string) bool {
	v, ok := parent[key]
	if !ok || v == nil {
		return false
	}
	list, ok := v.([]any)
	if !ok {
		delete(parent, key)
		return true
	}
	changed := false
	out := list[:0]
	for _, e := range list {
		p, ok := e.(map[string]any)
		if !ok {
			changed = true
			continue
		}
		changed = withholdIn(p) || changed
		out = append(out, p)
	}
	parent[key] = out
	return changed
}

// withholdIn reduces one ErrorProto ({reason, domain, location, locationType, message,
// debugInfo ...}: errors[] items, a job's errorResult) to what clients decide on, with
// its message withheld.
func withholdIn(p map[string]any) bool {
	changed := false
	for k, v := range p {
		switch k {
		case "message":
			changed = withholdText(p, k, v) || changed
		case "reason", "domain", "locationType":
			changed = keepScalar(p, k, v) || changed
		case "location":
			// "query", or a column or field path; anything else may quote a value.
			if s, ok := v.(string); !ok || !fieldPath(s) {
				delete(p, k)
				changed = true
			}
		default: // debugInfo, extendedHelp, sendReport, members not known to carry no text
			delete(p, k)
			changed = true
		}
	}
	return changed
}

// withholdErrorBody scrubs an error document's "error" object: code and status stay,
// the message is withheld, errors[] are ErrorProtos, details[] google.rpc details.
func withholdErrorBody(e map[string]any) bool {
	changed := false
	for k, v := range e {
		switch k {
		case "message":
			changed = withholdText(e, k, v) || changed
		case "code", "status":
			changed = keepScalar(e, k, v) || changed
		case "errors":
			changed = withholdList(e, k) || changed
		case "details":
			kept, dchanged := scrubDetails(v)
			if dchanged {
				e[k] = kept
				changed = true
			}
		default:
			delete(e, k)
			changed = true
		}
	}
	return changed
}

// withholdText replaces a free-text member with WithheldMessage (a member that is not a
// string is dropped).
func withholdText(p map[string]any, k string, v any) bool {
	if s, ok := v.(string); ok {
		if s == WithheldMessage {
			return false
		}
		p[k] = WithheldMessage
		return true
	}
	delete(p, k)
	return true
}

// keepScalar keeps an identifier member (string, number, bool, null); anything else
// under that name is not the expected shape and is dropped.
func keepScalar(p map[string]any, k string, v any) bool {
	switch v.(type) {
	case string, json.Number, bool, nil:
		return false
	}
	delete(p, k)
	return true
}

// fieldPath says whether s is an identifier path ("query", "email", "address.city",
// "phones[0]"): how BigQuery names where an error is. A value with spaces, '@', digits
// first or punctuation beyond . [ ] is not one.
func fieldPath(s string) bool {
	if s == "" || len(s) > 300 || !(s[0] >= 'a' && s[0] <= 'z' || s[0] >= 'A' && s[0] <= 'Z' || s[0] == '_') {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '[' || c == ']') {
			return false
		}
	}
	return true
}

// Google API error documents carry google.rpc error details (error.details[], each
// with an "@type"); their free text (descriptions, messages, metadata values, debug
// detail, link texts and addresses) may quote values. Hand-written rather than generated
// from google/rpc/error_details.proto: the filter cannot depend on protobuf, and only the
// JSON names below matter.

// detailMember says what to do with one member of a detail.
type detailMember struct {
	kind memberKind
	sub  map[string]detailMember // the shape of a nested object, or of each list item
}

type memberKind int

const (
	identifier memberKind = iota // kept: an enum, code or id a client may decide on
	freeText                     // replaced by WithheldMessage
	textValues                   // an object of free text: keys kept, values replaced
	object                       // a nested object of shape sub
	objectList                   // a list of objects of shape sub
)

var localizedMessageShape = map[string]detailMember{"locale": {kind: identifier}, "message": {kind: freeText}}

// detailShapes are the google.rpc detail types by "@type" (google/rpc/error_details.proto).
// A member not listed is dropped; a detail of another type is dropped whole.
var detailShapes = map[string]map[string]detailMember{
	"type.googleapis.com/google.rpc.ErrorInfo": {
		"reason": {kind: identifier}, "domain": {kind: identifier}, "metadata": {kind: textValues},
	},
	"type.googleapis.com/google.rpc.RetryInfo": {"retryDelay": {kind: identifier}},
	"type.googleapis.com/google.rpc.DebugInfo": {"detail": {kind: freeText}}, // stackEntries dropped
	"type.googleapis.com/google.rpc.QuotaFailure": {"violations": {kind: objectList, sub: map[string]detailMember{
		"subject": {kind: freeText}, "description": {kind: freeText}, "apiService": {kind: identifier},
		"quotaMetric": {kind: identifier}, "quotaId": {kind: identifier}, "quotaDimensions": {kind: textValues},
		"quotaValue": {kind: identifier}, "futureQuotaValue": {kind: identifier},
	}}},
	"type.googleapis.com/google.rpc.PreconditionFailure": {"violations": {kind: objectList, sub: map[string]detailMember{
		"type": {kind: identifier}, "subject": {kind: freeText}, "description": {kind: freeText},
	}}},
	"type.googleapis.com/google.rpc.BadRequest": {"fieldViolations": {kind: objectList, sub: map[string]detailMember{
		"field": {kind: identifier}, "reason": {kind: identifier}, "description": {kind: freeText},
		"localizedMessage": {kind: object, sub: localizedMessageShape},
	}}},
	"type.googleapis.com/google.rpc.RequestInfo": {"requestId": {kind: identifier}, "servingData": {kind: freeText}},
	"type.googleapis.com/google.rpc.ResourceInfo": {
		"resourceType": {kind: identifier}, "resourceName": {kind: freeText}, "owner": {kind: freeText}, "description": {kind: freeText},
	},
	"type.googleapis.com/google.rpc.Help": {"links": {kind: objectList, sub: map[string]detailMember{
		"description": {kind: freeText}, "url": {kind: freeText},
	}}},
	"type.googleapis.com/google.rpc.LocalizedMessage": localizedMessageShape,
}

// scrubDetails returns error.details with the free text of every detail withheld and
// the details it cannot classify (no known "@type", not an object) dropped; changed is
// false when v needed nothing.
func scrubDetails(v any) (kept []any, changed bool) {
	list, ok := v.([]any)
	if !ok {
		return []any{}, v != nil
	}
	kept = make([]any, 0, len(list))
	for _, d := range list {
		obj, ok := d.(map[string]any)
		if !ok {
			changed = true
			continue
		}
		typ, _ := obj["@type"].(string)
		shape, ok := detailShapes[typ]
		if !ok {
			changed = true
			continue
		}
		delete(obj, "@type")
		changed = scrubShape(obj, shape) || changed
		obj["@type"] = typ
		kept = append(kept, obj)
	}
	return kept, changed
}

// scrubShape applies shape to obj in place.
func scrubShape(obj map[string]any, shape map[string]detailMember) bool {
	changed := false
	for k, v := range obj {
		m, ok := shape[k]
		if !ok {
			delete(obj, k)
			changed = true
			continue
		}
		switch m.kind {
		case identifier:
			changed = keepScalar(obj, k, v) || changed
		case freeText:
			changed = withholdText(obj, k, v) || changed
		case textValues:
			o, ok := v.(map[string]any)
			if !ok {
				delete(obj, k)
				changed = true
				continue
			}
			for mk, mv := range o {
				changed = withholdText(o, mk, mv) || changed
			}
		case object:
			o, ok := v.(map[string]any)
			if !ok {
				delete(obj, k)
				changed = true
				continue
			}
			changed = scrubShape(o, m.sub) || changed
		case objectList:
			l, ok := v.([]any)
			if !ok {
				delete(obj, k)
				changed = true
				continue
			}
			out := l[:0]
			for _, item := range l {
				o, ok := item.(map[string]any)
				if !ok {
					changed = true
					continue
				}
				changed = scrubShape(o, m.sub) || changed
				out = append(out, o)
			}
			obj[k] = out
		}
	}
	return changed
}
