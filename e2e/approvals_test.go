package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
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
	"github.com/jitgate/jitgate/e2e/stack"
)

// The approval tests add approvals.yaml to the policy directory (and remove it again):
// agents in group approval-reject need a reject-mode approval, agents in approval-hold
// a hold-mode one (8s hold timeout), both from the e2e-approvers group: dana-approver by
// name, or anyone in the OIDC group e2e-oncall.
const approvalsPolicy = `apiVersion: jitgate.dev/v1
kind: ApproverGroup
metadata: {name: e2e-approvers}
spec:
  members: [dana-approver]
  groups: [e2e-oncall]
---
apiVersion: jitgate.dev/v1
kind: AgentPolicy
metadata: {name: approvals-reject}
spec:
  who: {groups: {any: [approval-reject]}}
  where:
    projects: [jitgate-demo]
    datasets: {allow: [jitgate-demo.crm]}
    apis: [jobs.query, jobs.insert, jobs.get, jobs.getQueryResults, tabledata.list]
  what:
    statementKinds: [SELECT]
    approvals:
      - {name: every-query, approverGroups: [e2e-approvers], mode: reject, ttl: 10m}
---
apiVersion: jitgate.dev/v1
kind: AgentPolicy
metadata: {name: approvals-hold}
spec:
  who: {groups: {any: [approval-hold]}}
  where:
    projects: [jitgate-demo]
    datasets: {allow: [jitgate-demo.crm]}
    apis: [jobs.query, jobs.insert, jobs.get, jobs.getQueryResults, tabledata.list]
  what:
    statementKinds: [SELECT]
    approvals:
      - {name: held-query, approverGroups: [e2e-approvers], mode: hold, holdTimeout: 8s}
`

var approvalsOnce sync.Mutex

// withApprovalPolicies installs approvals.yaml until the test ends, and waits until the
// control plane and Envoy's filter run with it (the filter's authorize timeout follows the
// 8s hold timeout).
func withApprovalPolicies(t *testing.T) {
	t.Helper()
	approvalsOnce.Lock()
	path := filepath.Join(policiesDir, "approvals.yaml")
	if err := os.WriteFile(path, []byte(scoped(approvalsPolicy)), 0o644); err != nil {
		t.Fatal(err)
	}
	waitPolicies(t, func(st cpStatus) bool {
		return len(st.Policies.Policies) == 3 && st.XDS.PolicyVersion == st.Policies.Version
	})
	waitFor(t, "the filter's authorize timeout to follow the hold timeout", func() bool {
		dump, err := stack.ConfigDump(t.Context(), gw.Admin)
		return err == nil && strings.Contains(dump, `\"authorizeTimeoutMillis\":18000`)
	})
	t.Cleanup(func() {
		defer approvalsOnce.Unlock()
		_ = os.Remove(path)
		waitPolicies(t, func(st cpStatus) bool {
			return len(st.Policies.Policies) == 1 && st.XDS.PolicyVersion == st.Policies.Version
		})
	})
}

