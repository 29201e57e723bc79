package sqlanalysis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"cloud.google.com/go/bigquery"
	"google.golang.org/api/option"

	"github.com/jitgate/jitgate/controlplane/policystep"
	"github.com/jitgate/jitgate/filter/authorize"
	"github.com/jitgate/jitgate/filter/bqapi"
	"github.com/jitgate/jitgate/policies"
)

// ReadOnlyScope is all tables.get needs.
const ReadOnlyScope = "https://www.googleapis.com/auth/bigquery.readonly"

// DefaultUpstreamURL is BigQuery's public endpoint (the client's own default).
const DefaultUpstreamURL = "https://bigquery.googleapis.com"

// UpstreamOptions tune the analyser NewForUpstream builds; zero values are the
// analyser's and table source's defaults.
type UpstreamOptions struct {
	// TableMetadataTTL is how long tables.get metadata is reused.
	TableMetadataTTL time.Duration
	// CacheSize and CacheTTL bound the result cache (see Options).
	CacheSize int
	CacheTTL  time.Duration
	// Metrics, when set, counts analyses.
	Metrics *Metrics
}

// PolicyAnalyzer is the control plane's SQL analyser: an Analyzer over a tables.get
// catalog read from the BigQuery upstream, adapted to policystep.Analyzer.
type PolicyAnalyzer struct {
	analyzer *Analyzer
	client   *bigquery.Client
	auth     string
	tables   *BigQueryTableSource
}

// Tables is the analyser's tables.get catalog (cached), for callers that need a table's
// schema too (masking tabledata.list responses).
func (p *PolicyAnalyzer) Tables() TableSource { return p.tables }

// NewForUpstream builds the policy step's SQL analyser over a tables.get catalog read
// from upstreamURL: a plain http upstream (the emulator) without credentials, https
// with the service-account key in keyFile (read-only scope). jitgated and
// `jitgate policy explain` both use it.
func NewForUpstream(ctx context.Context, upstreamURL, keyFile string, opts UpstreamOptions) (*PolicyAnalyzer, error) {
	copts, auth := ClientOptions(upstreamURL, keyFile)
	// The project only names the client; every tables.get names its own project.
	client, err := bigquery.NewClient(ctx, "jitgate-catalog", copts...)
	if err != nil {
		return nil, fmt.Errorf("sql analyser: bigquery client: %w", err)
	}
	src := NewBigQueryTableSource(client)
	if opts.TableMetadataTTL > 0 {
		src.TTL = opts.TableMetadataTTL
	}
	an, err := New(Options{Catalog: src, CacheSize: opts.CacheSize, CacheTTL: opts.CacheTTL, Metrics: opts.Metrics})
	if err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("sql analyser: %w", err)
	}
	return &PolicyAnalyzer{analyzer: an, client: client, auth: auth, tables: src}, nil
}

// Auth describes how the catalog authenticates, for logs (never the key file's path or
// contents).
func (p *PolicyAnalyzer) Auth() string { return p.auth }

// Close releases the BigQuery client.
func (p *PolicyAnalyzer) Close() error { return p.client.Close() }

// ClientOptions points a BigQuery client at upstreamURL: a plain http upstream (the
// emulator) without credentials (nothing signed by the gateway's key is ever sent in
// clear text); https with the service-account key, read-only scope. The string
// describes the authentication for logs.
func ClientOptions(upstreamURL, keyFile string) ([]option.ClientOption, string) {
	base := strings.TrimRight(upstreamURL, "/")
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "https" {
		auth := "none (plain http upstream)"
		if err == nil {
			if ip := net.ParseIP(u.Hostname()); (ip == nil || !ip.IsLoopback()) && u.Hostname() != "localhost" {
				auth = "none (plain http upstream, not loopback)"
			}
		}
		return []option.ClientOption{option.WithEndpoint(base + "/bigquery/v2/"), option.WithoutAuthentication()}, auth
	}
	opts := []option.ClientOption{
		option.WithAuthCredentialsFile(option.ServiceAccount, keyFile),
		option.WithScopes(ReadOnlyScope),
	}
	if base != DefaultUpstreamURL {
		opts = append(opts, option.WithEndpoint(base+"/bigquery/v2/"))
	}
	return opts, "service-account key (credentials.keyFile)"
}

