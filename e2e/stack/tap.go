package stack

import (
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
)

// Tap is a reverse proxy between Envoy and the upstream that records what the upstream
// receives, so tests can prove what did (and did not) leave the gateway: which calls,
// with which Authorization header. It forwards everything unchanged.
type Tap struct {
	srv *http.Server
	mu  sync.Mutex
	got []Seen
	// URL is the tap's base URL (give it to jitgated as the upstream).
	URL string
}

// Seen is one request as the upstream received it.
type Seen struct {
	Method, Path, Authorization string
	Header                      http.Header
	// ViaEnvoy is true for requests Envoy forwarded (they carry Envoy's x-request-id);
	// the others are the control plane's own catalog reads (tables.get for SQL analysis).
	ViaEnvoy bool
}

// StartTap proxies a loopback port to upstream.
func StartTap(upstream string) (*Tap, error) {
	target, err := url.Parse(upstream)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	t := &Tap{URL: "http://" + l.Addr().String()}
	proxy := httputil.NewSingleHostReverseProxy(target)
	t.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.mu.Lock()
		t.got = append(t.got, Seen{Method: r.Method, Path: r.URL.RequestURI(), Authorization: r.Header.Get("Authorization"),
			Header: r.Header.Clone(), ViaEnvoy: r.Header.Get("X-Request-Id") != ""})
		t.mu.Unlock()
		proxy.ServeHTTP(w, r)
	})}
	go func() { _ = t.srv.Serve(l) }()
	return t, nil
}

// Requests returns what the upstream has received from Envoy so far: the agents' calls.
func (t *Tap) Requests() []Seen { return t.filter(true) }

// ControlPlaneRequests returns the upstream calls that did not come through Envoy.
func (t *Tap) ControlPlaneRequests() []Seen { return t.filter(false) }

func (t *Tap) filter(viaEnvoy bool) []Seen {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []Seen
	for _, s := range t.got {
		if s.ViaEnvoy == viaEnvoy {
			out = append(out, s)
		}
	}
	return out
}

// Close stops the tap.
func (t *Tap) Close() { _ = t.srv.Close() }
