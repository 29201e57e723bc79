package e2e

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/bigquery"
	"golang.org/x/oauth2"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"

	"github.com/jitgate/jitgate/e2e/stack"
)

// Masking end to end: real Envoy running the compiled filter, jitgated deciding with the
// e2e-hr-masked policy (testdata/hr-masked.yaml), the emulator seeded with the synthetic
// canary table jitgate-demo.hr.employees (tools/demo/bigquery-data.yaml), and the
// standard Go and Python clients as agents.

// hrTable is the table of canary values.
const hrTable = "`jitgate-demo.hr.employees`"

// hrGroup is the group the masked policy grants; hrAgent acts in it.
const (
	hrGroup = "hr-analysts"
	hrAgent = "e2e-hr-agent"
)

// hrPerson is one seeded row of jitgate-demo.hr.employees.
type hrPerson struct {
	id                     int
	name, email, ssn, card string
	country                string
	salary                 int
	phones                 []string
	street, city           string
}

var hrPeople = []hrPerson{
	{id: 1, name: "Quorra Vexbridge", email: "quorra.vexbridge@canary-mail.test", ssn: "219-44-7731", card: "4539578763621486", country: "GB", salary: 91000,
		phones: []string{"+44 20 7946 0731", "+44 20 7946 0732"}, street: "17 Zanthorpe Lane", city: "London"},
	{id: 2, name: "Thaddeus Morlokian", email: "thaddeus.morlokian@canary-mail.test", ssn: "318-52-6604", card: "5425233430109903", country: "US", salary: 105000,
		phones: []string{"+1 415 555 0142"}, street: "402 Quillfeather Ave", city: "Oakland"},
	{id: 3, name: "Ysolde Prunevaux", email: "ysolde.prunevaux@canary-mail.test", ssn: "427-61-9385", card: "4716108999716531", country: "FR", salary: 78000,
		phones: []string{"+33 1 70 36 49 18"}, street: "9 Rue Brisemarteau", city: "Paris"},
	{id: 4, name: "Bartholo Kwenzimbe", email: "bartholo.kwenzimbe@canary-mail.test", ssn: "536-70-2248", card: "4024007103939509", country: "US", salary: 120000,
		street: "88 Hollowmere Road", city: "Austin"},
	{id: 5, name: "Ingrith Salvadorescu", email: "ingrith.salvadorescu@canary-mail.test", ssn: "645-83-1179", card: "6011000990139424", country: "GB", salary: 67000,
		phones: []string{"+44 161 496 0457"}, street: "3 Wyvernsgate Close", city: "Leeds"},
	{id: 6, name: "Osric Tamblethwaite", email: "osric.tamblethwaite@canary-mail.test", ssn: "754-92-3306", card: "3530111333300000", country: "US", salary: 99000,
		phones: []string{"+1 212 555 0199", "+1 212 555 0188"}, street: "61 Fenwright Street", city: "Boston"},
}

// hrCanaries are the values (and distinctive parts of them) that must never leave the
// gateway: names and their parts, emails and their local parts, SSNs with and without
// dashes, card numbers, phone numbers with and without punctuation, streets. Every one
// is at least 5 characters, so ordinary text ("true", "GB") never matches.
func hrCanaries() []string {
	nonDigits := regexp.MustCompile(`[^0-9]`)
	var out []string
	for _, p := range hrPeople {
		out = append(out, p.name, p.email, strings.Split(p.email, "@")[0], p.ssn, nonDigits.ReplaceAllString(p.ssn, ""), p.card, p.street)
		out = append(out, strings.Fields(p.name)...)
		street := strings.Fields(p.street)
		sort.Slice(street, func(i, j int) bool { return len(street[i]) > len(street[j]) })
		out = append(out, street[0]) // the street's name: "Zanthorpe"
		for _, ph := range p.phones {
			out = append(out, ph, nonDigits.ReplaceAllString(ph, ""))
		}
	}
	for _, c := range out {
		if len(c) < 5 {
			panic("canary too short to scan for: " + c)
		}
	}
	return out
}