// Analyze implements policystep.Analyzer.
func (p *PolicyAnalyzer) Analyze(ctx context.Context, req authorize.Request) (*policies.Analysis, error) {
	res, err := p.AnalyzeRequest(ctx, req)
	if err != nil {
		return nil, err
	}
	return res.ToPolicy(), nil
}

// AnalyzeRequest is Analyze with the full analysis (lineage, views, ...); errors are
// mapped as policystep expects (PolicyError).
func (p *PolicyAnalyzer) AnalyzeRequest(ctx context.Context, req authorize.Request) (*Analysis, error) {
	if req.Query == nil {
		return nil, &policystep.AnalysisError{Reason: "unanalysable_sql", Message: "The call carries no query to analyse."}
	}
	res, err := p.analyzer.Analyze(ctx, PolicyInput(req))
	if err != nil {
		return nil, PolicyError(err)
	}
	return res, nil
}

// PolicyInput maps a query call to the analyser's input: names without a project
// resolve to the job's project, unqualified names to defaultDataset.
func PolicyInput(req authorize.Request) Input {
	q := req.Query
	in := Input{SQL: q.SQL, DefaultProject: req.Call.Project, LegacySQL: q.LegacySQL}
	if dd := q.DefaultDataset; dd != nil && dd.DatasetID != "" {
		p := dd.ProjectID
		if p == "" {
			p = req.Call.Project
		}
		in.DefaultDataset = &DatasetRef{Project: p, Dataset: dd.DatasetID}
	}
	for _, p := range q.Parameters {
		in.Parameters = append(in.Parameters, Parameter{Name: p.Name, Type: parameterType(p.ParameterType)})
	}
	return in
}

// parameterType renders a parameter type the way GoogleSQL writes it (ARRAY<INT64>,
// STRUCT<a STRING>), for the fingerprint.
func parameterType(t *bqapi.QueryParameterType) string {
	switch {
	case t == nil:
		return ""
	case t.ArrayType != nil:
		return "ARRAY<" + parameterType(t.ArrayType) + ">"
	case len(t.StructTypes) > 0:
		fields := make([]string, len(t.StructTypes))
		for i, f := range t.StructTypes {
			name := ""
			if f.Name != "" {
				name = quoteIdent(f.Name) + " "
			}
			fields[i] = name + parameterType(f.Type)
		}
		return "STRUCT<" + strings.Join(fields, ", ") + ">"
	case t.RangeElementType != nil:
		return "RANGE<" + parameterType(t.RangeElementType) + ">"
	}
	// The REST API also takes the legacy names.
	switch strings.ToUpper(t.Type) {
	case "INTEGER":
		return "INT64"
	case "FLOAT":
		return "FLOAT64"
	case "BOOLEAN":
		return "BOOL"
	case "ARRAY", "STRUCT", "RECORD", "RANGE":
		return t.Type + "<?>" // a container without its element type: refused by the analyser
	}
	return t.Type
}

// PolicyError maps the analyser's refusals for policystep: legacy SQL and SQL it cannot
// vouch for are the query's fault (403 with the reason); metadata it could not read is
// not (ErrAnalyzerUnavailable: 503, the client retries).
func PolicyError(err error) error {
	ae, ok := errors.AsType[*AnalysisError](err)
	switch {
	case errors.Is(err, ErrCatalogUnavailable):
		return fmt.Errorf("%w: %v", policystep.ErrAnalyzerUnavailable, err)
	case errors.Is(err, ErrLegacySQL):
		return &policystep.AnalysisError{Reason: policies.RuleLegacySQL,
			Message: "The query is legacy SQL, which the gateway cannot analyse; send useLegacySql: false and standard SQL (no #legacySQL prefix).", Err: err}
	case ok && ae.Reason != "":
		return &policystep.AnalysisError{Reason: "unanalysable_sql", Findings: ae.Findings,
			Message: "The gateway could not analyse this query's SQL, so it cannot be allowed: " + strings.TrimSuffix(ae.Reason, ".") + ".", Err: err}
	}
	return &policystep.AnalysisError{Reason: "unanalysable_sql", Message: "The gateway could not analyse this query's SQL, so it cannot be allowed.", Err: err}
}
