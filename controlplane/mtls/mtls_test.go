package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var hosts = []string{"127.0.0.1", "::1", "localhost", "jitgated.internal"}

func TestEnsureGeneratesAndReuses(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	now := time.Now()
	g, err := Ensure(dir, hosts, now)
	if err != nil || !g.Created {
		t.Fatalf("Ensure = %+v, %v", g, err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("dir mode = %v, %v", fi.Mode(), err)
	}
	for _, k := range []string{g.Server.Key, g.Envoy.Key, filepath.Join(dir, CAKeyFile)} {
		if fi, err := os.Stat(k); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode = %v, %v, want 0600", k, fi.Mode(), err)
		}
	}
	srv := leaf(t, g.Server)
	if srv.PublicKeyAlgorithm != x509.ECDSA || srv.SignatureAlgorithm != x509.ECDSAWithSHA256 {
		t.Errorf("server cert %v/%v, want ECDSA P-256", srv.PublicKeyAlgorithm, srv.SignatureAlgorithm)
	}
	for _, h := range hosts {
		if err := srv.VerifyHostname(h); err != nil {
			t.Errorf("server cert not valid for %s: %v", h, err)
		}
	}
	before := read(t, g.Server.Cert)

	again, err := Ensure(dir, hosts, now.Add(time.Hour))
	if err != nil || again.Created || read(t, g.Server.Cert) != before {
		t.Errorf("restart did not reuse valid material: created=%v err=%v", again.Created, err)
	}

	// A host the certificate does not name (a new api.envoyAddress): regenerated.
	more, err := Ensure(dir, append(hosts, "10.0.0.5"), now.Add(time.Hour))
	if err != nil || !more.Created || leaf(t, more.Server).VerifyHostname("10.0.0.5") != nil {
		t.Errorf("missing SAN not regenerated: %+v, %v", more, err)
	}

	// Close to expiry: regenerated, with a new CA.
	oldCA := read(t, g.Server.CA)
	late := now.Add(LeafValidity - RenewBefore/2)
	renewed, err := Ensure(dir, hosts, late)
	if err != nil || !renewed.Created || read(t, g.Server.CA) == oldCA {
		t.Errorf("expiring material not regenerated: %+v, %v", renewed, err)
	}

	// A key that does not match its certificate: regenerated.
	other := Paths(t.TempDir())
	if _, err := Ensure(other.Dir, hosts, now); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(g.Envoy.Key, []byte(read(t, other.Envoy.Key)), 0o600); err != nil {
		t.Fatal(err)
	}
	fixed, err := Ensure(dir, hosts, now)
	if err != nil || !fixed.Created {
		t.Errorf("mismatched key not regenerated: %+v, %v", fixed, err)
	}
	// An Envoy certificate from another CA: regenerated.
	if err := os.WriteFile(g.Envoy.Cert, []byte(read(t, other.Envoy.Cert)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(g.Envoy.Key, []byte(read(t, other.Envoy.Key)), 0o600); err != nil {
		t.Fatal(err)
	}
	if fixed, err := Ensure(dir, hosts, now); err != nil || !fixed.Created {
		t.Errorf("foreign envoy certificate not regenerated: %+v, %v", fixed, err)
	}
}

// TestServerConfigRequiresEnvoyCertificate: a listener with ServerConfig completes a
// request only for a client holding a certificate from its CA issued for client
// authentication; no certificate, another CA's certificate and the server's own
// certificate are refused in the TLS handshake.
func TestServerConfigRequiresEnvoyCertificate(t *testing.T) {
	g, err := Ensure(t.TempDir(), hosts, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := Ensure(t.TempDir(), hosts, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ServerConfig(g.Server, "http/1.1")
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "credential") })}
	go func() { _ = srv.Serve(tls.NewListener(lis, cfg)) }()
	defer srv.Close()
	url := "https://" + lis.Addr().String() + "/"
	pool, err := LoadCAPool(g.Envoy.CA)
	if err != nil {
		t.Fatal(err)
	}
	client := func(certs ...tls.Certificate) *http.Client {
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: certs}}}
	}
	pair := func(f Files) tls.Certificate {
		p, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	resp, err := client(pair(g.Envoy)).Get(url)
	if err != nil {
		t.Fatalf("Envoy's certificate refused: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "credential" {
		t.Fatalf("body = %q", b)
	}
	for name, c := range map[string]*http.Client{
		"no client certificate":       client(),
		"another CA's certificate":    client(pair(foreign.Envoy)),
		"the server's certificate":    client(pair(g.Server)),
		"another CA's server cert":    client(pair(foreign.Server)),
		"plain http on the same port": {Timeout: 5 * time.Second},
	} {
		u := url
		if strings.HasPrefix(name, "plain") {
			u = "http://" + lis.Addr().String() + "/"
		}
		resp, err := c.Get(u)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(b), "credential") {
				t.Errorf("%s: got the handler's answer (%d)", name, resp.StatusCode)
			}
			continue
		}
		var ce *tls.CertificateVerificationError
		if errors.As(err, &ce) {
			t.Errorf("%s: the client rejected the server (%v), the test is wrong", name, err)
		}
		t.Logf("%s: refused: %v", name, err)
	}
}

func TestServerConfigErrorsNameFilesNotContents(t *testing.T) {
	g, err := Ensure(t.TempDir(), hosts, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	other, err := Ensure(t.TempDir(), hosts, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, err = ServerConfig(Files{CA: g.Server.CA, Cert: g.Server.Cert, Key: other.Server.Key})
	if err == nil {
		t.Fatal("a key that does not match its certificate was accepted")
	}
	key := read(t, other.Server.Key)
	if strings.Contains(err.Error(), "BEGIN") || strings.Contains(err.Error(), key[40:80]) {
		t.Errorf("error quotes key material: %v", err)
	}
	if err := CheckServerName(g.Server.Cert, "jitgated.internal"); err != nil {
		t.Error(err)
	}
	if err := CheckServerName(g.Server.Cert, "10.9.9.9"); err == nil || !strings.Contains(err.Error(), "Envoy checks this name") {
		t.Errorf("CheckServerName for a name the cert lacks = %v", err)
	}
}

func leaf(t *testing.T, f Files) *x509.Certificate {
	t.Helper()
	p, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		t.Fatal(err)
	}
	return p.Leaf
}

func read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// BenchmarkCallout measures a POST to a mutual-TLS listener as Envoy makes it: on a
// pooled connection (what Envoy's callout cluster reuses) and with a new handshake each
// time (the cost of a new connection).
func BenchmarkCallout(b *testing.B) {
	g, err := Ensure(b.TempDir(), hosts, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	cfg, err := ServerConfig(g.Server, "http/1.1")
	if err != nil {
		b.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "{}") })}
	go func() { _ = srv.Serve(tls.NewListener(lis, cfg)) }()
	defer srv.Close()
	pool, err := LoadCAPool(g.Envoy.CA)
	if err != nil {
		b.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(g.Envoy.Cert, g.Envoy.Key)
	if err != nil {
		b.Fatal(err)
	}
	for _, pooled := range []bool{true, false} {
		name := map[bool]string{true: "pooled", false: "new-handshake"}[pooled]
		b.Run(name, func(b *testing.B) {
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}}, DisableKeepAlives: !pooled}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr}
			for b.Loop() {
				resp, err := c.Post("https://"+lis.Addr().String()+"/v1/authorize", "application/json", strings.NewReader("{}"))
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}