// canaryNeedles returns what to look for in a body for each canary: the value in any case
// and reversed (compared case-insensitively), its base64 (standard and URL alphabets, with
// and without padding) and its hex (either case).
type needle struct{ canary, form, text string }

func canaryNeedles() []needle {
	var out []needle
	for _, c := range hrCanaries() {
		rev := []rune(c)
		for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
			rev[i], rev[j] = rev[j], rev[i]
		}
		out = append(out,
			needle{c, "plain (any case)", strings.ToLower(c)},
			needle{c, "reversed (any case)", strings.ToLower(string(rev))},
			needle{c, "hex", hex.EncodeToString([]byte(c))},
		)
		for _, v := range []string{c, strings.ToUpper(c), strings.ToLower(c)} {
			b64 := base64.StdEncoding.EncodeToString([]byte(v))
			out = append(out,
				needle{c, "base64", strings.TrimRight(b64, "=")},
				needle{c, "base64url", strings.TrimRight(base64.URLEncoding.EncodeToString([]byte(v)), "=")},
			)
		}
	}
	return out
}

var needles = canaryNeedles()

// generatedIDs are members whose values BigQuery (or the emulator) generates at random:
// job ids, etags, page tokens. They never carry table data, and a random 27-character job
// id contains a 5-letter canary in some case often enough to fail a long run (it did:
// "QoxT2OSricAEb0aAfO7MvKHoy5t"), so their values are not scanned.
var generatedIDs = regexp.MustCompile(`"(jobId|etag|id|selfLink|pageToken|queryId)":\s*"[^"]*"`)

// leaks returns every canary form found in body (generated ids aside).
func leaks(body string) []string {
	body = generatedIDs.ReplaceAllString(body, `"$1":""`)
	lower := strings.ToLower(body)
	var found []string
	for _, n := range needles {
		hay := body
		if n.form != "base64" && n.form != "base64url" {
			hay = lower
		}
		if strings.Contains(hay, n.text) {
			found = append(found, fmt.Sprintf("%s of %q", n.form, n.canary))
		}
	}
	return found
}

// installMaskedPolicy adds testdata/hr-masked.yaml to the policies jitgated enforces, for
// the test's duration, and returns a token of an agent it grants.
func installMaskedPolicy(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	src, err := os.ReadFile(filepath.Join(root, "e2e", "testdata", "hr-masked.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(policiesDir, "hr-masked.yaml")
	if err := os.WriteFile(dst+".tmp", []byte(scoped(string(src))), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(dst+".tmp", dst); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.Remove(dst)
		eventually(t, 20*time.Second, "the masked policy is gone", func() bool { return len(status(t).Policies.Policies) == 1 })
	})
	token, err := gw.Token(ctx, hrAgent, hrGroup)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the masked policy is enforced", func() bool {
		code, _ := query(t, token, "SELECT id FROM "+hrTable)
		return code == 200
	})
	return token
}

// recordingClient is the Go client for token whose every response body is recorded.
func recordingClient(t *testing.T, token string) (*bigquery.Client, *recorder) {
	t.Helper()
	rec := &recorder{base: http.DefaultTransport}
	hc := &http.Client{Transport: &oauth2.Transport{Source: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: token}), Base: rec}}
	c, err := bigquery.NewClient(context.Background(), project, option.WithEndpoint(gw.Gateway+"/bigquery/v2/"), option.WithHTTPClient(hc))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, rec
}

// readValues reads every row of it in pages of pageSize.
func readValues(it *bigquery.RowIterator, pageSize int) ([][]bigquery.Value, error) {
	it.PageInfo().MaxSize = pageSize
	var rows [][]bigquery.Value
	for {
		var row []bigquery.Value
		err := it.Next(&row)
		if errors.Is(err, iterator.Done) {
			return rows, nil
		}
		if err != nil {
			return rows, err
		}
		rows = append(rows, row)
	}
}

// resultJob is a query job whose id starts with e2e_result_: the emulator names the
// job's result dataset after it, and testdata/hr-masked.yaml grants tabledata.list there.
func resultJob(client *bigquery.Client, sql string) *bigquery.Query {
	q := client.Query(sql)
	q.JobID = fmt.Sprintf("e2e_result_%d", time.Now().UnixNano())
	return q
}

