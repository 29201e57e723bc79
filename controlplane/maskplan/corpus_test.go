package maskplan

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"cloud.google.com/go/bigquery"
	"google.golang.org/api/option"

	"github.com/jitgate/jitgate/controlplane/sqlanalysis"
	"github.com/jitgate/jitgate/filter/masking"
	"github.com/jitgate/jitgate/policies"
	"github.com/jitgate/jitgate/tools/testemu"
)

const demoProject = "jitgate-demo"

// The demo customers' e-mails and names are the canaries.
var canaries = []string{
	"ada@example.com", "grace@example.com", "alan@example.com", "edsger@example.com", "barbara@example.com",
	"don@example.com", "margaret@example.com", "tim@example.com", "fran@example.com", "john@example.com",
	"niklaus@example.com", "karen@example.com",
	"Ada Lovelace", "Grace Hopper", "Alan Turing", "Edsger Dijkstra", "Barbara Liskov", "Donald Knuth",
	"Margaret Hamilton", "Tim Berners-Lee", "Frances Allen", "John McCarthy", "Niklaus Wirth", "Karen Sparck Jones",
}

// leaks returns the forms of a canary found in body: plain, upper, lower, reversed,
// base64 and hex, and an e-mail's local part (≥ 4 letters).
func leaks(body string) []string {
	var found []string
	low := strings.ToLower(body)
	for _, c := range canaries {
		r := []rune(c)
		for i, j := 0, len(r)-1; i < j; i, j = i+1, j-1 {
			r[i], r[j] = r[j], r[i]
		}
		forms := map[string]string{
			"plain": strings.ToLower(c), "reversed": strings.ToLower(string(r)),
			"hex": hex.EncodeToString([]byte(c)), "hex upper": hex.EncodeToString([]byte(strings.ToUpper(c))),
		}
		if local, _, ok := strings.Cut(c, "@"); ok && len(local) >= 4 {
			forms["local part"] = local
		}
		for name, f := range forms {
			if strings.Contains(low, f) {
				found = append(found, name+" "+c)
			}
		}
		for _, v := range []string{c, strings.ToUpper(c), strings.ToLower(c)} {
			if strings.Contains(body, base64.StdEncoding.EncodeToString([]byte(v))) {
				found = append(found, "base64 "+c)
			}
		}
	}
	return found
}

