package xds

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	wasmfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/jitgate/jitgate/controlplane/config"
	"github.com/jitgate/jitgate/controlplane/mtls"
	filterconfig "github.com/jitgate/jitgate/filter/config"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func loadGoldenInput(t *testing.T, name string) *config.Config {
	t.Helper()
	cfg, err := config.Load("testdata/in/" + name + ".yaml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestFailedTranslationKeepsLastGoodSnapshot(t *testing.T) {
	cache := NewCache("fleet", quietLogger())
	pub := NewPublisher(cache, "fleet", quietLogger(), NewMetrics(prometheus.NewRegistry()))
	good := loadGoldenInput(t, "emulator")
	if err := pub.Publish(t.Context(), good); err != nil {
		t.Fatal(err)
	}
	// A config that skipped validation: Envoy would reject a listener without an address,
	// so the translator must refuse it before it reaches a snapshot.
	bad := *good
	bad.Envoy.AgentListener = ""
	err := pub.Publish(t.Context(), &bad)
	if !errors.Is(err, ErrTranslate) {
		t.Fatalf("Publish(bad) = %v, want ErrTranslate", err)
	}
	st := pub.Status()
	if st.SnapshotVersion != "1" || st.LastError == "" || st.Failures != 1 {
		t.Errorf("status after failure = %+v, want version 1 kept with the error", st)
	}
	snap, err := cache.GetSnapshot("fleet")
	if err != nil {
		t.Fatal(err)
	}
	if v := snap.GetVersion(resourcev3.ListenerType); v != "1" {
		t.Errorf("served listener version = %q, want the last good 1", v)
	}
	if err := pub.Publish(t.Context(), good); err != nil {
		t.Fatal(err)
	}
	if st := pub.Status(); st.SnapshotVersion != "2" || st.LastError != "" {
		t.Errorf("status after recovery = %+v, want version 2 and no error", st)
	}
}

func TestAccessLogNeverLogsCredentials(t *testing.T) {
	for k, v := range accessLogFields {
		s := strings.ToLower(v.(string))
		if strings.Contains(s, "authorization") || strings.Contains(s, "%req(:path)%") || strings.Contains(s, "%path%") || strings.Contains(s, "%path(wq") || strings.Contains(s, "cookie") {
			t.Errorf("access log field %s = %s can leak a credential", k, v)
		}
	}
}

func TestBufferLimitExceedsFilterLimit(t *testing.T) {
	for _, limit := range []int64{1, 1 << 20, 10 << 20, filterconfig.MaxAllowedRequestBodyBytes, filterconfig.DefaultMaxResponseBodyBytes, filterconfig.MaxAllowedResponseBodyBytes} {
		if got := int64(bufferLimit(limit)); got <= limit {
			t.Errorf("bufferLimit(%d) = %d, want more than the filter's limit", limit, got)
		}
	}
}

// TestADSServesListenerAndFilterConfig runs the real ADS server and talks to it over gRPC
// as Envoy does: one aggregated stream, listener first, then the ECDS resource.
func TestADSServesListenerAndFilterConfig(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	cfg := loadGoldenInput(t, "emulator")
	cache := NewCache(cfg.Envoy.NodeCluster, quietLogger())
	pub := NewPublisher(cache, cfg.Envoy.NodeCluster, quietLogger(), nil)
	if err := pub.Publish(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g, err := mtls.Ensure(t.TempDir(), []string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	serverTLS, err := mtls.ServerConfig(g.Server)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewGRPCServer(ctx, cache, nil, quietLogger(), nil); err == nil {
		t.Fatal("an ADS server without TLS was created")
	}
	srv, err := NewGRPCServer(ctx, cache, serverTLS, quietLogger(), NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	defer srv.Stop()

	pair, err := tls.LoadX509KeyPair(g.Envoy.Cert, g.Envoy.Key)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := mtls.LoadCAPool(g.Envoy.CA)
	if err != nil {
		t.Fatal(err)
	}
	// Without a client certificate the stream never opens.
	noCert, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool})))
	if err != nil {
		t.Fatal(err)
	}
	defer noCert.Close()
	if s, err := discoveryv3.NewAggregatedDiscoveryServiceClient(noCert).StreamAggregatedResources(ctx); err == nil {
		if _, err := s.Recv(); err == nil {
			t.Fatal("ADS stream without a client certificate")
		}
	}
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		RootCAs: pool, Certificates: []tls.Certificate{pair}})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Any node id gets the fleet snapshot.
	node := &corev3.Node{Id: "some-envoy-" + t.Name(), Cluster: "anything"}

	resp := adsFetch(t, stream, node, resourcev3.ListenerType, nil)
	if resp.GetVersionInfo() != "1" || len(resp.GetResources()) != 1 {
		t.Fatalf("listener response version %q with %d resources", resp.GetVersionInfo(), len(resp.GetResources()))
	}
	l := &listenerv3.Listener{}
	if err := resp.GetResources()[0].UnmarshalTo(l); err != nil {
		t.Fatal(err)
	}
	if l.GetName() != ListenerName {
		t.Errorf("listener name %q, want %q", l.GetName(), ListenerName)
	}

	resp = adsFetch(t, stream, node, resourcev3.ExtensionConfigType, []string{FilterName})
	if len(resp.GetResources()) != 1 {
		t.Fatalf("ECDS response has %d resources", len(resp.GetResources()))
	}
	tec := &corev3.TypedExtensionConfig{}
	if err := resp.GetResources()[0].UnmarshalTo(tec); err != nil {
		t.Fatal(err)
	}
	if tec.GetName() != FilterName || tec.GetTypedConfig().GetTypeUrl() != WasmFilterTypeURL {
		t.Fatalf("ECDS resource %q of type %q", tec.GetName(), tec.GetTypedConfig().GetTypeUrl())
	}
	wasm := &wasmfilterv3.Wasm{}
	if err := tec.GetTypedConfig().UnmarshalTo(wasm); err != nil {
		t.Fatal(err)
	}
	doc := &wrapperspb.StringValue{}
	if err := wasm.GetConfig().GetConfiguration().UnmarshalTo(doc); err != nil {
		t.Fatal(err)
	}
	fc, err := filterconfig.Parse([]byte(doc.GetValue()))
	if err != nil {
		t.Fatalf("filter cannot parse its configuration %s: %v", doc.GetValue(), err)
	}
	if fc.ControlPlane.Cluster != ControlPlaneCluster || fc.MaxRequestBodyBytes != cfg.Filter.MaxRequestBodyBytes {
		t.Errorf("filter configuration = %+v", fc)
	}
	if got := wasm.GetConfig().GetVmConfig().GetCode().GetLocal().GetFilename(); got != cfg.Filter.WasmPath {
		t.Errorf("wasm filename = %q, want %q", got, cfg.Filter.WasmPath)
	}
}

func adsFetch(t *testing.T, stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient,
	node *corev3.Node, typ string, names []string) *discoveryv3.DiscoveryResponse {
	t.Helper()
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: typ, ResourceNames: names}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetTypeUrl() != typ {
		t.Fatalf("got %s, want %s", resp.GetTypeUrl(), typ)
	}
	// ACK, as Envoy would.
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: typ, ResourceNames: names,
		VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	return resp
}
