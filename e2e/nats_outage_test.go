package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
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
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"

	"github.com/jitgate/jitgate/controlplane/approvals"
	"github.com/jitgate/jitgate/controlplane/audit"
	"github.com/jitgate/jitgate/controlplane/natsembed"
	"github.com/jitgate/jitgate/e2e/stack"
	"github.com/jitgate/jitgate/tools/freeport"
)

// A NATS outage end to end, on a stack of its own whose jitgated uses a NATS server this
// test runs (as production points jitgated at an existing cluster) on a fixed port and
// store, so the test can stop it and start it again where jitgated expects it. Through real
// Envoy with the Go client: while NATS is away every call fails closed with a
// BigQuery-shaped 503, approvals cannot be decided and the audit trail cannot be read;
// once it is back jitgated reconnects by itself, the pending approval is still there and
// can be approved, the calls go through, and the audit chain verifies with a record of
// every call made while NATS was up.

// callLog records every call an agent's client made through the gateway: the decision id
// the gateway named, the status, the deny reason and (for errors) the body.
type callLog struct {
	base http.RoundTripper
	mu   sync.Mutex
	seen []loggedCall
}

type loggedCall struct {
	method, path, decisionID, reason, body string
	status                                 int
}

func (l *callLog) RoundTrip(req *http.Request) (*http.Response, error) {
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
	c := loggedCall{method: req.Method, path: req.URL.Path, decisionID: resp.Header.Get("x-jitgate-decision-id"),
		reason: resp.Header.Get("x-jitgate-deny-reason"), status: resp.StatusCode}
	if resp.StatusCode >= 300 {
		c.body = string(body)
	}
	l.mu.Lock()
	l.seen = append(l.seen, c)
	l.mu.Unlock()
	return resp, nil
}

// since returns the calls logged after the first n.
func (l *callLog) since(n int) []loggedCall {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]loggedCall(nil), l.seen[n:]...)
}

func (l *callLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.seen)
}

