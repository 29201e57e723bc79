package bqapi

// Reason is the stable short code of a refusal. It is sent in the
// x-jitgate-deny-reason response header, written to the log line and named at the end
// of the error message, so tests, dashboards and agents can match on it.
type Reason string

// Every refusal the filter can produce. Codes are stable: add new ones, never rename.
const (
	// Classification (403 accessDenied unless noted).
	ReasonUploadEndpoint      Reason = "upload-endpoint"
	ReasonBatchEndpoint       Reason = "batch-endpoint"
	ReasonMCPEndpoint         Reason = "mcp-endpoint"
	ReasonUnknownPath         Reason = "unknown-path"
	ReasonUnknownMethod       Reason = "unknown-method"
	ReasonMethodOverride      Reason = "method-override"      // override header misused
	ReasonMethodOverrideBody  Reason = "method-override-body" // override with a body we cannot read faithfully
	ReasonCredentialInQuery   Reason = "credential-in-query"  // access_token, oauth_token, key
	ReasonCallbackParam       Reason = "callback-param"       // JSONP callback
	ReasonUnsupportedAlt      Reason = "unsupported-alt"      // alt other than json: the gateway must read JSON
	ReasonBadQueryString      Reason = "bad-query-string"     // 400
	ReasonBadPath             Reason = "bad-path"             // 400: undecodable or unsafe path segment
	ReasonLoadJob             Reason = "load-job"             // jobs.insert of a load job
	ReasonExtractJob          Reason = "extract-job"          // jobs.insert of an extract job
	ReasonCopyJob             Reason = "copy-job"             // jobs.insert of a copy job
	ReasonUnknownJobKind      Reason = "unknown-job-kind"     // jobs.insert without a query configuration
	ReasonBodyTooLarge        Reason = "body-too-large"       // 413
	ReasonUnsupportedEncoding Reason = "unsupported-encoding" // 400: Content-Encoding other than gzip/identity
	ReasonBadGzip             Reason = "bad-gzip"             // 400
	ReasonMalformedJSON       Reason = "malformed-json"       // 400
	ReasonAmbiguousJSON       Reason = "ambiguous-json"       // 400: duplicate or aliased keys
	ReasonMissingBody         Reason = "missing-body"         // 400
	ReasonMissingSQL          Reason = "missing-sql"          // 400
	ReasonUnexpectedTrailers  Reason = "unexpected-trailers"  // 400: trailers on a body the gateway must read
	// On a call whose results are masked (the plan is by column position): 403.
	ReasonMaskedSelectedFields  Reason = "masked-selected-fields"  // selectedFields: other columns, other order
	ReasonMaskedPartialResponse Reason = "masked-partial-response" // fields selecting inside a member
	ReasonNotConfigured         Reason = "not-configured"          // 503
	// ReasonControlPlaneUnavailable: the authorize callout failed (unreachable, timed
	// out, non-200, or an answer outside the contract). 503 backendError: clients retry.
	ReasonControlPlaneUnavailable Reason = "control-plane-unavailable"
	ReasonInternal                Reason = "internal-error" // 500
	// The response path (the job ledger): an allowed jobs.query / jobs.insert / jobs.get
	// whose upstream response the gateway reads before releasing it.
	//
	// ReasonBadUpstreamResponse: a 2xx response that is not the JSON document BigQuery
	// sends (or whose encoding cannot be decoded). 502 backendError: clients retry.
	ReasonBadUpstreamResponse Reason = "bad-upstream-response"
	// ReasonResponseTooLarge: the response exceeds the gateway's response limit
	// (maxResponseBodyBytes), before or after inflating. 502 backendError.
	ReasonResponseTooLarge Reason = "response-too-large"
	// ReasonJobNotRecorded: the control plane's job ledger did not record the job the
	// response names (unreachable, timeout, non-200, a bad or negative answer). The job
	// could never be followed by its owner, so the response is withheld. 503 backendError.
	ReasonJobNotRecorded Reason = "job-not-recorded"
	// ReasonResponseNotRecorded: the control plane did not record the response of an
	// allowed call in its audit trail (strict audit mode), so it was not released (503).
	ReasonResponseNotRecorded Reason = "response-not-recorded"
	// ReasonMaskingFailed: the call's decision requires masking and the response cannot
	// be masked (not a BigQuery JSON document, rows without a schema, a cell that does
	// not fit its schema, an error response carrying rows). 502 backendError.
	ReasonMaskingFailed Reason = "masking-failed"
)

