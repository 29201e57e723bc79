package e2e

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"sync"
)

// agentSaw records every response header and body an agent received through the gateway
// in this run (Go client and raw calls), so a test can prove no secret ever reached one.
var agentSaw = &recorder{base: http.DefaultTransport}

type recorder struct {
	base http.RoundTripper
	mu   sync.Mutex
	seen []string
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.base.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	var b strings.Builder
	for k, vs := range resp.Header {
		b.WriteString(k + ": " + strings.Join(vs, ", ") + "\n")
	}
	b.Write(body)
	r.mu.Lock()
	r.seen = append(r.seen, b.String())
	r.mu.Unlock()
	return resp, err
}

func (r *recorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen...)
}
