package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jitgate/jitgate/controlplane/approvals"
)

// approve sends the id, the token from --token-file and the flags to the API; deny needs a
// reason; errors from the API are printed and exit 1.
func TestApproveAndDenyCommands(t *testing.T) {
	t.Setenv("JITGATE_TOKEN", "")
	var got struct {
		path, auth string
		body       approvals.DecideRequest
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.path, got.auth = r.URL.Path, r.Header.Get("Authorization")
		_ = json.NewDecoder(r.Body).Decode(&got.body)
		if strings.Contains(r.URL.Path, "apr-00000000000000ff") {
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"error":"nobody approves their own request"}`))
			return
		}
		_ = json.NewEncoder(w).Encode(approvals.Approval{ID: "apr-0123456789abcdef", Agent: approvals.Agent{ID: "bot"},
			UsesLeft: 3, ExpiresAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Reason: got.body.Reason})
	}))
	defer srv.Close()
	tokFile := filepath.Join(t.TempDir(), "tok")
	if err := os.WriteFile(tokFile, []byte("approver-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := run([]string{"approve", "apr-0123456789abcdef", "--uses", "3", "--ttl", "2h", "--reason", "ok", "--api", srv.URL, "--token-file", tokFile}, &out, &errb)
	if code != 0 || got.path != "/v1/approvals/apr-0123456789abcdef/approve" || got.auth != "Bearer approver-token" ||
		got.body != (approvals.DecideRequest{Uses: 3, TTL: "2h0m0s", Reason: "ok"}) || !strings.Contains(out.String(), "approved apr-0123456789abcdef: 3 use(s)") {
		t.Fatalf("exit %d, request %+v, out %q err %q", code, got, out.String(), errb.String())
	}
	out.Reset()
	errb.Reset()
	if code := run([]string{"deny", "apr-0123456789abcdef", "--api", srv.URL, "--token-file", tokFile}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "--reason is required") {
		t.Fatalf("deny without reason: exit %d %q", code, errb.String())
	}
	errb.Reset()
	if code := run([]string{"approve", "apr-00000000000000ff", "--api", srv.URL, "--token-file", tokFile}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "own request (HTTP 403)") {
		t.Fatalf("refused approval: exit %d %q", code, errb.String())
	}
	errb.Reset()
	if code := run([]string{"approve", "apr-0123456789abcdef", "--api", srv.URL}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "no token") {
		t.Fatalf("without a token: exit %d %q", code, errb.String())
	}
}