func waitPolicies(t *testing.T, ok func(cpStatus) bool) {
	t.Helper()
	waitFor(t, "policy reload", func() bool { return ok(status(t)) })
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tokenFor(t *testing.T, agent string, groups ...string) string {
	t.Helper()
	tok, err := gw.Token(t.Context(), agent, groups...)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// cli runs the jitgate binary with token as $JITGATE_TOKEN against the gateway's API.
func cli(t *testing.T, token string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), cliBinary(), args...)
	cmd.Env = append(os.Environ(), "JITGATE_TOKEN="+token, "JITGATE_API="+gw.API, "JITGATE_NATS_URL="+gw.NATS)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

var approvalIDRe = regexp.MustCompile(`apr-[0-9a-f]{16}`)

// queryAs runs sql (with params) through the gateway with the standard Go client.
func queryAs(t *testing.T, token, sql string, params ...bigquery.QueryParameter) ([][]string, error) {
	t.Helper()
	c := goClientWithToken(t, token)
	q := c.Query(sql)
	q.Parameters = params
	it, err := q.Read(t.Context())
	if err != nil {
		return nil, err
	}
	return readAll(t, it), nil
}

// denied asserts err is a 403 from the gateway with reason and returns its message.
func denied(t *testing.T, err error, reason string) string {
	t.Helper()
	var ge *googleapi.Error
	if !errors.As(err, &ge) || ge.Code != http.StatusForbidden {
		t.Fatalf("want 403 %s, got %v", reason, err)
	}
	if len(ge.Errors) == 0 || ge.Errors[0].Reason != "accessDenied" {
		t.Fatalf("want accessDenied, got %+v", ge)
	}
	if got := ge.Header.Get("x-jitgate-deny-reason"); got != reason {
		t.Fatalf("deny reason %q, want %q (%s)", got, reason, ge.Message)
	}
	return ge.Message
}

func approvalID(t *testing.T, msg string) string {
	t.Helper()
	id := approvalIDRe.FindString(msg)
	if id == "" {
		t.Fatalf("no approval id in %q", msg)
	}
	return id
}

const approvalSQL = "SELECT id, name FROM `jitgate-demo.crm.customers` WHERE id <= 3 ORDER BY id"

func TestApprovalRejectMode(t *testing.T) {
	withApprovalPolicies(t)
	agentA := tokenFor(t, "reject-agent-a", "approval-reject")
	agentB := tokenFor(t, "reject-agent-b", "approval-reject")
	dana := tokenFor(t, "dana-approver")
	outsider := tokenFor(t, "mallory", "analysts")
	selfApprover := tokenFor(t, "oncall-agent", "approval-reject", "e2e-oncall")

	watched := watchApprovals(t)

	_, err := queryAs(t, agentA, approvalSQL)
	msg := denied(t, err, approvals.ReasonRequired)
	id := approvalID(t, msg)
	waitFor(t, "jitgate approvals watch to print "+id, func() bool {
		out := watched()
		return strings.Contains(out, "created   "+id) && strings.Contains(out, "approve: jitgate approve "+id)
	})
	for _, want := range []string{"jitgate approve " + id, "e2e-approvers", "reject-agent-a", "approvals-reject@", "every-query"} {
		if !strings.Contains(msg, want) {
			t.Errorf("403 message %q lacks %q", msg, want)
		}
	}
	t.Logf("agent saw: %s", msg)

	// The same call again: the same pending approval, not a new one.
	_, err = queryAs(t, agentA, approvalSQL)
	if got := approvalID(t, denied(t, err, approvals.ReasonRequired)); got != id {
		t.Fatalf("retry before approval got a new approval %s, want %s", got, id)
	}

	// The approver sees it in the list; an outsider does not and cannot decide it.
	if out, err := cli(t, dana, "approvals", "list"); err != nil || !strings.Contains(out, id) || !strings.Contains(out, "reject-agent-a") {
		t.Fatalf("approvals list: %v\n%s", err, out)
	}
	if out, err := cli(t, outsider, "approvals", "list"); err != nil || strings.Contains(out, id) {
		t.Fatalf("an outsider's list shows %s: %v\n%s", id, err, out)
	}
	if out, err := cli(t, outsider, "approve", id); err == nil || !strings.Contains(out, "not an approver") {
		t.Fatalf("approval by a non-member: %v\n%s", err, out)
	}

	// The webhook got the generic payload of the new approval.
	ev := webhookEvent(t, id)
	if ev.Type != approvals.EventCreated || ev.Approval.Agent.ID != "reject-agent-a" || ev.Approval.Binding.SQL != approvalSQL ||
		ev.ApproveCommand != "jitgate approve "+id {
		t.Fatalf("webhook event %+v", ev)
	}

	// Approve with the CLI; the retry runs, once.
	if out, err := cli(t, dana, "approve", id, "--reason", "e2e"); err != nil || !strings.Contains(out, "approved "+id) {
		t.Fatalf("approve: %v\n%s", err, out)
	}
	rows, err := queryAs(t, agentA, approvalSQL)
	if err != nil || len(rows) != 3 || rows[0][1] != "Ada Lovelace" {
		t.Fatalf("approved query: %v %v", rows, err)
	}
	_, err = queryAs(t, agentA, approvalSQL)
	if again := approvalID(t, denied(t, err, approvals.ReasonRequired)); again == id {
		t.Fatal("a single-use approval let a second query through (or was offered again)")
	}

	// Another agent with the same SQL, changed SQL, changed parameters: new approvals.
	_, err = queryAs(t, agentB, approvalSQL)
	if other := approvalID(t, denied(t, err, approvals.ReasonRequired)); other == id {
		t.Fatal("another agent's query used agent A's approval")
	}
	const paramSQL = "SELECT id, name FROM `jitgate-demo.crm.customers` WHERE id = @id"
	_, err = queryAs(t, agentA, paramSQL, bigquery.QueryParameter{Name: "id", Value: 1})
	p1 := approvalID(t, denied(t, err, approvals.ReasonRequired))
	if out, err := cli(t, dana, "approve", p1); err != nil {
		t.Fatalf("approve %s: %v\n%s", p1, err, out)
	}
	_, err = queryAs(t, agentA, paramSQL, bigquery.QueryParameter{Name: "id", Value: 2})
	if p2 := approvalID(t, denied(t, err, approvals.ReasonRequired)); p2 == p1 {
		t.Fatal("an approval for id=1 covered id=2")
	}
	if rows, err := queryAs(t, agentA, paramSQL, bigquery.QueryParameter{Name: "id", Value: 1}); err != nil || len(rows) != 1 {
		t.Fatalf("approved parameterised query: %v %v", rows, err)
	}

	// Self-approval is refused even for a member of the approver group.
	_, err = queryAs(t, selfApprover, "SELECT 1 AS x FROM `jitgate-demo.crm.customers` LIMIT 1")
	own := approvalID(t, denied(t, err, approvals.ReasonRequired))
	if out, err := cli(t, selfApprover, "approve", own); err == nil || !strings.Contains(out, "own request") {
		t.Fatalf("self-approval: %v\n%s", err, out)
	}

	// Every decision on an approval is in the audit trail, and the chain verifies.
	recs := auditRecords(t)
	var decided []string
	allowedWithApproval := false
	for _, r := range recs {
		if r.Kind == audit.KindApproval {
			decided = append(decided, r.ApprovalID+"/"+r.Decision+"/"+r.Approver)
		}
		if r.Kind == audit.KindDecision && r.ApprovalID == id && r.Decision == "allow" {
			allowedWithApproval = r.Approver == "dana-approver" && r.Agent.ID == "reject-agent-a"
		}
	}
	if !allowedWithApproval {
		t.Errorf("no audit record of the allowed call naming approval %s and its approver", id)
	}
	for _, want := range []string{id + "/approved/dana-approver", p1 + "/approved/dana-approver"} {
		if !slices.Contains(decided, want) {
			t.Errorf("audit approval records %v lack %s", decided, want)
		}
	}
	if out, err := cli(t, "", "audit", "verify", "--nats-url", gw.NATS); err != nil {
		t.Fatalf("audit verify: %v\n%s", err, out)
	}

	// The control plane's metrics count them.
	resp, err := http.Get(gw.API + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{`jitgate_approvals_decided_total{outcome="approved"}`, "jitgate_approvals_pending ",
		"jitgate_approval_decision_seconds_count", `jitgate_approval_webhook_deliveries_total{result="ok",webhook="e2e"}`,
		"jitgate_approvals_consumed_total", "jitgate_audit_append_duration_seconds_count"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func auditRecords(t *testing.T) []audit.Record {
	t.Helper()
	out, err := cli(t, "", "audit", "export", "--format", "jsonl", "--nats-url", gw.NATS)
	if err != nil {
		t.Fatalf("audit export: %v\n%s", err, out)
	}
	var recs []audit.Record
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var r audit.Record
		if json.Unmarshal(sc.Bytes(), &r) == nil && r.Kind != "" {
			recs = append(recs, r)
		}
	}
	return recs
}

// webhookEvents waits until the webhook receiver (configured in jitgated's config by
// TestMain, approvals.webhooks) got the creation event of approval id.
func webhookEvent(t *testing.T, id string) approvals.Event {
	t.Helper()
	var found approvals.Event
	waitFor(t, "the webhook to receive "+id, func() bool {
		webhookMu.Lock()
		defer webhookMu.Unlock()
		for _, ev := range webhookEvents {
			if ev.Approval != nil && ev.Approval.ID == id {
				found = ev
				return true
			}
		}
		return false
	})
	return found
}

func TestApprovalHoldMode(t *testing.T) {
	withApprovalPolicies(t)
	holder := tokenFor(t, "hold-agent", "approval-hold")
	dana := tokenFor(t, "dana-approver")

	type result struct {
		rows [][]string
		err  error
		took time.Duration
	}
	start := func(sql string) chan result {
		ch := make(chan result, 1)
		go func() {
			t0 := time.Now()
			rows, err := queryAs(t, holder, sql)
			ch <- result{rows, err, time.Since(t0)}
		}()
		return ch
	}
	pending := func(sql string) string {
		var id string
		waitFor(t, "the held query's approval", func() bool {
			out, err := cli(t, dana, "approvals", "list", "--json")
			if err != nil {
				return false
			}
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				var a approvals.Approval
				if json.Unmarshal([]byte(line), &a) == nil && a.Agent.ID == "hold-agent" && a.Binding.SQL == sql {
					id = a.ID
					return true
				}
			}
			return false
		})
		return id
	}

	// Approved while it waits, after longer than the filter's default 2s callout timeout:
	// one jobs.query request, answered with rows (no 503 and client retry in between).
	sql := "SELECT id FROM `jitgate-demo.crm.customers` WHERE id = 7"
	counter := &statusCounter{base: agentSaw}
	hc := &http.Client{Transport: &oauth2.Transport{Source: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: holder}), Base: counter}}
	c, err := bigquery.NewClient(t.Context(), project, option.WithEndpoint(gw.Gateway+"/bigquery/v2/"), option.WithHTTPClient(hc))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	res := make(chan result, 1)
	go func() {
		t0 := time.Now()
		var rows [][]string
		it, err := c.Query(sql).Read(t.Context())
		if err == nil {
			rows = readAll(t, it)
		}
		res <- result{rows, err, time.Since(t0)}
	}()
	id := pending(sql)
	time.Sleep(3 * time.Second)
	if out, err := cli(t, dana, "approve", id); err != nil {
		t.Fatalf("approve: %v\n%s", err, out)
	}
	r := <-res
	if r.err != nil || len(r.rows) != 1 || r.rows[0][0] != "7" {
		t.Fatalf("held query after approval: %v %v", r.rows, r.err)
	}
	if got := counter.queries(); len(got) != 1 || got[0] != http.StatusOK {
		t.Fatalf("jobs.query statuses the agent saw: %v, want one 200", got)
	}
	t.Logf("held query returned rows after %s (approved after ~3s)", r.took)

	// Denied while it waits: 403 with the approver's reason.
	sql = "SELECT id FROM `jitgate-demo.crm.customers` WHERE id = 8"
	res = start(sql)
	id = pending(sql)
	if out, err := cli(t, dana, "deny", id, "--reason", "not today"); err != nil {
		t.Fatalf("deny: %v\n%s", err, out)
	}
	r = <-res
	if msg := denied(t, r.err, approvals.ReasonDenied); !strings.Contains(msg, "not today") || !strings.Contains(msg, id) {
		t.Fatalf("denied held query: %q", msg)
	}

	// Nobody decides: 403 naming the hold timeout.
	sql = "SELECT id FROM `jitgate-demo.crm.customers` WHERE id = 9"
	r = <-start(sql)
	if msg := denied(t, r.err, approvals.ReasonTimeout); !strings.Contains(msg, "hold timeout of 8s") {
		t.Fatalf("timed-out held query: %q", msg)
	}
	t.Logf("undecided held query denied after %s", r.took)
}

