package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/bigquery"
	"golang.org/x/oauth2"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"

	"github.com/jitgate/jitgate/e2e/sqlcorpus"
	"github.com/jitgate/jitgate/e2e/stack"
	"github.com/jitgate/jitgate/filter/bqapi"
)

// corpusPolicyFiles are where the corpus policy set lives while TestSQLCorpus runs.
func corpusPolicyFiles() []string {
	return []string{filepath.Join(policiesDir, "sql-corpus.yaml"), filepath.Join(policiesDir, "sql-corpus-legacy.yaml")}
}

// corpusPolicies are the policies of the corpus set (name prefixes of status' list).
var corpusPolicies = []string{"sql-corpus@", "sql-corpus-legacy@", "sql-corpus-legacy-bounded@", "sql-corpus-legacy-masked@"}

// withCorpus seeds the corpus fixture into the emulator and adds the corpus policy set
// to the gateway's policy directory until the test ends.
func withCorpus(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	direct, err := bigquery.NewClient(ctx, project, option.WithEndpoint(gw.Emulator+"/bigquery/v2/"), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	if err := sqlcorpus.Seed(ctx, direct); err != nil {
		t.Fatal(err)
	}
	files, err := sqlcorpus.PolicyFiles()
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(policiesDir, name), []byte(scoped(string(b))), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, f := range corpusPolicyFiles() {
			_ = os.Remove(f)
		}
		eventually(t, 10*time.Second, "the corpus policy is unloaded", func() bool { return len(status(t).Policies.Policies) == 1 })
	})
	var version string
	eventually(t, 10*time.Second, "the corpus policy is live in jitgated and its xDS snapshot", func() bool {
		st := status(t)
		live := 0
		for _, want := range corpusPolicies {
			for _, p := range st.Policies.Policies {
				if strings.HasPrefix(p, want) {
					live++
					break
				}
			}
		}
		if live == len(corpusPolicies) && st.XDS.PolicyVersion == st.Policies.Version {
			version = st.Policies.Version
			return true
		}
		return false
	})
	// The filter checks every allow against the bundle it holds: wait until Envoy has it.
	eventually(t, 10*time.Second, "Envoy holds the corpus bundle", func() bool {
		dump, err := stack.ConfigDump(context.Background(), gw.Admin)
		return err == nil && strings.Contains(dump, `\"policyVersion\":\"`+version+`\"`)
	})
}

// corpusOutcome is what the agent saw.
type corpusOutcome struct {
	denied   bool
	reason   string // x-jitgate-deny-reason
	message  string
	status   int
	upstream error // an error that did not come from the gateway (the emulator's)
	// analysis is the x-jitgate-analysis header of the case's responses ("" if none).
	analysis string
}

// analysisHeaders records the x-jitgate-analysis header of every response an agent's
// client receives (the Go client does not expose headers of successful calls).
type analysisHeaders struct {
	base http.RoundTripper
	mu   sync.Mutex
	seen []string
}

func (a *analysisHeaders) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := a.base.RoundTrip(req)
	if err == nil {
		if v := resp.Header.Get("x-jitgate-analysis"); v != "" {
			a.mu.Lock()
			a.seen = append(a.seen, v)
			a.mu.Unlock()
		}
	}
	return resp, err
}

// take returns the headers seen since the last call, de-duplicated, and forgets them.
func (a *analysisHeaders) take() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, v := range a.seen {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	a.seen = nil
	return strings.Join(out, " | ")
}

// corpusAgent is one agent of the corpus (the case's groups): its token and Go client.
type corpusAgent struct {
	token    string
	client   *bigquery.Client
	analysis *analysisHeaders
}

// TestSQLCorpus runs every corpus query through real Envoy and jitgated with the
// standard Go client (jobs.query, or jobs.insert where the case says so; the one query
// the Go client cannot send, useLegacySql absent, as a raw jobs.query), as an agent in the
// case's groups, and checks the gateway's decision, that a denial is a 403 whose
// x-jitgate-deny-reason is the rule and whose message names it, and that an allowed query
// was forwarded (the Tap saw it) — an allowed legacy query with x-jitgate-analysis "not
// analysed: legacy SQL", a standard one without.
func TestSQLCorpus(t *testing.T) {
	cases, err := sqlcorpus.Load()
	if err != nil {
		t.Fatal(err)
	}
	withCorpus(t)
	ctx := context.Background()
	agents := map[string]*corpusAgent{}
	for _, c := range cases {
		if agents[c.GroupKey()] != nil {
			continue
		}
		token, err := gw.Token(ctx, "corpus-agent", c.Groups...)
		if err != nil {
			t.Fatal(err)
		}
		rec := &analysisHeaders{base: agentSaw}
		hc := &http.Client{Transport: &oauth2.Transport{Source: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: token}), Base: rec}}
		client, err := bigquery.NewClient(ctx, project, option.WithEndpoint(gw.Gateway+"/bigquery/v2/"), option.WithHTTPClient(hc))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { client.Close() })
		agents[c.GroupKey()] = &corpusAgent{token: token, client: client, analysis: rec}
	}
	tally := sqlcorpus.Tallies{}
	upstreamFailures := 0
	for i, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			agent := agents[c.GroupKey()]
			agent.analysis.take()
			before := upstreamRequests(t)
			var out corpusOutcome
			if c.Raw || c.UseLegacySQL == "absent" {
				out = rawCorpusQuery(t, agent.token, c)
			} else {
				out = goCorpusQuery(t, agent.client, c, i)
				if out.analysis == "" {
					out.analysis = agent.analysis.take()
				}
			}
			ruleName := ""
			if out.denied && c.RuleName != "" && strings.Contains(out.message, "("+c.RuleName+")") {
				ruleName = c.RuleName
			}
			tally.Add(c, !out.denied, out.reason, ruleName)
			if out.denied == c.Allowed() {
				t.Fatalf("denied = %v (%d %s: %s), want %s", out.denied, out.status, out.reason, out.message, c.Expect)
			}
			if !out.denied {
				if upstreamRequests(t) == before {
					t.Errorf("allowed, but nothing reached upstream")
				}
				want := ""
				if c.Legacy() {
					want = "not analysed: legacy SQL"
				}
				if out.analysis != want {
					t.Errorf("x-jitgate-analysis %q, want %q", out.analysis, want)
				}
				if out.upstream != nil {
					upstreamFailures++
					t.Logf("allowed by the gateway; the emulator failed it: %v", out.upstream)
				}
				return
			}
			if out.status != http.StatusForbidden || out.reason != c.Rule {
				t.Errorf("denial %d %q, want 403 %q; message: %s", out.status, out.reason, c.Rule, out.message)
			}
			if name := c.RuleName; name != "" && !strings.Contains(out.message, name) {
				t.Errorf("message %q does not name rule %s", out.message, name)
			}
			if !strings.Contains(out.message, c.Rule) {
				t.Errorf("message %q does not name rule code %s", out.message, c.Rule)
			}
		})
	}
	t.Logf("SQL corpus through Envoy (Go client):\n%s(%d allowed queries the emulator itself could not run: it runs legacy SQL as GoogleSQL)", tally, upstreamFailures)
}

