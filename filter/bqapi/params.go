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
	// Raw holds every parameter by its exact REST name ("$alt" and all_users are under
	// "alt" and "allUsers").
	Raw url.Values
	// api is the method whose parameters are accepted (Unknown: any method's).
	api API
}

// paramRule says which methods take a query-string parameter and whether it may repeat.
type paramRule struct {
	// apis lists the methods that take the parameter; none means every method (Google's
	// system parameters).
	apis []API
	// repeated: stateFilter is a list; every value of fields is judged by the masking
	// stage. Any other parameter sent twice is refused: the gateway would judge one value
	// while BigQuery might read the other.
	repeated bool
}

// paramRules is the allowlist of query-string parameters, by exact REST name: the
// discovery document's parameters of each method the gateway serves, plus projection on
// jobs.get (the Python client sends it). Anything else is refused, so a parameter the
// gateway does not judge never reaches BigQuery.
var paramRules = map[string]paramRule{
	"alt":         {},
	"prettyPrint": {},
	"fields":      {repeated: true},

	// location is judged on every call (the callout carries it).
	"location":            {},
	"pageToken":           {apis: []API{JobsGetQueryResults, JobsList, TabledataList, TablesList, DatasetsList, ProjectsList}},
	"maxResults":          {apis: []API{JobsGetQueryResults, JobsList, TabledataList, TablesList, DatasetsList, ProjectsList}},
	"startIndex":          {apis: []API{JobsGetQueryResults, TabledataList}},
	"timeoutMs":           {apis: []API{JobsGetQueryResults}},
	"projection":          {apis: []API{JobsGet, JobsList}},
	"allUsers":            {apis: []API{JobsList}},
	"stateFilter":         {apis: []API{JobsList}, repeated: true},
	"minCreationTime":     {apis: []API{JobsList}},
	"maxCreationTime":     {apis: []API{JobsList}},
	"parentJobId":         {apis: []API{JobsList}},
	"selectedFields":      {apis: []API{TabledataList, TablesGet}},
	"view":                {apis: []API{TablesGet}},
	"all":                 {apis: []API{DatasetsList}},
	"filter":              {apis: []API{DatasetsList}},
	"datasetView":         {apis: []API{DatasetsGet}},
	"accessPolicyVersion": {apis: []API{DatasetsGet}},

	"formatOptions.useInt64Timestamp":     {apis: []API{JobsGetQueryResults, TabledataList}},
	"formatOptions.timestampOutputFormat": {apis: []API{JobsGetQueryResults, TabledataList}},
}

// paramByCanon maps canonical names (canonicalParamName) to exact ones.
var paramByCanon = func() map[string]string {
	m := map[string]string{}
	for name := range paramRules {
		m[canonicalParamName(name)] = name
	}
	return m
}()

func (r paramRule) takes(api API) bool {
	if len(r.apis) == 0 || api == Unknown {
		return true
	}
	for _, a := range r.apis {
		if a == api {
			return true
		}
	}
	return false
}

// canonicalParamName is a parameter name as Google's front end may match it: without a
// leading "$" (system parameters), ignoring ASCII case and underscores (proto field
// names: all_users). It folds the way body keys are compared (normaliseKey).
func canonicalParamName(name string) string {
	return normaliseKey(strings.TrimPrefix(name, "$"))
}

// forbiddenParam refuses, by canonical name, parameters no agent may send: credentials
// must travel in the Authorization header, where the gateway replaces them; JSONP would
// let a page read responses cross-origin; the others move billing or quota, or override
// how BigQuery reads the request.
func forbiddenParam(canon string) *Rejection {
	switch canon {
	case "accesstoken", "oauthtoken", "key":
		return Reject(ReasonCredentialInQuery, "credentials in the query string are not accepted; send the agent token in the Authorization header")
	case "callback":
		return Reject(ReasonCallbackParam, "JSONP callbacks are not allowed through the gateway")
	case "uploadtype", "uploadprotocol":
		return Reject(ReasonUploadEndpoint, "uploads are not allowed through the gateway")
	case "httpmethod":
		// The query-string twin of X-HTTP-Method-Override: the gateway would judge one
		// method while BigQuery runs another.
		return Reject(ReasonBadQueryString, "method overrides in the query string are not accepted through the gateway")
	case "userproject":
		return Reject(ReasonForbiddenParam, "userProject is not accepted through the gateway: it moves billing and quota to another project; the gateway bills the project in the path")
	case "quotauser", "userip":
		return Reject(ReasonForbiddenParam, "quotaUser and userIp are not accepted through the gateway: quota is charged to the gateway's own identity")
	case "ct":
		return Reject(ReasonForbiddenParam, "$ct is not accepted through the gateway: it overrides the content type the gateway reads the body as")
	}
	return nil
}

// ParseParams parses a raw query string (without '?') into Params, refusing forbidden,
// unknown and repeated parameters (in any spelling) and malformed values. Names any
// method takes are accepted; Classify checks them against the call's method.
func ParseParams(rawQuery string) (Params, *Rejection) {
	return parseParamsFor(Unknown, rawQuery)
}

// parseParamsFor is ParseParams for the parameters of one method (Unknown: any method's).
func parseParamsFor(api API, rawQuery string) (Params, *Rejection) {
	p := Params{api: api}
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
// with the same checks as the query string; a parameter in both counts as repeated.
func (p *Params) MergeForm(form string) *Rejection {
	vals, err := url.ParseQuery(form)
	if err != nil {
		return Reject(ReasonBadQueryString, "the form body cannot be parsed")
	}
	return p.merge(vals)
}

// exactName returns the REST name a parameter is judged under, or refuses it. Google's
// front end reads "$alt" as alt and may read all_users or AllUsers as allUsers, so every
// spelling is judged under the exact name (and counts as a repeat of it); names are
// folded as body keys are (normaliseKey).
func (p *Params) exactName(sent string) (string, *Rejection) {
	name := strings.TrimPrefix(sent, "$")
	canon := canonicalParamName(sent)
	if rej := forbiddenParam(canon); rej != nil {
		return "", rej
	}
	exact, known := paramByCanon[canon]
	switch {
	case !known:
		if _, key, ok := strings.Cut(name, "."); ok && strings.HasPrefix(canon, "formatoptions.") {
			return "", checkFormat(key, "")
		}
		return "", Reject(ReasonBadQueryString, "the query-string parameter "+quoteKey(name)+" is not one the gateway knows")
	case !paramRules[exact].takes(p.api):
		return "", Reject(ReasonBadQueryString, "the query-string parameter "+quoteKey(exact)+" is not a parameter of "+p.api.String())
	}
	return exact, nil
}

func (p *Params) merge(vals url.Values) *Rejection {
	if p.Raw == nil {
		p.Raw = url.Values{}
	}
	for sent, vs := range vals {
		name, rej := p.exactName(sent)
		if rej != nil {
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
		case "formatOptions.timestampOutputFormat":
			rej = checkFormat("timestampOutputFormat", v)
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
		if len(vs) > 1 && !paramRules[name].repeated {
			return Reject(ReasonBadQueryString, "the query-string parameter "+quoteKey(name)+" is sent more than once (counting other spellings, such as \"$\"-prefixed or snake_case, and form parameters); send it once")
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