// outcome of one corpus query through one path.
const (
	outDenied = "denied"   // 403 from the gateway
	outRows   = "answered" // rows came back (masked)
	outError  = "error"    // another error (the emulator's, or the gateway failing closed)
)

func classify(err error) string {
	if err == nil {
		return outRows
	}
	var gerr *googleapi.Error
	if errors.As(err, &gerr) && gerr.Code == 403 {
		return outDenied
	}
	return outError
}

// fromT is the corpus's stand-in for the table.
var fromT = regexp.MustCompile(`\bFROM T\b`)

// corpusEntry is one line of testdata/masking-corpus.txt.
type corpusEntry struct{ name, sql string }

func loadCorpus(t *testing.T) []corpusEntry {
	t.Helper()
	f, err := os.Open(filepath.Join(root, "e2e", "testdata", "masking-corpus.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []corpusEntry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, sql, ok := strings.Cut(line, "|")
		if !ok {
			t.Fatalf("corpus line without '|': %q", line)
		}
		sql = fromT.ReplaceAllString(strings.TrimSpace(sql), "FROM "+hrTable)
		out = append(out, corpusEntry{strings.TrimSpace(name), sql})
	}
	if len(out) < 40 {
		t.Fatalf("the corpus has %d queries, want at least 40", len(out))
	}
	return out
}

// TestMaskingCorpus runs every exfiltration attempt through the Go client three ways:
// jobs.query read in pages of 2 (getQueryResults for later pages), a query job
// (jobs.insert, jobs.get, getQueryResults) and tabledata.list of the job's result table
// in pages of 2. Every response body the client received is scanned for every canary
// form. Each attempt must be denied or leak nothing.
func TestMaskingCorpus(t *testing.T) {
	token := installMaskedPolicy(t)
	corpus := loadCorpus(t)
	counts := map[string]int{}
	var table []string
	for _, q := range corpus {
		t.Run(q.name, func(t *testing.T) {
			client, rec := recordingClient(t, token)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var res []string

			it, err := client.Query(q.sql).Read(ctx)
			if err == nil {
				_, err = readValues(it, 2)
			}
			res = append(res, "query:"+classify(err))
			counts["query:"+classify(err)]++

			job, err := resultJob(client, q.sql).Run(ctx)
			var dst *bigquery.Table
			if err == nil {
				it, err = job.Read(ctx)
				if err == nil {
					_, err = readValues(it, 2)
				}
				if cfg, cerr := job.Config(); cerr == nil {
					if qc, ok := cfg.(*bigquery.QueryConfig); ok {
						dst = qc.Dst
					}
				}
			}
			res = append(res, "job:"+classify(err))
			counts["job:"+classify(err)]++
			if err == nil && dst != nil && dst.TableID != "" {
				_, err = readValues(client.DatasetInProject(dst.ProjectID, dst.DatasetID).Table(dst.TableID).Read(ctx), 2)
				res = append(res, "tabledata:"+classify(err))
				counts["tabledata:"+classify(err)]++
				if classify(err) == outError {
					t.Logf("tabledata.list: %v", err)
				}
			}

			bodies := rec.all()
			for _, b := range bodies {
				if found := leaks(b); len(found) > 0 {
					t.Errorf("LEAK: %s\n  sql: %s\n  found: %s\n  body: %s", q.name, q.sql, strings.Join(found, "; "), tail(b, 1500))
				}
			}
			table = append(table, fmt.Sprintf("%-28s %-40s %d responses", q.name, strings.Join(res, " "), len(bodies)))
		})
	}
	t.Logf("masking corpus: %d queries, outcomes %v\n%s", len(corpus), counts, strings.Join(table, "\n"))
	if counts["query:"+outRows] < len(corpus)/4 {
		t.Errorf("only %d of %d queries were answered at all: a corpus that is all denials proves little about masking", counts["query:"+outRows], len(corpus))
	}
}

// hrMaskedRowsSQL selects every kind of masked column, in id order.
const hrMaskedRowsSQL = "SELECT id, full_name, email, ssn, card, country, salary, phones, address FROM " + hrTable + " ORDER BY id"

// wantMaskedRow checks one masked row as a client decoded it (cells as strings; phones
// and address as the client renders arrays and records).
func checkMaskedRow(t *testing.T, who string, i int, id, name, email, ssn, card, country, salary string) {
	t.Helper()
	p := hrPeople[i]
	if id != fmt.Sprint(p.id) || country != p.country || salary != fmt.Sprint(p.salary) {
		t.Errorf("%s row %d: unmasked columns changed: id %s country %s salary %s", who, i, id, country, salary)
	}
	if name != "[REDACTED]" || ssn != "[REDACTED]" {
		t.Errorf("%s row %d: name %q ssn %q, want [REDACTED]", who, i, name, ssn)
	}
	if !regexp.MustCompile(`^h:[0-9a-f]{32}$`).MatchString(email) {
		t.Errorf("%s row %d: email %q, want a keyed hash", who, i, email)
	}
	if card != "****"+p.card[len(p.card)-4:] {
		t.Errorf("%s row %d: card %q, want the last 4", who, i, card)
	}
}

// TestMaskingGoClientReadsMaskedPages: the Go client reads masked results across pages
// of 2, by jobs.query + getQueryResults and by tabledata.list of the result table; the
// masked non-string and record columns parse; hashes are stable across calls.
func TestMaskingGoClientReadsMaskedPages(t *testing.T) {
	token := installMaskedPolicy(t)
	client, rec := recordingClient(t, token)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	read := func(it *bigquery.RowIterator, err error) [][]bigquery.Value {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		rows, err := readValues(it, 2)
		if err != nil {
			t.Fatal(err)
		}
		return rows
	}
	check := func(who string, rows [][]bigquery.Value) []string {
		t.Helper()
		if len(rows) != len(hrPeople) {
			t.Fatalf("%s: %d rows, want %d", who, len(rows), len(hrPeople))
		}
		var hashes []string
		for i, r := range rows {
			if len(r) != 9 {
				t.Fatalf("%s row %d: %d cells", who, i, len(r))
			}
			s := func(j int) string { return fmt.Sprint(r[j]) }
			checkMaskedRow(t, who, i, s(0), s(1), s(2), s(3), s(4), s(5), s(6))
			hashes = append(hashes, s(2))
			if phones, ok := r[7].([]bigquery.Value); !ok || len(phones) != len(hrPeople[i].phones) {
				t.Errorf("%s row %d: phones %#v, want %d masked elements", who, i, r[7], len(hrPeople[i].phones))
			} else {
				for _, ph := range phones {
					if ph != "[REDACTED]" {
						t.Errorf("%s row %d: phone %v", who, i, ph)
					}
				}
			}
			if addr, ok := r[8].([]bigquery.Value); !ok || len(addr) != 2 || addr[0] != "[REDACTED]" || addr[1] != "[REDACTED]" {
				t.Errorf("%s row %d: address %#v", who, i, r[8])
			}
		}
		return hashes
	}
	h1 := check("jobs.query", read(client.Query(hrMaskedRowsSQL).Read(ctx)))
	job, err := resultJob(client, hrMaskedRowsSQL).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h2 := check("job + getQueryResults", read(job.Read(ctx)))
	if !reflect.DeepEqual(h1, h2) {
		t.Errorf("hashes differ between calls: %v vs %v", h1, h2)
	}
	if len(map[string]bool{h1[0]: true, h1[1]: true, h1[2]: true}) != 3 {
		t.Errorf("distinct emails hashed alike: %v", h1)
	}
	cfg, err := job.Config()
	if err != nil {
		t.Fatal(err)
	}
	if dst := cfg.(*bigquery.QueryConfig).Dst; dst != nil && dst.TableID != "" {
		check("tabledata.list", read(client.DatasetInProject(dst.ProjectID, dst.DatasetID).Table(dst.TableID).Read(ctx), nil))
	} else {
		t.Errorf("the job names no result table: tabledata.list not exercised")
	}
	// The hash of the same email is the same in a different query (joins work).
	it, err := client.Query("SELECT email FROM " + hrTable + " WHERE id = 1").Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	one, err := readValues(it, 10)
	if err != nil || len(one) != 1 || fmt.Sprint(one[0][0]) != h1[0] {
		t.Errorf("the hash of row 1's email in another query = %v (%v), want %s", one, err, h1[0])
	}
	for _, b := range rec.all() {
		if found := leaks(b); len(found) > 0 {
			t.Errorf("LEAK: %s", strings.Join(found, "; "))
		}
	}
	// The hash key went to the filter with every plan above; it is in no response and
	// no log line of Envoy or jitgated, in any encoding.
	for _, k := range hashKeyForms(t) {
		for _, b := range rec.all() {
			if strings.Contains(b, k) {
				t.Errorf("an agent response contains the masking hash key")
			}
		}
		for _, name := range []string{"envoy", "jitgated"} {
			if strings.Contains(gw.Log(name), k) {
				t.Errorf("the %s log contains the masking hash key", name)
			}
		}
	}
}

// hashKeyForms reads the stack's masking hash key (e2e/stack writes it, base64, beside
// the service-account key) and returns it as text, raw, and hex.
func hashKeyForms(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(filepath.Dir(gw.ServiceAccountKey), "masking-hash.key"))
	if err != nil {
		t.Fatalf("the stack's masking hash key: %v", err)
	}
	text := strings.TrimSpace(string(b))
	raw, err := base64.StdEncoding.DecodeString(text)
	if err != nil || len(raw) < 32 {
		t.Fatalf("masking hash key is not base64 of 32+ bytes")
	}
	return []string{text, string(raw), hex.EncodeToString(raw), strings.TrimRight(base64.URLEncoding.EncodeToString(raw), "=")}
}