// TestApprovalRoundTrip measures approve command -> held query released (logged, never
// asserted).
func TestApprovalRoundTrip(t *testing.T) {
	withApprovalPolicies(t)
	holder := tokenFor(t, "hold-bench-agent", "approval-hold")
	dana := tokenFor(t, "dana-approver")
	const runs = 30
	var took []time.Duration
	for i := range runs {
		sql := fmt.Sprintf("SELECT id FROM `jitgate-demo.crm.customers` WHERE id = %d", i%12+1)
		done := make(chan error, 1)
		var released time.Time
		go func() {
			_, err := queryAs(t, holder, sql)
			released = time.Now()
			done <- err
		}()
		var id string
		waitFor(t, "pending approval", func() bool {
			out, err := cli(t, dana, "approvals", "list", "--json")
			if err != nil {
				return false
			}
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				var a approvals.Approval
				if json.Unmarshal([]byte(line), &a) == nil && a.Agent.ID == "hold-bench-agent" && a.Binding.SQL == sql {
					id = a.ID
					return true
				}
			}
			return false
		})
		t0 := time.Now()
		if out, err := cli(t, dana, "approve", id); err != nil {
			t.Fatalf("approve: %v\n%s", err, out)
		}
		if err := <-done; err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		took = append(took, released.Sub(t0))
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	t.Logf("approval round trip (jitgate approve started -> held query's rows read), %d runs: p50 %s, p99 %s, min %s, max %s",
		runs, took[runs/2], took[(runs*99)/100], took[0], took[runs-1])
}

