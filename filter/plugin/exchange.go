package plugin

import "github.com/jitgate/jitgate/filter/bqapi"

// Decision is the filter's verdict on a request.
type Decision string

// Decisions as they appear in the log line.
const (
	DecisionPending Decision = ""      // not decided yet (headers or body still arriving)
	DecisionAllow   Decision = "allow" // forwarded upstream
	DecisionDeny    Decision = "deny"  // answered locally (denied, invalid, or failed closed)
)

// Exchange is everything the filter knows about one request. Each stage reads it and
// adds to it; the next stages (authorize callout, rewrite, masking) take it from
// httpContext.Exchange.
type Exchange struct {
	// Call is the classified request (API, ids, effective method, query-string params).
	Call bqapi.Call
	// Query is the decoded jobs.query / jobs.insert body; nil for other calls.
	Query *bqapi.QuerySpec
	// RequestBodyBytes is the size of the body as received (before inflating).
	RequestBodyBytes int
	Decision         Decision
	// Rejection is set when Decision is DecisionDeny.
	Rejection *bqapi.Rejection
	// ResponseStatus is the upstream :status, when a response arrived.
	ResponseStatus string
}
