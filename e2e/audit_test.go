package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/bigquery"
	"golang.org/x/oauth2"
	"google.golang.org/api/option"

	"github.com/jitgate/jitgate/controlplane/audit"
	"github.com/jitgate/jitgate/e2e/stack"
)

// The audit trail end to end, on a stack of its own (the test edits its NATS store and
// restarts its jitgated): every call the Go client sends through real Envoy has its
// decision record and, when allowed, its response record with the digest of exactly the
// body the client received; `jitgate audit verify` passes, and names the record after it
// is altered on disk; no record holds the upstream credential or the agent's token.

// exchangeLog records every call the agent's client makes: the decision id the gateway
// named, the status and the sha256 of the body it received.
type exchangeLog struct {
	base http.RoundTripper
	mu   sync.Mutex
	seen []sawCall
}

type sawCall struct {
	method, path, decisionID, digest string
	status                           int
}

func (l *exchangeLog) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := l.base.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	body, rerr := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if rerr != nil {
		return nil, rerr
	}
	sum := sha256.Sum256(body)
	l.mu.Lock()
	l.seen = append(l.seen, sawCall{method: req.Method, path: req.URL.Path, decisionID: resp.Header.Get("x-jitgate-decision-id"),
		status: resp.StatusCode, digest: "sha256:" + hex.EncodeToString(sum[:])})
	l.mu.Unlock()
	return resp, nil
}

func (l *exchangeLog) calls() []sawCall {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]sawCall(nil), l.seen...)
}

