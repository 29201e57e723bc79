package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jitgate/jitgate/controlplane/credentials"
	"github.com/jitgate/jitgate/controlplane/mtls"
)

const header = "apiVersion: jitgate.dev/v1\nkind: ControlPlaneConfig\n"

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name    string
		doc     string
		wantErr error
		want    string // substring of the error
	}{
		{"unknown top-level field", header + "xds:\n  listen: 127.0.0.1:1\nbogus: 1\n", ErrSyntax, "jitgated.yaml:5: field bogus not found"},
		{"unknown nested field", header + "upstream:\n  bigquery:\n    url: http://127.0.0.1:9050\n    sni: x\n", ErrSyntax, "jitgated.yaml:6: field sni not found"},
		{"wrong type", header + "filter:\n  maxRequestBodyBytes: lots\n", ErrSyntax, "jitgated.yaml:4:"},
		{"missing apiVersion", "kind: ControlPlaneConfig\n", ErrVersion, "want apiVersion \"jitgate.dev/v1\""},
		{"wrong apiVersion", "apiVersion: jitgate.dev/v2\nkind: ControlPlaneConfig\n", ErrVersion, "jitgated.yaml:1:"},
		{"wrong kind", "apiVersion: jitgate.dev/v1\nkind: Policy\n", ErrVersion, "kind \"Policy\""},
		{"empty file", "", ErrVersion, "empty document"},
		{"two documents", header + "---\n" + header, ErrSyntax, "more than one YAML document"},
		{"bad upstream scheme", header + "upstream:\n  bigquery:\n    url: ftp://bigquery.googleapis.com\n", ErrInvalid, "jitgated.yaml:5: invalid config value: upstream.bigquery.url"},
		{"upstream with path", header + "upstream:\n  bigquery:\n    url: https://bigquery.googleapis.com/bigquery/v2\n", ErrInvalid, "must not have a path"},
		{"upstream with credentials", header + "upstream:\n  bigquery:\n    url: https://u:p@bigquery.googleapis.com\n", ErrInvalid, "credentials"},
		{"plain http to a hostname", header + "upstream:\n  bigquery:\n    url: http://bigquery.googleapis.com\n", ErrInvalid, "plain http"},
		{"agent listener not an IP", header + "envoy:\n  agentListener: gateway:10000\n", ErrInvalid, "jitgated.yaml:4: invalid config value: envoy.agentListener"},
		{"listen without port", header + "xds:\n  listen: 127.0.0.1\n", ErrInvalid, "xds.listen"},
		{"body limit too large", header + "filter:\n  maxRequestBodyBytes: 1073741824\n", ErrInvalid, "filter.maxRequestBodyBytes"},
		{"negative body limit", header + "filter:\n  maxRequestBodyBytes: -1\n", ErrInvalid, "filter.maxRequestBodyBytes"},
		{"response limit too large", header + "filter:\n  maxResponseBodyBytes: 2147483648\n", ErrInvalid, "filter.maxResponseBodyBytes"},
		{"bad nats url", header + "nats:\n  url: http://127.0.0.1:4222\n", ErrInvalid, "nats.url"},
		{"tiny jetstream store", header + "nats:\n  maxStoreBytes: 10\n", ErrInvalid, "nats.maxStoreBytes"},
		{"analysis cache too large", header + "analysis:\n  cacheSize: 100000000\n", ErrInvalid, "jitgated.yaml:4: invalid config value: analysis.cacheSize"},
		{"analysis ttl not a duration", header + "analysis:\n  cacheTTL: soon\n", ErrSyntax, "jitgated.yaml:4:"},
		{"analysis ttl too short", header + "analysis:\n  tableMetadataTTL: 1ms\n", ErrInvalid, "analysis.tableMetadataTTL"},
		{"nats listen off loopback", header + "nats:\n  listen: 0.0.0.0:4222\n", ErrInvalid, "jitgated.yaml:4: invalid config value: nats.listen: \"0.0.0.0:4222\": the embedded NATS client port has no authentication"},
		{"nats listen hostname", header + "nats:\n  listen: localhost:4222\n", ErrInvalid, "host must be an IP address"},
		{"nats listen with external nats", header + "nats:\n  url: nats://10.0.0.1:4222\n  listen: 127.0.0.1:4222\n", ErrInvalid, "only the embedded server listens"},
		{"nats listen no port", header + "nats:\n  listen: 127.0.0.1\n", ErrInvalid, "nats.listen"},
		{"unknown audit mode", header + "audit:\n  mode: lenient\n", ErrInvalid, "jitgated.yaml:4: invalid config value: audit.mode: \"lenient\""},
		{"audit maxAge too short", header + "audit:\n  maxAge: 1s\n", ErrInvalid, "audit.maxAge"},
		{"audit maxBytes tiny", header + "audit:\n  maxBytes: 1000\n", ErrInvalid, "audit.maxBytes"},
		{"audit maxBytes beyond the store", header + "nats:\n  maxStoreBytes: 67108864\naudit:\n  maxBytes: 134217728\n", ErrInvalid, "more than the embedded JetStream store"},
		{"audit excerpt cap", header + "audit:\n  maxExcerptBytes: -2\n", ErrInvalid, "audit.maxExcerptBytes"},
		{"audit unknown field", header + "audit:\n  strict: true\n", ErrSyntax, "field strict not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("jitgated.yaml", []byte(tt.doc))
			if err == nil {
				t.Fatalf("Parse succeeded, want error containing %q", tt.want)
			}
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("error %q does not wrap %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "jitgated.yaml")
	if err := os.WriteFile(path, []byte(header), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	cwd, _ := os.Getwd()
	checks := map[string][2]string{
		"xds.listen":          {c.XDS.Listen, DefaultXDSListen},
		"api.listen":          {c.API.Listen, DefaultAPIListen},
		"api.filterListen":    {c.API.FilterListen, DefaultFilterListen},
		"api.envoyAddress":    {c.API.EnvoyAddress, DefaultFilterListen},
		"tls dir":             {c.TLSDir(), filepath.Join(cwd, ".jitgate", "tls")},
		"tls server name":     {c.TLSServerName(), "127.0.0.1"},
		"envoy.agentListener": {c.Envoy.AgentListener, DefaultAgentListener},
		"envoy.nodeCluster":   {c.Envoy.NodeCluster, DefaultNodeCluster},
		"upstream url":        {c.Upstream.BigQuery.URL, DefaultBigQueryURL},
		"caFile":              {c.Upstream.BigQuery.CAFile, DefaultCAFile},
		// Defaults are relative to the working directory, not to the file.
		"filter.wasmPath": {c.Filter.WasmPath, filepath.Join(cwd, DefaultWasmPath)},
		"nats.storeDir":   {c.NATS.StoreDir, filepath.Join(cwd, DefaultNATSStoreDir)},
		"nats.url":        {c.NATS.URL, ""},
	}
	for name, got := range checks {
		if got[0] != got[1] {
			t.Errorf("%s = %q, want %q", name, got[0], got[1])
		}
	}
	if c.Filter.MaxRequestBodyBytes != 10<<20 || c.Filter.CalloutTimeoutMillis != 2000 {
		t.Errorf("filter limits = %d/%d", c.Filter.MaxRequestBodyBytes, c.Filter.CalloutTimeoutMillis)
	}
	if c.NATS.MaxMemoryBytes != 256<<20 || c.NATS.MaxStoreBytes != 1<<30 {
		t.Errorf("nats limits = %d/%d", c.NATS.MaxMemoryBytes, c.NATS.MaxStoreBytes)
	}
	if !c.UpstreamTLS() {
		t.Error("default upstream is not TLS")
	}
	if !c.TLSGenerated() || c.ServerTLS() != mtls.Paths(c.TLSDir()).Server || c.EnvoyTLS() != mtls.Paths(c.TLSDir()).Envoy {
		t.Errorf("default tls = generated %v, server %+v, envoy %+v", c.TLSGenerated(), c.ServerTLS(), c.EnvoyTLS())
	}
	if h, p := c.UpstreamHostPort(); h != "bigquery.googleapis.com" || p != 443 {
		t.Errorf("upstream = %s:%d", h, p)
	}
}

func TestRelativePathsFollowTheFile(t *testing.T) {
	doc := header + "filter:\n  wasmPath: build/jitgate.wasm\nnats:\n  storeDir: state\nupstream:\n  bigquery:\n    url: http://127.0.0.1:9050\n"
	c, err := Parse("/etc/jitgate/jitgated.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if c.Filter.WasmPath != "/etc/jitgate/build/jitgate.wasm" || c.NATS.StoreDir != "/etc/jitgate/state" {
		t.Errorf("paths = %q, %q", c.Filter.WasmPath, c.NATS.StoreDir)
	}
	if c.UpstreamTLS() {
		t.Error("http upstream reported as TLS")
	}
	if h, p := c.UpstreamHostPort(); h != "127.0.0.1" || p != 9050 {
		t.Errorf("upstream = %s:%d", h, p)
	}
}

func TestOverrides(t *testing.T) {
	c, err := Parse("jitgated.yaml", []byte(header+"api:\n  filterListen: 0.0.0.0:18003\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.API.EnvoyAddress != "127.0.0.1:18003" {
		t.Errorf("envoyAddress = %q, want loopback for an unspecified filter listen host", c.API.EnvoyAddress)
	}
	api, filter, up, tlsDir := "127.0.0.1:28001", "127.0.0.1:28003", "http://127.0.0.1:9050", "/var/lib/jitgate/tls"
	if err := c.Apply(Overrides{APIListen: &api, FilterListen: &filter, UpstreamURL: &up, TLSDir: &tlsDir}); err != nil {
		t.Fatal(err)
	}
	if c.API.Listen != api || c.API.FilterListen != filter || c.API.EnvoyAddress != filter || c.Upstream.BigQuery.URL != up || c.TLSDir() != tlsDir {
		t.Errorf("after overrides: %+v %+v %s", c.API, c.Upstream, c.TLSDir())
	}
	bad := "gateway:1"
	err = c.Apply(Overrides{AgentListener: &bad})
	if err == nil || !strings.HasPrefix(err.Error(), "--agent-listen: ") {
		t.Errorf("bad flag error = %v, want it to name --agent-listen", err)
	}
}

func TestRedactedNATSURL(t *testing.T) {
	n := NATS{URL: "nats://s3cret@10.0.0.1:4222,nats://u:pw@10.0.0.2:4222"}
	got := n.RedactedURL()
	if strings.Contains(got, "s3cret") || strings.Contains(got, "pw") {
		t.Errorf("RedactedURL() = %q leaks credentials", got)
	}
}

func TestAnalysisKnobs(t *testing.T) {
	c, err := Parse("jitgated.yaml", []byte(header))
	if err != nil {
		t.Fatal(err)
	}
	if c.Analysis != (Analysis{CacheSize: DefaultAnalysisCacheSize, CacheTTL: DefaultAnalysisCacheTTL, TableMetadataTTL: DefaultTableMetadataTTL}) {
		t.Errorf("defaults = %+v", c.Analysis)
	}
	c, err = Parse("jitgated.yaml", []byte(header+"analysis:\n  cacheSize: -1\n  cacheTTL: 30s\n  tableMetadataTTL: 2h\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Analysis != (Analysis{CacheSize: -1, CacheTTL: 30 * time.Second, TableMetadataTTL: 2 * time.Hour}) {
		t.Errorf("set = %+v", c.Analysis)
	}
}

func TestAuditAndNATSListen(t *testing.T) {
	c, err := Parse("jitgated.yaml", []byte(header))
	if err != nil {
		t.Fatal(err)
	}
	if c.Audit != (Audit{Mode: AuditStrict}) || c.NATS.Listen != "" {
		t.Errorf("defaults = %+v, nats.listen %q", c.Audit, c.NATS.Listen)
	}
	c, err = Parse("jitgated.yaml", []byte(header+"nats:\n  listen: \"[::1]:4222\"\naudit:\n  mode: relaxed\n  maxAge: 2160h\n  maxBytes: 104857600\n  maxExcerptBytes: -1\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Audit != (Audit{Mode: AuditRelaxed, MaxAge: 2160 * time.Hour, MaxBytes: 100 << 20, MaxExcerptBytes: -1}) || c.NATS.Listen != "[::1]:4222" {
		t.Errorf("set = %+v, nats.listen %q", c.Audit, c.NATS.Listen)
	}
	if _, err := Parse("jitgated.yaml", []byte(header+"nats:\n  listen: 10.0.0.5:4222\n  allowNonLoopbackListen: true\n")); err != nil {
		t.Errorf("explicitly allowed non-loopback listen: %v", err)
	}
	bad := "0.0.0.0:4222"
	if err := c.Apply(Overrides{NATSListen: &bad}); err == nil || !strings.HasPrefix(err.Error(), "--nats-listen: ") {
		t.Errorf("bad --nats-listen = %v", err)
	}
}

func TestApprovalWebhooks(t *testing.T) {
	c, err := Parse("jitgated.yaml", []byte(header+"approvals:\n  webhooks:\n  - name: ops\n    url: https://hooks.example/T0/secret\n  - name: chat\n    url: http://127.0.0.1:9/x\n    format: slack\n    timeout: 2s\n    maxAttempts: 3\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Webhook{{Name: "ops", URL: "https://hooks.example/T0/secret", Format: WebhookJSON, Timeout: 5 * time.Second, MaxAttempts: 5},
		{Name: "chat", URL: "http://127.0.0.1:9/x", Format: WebhookSlack, Timeout: 2 * time.Second, MaxAttempts: 3}}
	if !reflect.DeepEqual(c.Approvals.Webhooks, want) {
		t.Fatalf("webhooks %+v", c.Approvals.Webhooks)
	}
	for _, bad := range []string{
		"  - name: Ops\n    url: https://h.example/x\n",
		"  - name: a\n    url: https://h.example/x\n  - name: a\n    url: https://h.example/y\n",
		"  - name: a\n    url: https://h.example/x\n    format: teams\n",
		"  - name: a\n    url: ftp://h.example/supersecret\n",
		"  - name: a\n    url: https://h.example/x\n    maxAttempts: 50\n",
	} {
		_, err := Parse("jitgated.yaml", []byte(header+"approvals:\n  webhooks:\n"+bad))
		if !errors.Is(err, ErrInvalid) || strings.Contains(err.Error(), "supersecret") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// TestPlainListenersStayOnLoopback: the plain API (approvers' tokens, status) is refused
// off loopback unless explicitly allowed; the mTLS listeners may listen anywhere.
func TestPlainListenersStayOnLoopback(t *testing.T) {
	for _, doc := range []string{"api:\n  listen: 0.0.0.0:18001\n", "api:\n  listen: 10.0.0.5:18001\n", "api:\n  listen: \"[::]:18001\"\n", "api:\n  listen: gateway.internal:18001\n"} {
		_, err := Parse("jitgated.yaml", []byte(header+doc))
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "jitgated.yaml:4: invalid config value: api.listen") ||
			!strings.Contains(err.Error(), "api.allowNonLoopbackListen: true") {
			t.Errorf("%q: %v", doc, err)
		}
	}
	for _, doc := range []string{"api:\n  listen: 0.0.0.0:18001\n  allowNonLoopbackListen: true\n", "api:\n  listen: localhost:18001\n",
		"api:\n  listen: \"[::1]:18001\"\n", "xds:\n  listen: 0.0.0.0:18000\napi:\n  filterListen: 0.0.0.0:18003\n  envoyAddress: 10.0.0.5:18003\n"} {
		if _, err := Parse("jitgated.yaml", []byte(header+doc)); err != nil {
			t.Errorf("%q: %v", doc, err)
		}
	}
	c, err := Parse("jitgated.yaml", []byte(header))
	if err != nil {
		t.Fatal(err)
	}
	bad := "0.0.0.0:18001"
	if err := c.Apply(Overrides{APIListen: &bad}); err == nil || !strings.HasPrefix(err.Error(), "--api-listen: ") {
		t.Errorf("--api-listen off loopback = %v", err)
	}
}

func TestTLSConfig(t *testing.T) {
	dir := t.TempDir()
	g, err := mtls.Ensure(dir, []string{"127.0.0.1", "jitgated.internal"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	files := fmt.Sprintf("tls:\n  caFile: %s\n  serverCertFile: %s\n  serverKeyFile: %s\n  envoyCertFile: /etc/envoy/client.pem\n  envoyKeyFile: /etc/envoy/client-key.pem\n",
		g.Server.CA, g.Server.Cert, g.Server.Key)
	c, err := Parse("jitgated.yaml", []byte(header+files+"  serverName: jitgated.internal\n  envoyCAFile: /etc/envoy/ca.pem\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.TLSGenerated() || c.ServerTLS() != g.Server || c.EnvoyTLS() != (mtls.Files{CA: "/etc/envoy/ca.pem", Cert: "/etc/envoy/client.pem", Key: "/etc/envoy/client-key.pem"}) {
		t.Errorf("given files: generated %v server %+v envoy %+v", c.TLSGenerated(), c.ServerTLS(), c.EnvoyTLS())
	}
	if err := c.ValidateTLSFiles(); err != nil {
		t.Errorf("valid files: %v", err)
	}
	// The name Envoy checks must be in the operator's certificate.
	c, err = Parse("jitgated.yaml", []byte(header+files+"  serverName: other.internal\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ValidateTLSFiles(); err == nil || !strings.Contains(err.Error(), `not valid for "other.internal"`) {
		t.Errorf("server name not in the certificate: %v", err)
	}
	// A key that does not belong to the certificate.
	other, err := mtls.Ensure(t.TempDir(), []string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c, err = Parse("jitgated.yaml", []byte(header+strings.Replace(files, g.Server.Key, other.Server.Key, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ValidateTLSFiles(); err == nil || !strings.Contains(err.Error(), "tls: server certificate") {
		t.Errorf("mismatched key: %v", err)
	}
	// Relative paths follow the file; defaults follow nats.storeDir.
	c, err = Parse("/etc/jitgate/jitgated.yaml", []byte(header+"nats:\n  storeDir: /var/lib/jitgate/nats\ntls:\n  serverHosts: [10.0.0.5, gw.internal]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.TLSDir() != "/var/lib/jitgate/tls" || !slices.Contains(c.TLSServerHosts(), "10.0.0.5") || !slices.Contains(c.TLSServerHosts(), "localhost") {
		t.Errorf("dir %s hosts %v", c.TLSDir(), c.TLSServerHosts())
	}
	c, err = Parse("/etc/jitgate/jitgated.yaml", []byte(header+"tls:\n  dir: certs\n"))
	if err != nil || c.TLSDir() != "/etc/jitgate/certs" {
		t.Errorf("relative tls.dir = %v, %v", c, err)
	}
	for _, bad := range []string{
		"tls:\n  caFile: /x/ca.pem\n",
		"tls:\n  envoyCAFile: /x/ca.pem\n",
		"tls:\n  serverName: \"*.example\"\n",
		"tls:\n  serverHosts: [\"a b\"]\n",
	} {
		if _, err := Parse("jitgated.yaml", []byte(header+bad)); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "invalid config value: tls") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// TestURLErrorsRedactUserInfo: a URL with user:password (or a token as user) never shows
// its secret in a validation error.
func TestURLErrorsRedactUserInfo(t *testing.T) {
	for _, doc := range []string{
		"nats:\n  url: http://admin:hunter2secret@10.0.0.1:4222\n",
		"nats:\n  url: nats://10.0.0.1:4222,http://hunter2secret@10.0.0.2:4222\n",
		"nats:\n  url: \"nats://admin:hunter2secret@10.0.0.1:42x22\"\n",
		"nats:\n  url: \"nats://admin:hunter2secret@\"\n",
		"nats:\n  url: \"nats://admin:hunter2secret@10.0.0.1:4222\"\n  listen: 127.0.0.1:4222\n",
		"upstream:\n  bigquery:\n    url: https://admin:hunter2secret@bigquery.googleapis.com\n",
		"upstream:\n  bigquery:\n    url: \"https://admin:hunter2secret@bigquery.googleapis.com:99999\"\n",
		"upstream:\n  bigquery:\n    url: \"http://admin:hunter2secret@[::1\"\n",
		"identity:\n  issuers:\n  - issuer: http://admin:hunter2secret@idp.example\n    audiences: [x]\n",
		"identity:\n  issuers:\n  - issuer: \"https://hunter2secret@idp.example/%zz\"\n    audiences: [x]\n",
		"credentials:\n  mode: impersonate\n  impersonation:\n    serviceAccount: sa@p.iam.gserviceaccount.com\n    endpoint: \"https://u:hunter2secret@iam.example/%zz\"\n",
	} {
		_, err := Parse("jitgated.yaml", []byte(header+doc))
		if err == nil {
			t.Errorf("%q: accepted", doc)
			continue
		}
		if strings.Contains(err.Error(), "hunter2secret") {
			t.Errorf("%q: the error quotes the secret: %v", doc, err)
		}
	}
	if got := credentials.RedactURL("nats://tok@h:1/x?y"); got != "nats://redacted@h:1/x?y" {
		t.Errorf("redact = %q", got)
	}
}
