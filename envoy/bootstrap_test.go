package envoy

import (
	"encoding/json"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
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
	y, err := Render(Params{NodeID: "gw-1", XDS: "127.0.0.1:18000", Admin: "127.0.0.1:9901"})
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
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Render(tc.p)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestRenderQuotesNodeID(t *testing.T) {
	// A node id with YAML syntax in it must stay one string, not change the document.
	y, err := Render(Params{NodeID: "a: b, {c}", XDS: "127.0.0.1:1", Admin: "127.0.0.1:2"})
	if err != nil {
		t.Fatal(err)
	}
	if got := decode(t, y).GetNode().GetId(); got != "a: b, {c}" {
		t.Fatalf("node id = %q", got)
	}
}
