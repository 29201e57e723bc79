package bqapi

import (
	"net/url"
	"strings"
	"unicode/utf8"
)

// PathForm says how a call spelled its path.
type PathForm uint8

const (
	// PathPrefixed is /bigquery/v2/projects/... (Python, Java, Go with a /bigquery/v2/ endpoint).
	PathPrefixed PathForm = iota
	// PathBare is /projects/... (the Go client given a plain endpoint without a path).
	PathBare
)

// Call is one BigQuery REST request, classified. It is the typed input of every later
// stage: local rules, the authorize callout, the job ledger and masking.
type Call struct {
	API API
	// Method is the effective HTTP method: X-HTTP-Method-Override when present.
	Method string
	// Overridden is true when Method came from X-HTTP-Method-Override (Java).
	Overridden bool
	PathForm   PathForm
	// Identifiers from the path, percent-decoded. Empty when the path has none.
	Project, Dataset, Table, JobID string
	Params                         Params
}

const pathPrefix = "/bigquery/v2"

// MethodOverrideHeader is the header Java's client uses to send PATCH (and long GETs) as POST.
const MethodOverrideHeader = "x-http-method-override"

// Classify turns a request's method, X-HTTP-Method-Override value (empty when absent)
// and :path (with query string) into a Call, or refuses it. Everything not positively
// recognised is refused: the gateway denies by default.
func Classify(method, override, rawPath string) (Call, *Rejection) {
	c := Call{Method: method}
	if override != "" {
		if method != "POST" {
			return c, Reject(ReasonMethodOverride, "X-HTTP-Method-Override is only honoured on POST requests")
		}
		c.Method = strings.ToUpper(strings.TrimSpace(override))
		c.Overridden = true
	}
	switch c.Method {
	case "GET", "POST", "PUT", "PATCH", "DELETE":
	default:
		return c, Reject(ReasonUnknownMethod, "HTTP method "+quoteMethod(c.Method)+" is not allowed through the gateway")
	}

	path, rawQuery, _ := strings.Cut(rawPath, "?")
	if rej := refuseEndpoint(path); rej != nil {
		return c, rej
	}
	rest, ok := strings.CutPrefix(path, pathPrefix)
	switch {
	case ok && strings.HasPrefix(rest, "/projects"):
		c.PathForm = PathPrefixed
	case strings.HasPrefix(path, "/projects"):
		c.PathForm, rest = PathBare, path
	default:
		return c, Reject(ReasonUnknownPath, "this path is not a BigQuery REST method the gateway knows")
	}
	segs, rej := splitPath(rest)
	if rej != nil {
		return c, rej
	}
	allowed := c.route(segs)
	if c.API == Unknown {
		return c, Reject(ReasonUnknownPath, "this path is not a BigQuery REST method the gateway knows")
	}
	if c.Method != allowed {
		api := c.API
		c.API = Unknown
		return c, Reject(ReasonUnknownMethod, "HTTP method "+c.Method+" is not allowed on the "+api.String()+" path")
	}
	if rej := c.refuseDecorators(); rej != nil {
		return c, rej
	}
	c.Params, rej = parseParamsFor(c.API, rawQuery)
	if rej != nil {
		return c, rej
	}
	return c, nil
}

// Decorated reports whether a BigQuery identifier carries a table decorator: BigQuery
// reads "t$20250101" / "t$__UNPARTITIONED__" as a partition of t and "t@-3600000" as t at
// another time. Project, dataset, table and job ids never contain '$' or '@' otherwise.
func Decorated(id string) bool { return strings.ContainsAny(id, "$@") }

// refuseDecorators refuses decorated identifiers in the path (after percent-decoding, so
// "%24" counts). Policies and masking name base tables; a decorated id would be judged
// as a table nobody named while BigQuery serves the base table's rows.
func (c *Call) refuseDecorators() *Rejection {
	if Decorated(c.Table) {
		return DecoratorRejection("table id", c.Table)
	}
	for _, id := range []string{c.Project, c.Dataset, c.JobID} {
		if Decorated(id) {
			return DecoratorRejection("identifier", id)
		}
	}
	return nil
}

