// Package sqlcorpus owns the SQL corpus: queries an agent might send (aliases, CTEs,
// views, wildcards, scripts, dialects, everything BIGQUERY.md lists under "Bypasses to
// close"), each with the decision the gateway must reach under the corpus policy set, and
// the emulator fixture they run against. The control plane's unit table
// (controlplane/sqlanalysis) and the end-to-end test through real Envoy (e2e) both run
// it, so the two cannot drift.
package sqlcorpus

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"cloud.google.com/go/bigquery"
	"google.golang.org/api/googleapi"
	"gopkg.in/yaml.v3"

	"github.com/jitgate/jitgate/filter/bqapi"
)

// Project is the project every case runs in (the demo project).
const Project = "jitgate-demo"

// Group is the OIDC group the corpus policy grants; agents running the corpus need it.
// Cases with groups of their own run as an agent in those groups instead (the legacy-SQL
// policies of testdata/policies/sql-corpus-legacy.yaml).
const Group = "sql-corpus"

//go:embed testdata/sql_corpus.yaml testdata/policies/*.yaml
var files embed.FS

// Case is one query and its expected decision.
type Case struct {
	Name string   `yaml:"name"`
	Tags []string `yaml:"tags"`
	SQL  string   `yaml:"sql"`
	// DefaultDataset is a dataset of Project, or empty.
	DefaultDataset string  `yaml:"defaultDataset"`
	Params         []Param `yaml:"params"`
	// UseLegacySQL is "false" (default), "true" or "absent" (no field: legacy).
	UseLegacySQL string `yaml:"useLegacySql"`
	// API is jobs.query (default) or jobs.insert.
	API string `yaml:"api"`
	// CreateSession and SessionID (connectionProperties session_id) make it a session query.
	CreateSession bool   `yaml:"createSession"`
	SessionID     string `yaml:"sessionId"`
	// Groups are the OIDC groups of the agent that sends the query (default [Group]).
	Groups []string `yaml:"groups"`
	// Raw: the e2e test sends Body itself rather than through the Go client (which cannot
	// send every body: no useLegacySql, connectionProperties on jobs.query).
	Raw bool `yaml:"raw"`
	// Expect is allow or deny; Rule the decision's stable code; RuleName the policy's
	// named rule or field, when there is one.
	Expect   string `yaml:"expect"`
	Rule     string `yaml:"rule"`
	RuleName string `yaml:"ruleName"`
}

// Param is a query parameter: a scalar type or ARRAY<scalar>, and its value.
type Param struct {
	Name  string `yaml:"name"`
	Type  string `yaml:"type"`
	Value any    `yaml:"value"`
}

// Allowed says whether the case expects an allow.
func (c Case) Allowed() bool { return c.Expect == "allow" }

// Legacy says whether BigQuery reads the case as legacy SQL (the flag, its absence, or a
// #legacySQL prefix), as the filter decides it.
func (c Case) Legacy() bool {
	var use *bool
	switch c.UseLegacySQL {
	case "", "false":
		f := false
		use = &f
	case "true":
		t := true
		use = &t
	}
	return bqapi.LegacyDialect(c.SQL, use)
}

// GroupKey names the case's agent groups, for tallies per policy set.
func (c Case) GroupKey() string { return strings.Join(c.Groups, ",") }