// pythonAs runs tools/agent/bq_query.py with token and returns its JSON output.
func pythonAs(t *testing.T, token, mode string, pageSize int, sql string) (out string, res struct {
	Columns []string `json:"columns"`
	Types   []string `json:"types"`
	Rows    [][]any  `json:"rows"`
	Error   *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, stack.Python(root), root+"/tools/agent/bq_query.py", "--endpoint", gw.Gateway, "--project", project,
		"--token", token, "--mode", mode, "--page-size", fmt.Sprint(pageSize), sql)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil && len(b) == 0 {
		t.Fatalf("python client (%s): %v\nstderr: %s", mode, err, tail(stderr.String(), 3000))
	}
	if jerr := json.Unmarshal(b, &res); jerr != nil {
		t.Fatalf("python client (%s) output %q: %v\nstderr: %s", mode, b, jerr, tail(stderr.String(), 3000))
	}
	return string(b), res
}

// TestMaskingPythonClientReadsMaskedPages: google-cloud-bigquery reads the masked rows by
// query_and_wait, query().result() and to_dataframe(create_bqstorage_client=False), in
// pages of 2; what it prints has no canary.
func TestMaskingPythonClientReadsMaskedPages(t *testing.T) {
	token := installMaskedPolicy(t)
	for _, mode := range []string{"query_and_wait", "job", "dataframe"} {
		t.Run(mode, func(t *testing.T) {
			out, res := pythonAs(t, token, mode, 2, hrMaskedRowsSQL)
			if res.Error != nil {
				t.Fatalf("python client error %d: %s", res.Error.Code, res.Error.Message)
			}
			if found := leaks(out); len(found) > 0 {
				t.Errorf("LEAK through the Python client: %s", strings.Join(found, "; "))
			}
			if len(res.Rows) != len(hrPeople) {
				t.Fatalf("%d rows, want %d: %s", len(res.Rows), len(hrPeople), out)
			}
			for i, r := range res.Rows {
				s := func(j int) string { return fmt.Sprint(r[j]) }
				checkMaskedRow(t, mode, i, s(0), s(1), s(2), s(3), s(4), s(5), s(6))
			}
			if want := []string{"INTEGER", "STRING", "STRING", "STRING", "STRING", "STRING", "INTEGER", "STRING", "RECORD"}; !reflect.DeepEqual(res.Types, want) {
				t.Errorf("schema types %v, want %v", res.Types, want)
			}
			t.Logf("%s row 1: %v", mode, res.Rows[0])
		})
	}
}

