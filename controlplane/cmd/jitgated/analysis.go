package main

import (
	"context"
	"log/slog"

	"google.golang.org/api/option"

	"github.com/jitgate/jitgate/controlplane/config"
	"github.com/jitgate/jitgate/controlplane/sqlanalysis"
	"github.com/jitgate/jitgate/filter/authorize"
)

// newAnalyzer builds the policy step's SQL analyser: controlplane/sqlanalysis over a
// tables.get catalog read from upstream.bigquery.url with the gateway's own identity
// (sqlanalysis.NewForUpstream, shared with `jitgate policy explain`).
func newAnalyzer(ctx context.Context, cfg *config.Config, log *slog.Logger, metrics *sqlanalysis.Metrics) (*sqlanalysis.PolicyAnalyzer, error) {
	an, err := sqlanalysis.NewForUpstream(ctx, cfg.Upstream.BigQuery.URL, cfg.Credentials.KeyFile, sqlanalysis.UpstreamOptions{
		TableMetadataTTL: cfg.Analysis.TableMetadataTTL, CacheSize: cfg.Analysis.CacheSize, CacheTTL: cfg.Analysis.CacheTTL,
		Metrics: metrics,
	})
	if err != nil {
		return nil, err
	}
	// Never the key file's path or contents.
	log.Info("sql analyser ready", "catalog", cfg.Upstream.BigQuery.URL, "catalog_auth", an.Auth(),
		"cache_size", cfg.Analysis.CacheSize, "cache_ttl", cfg.Analysis.CacheTTL.String(),
		"table_metadata_ttl", cfg.Analysis.TableMetadataTTL.String())
	return an, nil
}

// catalogClientOptions points the BigQuery client at the configured upstream
// (sqlanalysis.ClientOptions).
func catalogClientOptions(cfg *config.Config) ([]option.ClientOption, string) {
	return sqlanalysis.ClientOptions(cfg.Upstream.BigQuery.URL, cfg.Credentials.KeyFile)
}

// analysisInput maps a query call to the analyser's input (sqlanalysis.PolicyInput).
func analysisInput(req authorize.Request) sqlanalysis.Input { return sqlanalysis.PolicyInput(req) }

// analysisError maps the analyser's refusals (sqlanalysis.PolicyError).
func analysisError(err error) error { return sqlanalysis.PolicyError(err) }
