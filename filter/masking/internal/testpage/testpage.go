// Package testpage generates BigQuery response pages for masking benchmarks, natively
// and inside the wasm benchmark module (standard library only).
package testpage

import "strconv"

// Schema of the generated pages (a jobs.query response's schema member).
const Schema = `{"fields":[` +
	`{"name":"id","type":"INTEGER","mode":"REQUIRED"},` +
	`{"name":"email","type":"STRING","mode":"NULLABLE"},` +
	`{"name":"name","type":"STRING","mode":"NULLABLE"},` +
	`{"name":"ssn","type":"STRING","mode":"NULLABLE"},` +
	`{"name":"amount","type":"NUMERIC","mode":"NULLABLE","precision":"12","scale":"2"},` +
	`{"name":"created","type":"TIMESTAMP","mode":"NULLABLE"},` +
	`{"name":"tags","type":"STRING","mode":"REPEATED"},` +
	`{"name":"address","type":"RECORD","mode":"NULLABLE","fields":[` +
	`{"name":"street","type":"STRING"},{"name":"city","type":"STRING"},{"name":"zip","type":"STRING"}]},` +
	`{"name":"note","type":"STRING","mode":"NULLABLE"}]}`

// Rule is a plan rule of the benchmark plan.
type Rule struct {
	Path   []int
	Action string
}

// Rules mask email (hash), ssn (redact), amount (last4) and address.zip (last4);
// name, tags, address.street/city and note are left to the detectors.
var Rules = []Rule{{[]int{1}, "hash"}, {[]int{3}, "redact"}, {[]int{4}, "last4"}, {[]int{7, 2}, "last4"}}

// Detectors of the benchmark plan: all of them.
var Detectors = []string{"email", "ssn", "card", "phone", "iban", "ip", "privateKey", "cloudKey"}

var (
	first = []string{"Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tim"}
	last  = []string{"Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Perlman", "Berners-Lee"}
	city  = []string{"London", "New York", "Zürich", "São Paulo", "Tokyo", "Berlin", "Paris", "Sydney"}
	notes = []string{
		"Customer asked about the March invoice; resolved on the call.",
		"Upgraded to plan 2.3.1 after the trial, see ticket ORD-2024-004211.",
		"Prefers contact by post. Delivery window Mon-Fri 9:00-17:00.",
		"Refund of $1,234.56 approved by finance on 2024-03-15.",
		"",
	}
)

// Page returns a jobs.query response body of at least size bytes and its row count.
// Every 64th row's note carries an email address for the detectors to find.
func Page(size int) (body []byte, rows int) {
	b := make([]byte, 0, size+1024)
	b = append(b, `{"kind":"bigquery#queryResponse","schema":`...)
	b = append(b, Schema...)
	b = append(b, `,"jobReference":{"projectId":"demo","jobId":"job_bench","location":"US"},"rows":[`...)
	for i := 0; len(b) < size; i++ {
		if i > 0 {
			b = append(b, ',')
		}
		f, l := first[i%len(first)], last[(i/7)%len(last)]
		b = append(b, `{"f":[{"v":"`...)
		b = strconv.AppendInt(b, int64(1000000+i), 10)
		b = append(b, `"},{"v":"`...)
		b = append(b, f...)
		b = append(b, '.')
		b = append(b, l...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, `@example.com"},{"v":"`...)
		b = append(b, f...)
		b = append(b, ' ')
		b = append(b, l...)
		b = append(b, `"},{"v":"`...)
		b = strconv.AppendInt(b, int64(100+i%800), 10)
		b = append(b, '-')
		b = strconv.AppendInt(b, int64(10+i%89), 10)
		b = append(b, '-')
		b = strconv.AppendInt(b, int64(1000+i%8999), 10)
		b = append(b, `"},{"v":"`...)
		b = strconv.AppendInt(b, int64(i*37%100000), 10)
		b = append(b, `.`...)
		b = strconv.AppendInt(b, int64(10+i%90), 10)
		b = append(b, `"},{"v":"`...)
		b = strconv.AppendInt(b, int64(1700000000000000+i*1000003), 10)
		b = append(b, `"},{"v":[{"v":"vip"},{"v":"tier-`...)
		b = strconv.AppendInt(b, int64(i%5), 10)
		b = append(b, `"}]},{"v":{"f":[{"v":"`...)
		b = strconv.AppendInt(b, int64(1+i%300), 10)
		b = append(b, ` Main Street"},{"v":"`...)
		b = append(b, city[i%len(city)]...)
		b = append(b, `"},{"v":"`...)
		b = strconv.AppendInt(b, int64(10000+i%89999), 10)
		b = append(b, `"}]}},{"v":`...)
		switch {
		case i%64 == 0:
			b = append(b, `"Forwarded to `...)
			b = append(b, f...)
			b = append(b, `@example.org by support"}`...)
		case i%9 == 0:
			b = append(b, `null}`...)
		default:
			b = append(b, '"')
			b = append(b, notes[i%len(notes)]...)
			b = append(b, `"}`...)
		}
		b = append(b, `]}`...)
		rows = i + 1
	}
	b = append(b, `],"totalRows":"`...)
	b = strconv.AppendInt(b, int64(rows), 10)
	b = append(b, `","jobComplete":true,"cacheHit":false}`...)
	return b, rows
}
