// Package credentials owns jitgate's upstream credentials for BigQuery: the service-account
// key that lives only in the control plane, and the short-lived bearer credentials minted
// from it for each forwarded request (DESIGN.md invariants 1 and 2).
//
// A [Minter] turns a [Request] (target service account, scopes, TTL, request and decision
// ids) into a [Credential]. Two modes exist:
//
//   - [ModeSelfSignedJWT]: a fresh RS256 service-account JWT per request (kid = key id,
//     iss = sub = client_email, aud = https://bigquery.googleapis.com/ or a scope claim),
//     accepted by Google APIs without a token exchange. Nothing is cached.
//   - [ModeImpersonate]: an OAuth2 access token for a per-policy service account from the
//     IAM credentials API (generateAccessToken), authenticated with a self-signed JWT of the
//     base key, cached per (account, scopes, lifetime) and re-minted before it expires;
//     concurrent callers share one upstream call.
//
// Secret material is held in [Secret], which redacts itself in every printing path (fmt,
// encoding/json, encoding.TextMarshaler, log/slog); [Secret.Reveal] is the only way out.
// The key file's path may appear in errors and logs; its contents never do.
package credentials
