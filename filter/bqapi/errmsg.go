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

// WithholdErrorMessages returns doc with the message text of every BigQuery error it
// carries replaced by WithheldMessage: an error document's error.message and
// error.errors[].message; a query response's errors[].message; a job resource's
// status.errorResult.message and status.errors[].message, also inside jobs.cancel's
// {"job": ...} (debugInfo is dropped too). doc
// must be one JSON object; changed is false (and out is doc) when it carries no message.
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
	if e, ok := m["error"].(map[string]any); ok {
		changed = withholdIn(e) || changed
		changed = withholdList(e["errors"]) || changed
	}
	changed = withholdList(m["errors"]) || changed
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
	return withholdList(s["errors"]) || changed
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

func withholdList(v any) bool {
	list, ok := v.([]any)
	if !ok {
		return false
	}
	changed := false
	for _, e := range list {
		if p, ok := e.(map[string]any); ok {
			changed = withholdIn(p) || changed
		}
	}
	return changed
}

// withholdIn replaces the message of one error (ErrorProto or error body).
func withholdIn(p map[string]any) bool {
	changed := false
	if msg, ok := p["message"]; ok && msg != WithheldMessage {
		p["message"] = WithheldMessage
		changed = true
	}
	if _, ok := p["debugInfo"]; ok {
		delete(p, "debugInfo")
		changed = true
	}
	return changed
}
