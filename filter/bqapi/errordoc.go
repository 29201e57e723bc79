package bqapi

import "encoding/json"

// ErrorDocument is BigQuery's error response body. Every standard client parses it:
// Java ignores the details unless Content-Type is application/json, Python and Go
// decide on retries from errors[0].reason.
type ErrorDocument struct {
	Error ErrorBody `json:"error"`
}

// ErrorBody is the "error" member of ErrorDocument.
type ErrorBody struct {
	Code    int          `json:"code"`
	Message string       `json:"message"`
	Errors  []ErrorProto `json:"errors"`
	Status  string       `json:"status"`
}

// ErrorProto is one entry of error.errors.
type ErrorProto struct {
	Reason  string `json:"reason"`
	Domain  string `json:"domain"`
	Message string `json:"message"`
}

// ErrorContentType is the Content-Type every error document is sent with.
const ErrorContentType = "application/json"

// NewErrorDocument returns the BigQuery-shaped error for a rejection.
func NewErrorDocument(r *Rejection) ErrorDocument {
	msg := r.Message()
	return ErrorDocument{Error: ErrorBody{
		Code:    r.Reason.HTTPStatus(),
		Message: msg,
		Errors:  []ErrorProto{{Reason: r.Reason.ErrorReason(), Domain: "global", Message: msg}},
		Status:  r.Reason.Status(),
	}}
}

// Marshal encodes d. It cannot fail for this type; the fallback keeps the reply valid JSON
// even if it somehow did.
func (d ErrorDocument) Marshal() []byte {
	b, err := json.Marshal(d)
	if err != nil {
		return []byte(`{"error":{"code":500,"message":"jitgate: internal error: could not encode error (internal-error)","errors":[{"reason":"backendError","domain":"global","message":"jitgate: internal error"}],"status":"INTERNAL"}}`)
	}
	return b
}

// ErrorBodyFor is shorthand for NewErrorDocument(r).Marshal().
func ErrorBodyFor(r *Rejection) []byte { return NewErrorDocument(r).Marshal() }