func TestApprovalSurvivesControlPlaneRestart(t *testing.T) {
	withApprovalPolicies(t)
	agent := tokenFor(t, "restart-agent", "approval-reject")
	dana := tokenFor(t, "dana-approver")
	const sql = "SELECT name FROM `jitgate-demo.crm.customers` WHERE id = 2"
	_, err := queryAs(t, agent, sql)
	id := approvalID(t, denied(t, err, approvals.ReasonRequired))

	gw.StopJitgated()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := gw.StartJitgated(ctx); err != nil {
		t.Fatal(err)
	}
	if out, err := cli(t, dana, "approve", id); err != nil {
		t.Fatalf("approve after restart: %v\n%s", err, out)
	}
	var rows [][]string
	waitFor(t, "the approved query after the restart", func() bool {
		rows, err = queryAs(t, agent, sql)
		return err == nil
	})
	if len(rows) != 1 || rows[0][0] != "Grace Hopper" {
		t.Fatalf("rows %v", rows)
	}
}

// statusCounter records the status of every jobs.query POST an agent's client sent.
type statusCounter struct {
	base http.RoundTripper
	mu   sync.Mutex
	seen []int
}

func (c *statusCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.base.RoundTrip(req)
	if req.Method == http.MethodPost && strings.HasSuffix(req.URL.Path, "/queries") {
		c.mu.Lock()
		if err != nil {
			c.seen = append(c.seen, 0)
		} else {
			c.seen = append(c.seen, resp.StatusCode)
		}
		c.mu.Unlock()
	}
	return resp, err
}