// Load reads and checks the corpus.
func Load() ([]Case, error) {
	b, err := files.ReadFile("testdata/sql_corpus.yaml")
	if err != nil {
		return nil, err
	}
	var doc struct {
		Cases []Case `yaml:"cases"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("sql corpus: %w", err)
	}
	names := map[string]bool{}
	for i, c := range doc.Cases {
		switch {
		case c.Name == "" || names[c.Name]:
			return nil, fmt.Errorf("sql corpus case %d: missing or duplicate name %q", i, c.Name)
		case c.SQL == "":
			return nil, fmt.Errorf("sql corpus case %q: no sql", c.Name)
		case c.Expect != "allow" && c.Expect != "deny":
			return nil, fmt.Errorf("sql corpus case %q: expect %q (allow or deny)", c.Name, c.Expect)
		case c.Expect == "deny" && c.Rule == "":
			return nil, fmt.Errorf("sql corpus case %q: a denial needs its rule", c.Name)
		case c.API != "" && c.API != "jobs.query" && c.API != "jobs.insert":
			return nil, fmt.Errorf("sql corpus case %q: api %q", c.Name, c.API)
		}
		switch c.UseLegacySQL {
		case "", "false", "true", "absent":
		default:
			return nil, fmt.Errorf("sql corpus case %q: useLegacySql %q", c.Name, c.UseLegacySQL)
		}
		names[c.Name] = true
		if doc.Cases[i].API == "" {
			doc.Cases[i].API = "jobs.query"
		}
		if len(c.Groups) == 0 {
			doc.Cases[i].Groups = []string{Group}
		}
	}
	return doc.Cases, nil
}

// WritePolicies copies the corpus policy set into dir.
func WritePolicies(dir string) error {
	return fs.WalkDir(files, "testdata/policies", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := files.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, filepath.Base(path)), b, 0o644)
	})
}

// PolicyFiles returns the corpus policy set as (name, content) pairs.
func PolicyFiles() (map[string][]byte, error) {
	out := map[string][]byte{}
	err := fs.WalkDir(files, "testdata/policies", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := files.ReadFile(path)
		out[filepath.Base(path)] = b
		return err
	})
	return out, err
}

// Body is the jobs.query (QueryRequest) or jobs.insert (Job) body a client sends for c,
// as JSON: what the gateway decodes.
func (c Case) Body() ([]byte, error) {
	params, mode, err := c.wireParams()
	if err != nil {
		return nil, err
	}
	var legacy *bool
	switch c.UseLegacySQL {
	case "", "false":
		f := false
		legacy = &f
	case "true":
		t := true
		legacy = &t
	}
	var ds *bqapi.DatasetReference
	if c.DefaultDataset != "" {
		ds = &bqapi.DatasetReference{ProjectID: Project, DatasetID: c.DefaultDataset}
	}
	var props []bqapi.ConnectionProperty
	if c.SessionID != "" {
		props = []bqapi.ConnectionProperty{{Key: "session_id", Value: c.SessionID}}
	}
	if c.API == "jobs.insert" {
		return json.Marshal(bqapi.Job{Configuration: bqapi.JobConfiguration{Query: &bqapi.JobConfigurationQuery{
			Query: c.SQL, UseLegacySQL: legacy, DefaultDataset: ds, QueryParameters: params, ParameterMode: mode,
			CreateSession: c.CreateSession, ConnectionProperties: props}}})
	}
	return json.Marshal(bqapi.QueryRequest{Query: c.SQL, UseLegacySQL: legacy, DefaultDataset: ds, QueryParameters: params, ParameterMode: mode,
		CreateSession: c.CreateSession, ConnectionProperties: props})
}

// Spec decodes Body as the filter does.
func (c Case) Spec() (*bqapi.QuerySpec, error) {
	b, err := c.Body()
	if err != nil {
		return nil, err
	}
	spec, rej := bqapi.DecodeBody(map[string]bqapi.API{"jobs.query": bqapi.JobsQuery, "jobs.insert": bqapi.JobsInsert}[c.API], b)
	if rej != nil {
		return nil, fmt.Errorf("sql corpus case %q: the filter would reject the body: %s", c.Name, rej.Detail)
	}
	return spec, nil
}

func (c Case) wireParams() ([]bqapi.QueryParameter, string, error) {
	if len(c.Params) == 0 {
		return nil, "", nil
	}
	mode := "NAMED"
	var out []bqapi.QueryParameter
	for _, p := range c.Params {
		if p.Name == "" {
			mode = "POSITIONAL"
		}
		qp := bqapi.QueryParameter{Name: p.Name}
		if elem, ok := arrayElem(p.Type); ok {
			qp.ParameterType = &bqapi.QueryParameterType{Type: "ARRAY", ArrayType: &bqapi.QueryParameterType{Type: elem}}
			list, ok := p.Value.([]any)
			if !ok {
				return nil, "", fmt.Errorf("sql corpus case %q: parameter %s: an ARRAY needs a list value", c.Name, p.Name)
			}
			qp.ParameterValue = &bqapi.QueryParameterValue{ArrayValues: []bqapi.QueryParameterValue{}}
			for _, v := range list {
				s := fmt.Sprint(v)
				qp.ParameterValue.ArrayValues = append(qp.ParameterValue.ArrayValues, bqapi.QueryParameterValue{Value: &s})
			}
		} else {
			qp.ParameterType = &bqapi.QueryParameterType{Type: p.Type}
			s := fmt.Sprint(p.Value)
			qp.ParameterValue = &bqapi.QueryParameterValue{Value: &s}
		}
		out = append(out, qp)
	}
	return out, mode, nil
}

func arrayElem(t string) (string, bool) {
	if strings.HasPrefix(t, "ARRAY<") && strings.HasSuffix(t, ">") {
		return t[len("ARRAY<") : len(t)-1], true
	}
	return "", false
}

// GoParams are the parameters as cloud.google.com/go/bigquery takes them (the client
// infers each type from the Go value).
func (c Case) GoParams() ([]bigquery.QueryParameter, error) {
	var out []bigquery.QueryParameter
	for _, p := range c.Params {
		v, err := goValue(p.Type, p.Value)
		if err != nil {
			return nil, fmt.Errorf("sql corpus case %q: parameter %s: %w", c.Name, p.Name, err)
		}
		out = append(out, bigquery.QueryParameter{Name: p.Name, Value: v})
	}
	return out, nil
}

func goValue(t string, v any) (any, error) {
	if elem, ok := arrayElem(t); ok {
		list, ok := v.([]any)
		if !ok {
			return nil, errors.New("an ARRAY needs a list value")
		}
		switch elem {
		case "INT64":
			out := make([]int64, 0, len(list))
			for _, x := range list {
				n, err := strconv.ParseInt(fmt.Sprint(x), 10, 64)
				if err != nil {
					return nil, err
				}
				out = append(out, n)
			}
			return out, nil
		case "STRING":
			out := make([]string, 0, len(list))
			for _, x := range list {
				out = append(out, fmt.Sprint(x))
			}
			return out, nil
		}
		return nil, fmt.Errorf("type %s not supported by the corpus", t)
	}
	switch t {
	case "STRING":
		return fmt.Sprint(v), nil
	case "INT64":
		return strconv.ParseInt(fmt.Sprint(v), 10, 64)
	case "BOOL":
		return strconv.ParseBool(fmt.Sprint(v))
	}
	return nil, fmt.Errorf("type %s not supported by the corpus", t)
}

// Seed creates the corpus fixture in the emulator (idempotent): datasets hr, web, pub,
// scratch and finance next to the demo crm, the sharded and partitioned web tables, and
// views over an allowed and a denied table. client must talk to the emulator directly.
func Seed(ctx context.Context, client *bigquery.Client) error {
	for _, ds := range []string{"hr", "web", "pub", "scratch", "finance"} {
		if _, err := client.Dataset(ds).Metadata(ctx); err == nil {
			continue
		}
		if err := client.Dataset(ds).Create(ctx, &bigquery.DatasetMetadata{}); err != nil && !exists(err) {
			return fmt.Errorf("seed dataset %s: %w", ds, err)
		}
	}
	events := bigquery.Schema{{Name: "user_id", Type: bigquery.IntegerFieldType}, {Name: "url", Type: bigquery.StringFieldType}}
	tables := []struct {
		ds, name string
		md       *bigquery.TableMetadata
	}{
		{"hr", "people", &bigquery.TableMetadata{Schema: bigquery.Schema{
			{Name: "id", Type: bigquery.IntegerFieldType, Required: true}, {Name: "name", Type: bigquery.StringFieldType},
			{Name: "ssn", Type: bigquery.StringFieldType}, {Name: "salary", Type: bigquery.NumericFieldType}}}},
		{"web", "events_20251231", &bigquery.TableMetadata{Schema: events}},
		{"web", "events_20260101", &bigquery.TableMetadata{Schema: events}},
		{"web", "events_20260102", &bigquery.TableMetadata{Schema: events}},
		{"web", "pageviews", &bigquery.TableMetadata{Schema: bigquery.Schema{
			{Name: "day", Type: bigquery.DateFieldType}, {Name: "url", Type: bigquery.StringFieldType}},
			TimePartitioning: &bigquery.TimePartitioning{Type: bigquery.DayPartitioningType, Field: "day"}}},
		{"scratch", "notes", &bigquery.TableMetadata{Schema: bigquery.Schema{
			{Name: "id", Type: bigquery.IntegerFieldType}, {Name: "note", Type: bigquery.StringFieldType}}}},
		{"finance", "ledger", &bigquery.TableMetadata{Schema: bigquery.Schema{{Name: "amount", Type: bigquery.NumericFieldType}}}},
		{"pub", "v_customers", &bigquery.TableMetadata{ViewQuery: "SELECT id, name, country FROM `" + Project + ".crm.customers`"}},
		{"pub", "v_people", &bigquery.TableMetadata{ViewQuery: "SELECT id, name, ssn FROM `" + Project + ".hr.people`"}},
	}
	for _, t := range tables {
		if _, err := client.Dataset(t.ds).Table(t.name).Metadata(ctx); err == nil {
			continue
		}
		if err := client.Dataset(t.ds).Table(t.name).Create(ctx, t.md); err != nil && !exists(err) {
			return fmt.Errorf("seed table %s.%s: %w", t.ds, t.name, err)
		}
	}
	return nil
}

// exists: created meanwhile (BigQuery answers 409; the emulator 500 "already created").
func exists(err error) bool {
	var gerr *googleapi.Error
	return errors.As(err, &gerr) && (gerr.Code == http.StatusConflict || strings.Contains(gerr.Message, "already"))
}

// Tally counts decisions by outcome and rule, for the note.
type Tally map[string]int

// Tallies are Tally per agent group set (Case.GroupKey), so the counts of the main corpus
// policy stay comparable as cases under other policies are added.
type Tallies map[string]Tally

// Add counts one decision of c.
func (ts Tallies) Add(c Case, allowed bool, rule, ruleName string) {
	k := c.GroupKey()
	if ts[k] == nil {
		ts[k] = Tally{}
	}
	ts[k].Add(allowed, rule, ruleName)
}

// String renders every tally, the main group first.
func (ts Tallies) String() string {
	keys := make([]string, 0, len(ts))
	for k := range ts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if (keys[i] == Group) != (keys[j] == Group) {
			return keys[i] == Group
		}
		return keys[i] < keys[j]
	})
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "agents in %s: %s", k, ts[k])
	}
	return b.String()
}

// Add counts one decision.
func (t Tally) Add(allowed bool, rule, ruleName string) {
	if allowed {
		t["allow"]++
		return
	}
	k := "deny " + rule
	if ruleName != "" {
		k += " (" + ruleName + ")"
	}
	t[k]++
}

// String renders the tally, one "count outcome" per line, allows first.
func (t Tally) String() string {
	keys := make([]string, 0, len(t))
	total, denied := 0, 0
	for k, n := range t {
		keys = append(keys, k)
		total += n
		if k != "allow" {
			denied += n
		}
	}
	sort.Strings(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "%d queries: %d allowed, %d denied\n", total, t["allow"], denied)
	for _, k := range keys {
		if k != "allow" {
			fmt.Fprintf(&b, "  %3d %s\n", t[k], k)
		}
	}
	return b.String()
}