// ReasonUnsupportedFormat: a result format option other than the JSON-rows ones the
// gateway knows (formatOptions.useInt64Timestamp / timestampOutputFormat). 403.
const ReasonUnsupportedFormat Reason = "unsupported-format"

// Request-path refusals: what a call names or carries besides its body.
const (
	// ReasonTableDecorator: a table id with a partition ("$20250101") or snapshot
	// ("@-3600000") decorator, in the path or in destinationTable. Policies and masking
	// judge base tables, so a decorated id is refused rather than guessed at. 403.
	ReasonTableDecorator Reason = "table-decorator"
	// ReasonForbiddenParam: a query-string parameter that moves billing or quota
	// (userProject, quotaUser) or overrides the content type ($ct). 403.
	ReasonForbiddenParam Reason = "forbidden-param"
	// ReasonForbiddenHeader: a request header the gateway never lets an agent send
	// (x-jitgate-*, upload protocol headers, alternative method overrides). 403.
	ReasonForbiddenHeader Reason = "forbidden-header"
	// ReasonAmbiguousHeader: a header the gateway decides on sent more than once (or a
	// method override sent empty), or a header name with an underscore. 400.
	ReasonAmbiguousHeader Reason = "ambiguous-header"
)

// class groups reasons by the HTTP answer they get.
type class uint8

const (
	classDenied class = iota
	classInvalid
	classTooLarge
	classUnavailable
	classInternal
	classBadGateway
)

func (r Reason) class() class {
	switch r {
	case ReasonBadQueryString, ReasonBadPath, ReasonUnsupportedEncoding, ReasonBadGzip,
		ReasonMalformedJSON, ReasonAmbiguousJSON, ReasonMissingBody, ReasonMissingSQL,
		ReasonUnexpectedTrailers, ReasonAmbiguousHeader:
		return classInvalid
	case ReasonBodyTooLarge:
		return classTooLarge
	case ReasonNotConfigured, ReasonControlPlaneUnavailable, ReasonJobNotRecorded, ReasonResponseNotRecorded:
		return classUnavailable
	case ReasonBadUpstreamResponse, ReasonResponseTooLarge, ReasonMaskingFailed:
		return classBadGateway
	case ReasonInternal:
		return classInternal
	}
	return classDenied // unknown codes fail closed as denials
}

// HTTPStatus is the status code the agent receives.
func (r Reason) HTTPStatus() int {
	switch r.class() {
	case classInvalid:
		return 400
	case classTooLarge:
		return 413
	case classUnavailable:
		return 503
	case classInternal:
		return 500
	case classBadGateway:
		return 502
	}
	return 403
}

// ErrorReason is BigQuery's errors[].reason for r. Clients decide on retries from it:
// accessDenied and invalid are never retried, backendError is.
func (r Reason) ErrorReason() string {
	switch r.class() {
	case classInvalid, classTooLarge:
		return "invalid"
	case classUnavailable, classInternal, classBadGateway:
		return "backendError"
	}
	return "accessDenied"
}

// Status is the google.rpc status name in error.status.
func (r Reason) Status() string {
	switch r.class() {
	case classInvalid, classTooLarge:
		return "INVALID_ARGUMENT"
	case classUnavailable, classBadGateway: // no google.rpc code maps to 502; clients retry either way
		return "UNAVAILABLE"
	case classInternal:
		return "INTERNAL"
	}
	return "PERMISSION_DENIED"
}

// verb is the word after "jitgate: " in the message.
func (r Reason) verb() string {
	switch r.class() {
	case classInvalid:
		return "invalid request"
	case classTooLarge:
		return "request too large"
	case classUnavailable:
		return "unavailable"
	case classInternal:
		return "internal error"
	case classBadGateway:
		return "bad gateway"
	}
	return "denied"
}

// Rejection is a request the gateway refuses. It is an error so decoding and
// classification helpers can return it through ordinary error paths.
type Rejection struct {
	Reason Reason
	// Detail says why in words an agent author understands. Never put secrets,
	// SQL text or query-string values in it.
	Detail string
}

// Reject builds a Rejection.
func Reject(reason Reason, detail string) *Rejection {
	return &Rejection{Reason: reason, Detail: detail}
}

// Message is the text of error.message and errors[0].message, e.g.
// "jitgate: denied: uploads are not allowed through the gateway (upload-endpoint)".
func (r *Rejection) Message() string {
	return "jitgate: " + r.Reason.verb() + ": " + r.Detail + " (" + string(r.Reason) + ")"
}

// Error implements error.
func (r *Rejection) Error() string { return r.Message() }
