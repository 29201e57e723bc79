package envoy

import (
	"encoding/json"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"gopkg.in/yaml.v3"
)

func decode(t *testing.T, y []byte) *bootstrapv3.Bootstrap {
	t.Helper()
	var doc any
	if err := yaml.Unmarshal(y, &doc); err != nil {
		t.Fatalf("bootstrap is not YAML: %v\n%s", err, y)
	}
	j, err := json.Marshal(doc)
	if err != nil {
		t.Fatalf("bootstrap to JSON: %v", err)
	}
	var b bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(j, &b); err != nil {
		t.Fatalf("bootstrap does not decode into envoy.config.bootstrap.v3.Bootstrap: %v\n%s", err, y)
	}
	return &b
}

func TestRenderValidBootstrap(t *testing.T) {
	y, err := Render(withTLS(Params{NodeID: "gw-1", XDS: "127.0.0.1:18000", Admin: "127.0.0.1:9901"}))
	if err != nil {
		t.Fatal(err)
	}
	b := decode(t, y)
	if err := b.ValidateAll(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if got := b.GetNode().GetId(); got != "gw-1" {
		t.Errorf("node id = %q", got)
	}
	if got := b.GetNode().GetCluster(); got != "jitgate" {
		t.Errorf("node cluster = %q, want default jitgate", got)
	}
	if b.GetDynamicResources().GetLdsConfig().GetAds() == nil || b.GetDynamicResources().GetCdsConfig().GetAds() == nil {
		t.Error("LDS and CDS must come over ADS")
	}
	cs := b.GetStaticResources().GetClusters()
	if len(cs) != 1 || cs[0].GetName() != XDSClusterName {
		t.Fatalf("static clusters = %v, want only %s", cs, XDSClusterName)
	}
	sa := cs[0].GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	if sa.GetAddress() != "127.0.0.1" || sa.GetPortValue() != 18000 {
		t.Errorf("xds endpoint = %s:%d", sa.GetAddress(), sa.GetPortValue())
	}
	admin := b.GetAdmin().GetAddress().GetSocketAddress()
	if admin.GetAddress() != "127.0.0.1" || admin.GetPortValue() != 9901 {
		t.Errorf("admin = %s:%d", admin.GetAddress(), admin.GetPortValue())
	}
	if cs[0].GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"] == nil {
		t.Error("the ADS cluster must speak HTTP/2 (gRPC)")
	}
	// ADS is mutual TLS: Envoy's client certificate, jitgated's checked against the CA
	// and the xDS address (an IP SAN, no SNI); h2 offered for gRPC.
	var up tlsv3.UpstreamTlsContext
	if err := cs[0].GetTransportSocket().GetTypedConfig().UnmarshalTo(&up); err != nil {
		t.Fatalf("ADS cluster transport socket: %v", err)
	}
	common := up.GetCommonTlsContext()
	vc := common.GetValidationContext()
	if up.GetSni() != "" || len(common.GetTlsCertificates()) != 1 ||
		common.GetTlsCertificates()[0].GetCertificateChain().GetFilename() != "/tls/envoy.pem" ||
		common.GetTlsCertificates()[0].GetPrivateKey().GetFilename() != "/tls/envoy-key.pem" ||
		vc.GetTrustedCa().GetFilename() != "/tls/ca.pem" || len(vc.GetMatchTypedSubjectAltNames()) != 1 ||
		vc.GetMatchTypedSubjectAltNames()[0].GetSanType() != tlsv3.SubjectAltNameMatcher_IP_ADDRESS ||
		vc.GetMatchTypedSubjectAltNames()[0].GetMatcher().GetExact() != "127.0.0.1" ||
		strings.Join(common.GetAlpnProtocols(), ",") != "h2" {
		t.Errorf("ADS tls = %v", &up)
	}

	// A DNS server name is checked as a DNS SAN and sent as SNI.
	y, err = Render(withTLS(Params{NodeID: "gw-1", XDS: "10.0.0.5:18000", XDSServerName: "jitgated.internal", Admin: "127.0.0.1:9901"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := decode(t, y).GetStaticResources().GetClusters()[0].GetTransportSocket().GetTypedConfig().UnmarshalTo(&up); err != nil {
		t.Fatal(err)
	}
	san := up.GetCommonTlsContext().GetValidationContext().GetMatchTypedSubjectAltNames()[0]
	if up.GetSni() != "jitgated.internal" || san.GetSanType() != tlsv3.SubjectAltNameMatcher_DNS || san.GetMatcher().GetExact() != "jitgated.internal" {
		t.Errorf("ADS tls with a DNS name = %v", &up)
	}
}

func withTLS(p Params) Params {
	p.CAFile, p.CertFile, p.KeyFile = "/tls/ca.pem", "/tls/envoy.pem", "/tls/envoy-key.pem"
	return p
}

func TestRenderRejectsBadInput(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    Params
		want string
	}{
		{"no node id", Params{XDS: "127.0.0.1:1", Admin: "127.0.0.1:2"}, "node id"},
		{"host name", Params{NodeID: "n", XDS: "localhost:18000", Admin: "127.0.0.1:2"}, "literal IP"},
		{"no port", Params{NodeID: "n", XDS: "127.0.0.1", Admin: "127.0.0.1:2"}, "xds address"},
		{"bad admin port", Params{NodeID: "n", XDS: "127.0.0.1:1", Admin: "127.0.0.1:99999"}, "bad port"},
		{"admin on all interfaces", Params{NodeID: "n", XDS: "127.0.0.1:1", Admin: "0.0.0.0:9901"}, "is not loopback"},
		{"admin on a network address", Params{NodeID: "n", XDS: "127.0.0.1:1", Admin: "10.0.0.5:9901"}, "has no authentication"},
		{"bad server name", Params{NodeID: "n", XDS: "127.0.0.1:1", XDSServerName: "a b", Admin: "127.0.0.1:2"}, "xds server name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Render(withTLS(tc.p))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestRenderQuotesNodeID(t *testing.T) {
	// A node id with YAML syntax in it must stay one string, not change the document.
	y, err := Render(withTLS(Params{NodeID: "a: b, {c}", XDS: "127.0.0.1:1", Admin: "127.0.0.1:2"}))
	if err != nil {
		t.Fatal(err)
	}
	if got := decode(t, y).GetNode().GetId(); got != "a: b, {c}" {
		t.Fatalf("node id = %q", got)
	}
}

// TestRenderNeedsTLSFiles: there is no plaintext ADS; the files are absolute paths.
func TestRenderNeedsTLSFiles(t *testing.T) {
	base := Params{NodeID: "n", XDS: "127.0.0.1:1", Admin: "127.0.0.1:2"}
	for name, p := range map[string]Params{
		"no files":      base,
		"no key":        func() Params { p := withTLS(base); p.KeyFile = ""; return p }(),
		"relative cert": func() Params { p := withTLS(base); p.CertFile = "envoy.pem"; return p }(),
	} {
		if _, err := Render(p); err == nil || !strings.Contains(err.Error(), "envoy bootstrap: ") {
			t.Errorf("%s: %v", name, err)
		}
	}
	p := withTLS(Params{NodeID: "n", XDS: "127.0.0.1:1", Admin: "10.0.0.5:9901", AllowNonLoopbackAdmin: true})
	y, err := Render(p)
	if err != nil {
		t.Fatalf("explicitly allowed admin address: %v", err)
	}
	if err := decode(t, y).ValidateAll(); err != nil {
		t.Fatal(err)
	}
}