// TestMaskingBenignQueriesExact: what masking must not touch comes back exact, through
// the Go client and every Python path: counts per country, ids, sums, and the allowed
// COUNT(DISTINCT email).
func TestMaskingBenignQueriesExact(t *testing.T) {
	token := installMaskedPolicy(t)
	client, _ := recordingClient(t, token)
	byCountry := map[string]int{}
	sum := 0
	var ids [][]string
	for _, p := range hrPeople {
		byCountry[p.country]++
		sum += p.salary
		ids = append(ids, []string{fmt.Sprint(p.id), p.country, fmt.Sprint(p.salary)})
	}
	var countries []string
	for c := range byCountry {
		countries = append(countries, c)
	}
	sort.Strings(countries)
	var perCountry [][]string
	for _, c := range countries {
		perCountry = append(perCountry, []string{c, fmt.Sprint(byCountry[c])})
	}
	cases := []struct {
		name, sql string
		want      [][]string
	}{
		{"count per country", "SELECT country, COUNT(*) AS n FROM " + hrTable + " GROUP BY country ORDER BY country", perCountry},
		{"ids, countries, salaries", "SELECT id, country, salary FROM " + hrTable + " ORDER BY id", ids},
		{"sum of salaries", "SELECT SUM(salary) AS total FROM " + hrTable, [][]string{{fmt.Sprint(sum)}}},
		{"count distinct email (allowed aggregate)", "SELECT COUNT(DISTINCT email) AS n FROM " + hrTable, [][]string{{fmt.Sprint(len(hrPeople))}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			it, err := client.Query(c.sql).Read(ctx)
			if err != nil {
				t.Fatal(err)
			}
			rows, err := readValues(it, 2)
			if err != nil {
				t.Fatal(err)
			}
			if got := stringRows(rows); !reflect.DeepEqual(got, c.want) {
				t.Errorf("go: %v, want %v", got, c.want)
			}
			for _, mode := range []string{"query_and_wait", "job", "dataframe"} {
				_, res := pythonAs(t, token, mode, 2, c.sql)
				if res.Error != nil {
					t.Errorf("python %s: %d %s", mode, res.Error.Code, res.Error.Message)
					continue
				}
				var got [][]string
				for _, r := range res.Rows {
					var cells []string
					for _, v := range r {
						cells = append(cells, fmt.Sprint(v))
					}
					got = append(got, cells)
				}
				if !reflect.DeepEqual(got, c.want) {
					t.Errorf("python %s: %v, want %v", mode, got, c.want)
				}
			}
		})
	}
}