// DecoratorRejection refuses a decorated id, naming the decorator; what says where the
// id was ("table id", "destinationTable.tableId").
func DecoratorRejection(what, id string) *Rejection {
	kind := "partition decorator ($...)"
	if !strings.Contains(id, "$") {
		kind = "snapshot decorator (@...)"
	}
	return Reject(ReasonTableDecorator, what+" "+quoteKey(id)+" carries a "+kind+"; table decorators are not allowed through the gateway: name the base table and select partitions or times in SQL")
}

// refuseEndpoint names the endpoint families that are denied outright. Matching is
// case-insensitive so a change of case cannot slip past the message (unknown paths are
// denied anyway).
func refuseEndpoint(path string) *Rejection {
	lower := strings.ToLower(path)
	switch {
	case under(lower, "/upload"):
		return Reject(ReasonUploadEndpoint, "uploads are not allowed through the gateway")
	case under(lower, "/batch"):
		return Reject(ReasonBatchEndpoint, "batch requests are not allowed through the gateway; send each call on its own")
	case under(lower, "/mcp"):
		return Reject(ReasonMCPEndpoint, "the remote MCP endpoint is not served through the gateway")
	}
	return nil
}

func under(path, prefix string) bool {
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}

// splitPath splits "/projects/p/..." into decoded segments, refusing empty, dot and
// encoded-slash segments so an identifier cannot change the shape of the path.
func splitPath(rest string) ([]string, *Rejection) {
	segs := strings.Split(rest[1:], "/")
	for i, s := range segs {
		d, err := url.PathUnescape(s)
		if err != nil {
			return nil, Reject(ReasonBadPath, "a path segment is not valid percent-encoding")
		}
		// BigQuery identifiers never hold these; a fragment or a second query string
		// smuggled into an identifier would change what the control plane decides on.
		if d == "" || d == "." || d == ".." || strings.ContainsAny(d, "/\\#?") || hasControl(d) || !utf8.ValidString(d) {
			return nil, Reject(ReasonBadPath, "the path has an empty, dot, slash, '#', '?', control-character or non-UTF-8 segment")
		}
		segs[i] = d
	}
	return segs, nil
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// route sets c.API and the identifiers from segs and returns the one method the path
// allows (jobs collection: POST is insert, GET is list).
func (c *Call) route(segs []string) (method string) {
	n := len(segs)
	if segs[0] != "projects" {
		return ""
	}
	if n == 1 {
		c.API = ProjectsList
		return "GET"
	}
	c.Project = segs[1]
	if n == 2 {
		return ""
	}
	switch segs[2] {
	case "queries":
		switch n {
		case 3:
			c.API = JobsQuery
			return "POST"
		case 4:
			c.API, c.JobID = JobsGetQueryResults, segs[3]
			return "GET"
		}
	case "jobs":
		switch n {
		case 3:
			if c.Method == "GET" {
				c.API = JobsList
				return "GET"
			}
			c.API = JobsInsert
			return "POST"
		case 4:
			c.API, c.JobID = JobsGet, segs[3]
			return "GET"
		case 5:
			c.JobID = segs[3]
			switch segs[4] {
			case "cancel":
				c.API = JobsCancel
				return "POST"
			case "delete":
				c.API = JobsDelete
				return "DELETE"
			}
		}
	case "datasets":
		switch {
		case n == 3:
			c.API = DatasetsList
			return "GET"
		case n == 4:
			c.API, c.Dataset = DatasetsGet, segs[3]
			return "GET"
		case segs[4] != "tables":
		case n == 5:
			c.API, c.Dataset = TablesList, segs[3]
			return "GET"
		case n == 6:
			c.API, c.Dataset, c.Table = TablesGet, segs[3], segs[5]
			return "GET"
		case n == 7 && segs[6] == "data":
			c.API, c.Dataset, c.Table = TabledataList, segs[3], segs[5]
			return "GET"
		}
	}
	c.API, c.Project, c.Dataset, c.Table, c.JobID = Unknown, "", "", "", ""
	return ""
}

// quoteMethod keeps an attacker-chosen method short and printable in messages.
func quoteMethod(m string) string {
	if len(m) > 16 {
		m = m[:16]
	}
	if hasControl(m) || strings.ContainsAny(m, "\"\\") {
		return "(unprintable)"
	}
	return `"` + m + `"`
}
