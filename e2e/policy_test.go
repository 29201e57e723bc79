package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jitgate/jitgate/e2e/stack"
)

// These tests run with tools/demo/policies (copied, so they can edit it): analysts may
// SELECT from jitgate-demo.crm, nothing else.

const jobsQueryPath = "/bigquery/v2/projects/jitgate-demo/queries"

func policyPath() string { return filepath.Join(policiesDir, "demo-analysts.yaml") }

// writePolicy replaces the policy file atomically, as an editor or a git checkout would.
func writePolicy(t *testing.T, content string) {
	t.Helper()
	tmp := policyPath() + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, policyPath()); err != nil {
		t.Fatal(err)
	}
}

func readPolicy(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(policyPath())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// withCustomersDenied is the demo policy plus a table deny on crm.customers.
func withCustomersDenied(t *testing.T, original string) string {
	t.Helper()
	const anchor = "      allow: [jitgate-demo.crm]\n"
	if !strings.Contains(original, anchor) {
		t.Fatalf("demo policy changed shape; update the test's anchor %q", anchor)
	}
	return strings.Replace(original, anchor, anchor+"    tables:\n      deny: [jitgate-demo.crm.customers]\n", 1)
}

type cpStatus struct {
	Policies struct {
		Version   string   `json:"version"`
		Policies  []string `json:"policies"`
		LastError string   `json:"lastError"`
		Failures  uint64   `json:"failures"`
	} `json:"policies"`
	XDS struct {
		PolicyVersion string `json:"policyVersion"`
	} `json:"xds"`
}

func status(t *testing.T) cpStatus {
	t.Helper()
	resp, err := http.Get(gw.API + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s cpStatus
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// query runs customersSQL through the gateway with jobs.query and returns the status and
// the error message (empty on success).
func query(t *testing.T, token, sql string) (int, string) {
	t.Helper()
	body := fmt.Sprintf(`{"query":%q,"useLegacySql":false}`, sql)
	resp, b := rawCallAs(t, "Bearer "+token, "POST", jobsQueryPath, []byte(body), http.Header{"Content-Type": {"application/json"}})
	if resp.StatusCode == 200 {
		return 200, ""
	}
	var e bqError
	_ = json.Unmarshal(b, &e)
	return resp.StatusCode, e.Error.Message
}

func TestPolicyDeniesWhatItDoesNotGrant(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	intern, err := gw.Token(ctx, "intern-agent", "interns")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, token, sql, want string
	}{
		{"DML is not a granted statement kind", agentToken, "DELETE FROM `jitgate-demo.crm.orders` WHERE TRUE", "statement_kind_not_allowed"},
		{"an agent no policy names", intern, customersSQL, "default_deny"},
		{"other users' query history", agentToken, "SELECT query FROM `jitgate-demo`.`region-us`.INFORMATION_SCHEMA.JOBS_BY_PROJECT", "no-jobs-history"},
		{"legacy SQL", agentToken, "#legacySQL\nSELECT id FROM [jitgate-demo:crm.customers]", "legacy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := upstreamRequests(t)
			code, msg := query(t, tc.token, tc.sql)
			if code != 403 || !strings.Contains(msg, tc.want) {
				t.Fatalf("status %d message %q, want 403 mentioning %q", code, msg, tc.want)
			}
			if after := upstreamRequests(t); after != before {
				t.Fatalf("a denied query reached the upstream (%d -> %d)", before, after)
			}
		})
	}
	if code, msg := query(t, agentToken, customersSQL); code != 200 {
		t.Fatalf("the granted query was refused: %d %s", code, msg)
	}
}

func TestPolicyEditIsEnforcedEverywhereWithoutRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	original := readPolicy(t)
	t.Cleanup(func() {
		writePolicy(t, original)
		eventually(t, 10*time.Second, "the original policy is back", func() bool {
			code, _ := query(t, agentToken, customersSQL)
			return code == 200
		})
	})
	// A second gateway replica on the same control plane.
	secondAdmin, err := gw.StartExtraEnvoy(ctx, "jitgate-e2e-replica")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.StopExtraEnvoy("jitgate-e2e-replica") })
	v0 := status(t).Policies.Version
	if code, msg := query(t, agentToken, customersSQL); code != 200 {
		t.Fatalf("before the edit: %d %s", code, msg)
	}

	writePolicy(t, withCustomersDenied(t, original))
	var msg string
	eventually(t, 10*time.Second, "the edited policy denies crm.customers", func() bool {
		var code int
		code, msg = query(t, agentToken, customersSQL)
		return code == 403
	})
	st := status(t)
	if st.Policies.Version == v0 || len(st.Policies.Policies) != 1 {
		t.Fatalf("status after the edit: %+v", st.Policies)
	}
	if !strings.Contains(msg, st.Policies.Policies[0]) || !strings.Contains(msg, "table_denied") {
		t.Fatalf("denial %q does not name the new policy version %s and its rule", msg, st.Policies.Policies[0])
	}
	// Every connected Envoy has the new policy version in its filter configuration.
	for _, admin := range []string{gw.Admin, secondAdmin} {
		eventually(t, 10*time.Second, admin+" has the new policy version", func() bool {
			dump, err := stack.ConfigDump(ctx, admin)
			return err == nil && strings.Contains(dump, `\"policyVersion\":\"`+st.Policies.Version+`\"`)
		})
	}

	// An invalid edit keeps the last good version deciding, and says where the error is.
	writePolicy(t, strings.Replace(original, "  where:\n", "  wher:\n", 1))
	eventually(t, 10*time.Second, "the status reports the invalid edit", func() bool {
		return strings.Contains(status(t).Policies.LastError, "demo-analysts.yaml:")
	})
	if got := status(t).Policies.Version; got != st.Policies.Version {
		t.Fatalf("an invalid edit replaced the live version: %s -> %s", st.Policies.Version, got)
	}
	if code, m := query(t, agentToken, customersSQL); code != 403 || !strings.Contains(m, st.Policies.Policies[0]) {
		t.Fatalf("after the invalid edit: %d %q, want the last good version still denying", code, m)
	}
	t.Logf("invalid edit reported as: %s", status(t).Policies.LastError)
}

// TestPolicyPropagationTime measures, through real Envoy, the time from writing a policy
// file to the gateway deciding by it, over 20 edits. It reports; it does not assert times.
func TestPolicyPropagationTime(t *testing.T) {
	original := readPolicy(t)
	denied := withCustomersDenied(t, original)
	t.Cleanup(func() { writePolicy(t, original) })
	var took []time.Duration
	for i := 0; i < 20; i++ {
		content, want := denied, 403
		if i%2 == 1 {
			content, want = original, 200
		}
		start := time.Now()
		writePolicy(t, content)
		eventually(t, 10*time.Second, fmt.Sprintf("edit %d enforced", i), func() bool {
			code, _ := query(t, agentToken, customersSQL)
			return code == want
		})
		took = append(took, time.Since(start))
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	t.Logf("policy edit -> enforced at the gateway, 20 edits: median %s, worst %s", took[len(took)/2].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond))
}