func stringRows(rows [][]bigquery.Value) [][]string {
	var out [][]string
	for _, r := range rows {
		var cells []string
		for _, v := range r {
			cells = append(cells, fmt.Sprint(v))
		}
		out = append(out, cells)
	}
	return out
}

// TestMaskingTabledataListOfBaseTable: reading the sensitive table without SQL
// (tabledata.list) is denied or masked, never raw.
func TestMaskingTabledataListOfBaseTable(t *testing.T) {
	token := installMaskedPolicy(t)
	resp, body := rawCallAs(t, "Bearer "+token, "GET", "/bigquery/v2/projects/"+project+"/datasets/hr/tables/employees/data?maxResults=2", nil, nil)
	t.Logf("tabledata.list of the base table: %d", resp.StatusCode)
	if found := leaks(string(body)); len(found) > 0 {
		t.Errorf("LEAK: %s: %s", strings.Join(found, "; "), body)
	}
	if resp.StatusCode == 200 && !strings.Contains(string(body), "[REDACTED]") {
		t.Errorf("answered but not masked: %s", body)
	}
}

// TestMaskingTableReadOfMaskedResult: the Go client's Table.Read takes the schema from
// tables.get, so tables.get of a masked query's result table must describe the masked
// cells: a hashed email cast to BYTES and a redacted name's LENGTH (INT64) come back as
// STRING columns, the client decodes every row, and no canary shows.
func TestMaskingTableReadOfMaskedResult(t *testing.T) {
	token := installMaskedPolicy(t)
	client, rec := recordingClient(t, token)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const sql = "SELECT id, CAST(email AS BYTES) AS email_bytes, LENGTH(full_name) AS name_len, salary FROM " + hrTable + " ORDER BY id"
	job, err := resultJob(client, sql).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := job.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	cfg, err := job.Config()
	if err != nil {
		t.Fatal(err)
	}
	dst := cfg.(*bigquery.QueryConfig).Dst
	if dst == nil || dst.TableID == "" {
		t.Fatal("the job names no result table")
	}
	table := client.DatasetInProject(dst.ProjectID, dst.DatasetID).Table(dst.TableID)
	md, err := table.Metadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, f := range md.Schema {
		types = append(types, f.Name+":"+string(f.Type))
	}
	t.Logf("tables.get schema of the result table: %v", types)
	if len(md.Schema) != 4 || md.Schema[0].Type != bigquery.IntegerFieldType || md.Schema[1].Type != bigquery.StringFieldType ||
		md.Schema[2].Type != bigquery.StringFieldType || md.Schema[3].Type != bigquery.IntegerFieldType {
		t.Errorf("tables.get schema = %v, want the masked columns as STRING", types)
	}
	rows, err := readValues(table.Read(ctx), 2)
	if err != nil {
		t.Fatalf("Table.Read of the masked result table: %v", err)
	}
	if len(rows) != len(hrPeople) {
		t.Fatalf("%d rows, want %d", len(rows), len(hrPeople))
	}
	masked := regexp.MustCompile(`^(\[REDACTED\]|h:[0-9a-f]{32})$`)
	for i, r := range rows {
		p := hrPeople[i]
		if len(r) != 4 || fmt.Sprint(r[0]) != fmt.Sprint(p.id) || fmt.Sprint(r[3]) != fmt.Sprint(p.salary) {
			t.Errorf("row %d: %v", i, r)
			continue
		}
		for _, j := range []int{1, 2} {
			if s, ok := r[j].(string); !ok || !masked.MatchString(s) {
				t.Errorf("row %d cell %d = %#v, want a mask token", i, j, r[j])
			}
		}
	}
	for _, b := range rec.all() {
		if found := leaks(b); len(found) > 0 {
			t.Errorf("LEAK: %s", strings.Join(found, "; "))
		}
	}
}