func goCorpusQuery(t *testing.T, agent *bigquery.Client, c sqlcorpus.Case, i int) corpusOutcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	q := agent.Query(c.SQL)
	q.UseLegacySQL = c.UseLegacySQL == "true"
	if c.DefaultDataset != "" {
		q.DefaultProjectID, q.DefaultDatasetID = project, c.DefaultDataset
	}
	params, err := c.GoParams()
	if err != nil {
		t.Fatal(err)
	}
	q.Parameters = params
	q.CreateSession = c.CreateSession
	if c.SessionID != "" {
		q.ConnectionProperties = []*bigquery.ConnectionProperty{{Key: "session_id", Value: c.SessionID}}
	}
	if c.API == "jobs.insert" {
		q.JobID = fmt.Sprintf("corpus-%d-%d", i, time.Now().UnixNano()) // a job id makes the client use jobs.insert
	}
	it, err := q.Read(ctx)
	for err == nil {
		var row []bigquery.Value
		err = it.Next(&row)
		if errors.Is(err, iterator.Done) {
			return corpusOutcome{}
		}
	}
	var gerr *googleapi.Error
	if errors.As(err, &gerr) {
		if reason := gerr.Header.Get("x-jitgate-deny-reason"); reason != "" {
			return corpusOutcome{denied: true, reason: reason, message: gerr.Message, status: gerr.Code}
		}
		return corpusOutcome{upstream: err, analysis: gerr.Header.Get("x-jitgate-analysis")}
	}
	return corpusOutcome{upstream: err}
}

// rawCorpusQuery sends the case's jobs.query body as is (the Go client always sets
// useLegacySql and drops connectionProperties from jobs.query).
func rawCorpusQuery(t *testing.T, token string, c sqlcorpus.Case) corpusOutcome {
	t.Helper()
	body, err := c.Body()
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, gw.Gateway+"/bigquery/v2/projects/"+project+"/queries", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if reason := resp.Header.Get("x-jitgate-deny-reason"); reason != "" {
		var doc bqapi.ErrorDocument
		_ = json.Unmarshal(b, &doc)
		return corpusOutcome{denied: true, reason: reason, message: doc.Error.Message, status: resp.StatusCode}
	}
	analysis := resp.Header.Get("x-jitgate-analysis")
	if resp.StatusCode != http.StatusOK {
		return corpusOutcome{upstream: fmt.Errorf("%d %s", resp.StatusCode, b), analysis: analysis}
	}
	return corpusOutcome{analysis: analysis}
}

// TestJobsListAllUsers: listing the agent's own jobs is allowed; every user's jobs
// (allUsers=true, which exposes other agents' SQL) is denied unless a policy says
// what.listAllUsersJobs.
func TestJobsListAllUsers(t *testing.T) {
	withCorpus(t)
	ctx := context.Background()
	token, err := gw.Token(ctx, "corpus-agent", sqlcorpus.Group)
	if err != nil {
		t.Fatal(err)
	}
	agent := goClientWithToken(t, token)
	it := agent.Jobs(ctx)
	if _, err := it.Next(); err != nil && !errors.Is(err, iterator.Done) {
		t.Fatalf("own jobs: %v", err)
	}
	it = agent.Jobs(ctx)
	it.AllUsers = true
	_, err = it.Next()
	var gerr *googleapi.Error
	if !errors.As(err, &gerr) || gerr.Code != 403 || gerr.Header.Get("x-jitgate-deny-reason") != "all_users_not_allowed" ||
		!strings.Contains(gerr.Message, "what.listAllUsersJobs") {
		t.Fatalf("allUsers=true: %v, want 403 all_users_not_allowed naming what.listAllUsersJobs", err)
	}
	t.Logf("denied: %s", gerr.Message)
}