// TestExfiltrationCorpusAgainstEmulator runs each query of an exfiltration corpus through
// the control plane's analyser (over the emulator's tables.get) and the plan builder, then
// runs the allowed ones on the emulator and masks the real response with the masking
// engine: every answer is refused or carries no canary in any form, and benign queries
// come back byte for byte.
func TestExfiltrationCorpusAgainstEmulator(t *testing.T) {
	emu := testemu.Start(t, demoProject, "--dataset=crm")
	client, err := bigquery.NewClient(t.Context(), demoProject, option.WithEndpoint(emu+"/bigquery/v2/"), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	an, err := sqlanalysis.New(sqlanalysis.Options{Catalog: sqlanalysis.NewBigQueryTableSource(client)})
	if err != nil {
		t.Fatal(err)
	}
	plan := policies.MaskPlan{
		{Columns: "jitgate-demo.crm.customers.email", Action: policies.MaskRedact, AllowAggregates: []string{"COUNT_DISTINCT"}},
		{Columns: "jitgate-demo.crm.customers.name", Action: policies.MaskHash},
	}
	b := NewBuilder([]byte("corpus-test-hash-key-0123456789abcdef"))
	exfil := []string{
		"SELECT email FROM crm.customers",
		"SELECT email AS e, name AS n FROM crm.customers",
		"SELECT c.email FROM crm.customers AS c",
		"WITH x AS (SELECT email AS a FROM crm.customers) SELECT a FROM x",
		"WITH x AS (SELECT * FROM crm.customers), y AS (SELECT email AS z FROM x) SELECT z FROM y",
		"SELECT t.e FROM (SELECT email AS e FROM crm.customers) AS t",
		"SELECT (SELECT MAX(email) FROM crm.customers) AS m",
		"SELECT CAST(id AS STRING) AS x FROM crm.customers UNION ALL SELECT email FROM crm.customers",
		"SELECT country FROM crm.customers UNION DISTINCT SELECT name FROM crm.customers",
		"SELECT TO_JSON_STRING(c) AS j FROM crm.customers AS c",
		"SELECT TO_JSON_STRING(STRUCT(email, name)) AS j FROM crm.customers",
		"SELECT FORMAT('%T', c) AS f FROM crm.customers AS c",
		"SELECT FORMAT('%s', email) AS f FROM crm.customers",
		"SELECT STRUCT(id, email AS e) AS s FROM crm.customers",
		"SELECT c FROM crm.customers AS c",
		"SELECT AS STRUCT email, name FROM crm.customers",
		"SELECT ARRAY_AGG(email) AS a FROM crm.customers",
		"SELECT ARRAY_AGG(STRUCT(name, email)) AS a FROM crm.customers",
		"SELECT UPPER(email) AS u FROM crm.customers",
		"SELECT LOWER(name) AS l FROM crm.customers",
		"SELECT REVERSE(email) AS r FROM crm.customers",
		"SELECT SUBSTR(email, 1, 5) AS s FROM crm.customers",
		"SELECT CONCAT('x', email, 'y') AS c FROM crm.customers",
		"SELECT email || '' AS c FROM crm.customers",
		"SELECT TO_BASE64(CAST(email AS BYTES)) AS b FROM crm.customers",
		"SELECT TO_HEX(CAST(email AS BYTES)) AS h FROM crm.customers",
		"SELECT REGEXP_EXTRACT(email, r'^[^@]+') AS r FROM crm.customers",
		"SELECT SPLIT(email, '@') AS parts FROM crm.customers",
		"SELECT p FROM crm.customers, UNNEST(SPLIT(email, '@')) AS p",
		"SELECT CASE WHEN id > 0 THEN email ELSE 'x' END AS c FROM crm.customers",
		"SELECT IF(id > 0, name, NULL) AS c FROM crm.customers",
		"SELECT COALESCE(email, name) AS c FROM crm.customers",
		"SELECT IFNULL(NULL, email) AS c FROM crm.customers",
		"SELECT MAX(email) AS m, MIN(name) AS n FROM crm.customers",
		"SELECT ANY_VALUE(email) AS a FROM crm.customers GROUP BY country",
		"SELECT STRING_AGG(email, ',') AS s FROM crm.customers",
		"SELECT STRING_AGG(name) AS s FROM crm.customers GROUP BY country",
		"SELECT JSON_VALUE(TO_JSON_STRING(STRUCT(email)), '$.email') AS j FROM crm.customers",
		"SELECT TO_JSON(STRUCT(email)) AS j FROM crm.customers",
		"SELECT LAG(email) OVER (ORDER BY id) AS l FROM crm.customers",
		"SELECT FIRST_VALUE(name) OVER (PARTITION BY country ORDER BY id) AS f FROM crm.customers",
		"SELECT ARRAY(SELECT email FROM crm.customers) AS a",
		"SELECT CAST(email AS BYTES) AS b FROM crm.customers",
		"SELECT REPLACE(email, '@', ' at ') AS r FROM crm.customers",
		"SELECT id FROM crm.customers WHERE email = 'ada@example.com'",
		"SELECT id, CASE WHEN STARTS_WITH(email, 'a') THEN 1 ELSE 0 END AS bit FROM crm.customers",
		"SELECT id FROM crm.customers ORDER BY email",
		"SELECT COUNT(*) AS n FROM crm.customers GROUP BY email",
		"SELECT 1 AS one; SELECT email FROM crm.customers",
		"SELECT c.id, o.amount FROM crm.customers c JOIN crm.orders o ON o.customer_id = c.id AND c.email LIKE 'a%'",
	}
	benign := []string{
		"SELECT country, COUNT(*) AS n FROM crm.customers GROUP BY country ORDER BY country",
		"SELECT country, COUNT(DISTINCT email) AS users FROM crm.customers GROUP BY country",
		"SELECT id, country, lifetime_value FROM crm.customers WHERE country = 'GB' ORDER BY id",
		"SELECT SUM(amount) AS total FROM crm.orders",
		"SELECT c.country, SUM(o.amount) AS total FROM crm.customers c JOIN crm.orders o ON o.customer_id = c.id GROUP BY c.country",
	}
	run := func(sql string) (string, error) {
		body := fmt.Sprintf(`{"query":%q,"useLegacySql":false}`, sql)
		resp, err := http.Post(emu+"/bigquery/v2/projects/"+demoProject+"/queries", "application/json", strings.NewReader(body))
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			return "", fmt.Errorf("emulator %d: %.200s", resp.StatusCode, out)
		}
		return string(out), nil
	}
	refused, masked, notRun := 0, 0, 0
	for _, sql := range exfil {
		a, err := an.Analyze(context.Background(), sqlanalysis.Input{SQL: sql, DefaultProject: demoProject})
		if err != nil {
			refused++
			t.Logf("analysis refused %q: %v", sql, err)
			continue
		}
		m, err := b.Query(a, plan, nil, false)
		if r, ok := errors.AsType[*Refusal](err); ok {
			refused++
			t.Logf("refused %q: %s", sql, r.Reason)
			continue
		}
		if err != nil || m == nil {
			t.Errorf("%q: plan %+v, %v: an exfiltration attempt must be masked or refused", sql, m, err)
			continue
		}
		body, err := run(sql)
		if err != nil {
			notRun++
			t.Logf("emulator cannot run %q: %v", sql, err)
			continue
		}
		if len(leaks(body)) == 0 {
			t.Errorf("%q: the unmasked response has no canary (the corpus does not test it): %.300s", sql, body)
		}
		p, err := m.Plan()
		if err != nil {
			t.Fatal(err)
		}
		out, _, _, err := masking.MaskResponse([]byte(body), nil, p)
		if err != nil {
			t.Errorf("%q: masking failed: %v", sql, err)
			continue
		}
		if l := leaks(string(out)); len(l) > 0 {
			t.Errorf("%q leaks %v:\n%.400s", sql, l, out)
		}
		masked++
	}
	for _, sql := range benign {
		a, err := an.Analyze(context.Background(), sqlanalysis.Input{SQL: sql, DefaultProject: demoProject})
		if err != nil {
			t.Fatalf("%q: %v", sql, err)
		}
		// No cell masked; the instruction (they read a masked table) only withholds
		// BigQuery's error messages.
		m, err := b.Query(a, plan, nil, false)
		if err != nil || m != nil && (len(m.Rules) > 0 || len(m.Detectors) > 0 || m.HashKey != "") {
			t.Errorf("benign %q: masking %+v, %v", sql, m, err)
		}
	}
	t.Logf("exfiltration corpus: %d queries, %d refused, %d masked (checked on the emulator's answer), %d not runnable on the emulator; %d benign queries unmasked",
		len(exfil), refused, masked, notRun, len(benign))
	if len(exfil) < 40 || masked < 30 {
		t.Errorf("corpus too small or too few answers checked: %d queries, %d masked", len(exfil), masked)
	}
}