// TestMaskingPythonListRowsOfMaskedResult: google-cloud-bigquery's list_rows of a masked
// query's result table reads the schema with tables.get, then the rows: the masked INT64
// and BYTES columns arrive as STRING and parse.
func TestMaskingPythonListRowsOfMaskedResult(t *testing.T) {
	token := installMaskedPolicy(t)
	const sql = "SELECT id, CAST(email AS BYTES) AS email_bytes, LENGTH(full_name) AS name_len, salary FROM " + hrTable + " ORDER BY id"
	out, res := pythonAs(t, token, "list_rows", 2, sql)
	if res.Error != nil {
		t.Fatalf("python client error %d: %s", res.Error.Code, res.Error.Message)
	}
	if found := leaks(out); len(found) > 0 {
		t.Errorf("LEAK through the Python client: %s", strings.Join(found, "; "))
	}
	if want := []string{"INTEGER", "STRING", "STRING", "INTEGER"}; !reflect.DeepEqual(res.Types, want) {
		t.Errorf("schema types %v, want %v", res.Types, want)
	}
	if len(res.Rows) != len(hrPeople) {
		t.Fatalf("%d rows, want %d: %s", len(res.Rows), len(hrPeople), out)
	}
	masked := regexp.MustCompile(`^(\[REDACTED\]|h:[0-9a-f]{32})$`)
	for i, r := range res.Rows {
		if len(r) != 4 || fmt.Sprint(r[0]) != fmt.Sprint(hrPeople[i].id) || fmt.Sprint(r[3]) != fmt.Sprint(hrPeople[i].salary) ||
			!masked.MatchString(fmt.Sprint(r[1])) || !masked.MatchString(fmt.Sprint(r[2])) {
			t.Errorf("row %d: %v", i, r)
		}
	}
}

