package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/jitgate/jitgate/controlplane/mtls"
	"github.com/jitgate/jitgate/filter/authorize"
)

// TestAgentCannotAuthorizeItself: an agent holding a valid token that calls jitgated
// directly, on every port jitgated listens on, gets no upstream credential and can file
// no report, and cannot read (or take over) Envoy's configuration over ADS; while real
// Envoy, holding the client certificate, keeps serving queries over mutual TLS on both
// channels.
func TestAgentCannotAuthorizeItself(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	reqDoc, err := authorize.Request{RequestID: "r-self", Token: agentToken,
		Call:  authorize.Call{API: "jobs.query", Method: "POST", Project: project},
		Query: &authorize.Query{SQL: "SELECT 1"}}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	// The same document through Envoy's own client certificate is allowed and carries a
	// credential: what the agent asks for below is exactly what a stolen callout buys.
	envoyClient, err := gw.EnvoyClient()
	if err != nil {
		t.Fatal(err)
	}
	code, body := postTo(t, envoyClient, gw.FilterAPI+authorize.Path, reqDoc)
	if code != 200 || !strings.Contains(body, `"authorization":"Bearer `) {
		t.Fatalf("the callout with Envoy's certificate = %d (no credential), the test is wrong", code)
	}
	if _, err := gw.Token(ctx, agentID); err != nil { // the dev issuer is one more listener
		t.Fatal(err)
	}

	plain := &http.Client{Timeout: 10 * time.Second}
	agentTLS := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // an agent need not trust jitgated's CA to try
	foreign, err := mtls.Ensure(t.TempDir(), []string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	foreignPair, err := tls.LoadX509KeyPair(foreign.Envoy.Cert, foreign.Envoy.Key)
	if err != nil {
		t.Fatal(err)
	}
	foreignTLS := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{foreignPair}}}}

	host := func(u string) string { return u[strings.Index(u, "//")+2:] }
	listeners := map[string]string{
		"plain API": host(gw.API), "filter listener": host(gw.FilterAPI), "ADS": gw.XDS,
		"development issuer": host(gw.DevIssuer), "NATS client port": host(gw.NATS),
	}
	for name, addr := range listeners {
		for _, path := range []string{authorize.Path, authorize.AbandonPath, authorize.ResponsesPath} {
			for cname, c := range map[string]*http.Client{"http": plain, "https without a certificate": agentTLS,
				"https with another CA's certificate": foreignTLS} {
				scheme := "http://"
				if cname != "http" {
					scheme = "https://"
				}
				code, body := postTo(t, c, scheme+addr+path, reqDoc)
				if strings.Contains(body, "Bearer ") || strings.Contains(body, `"credential"`) || strings.Contains(body, `"recorded":true`) ||
					(code >= 200 && code < 300) {
					t.Errorf("%s %s POST %s: %d %.300s", name, cname, path, code, body)
				}
				if name == "plain API" && cname == "http" && (code != 403 || !strings.Contains(body, "api.filterListen")) {
					t.Errorf("plain API POST %s = %d %s, want 403 naming the filter listener", path, code, body)
				}
			}
		}
	}

	// ADS: no stream without Envoy's client certificate (plaintext, TLS without a
	// certificate, another CA's certificate); Envoy's own opens one.
	pool, err := mtls.LoadCAPool(mtls.Paths(gw.TLSDir).Envoy.CA)
	if err != nil {
		t.Fatal(err)
	}
	for name, creds := range map[string]grpc.DialOption{
		"plaintext":                 grpc.WithTransportCredentials(insecure.NewCredentials()),
		"TLS without a certificate": grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool})),
		"another CA's certificate": grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool,
			Certificates: []tls.Certificate{foreignPair}})),
	} {
		if resp, err := adsListeners(ctx, creds); err == nil {
			t.Errorf("ADS with %s served %d listeners", name, len(resp.GetResources()))
		} else {
			t.Logf("ADS with %s: %v", name, err)
		}
	}
	envoyPair, err := tls.LoadX509KeyPair(mtls.Paths(gw.TLSDir).Envoy.Cert, mtls.Paths(gw.TLSDir).Envoy.Key)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := adsListeners(ctx, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool,
		Certificates: []tls.Certificate{envoyPair}})))
	if err != nil || len(resp.GetResources()) != 1 {
		t.Fatalf("ADS with Envoy's certificate: %v", err)
	}

	// Real Envoy still serves: its ADS and callout connections are TLS handshakes.
	it, err := goClient(t).Query(customersSQL).Read(ctx)
	if err != nil {
		t.Fatalf("query through the gateway: %v", err)
	}
	if got := readAll(t, it); !reflect.DeepEqual(got, wantCustomers) {
		t.Fatalf("rows = %v", got)
	}
	for _, stat := range []string{"cluster.jitgate_xds.ssl.handshake", "cluster.jitgate_controlplane.ssl.handshake"} {
		n, err := gw.EnvoyStats(ctx, stat)
		if err != nil || n == 0 {
			t.Errorf("%s = %d, %v: Envoy did not use TLS on that channel", stat, n, err)
		}
	}
	for _, stat := range []string{"cluster.jitgate_xds.ssl.fail_verify_san", "cluster.jitgate_controlplane.ssl.fail_verify_san",
		"cluster.jitgate_controlplane.ssl.connection_error"} {
		if n, err := gw.EnvoyStats(ctx, stat); err != nil || n != 0 {
			t.Errorf("%s = %d, %v", stat, n, err)
		}
	}
}

// adsListeners asks jitgated's ADS for the listeners as an Envoy would.
func adsListeners(ctx context.Context, creds grpc.DialOption) (*discoveryv3.DiscoveryResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := grpc.NewClient(gw.XDS, creds)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return nil, err
	}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "not-envoy", Cluster: "jitgate"},
		TypeUrl: resourcev3.ListenerType}); err != nil {
		return nil, err
	}
	return stream.Recv()
}

func postTo(t *testing.T, c *http.Client, url string, body []byte) (int, string) {
	t.Helper()
	resp, err := c.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}