func TestNATSOutage(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()

	// The NATS jitgated uses: JetStream on a store dir, on a port that stays the same.
	port, err := freeport.Get()
	if err != nil {
		t.Fatal(err)
	}
	natsOpts := natsembed.Options{StoreDir: filepath.Join(dir, "nats"), MaxMemoryBytes: 64 << 20, MaxStoreBytes: 256 << 20,
		Listen: "127.0.0.1:" + strconv.Itoa(port), Name: "e2e-nats"}
	nats, err := natsembed.Start(ctx, natsOpts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nats.Close() }) // after the gateway stops (cleanups run last first)

	st := ownStack(ctx, t, stack.Options{NATSURL: "nats://127.0.0.1:" + strconv.Itoa(port)},
		map[string]string{"approvals.yaml": approvalsPolicy})
	if !strings.Contains(st.Log("jitgated"), `"nats":"nats://127.0.0.1:`+strconv.Itoa(port)+`"`) {
		t.Fatalf("jitgated does not use the test's NATS:\n%s", tail(st.Log("jitgated"), 4000))
	}

	token := func(agent string, groups ...string) string {
		t.Helper()
		tok, err := st.Token(ctx, agent, groups...)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	calls := &callLog{base: http.DefaultTransport}
	client := func(tok string) *bigquery.Client {
		t.Helper()
		hc := &http.Client{Transport: &oauth2.Transport{Source: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: tok}), Base: calls}}
		c, err := bigquery.NewClient(ctx, project, option.WithEndpoint(st.Gateway+"/bigquery/v2/"), option.WithHTTPClient(hc))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	analyst := client(token("outage-analyst", "analysts"))
	requester := client(token("outage-requester", "approval-reject"))
	dana := token("dana-approver")
	query := func(ctx context.Context, c *bigquery.Client, sql string) ([][]string, error) {
		it, err := c.Query(sql).Read(ctx)
		if err != nil {
			return nil, err
		}
		return readAll(t, it), nil
	}
	jitgate := func(tok string, args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, cliBinary(), args...)
		cmd.Env = append(os.Environ(), "JITGATE_TOKEN="+tok, "JITGATE_API="+st.API, "JITGATE_NATS_URL="+st.NATS)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	ready := func() bool {
		resp, err := http.Get(st.API + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}

	// NATS up: a call needing approval gets its 403 naming the approval, normal calls run.
	const allowedSQL = "SELECT id, name FROM `jitgate-demo.crm.customers` ORDER BY id"
	const approvalSQLOutage = "SELECT name FROM `jitgate-demo.crm.customers` WHERE id = 4"
	_, err = query(ctx, requester, approvalSQLOutage)
	var ge *googleapi.Error
	if !errors.As(err, &ge) || ge.Code != http.StatusForbidden || ge.Header.Get("x-jitgate-deny-reason") != approvals.ReasonRequired {
		t.Fatalf("the query needing approval: %v", err)
	}
	id := approvalID(t, ge.Message)
	for range 3 {
		if rows, err := query(ctx, analyst, allowedSQL); err != nil || len(rows) != len(wantCustomers) {
			t.Fatalf("allowed query with NATS up: %v %v", rows, err)
		}
	}
	if _, err := analyst.Dataset("crm").Table("customers").Metadata(ctx); err != nil {
		t.Fatal(err)
	}
	beforeOutage := calls.len()

	// NATS away.
	nats.Close()
	waitFor(t, "jitgated to report NATS down (/readyz)", func() bool { return !ready() })
	outCtx, outCancel := context.WithTimeout(ctx, 5*time.Second)
	_, err = query(outCtx, analyst, allowedSQL)
	outCancel()
	if err == nil {
		t.Fatal("a query ran with NATS down")
	}
	during := calls.since(beforeOutage)
	if len(during) == 0 {
		t.Fatalf("no call reached the gateway during the outage: %v", err)
	}
	for _, c := range during {
		var doc struct {
			Error struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
				Status  string `json:"status"`
				Errors  []struct {
					Reason string `json:"reason"`
				} `json:"errors"`
			} `json:"error"`
		}
		if c.status != http.StatusServiceUnavailable || json.Unmarshal([]byte(c.body), &doc) != nil || doc.Error.Code != 503 ||
			doc.Error.Status != "UNAVAILABLE" || len(doc.Error.Errors) != 1 || doc.Error.Errors[0].Reason != "backendError" ||
			!strings.Contains(doc.Error.Message, "audit trail") || c.decisionID == "" {
			t.Fatalf("%s %s with NATS down: %d %s %q", c.method, c.path, c.status, c.reason, c.body)
		}
	}
	t.Logf("with NATS down the Go client got %d BigQuery-shaped 503s (reason %s), e.g. %s", len(during), during[0].reason, during[0].body)
	if out, err := jitgate(dana, "approve", id, "--reason", "during the outage"); err == nil ||
		!strings.Contains(out, "NATS is not reachable") {
		t.Fatalf("approve with NATS down: %v\n%s", err, out)
	} else {
		t.Logf("jitgate approve with NATS down: %v: %s", err, strings.TrimSpace(out))
	}
	if out, err := jitgate("", "audit", "verify"); err == nil || !strings.Contains(out, "nats") {
		t.Fatalf("audit verify with NATS down: %v\n%s", err, out)
	} else {
		t.Logf("jitgate audit verify with NATS down: %v: %s", err, strings.TrimSpace(out))
	}
	outageCalls := calls.since(beforeOutage)

	// NATS back on the same port and store: jitgated reconnects by itself.
	if nats, err = natsembed.Start(ctx, natsOpts); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	waitFor(t, "jitgated to reconnect to NATS (/readyz)", ready)
	t.Logf("jitgated ready again %s after NATS came back", time.Since(back).Round(time.Millisecond))

	out, err := jitgate(dana, "approvals", "list", "--json")
	if err != nil {
		t.Fatalf("approvals list: %v\n%s", err, out)
	}
	var pending *approvals.Approval
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var a approvals.Approval
		if json.Unmarshal([]byte(line), &a) == nil && a.ID == id {
			pending = &a
		}
	}
	if pending == nil || pending.State != approvals.StatePending || pending.Approver != "" {
		t.Fatalf("approval %s after the outage: %+v\n%s", id, pending, out)
	}
	if out, err := jitgate(dana, "approve", id, "--reason", "after the outage"); err != nil || !strings.Contains(out, "approved "+id) {
		t.Fatalf("approve after the outage: %v\n%s", err, out)
	}
	if rows, err := query(ctx, requester, approvalSQLOutage); err != nil || len(rows) != 1 || rows[0][0] != "Edsger Dijkstra" {
		t.Fatalf("the approved query after the outage: %v %v", rows, err)
	}
	if rows, err := query(ctx, analyst, allowedSQL); err != nil || len(rows) != len(wantCustomers) {
		t.Fatalf("the allowed query retried after the outage: %v %v", rows, err)
	}

	// The audit trail: the chain verifies; every call made while NATS was up has its
	// decision record (and its response record when allowed); the calls refused during the
	// outage have none (the 503 says their record could not be written).
	if out, err := jitgate("", "audit", "verify"); err != nil {
		t.Fatalf("audit verify after the outage: %v\n%s", err, out)
	} else {
		t.Logf("audit verify: %s", strings.TrimSpace(out))
	}
	out, err = jitgate("", "audit", "export", "--format", "jsonl")
	if err != nil {
		t.Fatalf("audit export: %v\n%s", err, out)
	}
	byDecision := map[string][]audit.Record{}
	var approvalRecs []audit.Record
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var r audit.Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("export line %q: %v", line, err)
		}
		if r.Kind == audit.KindApproval {
			approvalRecs = append(approvalRecs, r)
			continue
		}
		byDecision[r.DecisionID] = append(byDecision[r.DecisionID], r)
	}
	upCalls := append(calls.since(0)[:beforeOutage], calls.since(beforeOutage+len(outageCalls))...)
	decisions, responses := 0, 0
	for _, c := range upCalls {
		var dec, resp int
		for _, r := range byDecision[c.decisionID] {
			switch r.Kind {
			case audit.KindDecision:
				dec++
			case audit.KindResponse:
				resp++
			}
		}
		allowed := c.status < 300
		if c.decisionID == "" || dec != 1 || (allowed && resp != 1) || (!allowed && resp != 0) {
			t.Errorf("%s %s (%d, decision %q): %d decision and %d response records", c.method, c.path, c.status, c.decisionID, dec, resp)
		}
		decisions += dec
		responses += resp
	}
	for _, c := range outageCalls {
		if recs := byDecision[c.decisionID]; len(recs) != 0 {
			t.Errorf("%s %s refused during the outage (decision %s) has audit records %+v", c.method, c.path, c.decisionID, recs)
		}
	}
	// What is left of the refused calls: jitgated's decision log line (and Envoy's
	// access log), naming the decision the agent's 503 names.
	for _, c := range outageCalls {
		line := logLine(st.Log("jitgated"), c.decisionID)
		if !strings.Contains(line, `"reason":"audit_unavailable"`) {
			t.Errorf("jitgated's log line of %s: %q", c.decisionID, line)
		}
		if c == outageCalls[0] {
			t.Logf("jitgated's log of a call refused during the outage: %s", line)
		}
	}
	if len(approvalRecs) != 1 || approvalRecs[0].ApprovalID != id || approvalRecs[0].Decision != "approved" || approvalRecs[0].Reason != "after the outage" {
		t.Errorf("approval records %+v, want only the approval given after the outage", approvalRecs)
	}
	t.Logf("%d calls with NATS up: %d decision records, %d response records; %d calls refused during the outage: no records",
		len(upCalls), decisions, responses, len(outageCalls))
}

// logLine returns the "authorize decision" line of decisionID in a JSON log.
func logLine(log, decisionID string) string {
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, `"msg":"authorize decision"`) && strings.Contains(l, `"decision_id":"`+decisionID+`"`) {
			return l
		}
	}
	return ""
}