func TestAuditEveryDecisionAndResponse(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	st := ownStack(ctx, t, stack.Options{Tap: true}, nil)
	token, err := st.Token(ctx, "audit-agent", "analysts")
	if err != nil {
		t.Fatal(err)
	}
	calls := &exchangeLog{base: http.DefaultTransport}
	hc := &http.Client{Transport: &oauth2.Transport{Source: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: token}), Base: calls}}
	c, err := bigquery.NewClient(ctx, project, option.WithEndpoint(st.Gateway+"/bigquery/v2/"), option.WithHTTPClient(hc))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// Allowed: a query read in pages of 2 (jobs.query, then getQueryResults), a table's
	// metadata; denied: a table outside the policy.
	q := c.Query("SELECT id, name FROM `jitgate-demo.crm.customers` ORDER BY id")
	it, err := q.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	it.PageInfo().MaxSize = 2
	rows := readAll(t, it)
	if len(rows) < 3 {
		t.Fatalf("rows %v", rows)
	}
	if _, err := c.Dataset("crm").Table("customers").Metadata(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Query("SELECT 1 FROM `jitgate-demo.secret.things`").Read(ctx); err == nil {
		t.Fatal("a query outside the policy was allowed")
	}

	sent := calls.calls()
	allowed := 0
	for _, s := range sent {
		if s.decisionID == "" {
			t.Fatalf("%s %s (%d) named no decision", s.method, s.path, s.status)
		}
		if s.status < 300 {
			allowed++
		}
	}
	if allowed < 3 || allowed == len(sent) {
		t.Fatalf("calls %+v: want several allowed and at least one denied", sent)
	}

	cliCmd := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, cliBinary(), append(args, "--nats-url", st.NATS)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := cliCmd("audit", "export", "--format", "jsonl")
	if err != nil {
		t.Fatalf("audit export: %v\n%s", err, out)
	}
	type stored struct {
		rec  audit.Record
		line string
	}
	byDecision := map[string][]stored{}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var r audit.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("export line %q: %v", sc.Text(), err)
		}
		byDecision[r.DecisionID] = append(byDecision[r.DecisionID], stored{r, sc.Text()})
	}

	// Every call sent: one decision record; every allowed call: one response record with
	// the digest of what the client received, joined by the decision id.
	decisions, responses := 0, 0
	var altered *audit.Record
	for _, s := range sent {
		var dec, resp []audit.Record
		for _, x := range byDecision[s.decisionID] {
			switch x.rec.Kind {
			case audit.KindDecision:
				dec = append(dec, x.rec)
			case audit.KindResponse:
				resp = append(resp, x.rec)
			}
		}
		if len(dec) != 1 || dec[0].Agent.ID != "audit-agent" {
			t.Errorf("%s %s: %d decision records %+v", s.method, s.path, len(dec), dec)
			continue
		}
		decisions++
		if s.status >= 300 {
			if dec[0].Decision != "deny" || len(resp) != 0 {
				t.Errorf("denied %s %s: decision %q, %d response records", s.method, s.path, dec[0].Decision, len(resp))
			}
			continue
		}
		if len(resp) != 1 {
			t.Errorf("allowed %s %s (%s): %d response records", s.method, s.path, s.decisionID, len(resp))
			continue
		}
		responses++
		r := resp[0]
		if r.Response == nil || r.Response.Digest != s.digest || r.Response.UpstreamStatus != s.status || r.Agent.ID != "audit-agent" ||
			r.API != dec[0].API || r.Seq <= dec[0].Seq {
			t.Errorf("response record of %s %s: %+v %+v (client got %s)", s.method, s.path, r, r.Response, s.digest)
		}
		if r.API == "jobs.getQueryResults" || r.API == "jobs.query" {
			if r.Response.Rows == 0 && r.API == "jobs.getQueryResults" {
				t.Errorf("getQueryResults page recorded without rows: %+v", r.Response)
			}
			if !strings.Contains(r.Response.BodyExcerpt, `"rows"`) && r.Response.Rows > 0 {
				t.Errorf("excerpt %q", r.Response.BodyExcerpt)
			}
			if altered == nil && r.Response.Rows > 0 {
				rr := r
				altered = &rr
			}
		}
	}
	t.Logf("%d calls sent (%d allowed): %d decision records, %d response records", len(sent), allowed, decisions, responses)
	if decisions != len(sent) || responses != allowed {
		t.Fatalf("records: %d decisions for %d calls, %d responses for %d allowed calls", decisions, len(sent), responses, allowed)
	}

	// No record holds a secret: the minted credentials the upstream saw, or the token.
	var secrets []string
	for _, s := range st.Tap.Requests() {
		if cred := strings.TrimPrefix(s.Authorization, "Bearer "); len(cred) > 20 {
			secrets = append(secrets, cred)
		}
	}
	if len(secrets) == 0 {
		t.Fatal("the tap saw no upstream credential")
	}
	secrets = append(secrets, token)
	for _, secret := range secrets {
		if strings.Contains(out, secret) {
			t.Fatalf("the audit trail contains a secret (%d bytes)", len(secret))
		}
	}

	// The session replays with its responses.
	rep, err := cliCmd("audit", "replay", "--agent", "audit-agent", "--since", "1h")
	if err != nil || !strings.Contains(rep, "RESPONSE  upstream 200, "+strconv.FormatInt(altered.Response.Rows, 10)+" row(s)") {
		t.Errorf("replay: %v\n%s", err, rep)
	}

	if out, err := cliCmd("audit", "verify"); err != nil {
		t.Fatalf("audit verify of the intact chain: %v\n%s", err, out)
	}

	// Alter one response record in the JetStream file store while jitgated is stopped.
	st.StopJitgated()
	msgs := filepath.Join(st.WorkDir(), "nats", "jetstream", "$G", "streams", audit.DefaultStream, "msgs")
	blocks, _ := filepath.Glob(filepath.Join(msgs, "*.blk"))
	needle := []byte(altered.Response.Digest)
	edited := false
	for _, b := range blocks {
		data, err := os.ReadFile(b)
		if err != nil {
			t.Fatal(err)
		}
		if i := bytes.Index(data, needle); i >= 0 {
			last := len("sha256:") + i
			data[last] ^= 0x01 // one hex digit of the recorded digest
			if err := os.WriteFile(b, data, 0o600); err != nil {
				t.Fatal(err)
			}
			edited = true
		}
	}
	if !edited {
		t.Fatalf("the response record of %s is not in the store blocks %v", altered.DecisionID, blocks)
	}
	if err := st.StartJitgated(ctx); err != nil {
		t.Fatal(err)
	}
	out, err = cliCmd("audit", "verify")
	if err == nil {
		t.Fatalf("audit verify passed after a record was altered:\n%s", out)
	}
	if !strings.Contains(out, fmt.Sprintf("seq %d", altered.Seq)) {
		t.Fatalf("audit verify does not name the altered record (seq %d, decision %s):\n%s", altered.Seq, altered.DecisionID, out)
	}
	t.Logf("after altering seq %d: %s", altered.Seq, strings.TrimSpace(out))
}