// TestMaskingColumnSelectionRefused: selectedFields on a masked tabledata.list (the plan
// is by column position) and a partial response reaching inside the schema are refused
// 403 before anything goes upstream.
func TestMaskingColumnSelectionRefused(t *testing.T) {
	token := installMaskedPolicy(t)
	base := "/bigquery/v2/projects/" + project + "/datasets/hr/tables/employees"
	for _, c := range []struct{ path, reason string }{
		{base + "/data?selectedFields=ssn,id", "masked-selected-fields"},
		{base + "?fields=schema/fields(name)", "masked-partial-response"},
	} {
		resp, body := rawCallAs(t, "Bearer "+token, "GET", c.path, nil, nil)
		if resp.StatusCode != 403 || resp.Header.Get("x-jitgate-deny-reason") != c.reason {
			t.Errorf("%s: %d %q %s", c.path, resp.StatusCode, resp.Header.Get("x-jitgate-deny-reason"), body)
		}
		if found := leaks(string(body)); len(found) > 0 {
			t.Errorf("LEAK: %s", strings.Join(found, "; "))
		}
	}
}

// TestMaskingRepeatedFieldMaskHeaders: a partial-response selector is judged on every
// X-Goog-FieldMask header, whichever one Envoy would hand the filter's single-value
// getter; one header reaching inside a member refuses the masked call (403), wherever it
// stands among the others. Top-level selectors in several headers still pass, masked.
func TestMaskingRepeatedFieldMaskHeaders(t *testing.T) {
	token := installMaskedPolicy(t)
	tableGet := "/bigquery/v2/projects/" + project + "/datasets/hr/tables/employees"
	queryBody := []byte(fmt.Sprintf(`{"query":%q,"useLegacySql":false}`, "SELECT id, email, ssn FROM "+hrTable+" ORDER BY id"))
	for _, c := range []struct {
		name, method, path string
		body               []byte
		masks              []string
		reason             string // "" = allowed
	}{
		{"query, inner selector second", "POST", jobsQueryPath, queryBody, []string{"rows,jobComplete", "schema/fields(name)"}, "masked-partial-response"},
		{"query, inner selector first", "POST", jobsQueryPath, queryBody, []string{"schema/fields(name)", "rows,jobComplete"}, "masked-partial-response"},
		{"query, inner selector in the middle", "POST", jobsQueryPath, queryBody, []string{"jobComplete", "rows/f", "schema"}, "masked-partial-response"},
		{"tables.get, inner selector second", "GET", tableGet, nil, []string{"schema", "schema/fields(name)"}, "masked-partial-response"},
		{"query, top-level selectors only", "POST", jobsQueryPath, queryBody, []string{"rows,schema", "jobComplete,jobReference"}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := http.Header{"X-Goog-Fieldmask": c.masks}
			if c.body != nil {
				h.Set("Content-Type", "application/json")
			}
			resp, body := rawCallAs(t, "Bearer "+token, c.method, c.path, c.body, h)
			if found := leaks(string(body)); len(found) > 0 {
				t.Errorf("LEAK: %s", strings.Join(found, "; "))
			}
			if c.reason == "" {
				if resp.StatusCode != 200 {
					t.Fatalf("%d %q %s", resp.StatusCode, resp.Header.Get("x-jitgate-deny-reason"), body)
				}
				if !strings.Contains(string(body), `"rows"`) {
					t.Errorf("no rows in the allowed response: %s", body)
				}
				return
			}
			if resp.StatusCode != 403 || resp.Header.Get("x-jitgate-deny-reason") != c.reason {
				t.Errorf("%d %q %s", resp.StatusCode, resp.Header.Get("x-jitgate-deny-reason"), body)
			}
			assertBQError(t, resp, body, 403, "accessDenied")
		})
	}
}
