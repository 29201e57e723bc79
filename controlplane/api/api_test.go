package api

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jitgate/jitgate/controlplane/audit"
	"github.com/jitgate/jitgate/controlplane/xds"
	"github.com/jitgate/jitgate/filter/authorize"
)

func TestEndpoints(t *testing.T) {
	reg := prometheus.NewRegistry()
	xds.NewMetrics(reg)
	xdsStatus := xds.Status{}
	natsUp, identityUp := false, false
	srv := httptest.NewServer(NewHandler(Options{
		XDSStatus: func() xds.Status { return xdsStatus },
		NATS:      func() NATSStatus { return NATSStatus{Embedded: true, Connected: natsUp} },
		Identity: func() IdentityStatus {
			return IdentityStatus{Ready: identityUp, Issuers: []string{"https://idp.example"}}
		},
		Authorize: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(299) }),
		Audit: func() AuditStatus {
			return AuditStatus{Mode: "strict", Status: audit.Status{Stream: "JITGATE_AUDIT", LastSeq: 42, LastError: "audit trail unavailable: x"}}
		},
		Gatherer: reg,
		Started:  time.Now(),
	}))
	defer srv.Close()

	if code, _ := fetch(t, srv.URL+"/healthz"); code != 200 {
		t.Errorf("/healthz = %d", code)
	}
	if code, _ := fetch(t, srv.URL+"/readyz"); code != 503 {
		t.Errorf("/readyz before a snapshot = %d, want 503", code)
	}
	xdsStatus = xds.Status{SnapshotVersion: "3", LastError: "listener: bad"}
	natsUp = true
	if code, _ := fetch(t, srv.URL+"/readyz"); code != 503 {
		t.Errorf("/readyz without an identity verifier = %d, want 503", code)
	}
	identityUp = true
	if code, _ := fetch(t, srv.URL+"/readyz"); code != 200 {
		t.Errorf("/readyz with snapshot and NATS = %d, want 200", code)
	}
	code, body := fetch(t, srv.URL+"/v1/status")
	var st Status
	if err := json.Unmarshal([]byte(body), &st); err != nil || code != 200 {
		t.Fatalf("/v1/status = %d %s (%v)", code, body, err)
	}
	if st.XDS.SnapshotVersion != "3" || st.XDS.LastError != "listener: bad" || !st.Ready || st.Identity.Issuers[0] != "https://idp.example" {
		t.Errorf("/v1/status = %+v", st)
	}
	if !strings.Contains(body, `"audit": {
    "mode": "strict",
    "stream": "JITGATE_AUDIT",
    "lastSeq": 42,`) || st.Audit == nil || st.Audit.LastError != "audit trail unavailable: x" {
		t.Errorf("/v1/status audit:\n%s", body)
	}
	if code, body := fetch(t, srv.URL+"/metrics"); code != 200 || !strings.Contains(body, "jitgate_xds_translations_total") {
		t.Errorf("/metrics = %d, missing jitgate metrics", code)
	}
	// The plain API never reaches the callouts: an agent with its own token must not get
	// a credential (or file a report) by calling jitgated directly.
	for _, p := range []string{authorize.Path, authorize.AbandonPath, authorize.ResponsesPath} {
		resp, err := http.Post(srv.URL+p, "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 403 || !strings.Contains(string(b), "filter listener (api.filterListen, mutual TLS") {
			t.Errorf("plain POST %s = %d %s, want 403 naming the filter listener", p, resp.StatusCode, b)
		}
	}
	if code, _ := fetch(t, srv.URL+"/nope"); code != 404 {
		t.Errorf("/nope = %d", code)
	}
}

func fetch(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestResponsesEndpoint: the filter's response reports reach the configured handler; without
// one the endpoint answers 503 (the filter then withholds the response).
func TestResponsesEndpoint(t *testing.T) {
	for _, h := range []http.Handler{nil, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(299) })} {
		srv := httptest.NewServer(NewFilterHandler(Options{Responses: h, Gatherer: prometheus.NewRegistry(), Started: time.Now()}))
		resp, err := http.Post(srv.URL+"/v1/responses", "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		srv.Close()
		if want := map[bool]int{true: 503, false: 299}[h == nil]; resp.StatusCode != want {
			t.Errorf("POST /v1/responses = %d, want %d", resp.StatusCode, want)
		}
	}
}

// TestFilterHandler: the filter listener serves the callouts and /healthz, and nothing
// an operator or approver uses.
func TestFilterHandler(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(299) })
	srv := httptest.NewServer(NewFilterHandler(Options{Authorize: ok, Responses: ok, Approvals: ok,
		Gatherer: prometheus.NewRegistry(), Started: time.Now()}))
	defer srv.Close()
	for _, p := range []string{authorize.Path, authorize.AbandonPath, authorize.ResponsesPath} {
		resp, err := http.Post(srv.URL+p, "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 299 {
			t.Errorf("POST %s = %d, want the handler's 299", p, resp.StatusCode)
		}
	}
	if code, _ := fetch(t, srv.URL+"/healthz"); code != 200 {
		t.Errorf("/healthz = %d", code)
	}
	for _, p := range []string{"/v1/approvals", "/v1/status", "/metrics"} {
		if code, _ := fetch(t, srv.URL+p); code != 404 {
			t.Errorf("filter listener GET %s = %d, want 404", p, code)
		}
	}
}
