package bqapi

import (
	"net/url"
	"strconv"
	"strings"
)

// Params is the query string of a BigQuery call, parsed. Typed fields hold the
// parameters later stages reason about; Raw keeps everything as sent (minus nothing:
// calls carrying credentials never get this far).
type Params struct {
	Location    string
	PageToken   string
	Fields      string
	Projection  string
	StateFilter []string
	Alt         string
	PrettyPrint *bool
	AllUsers    bool
	All         bool // datasets.list / projects.list "all"
	MaxResults  *uint64
	StartIndex  *uint64
	TimeoutMs   *uint64
	// SelectedFields is tabledata.list's column selection.
	SelectedFields string
	// UseInt64Timestamp is formatOptions.useInt64Timestamp.
	UseInt64Timestamp bool
	Raw               url.Values
}

// forbidden query-string parameters: credentials must travel in the Authorization header,
// where the gateway replaces them; JSONP would let a page read responses cross-origin.
func forbiddenParam(name string) *Rejection {
	switch strings.ToLower(name) {
	case "access_token", "oauth_token", "key":
		return Reject(ReasonCredentialInQuery, "credentials in the query string are not accepted; send the agent token in the Authorization header")
	case "callback":
		return Reject(ReasonCallbackParam, "JSONP callbacks are not allowed through the gateway")
	case "uploadtype", "upload_protocol":
		return Reject(ReasonUploadEndpoint, "uploads are not allowed through the gateway")
	}
	return nil
}

// ParseParams parses a raw query string (without '?') into Params, refusing forbidden
// parameters and malformed values.
func ParseParams(rawQuery string) (Params, *Rejection) {
	p := Params{}
	if rawQuery == "" {
		return p, nil
	}
	vals, err := url.ParseQuery(rawQuery)
	if err != nil {
		return p, Reject(ReasonBadQueryString, "the query string cannot be parsed")
	}
	if rej := p.merge(vals); rej != nil {
		return Params{}, rej
	}
	return p, nil
}

// MergeForm adds parameters from a form body (POST + X-HTTP-Method-Override: GET),
// with the same checks as the query string.
func (p *Params) MergeForm(form string) *Rejection {
	vals, err := url.ParseQuery(form)
	if err != nil {
		return Reject(ReasonBadQueryString, "the form body cannot be parsed")
	}
	return p.merge(vals)
}

func (p *Params) merge(vals url.Values) *Rejection {
	if p.Raw == nil {
		p.Raw = url.Values{}
	}
	for name, vs := range vals {
		// Google's front end reads the system parameters also with a "$" prefix ($alt,
		// $callback, $fields ...): judge them under one name, so "$alt=proto" cannot
		// slip past the alt check.
		name = strings.TrimPrefix(name, "$")
		if strings.EqualFold(name, "httpMethod") {
			// The query-string twin of X-HTTP-Method-Override: the gateway would judge
			// one method while BigQuery runs another.
			return Reject(ReasonBadQueryString, "method overrides in the query string are not accepted through the gateway")
		}
		if rej := forbiddenParam(name); rej != nil {
			return rej
		}
		p.Raw[name] = append(p.Raw[name], vs...)
	}
	for name, vs := range p.Raw {
		v := vs[len(vs)-1]
		var rej *Rejection
		switch name {
		case "location":
			p.Location = v
		case "pageToken":
			p.PageToken = v
		case "fields":
			p.Fields = v
		case "projection":
			p.Projection = v
		case "stateFilter":
			p.StateFilter = vs
		case "selectedFields":
			p.SelectedFields = v
		case "alt":
			for _, a := range vs { // every spelling and repetition, not only the last
				if a != "json" {
					return Reject(ReasonUnsupportedAlt, "only alt=json responses can pass the gateway")
				}
			}
			p.Alt = v
		case "prettyPrint":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return Reject(ReasonBadQueryString, "prettyPrint is not a boolean")
			}
			p.PrettyPrint = &b
		case "allUsers":
			p.AllUsers, rej = parseBool(name, v)
		case "all":
			p.All, rej = parseBool(name, v)
		case "formatOptions.useInt64Timestamp":
			p.UseInt64Timestamp, rej = parseBool(name, v)
		default:
			if key, ok := strings.CutPrefix(name, "formatOptions."); ok {
				rej = checkFormat(key, v)
			}
		case "maxResults":
			p.MaxResults, rej = parseUint(name, v)
		case "startIndex":
			p.StartIndex, rej = parseUint(name, v)
		case "timeoutMs":
			p.TimeoutMs, rej = parseUint(name, v)
		}
		if rej != nil {
			return rej
		}
	}
	return nil
}

func parseBool(name, v string) (bool, *Rejection) {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, Reject(ReasonBadQueryString, name+" is not a boolean")
	}
	return b, nil
}

func parseUint(name, v string) (*uint64, *Rejection) {
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return nil, Reject(ReasonBadQueryString, name+" is not a non-negative integer")
	}
	return &n, nil
}