func (c *statusCounter) queries() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int(nil), c.seen...)
}

// watchApprovals runs `jitgate approvals watch` (NATS) until the test ends and returns a
// function reading what it printed so far.
func watchApprovals(t *testing.T) func() string {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	cmd := exec.CommandContext(ctx, cliBinary(), "approvals", "watch", "--nats-url", gw.NATS)
	var mu sync.Mutex
	var out strings.Builder
	cmd.Stdout = writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return out.Write(p)
	})
	var errOut strings.Builder
	cmd.Stderr = writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return errOut.Write(p)
	})
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	// It subscribes to new events only: wait until it says it is watching.
	waitFor(t, "jitgate approvals watch to start", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.Contains(errOut.String(), "watching")
	})
	return func() string {
		mu.Lock()
		defer mu.Unlock()
		return out.String()
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestApprovalHeldCallerGone: an agent whose client gives up while its query is held
// (here: the Go client's context deadline) consumes nothing. Envoy does not cancel the
// filter's pending authorize callout when the agent's stream ends (measured: the callout
// stayed active until the hold timeout), so the filter tells jitgated
// (/v1/authorize/abandon); jitgated stops waiting and records the call as cancelled.
// Approved afterwards, the approval still has its use, and the same query from the same
// agent then runs once.
func TestApprovalHeldCallerGone(t *testing.T) {
	withApprovalPolicies(t)
	holder := tokenFor(t, "departing-agent", "approval-hold")
	dana := tokenFor(t, "dana-approver")
	const sql = "SELECT id FROM `jitgate-demo.crm.customers` WHERE id = 11"

	c := goClientWithToken(t, holder)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	_, err := c.Query(sql).Read(ctx)
	cancel()
	gaveUp := time.Now()
	if err == nil {
		t.Fatal("the held query returned before anyone approved it")
	}

	// jitgated heard of the hang-up (before the 8s hold timeout): a cancelled decision
	// naming the approval, recorded in the audit trail.
	var cancelled audit.Record
	waitFor(t, "the held call's cancelled decision in the audit trail", func() bool {
		for _, r := range auditRecords(t) {
			if r.Kind == audit.KindDecision && r.Agent.ID == "departing-agent" && r.SQL == sql {
				cancelled = r
				return true
			}
		}
		return false
	})
	if cancelled.Decision != "deny" || cancelled.Reason != "cancelled" || cancelled.Step != approvals.StepName ||
		cancelled.ApprovalID == "" || cancelled.CredentialID != "" {
		t.Fatalf("decision record of the held call whose client gave up: %+v", cancelled)
	}
	t.Logf("jitgated recorded the hang-up %s after the client gave up: %s %s (approval %s)",
		cancelled.Time.Sub(gaveUp).Round(time.Millisecond), cancelled.Decision, cancelled.Reason, cancelled.ApprovalID)
	id := cancelled.ApprovalID

	approval := func() approvals.Approval {
		t.Helper()
		out, err := cli(t, dana, "approvals", "list", "--all", "--json")
		if err != nil {
			t.Fatalf("approvals list: %v\n%s", err, out)
		}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var a approvals.Approval
			if json.Unmarshal([]byte(line), &a) == nil && a.ID == id {
				return a
			}
		}
		t.Fatalf("approval %s not listed:\n%s", id, out)
		return approvals.Approval{}
	}
	if a := approval(); a.State != approvals.StatePending {
		t.Fatalf("approval of the departed call: %+v", a)
	}
	if out, err := cli(t, dana, "approve", id); err != nil {
		t.Fatalf("approve: %v\n%s", err, out)
	}
	if a := approval(); a.State != approvals.StateApproved || a.UsesLeft != 1 {
		t.Fatalf("approved after the caller left: state %s, %d uses left; want approved with its one use", a.State, a.UsesLeft)
	}
	rows, err := queryAs(t, holder, sql)
	if err != nil || len(rows) != 1 || rows[0][0] != "11" {
		t.Fatalf("the same query after the approval: %v %v", rows, err)
	}
	if a := approval(); a.State != approvals.StateUsed || a.UsesLeft != 0 {
		t.Fatalf("after the query ran: state %s, %d uses left", a.State, a.UsesLeft)
	}
}
