package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"

	"cloud.google.com/go/bigquery"
	"google.golang.org/api/option"

	"github.com/jitgate/jitgate/controlplane/config"
	"github.com/jitgate/jitgate/controlplane/policystep"
	"github.com/jitgate/jitgate/controlplane/sqlanalysis"
	"github.com/jitgate/jitgate/filter/authorize"
	"github.com/jitgate/jitgate/filter/bqapi"
	"github.com/jitgate/jitgate/policies"
)

// readOnlyScope is all tables.get needs.
const readOnlyScope = "https://www.googleapis.com/auth/bigquery.readonly"

// newAnalyzer builds the policy step's SQL analyser: controlplane/sqlanalysis over a
// tables.get catalog read from upstream.bigquery.url with the gateway's own identity.
func newAnalyzer(ctx context.Context, cfg *config.Config, log *slog.Logger) (policystep.Analyzer, error) {
	opts, auth := catalogClientOptions(cfg)
	// The project only names the client; every tables.get names its own project.
	client, err := bigquery.NewClient(ctx, "jitgate-catalog", opts...)
	if err != nil {
		return nil, fmt.Errorf("sql analyser: bigquery client: %w", err)
	}
	src := sqlanalysis.NewBigQueryTableSource(client)
	src.TTL = cfg.Analysis.TableMetadataTTL
	an, err := sqlanalysis.New(sqlanalysis.Options{
		Catalog: src, CacheSize: cfg.Analysis.CacheSize, CacheTTL: cfg.Analysis.CacheTTL,
	})
	if err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("sql analyser: %w", err)
	}
	// Never the key file's path or contents.
	log.Info("sql analyser ready", "catalog", cfg.Upstream.BigQuery.URL, "catalog_auth", auth,
		"cache_size", cfg.Analysis.CacheSize, "cache_ttl", cfg.Analysis.CacheTTL.String(),
		"table_metadata_ttl", cfg.Analysis.TableMetadataTTL.String())
	return sqlAnalyzer{an}, nil
}

// catalogClientOptions points the BigQuery client at the configured upstream: a plain
// http upstream (the emulator) without credentials (nothing signed by the gateway's key is
// ever sent in clear text); https with the service-account key, read-only scope.
func catalogClientOptions(cfg *config.Config) ([]option.ClientOption, string) {
	base := strings.TrimRight(cfg.Upstream.BigQuery.URL, "/")
	if !cfg.UpstreamTLS() {
		auth := "none (plain http upstream)"
		if u, err := url.Parse(base); err == nil {
			if ip := net.ParseIP(u.Hostname()); (ip == nil || !ip.IsLoopback()) && u.Hostname() != "localhost" {
				auth = "none (plain http upstream, not loopback)"
			}
		}
		return []option.ClientOption{option.WithEndpoint(base + "/bigquery/v2/"), option.WithoutAuthentication()}, auth
	}
	opts := []option.ClientOption{
		option.WithAuthCredentialsFile(option.ServiceAccount, cfg.Credentials.KeyFile),
		option.WithScopes(readOnlyScope),
	}
	if base != config.DefaultBigQueryURL {
		opts = append(opts, option.WithEndpoint(base+"/bigquery/v2/"))
	}
	return opts, "service-account key (credentials.keyFile)"
}

// sqlAnalyzer adapts sqlanalysis to policystep.Analyzer.
type sqlAnalyzer struct{ a *sqlanalysis.Analyzer }

func (s sqlAnalyzer) Analyze(ctx context.Context, req authorize.Request) (*policies.Analysis, error) {
	if req.Query == nil {
		return nil, &policystep.AnalysisError{Reason: "unanalysable_sql", Message: "The call carries no query to analyse."}
	}
	res, err := s.a.Analyze(ctx, analysisInput(req))
	if err != nil {
		return nil, analysisError(err)
	}
	return res.ToPolicy(), nil
}

// analysisInput maps a query call to the analyser's input: names without a project
// resolve to the job's project, unqualified names to defaultDataset.
func analysisInput(req authorize.Request) sqlanalysis.Input {
	q := req.Query
	in := sqlanalysis.Input{SQL: q.SQL, DefaultProject: req.Call.Project, LegacySQL: q.LegacySQL}
	if dd := q.DefaultDataset; dd != nil && dd.DatasetID != "" {
		p := dd.ProjectID
		if p == "" {
			p = req.Call.Project
		}
		in.DefaultDataset = &sqlanalysis.DatasetRef{Project: p, Dataset: dd.DatasetID}
	}
	for _, p := range q.Parameters {
		in.Parameters = append(in.Parameters, sqlanalysis.Parameter{Name: p.Name, Type: parameterType(p.ParameterType)})
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
			fields[i] = strings.TrimSpace(f.Name + " " + parameterType(f.Type))
		}
		return "STRUCT<" + strings.Join(fields, ", ") + ">"
	case t.RangeElementType != nil:
		return "RANGE<" + parameterType(t.RangeElementType) + ">"
	}
	return t.Type
}

// analysisError maps the analyser's refusals: legacy SQL and SQL it cannot vouch for are
// the query's fault (403 with the reason); metadata it could not read is not (503, the
// client retries).
func analysisError(err error) error {
	ae, ok := errors.AsType[*sqlanalysis.AnalysisError](err)
	switch {
	case errors.Is(err, sqlanalysis.ErrCatalogUnavailable):
		return fmt.Errorf("%w: %v", policystep.ErrAnalyzerUnavailable, err)
	case errors.Is(err, sqlanalysis.ErrLegacySQL):
		return &policystep.AnalysisError{Reason: policies.RuleLegacySQL,
			Message: "The query is legacy SQL, which the gateway cannot analyse; send useLegacySql: false and standard SQL (no #legacySQL prefix).", Err: err}
	case ok && ae.Reason != "":
		return &policystep.AnalysisError{Reason: "unanalysable_sql",
			Message: "The gateway could not analyse this query's SQL, so it cannot be allowed: " + strings.TrimSuffix(ae.Reason, ".") + ".", Err: err}
	}
	return &policystep.AnalysisError{Reason: "unanalysable_sql", Message: "The gateway could not analyse this query's SQL, so it cannot be allowed.", Err: err}
}
