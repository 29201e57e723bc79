package plugin

import (
	"strings"
	"testing"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

// TestQueryExtractedNative reads the typed decoded request the next stages consume.
func TestQueryExtractedNative(t *testing.T) {
	var got []*Exchange
	vm := newVMContext(options{observe: func(ex *Exchange) { c := *ex; got = append(got, &c) }})
	host := configuredHost(t, vm)

	send(t, host, request{method: "POST", path: "/bigquery/v2/projects/p/queries", chunks: withBody(
		`{"query":"SELECT name FROM t WHERE id = @id","useLegacySql":false,"defaultDataset":{"projectId":"p","datasetId":"d"},` +
			`"queryParameters":[{"name":"id","parameterType":{"type":"INT64"},"parameterValue":{"value":"7"}}],"parameterMode":"NAMED","dryRun":true}`)})
	send(t, host, request{method: "POST", path: "/projects/p/jobs", headers: [][2]string{{"content-encoding", "gzip"}},
		chunks: withBody(string(gzipped(t, []byte(`{"jobReference":{"jobId":"client_job_1"},"configuration":{"query":{"query":"SELECT 2","destinationTable":{"projectId":"p","datasetId":"d","tableId":"out"},"writeDisposition":"WRITE_TRUNCATE"}}}`))))})

	if len(got) != 2 {
		t.Fatalf("observed %d exchanges, want 2", len(got))
	}
	q := got[0].Query
	if q == nil || q.SQL != "SELECT name FROM t WHERE id = @id" || q.LegacySQL || q.UseLegacySQL == nil || !q.DryRun ||
		q.DefaultDataset == nil || q.DefaultDataset.DatasetID != "d" || len(q.Parameters) != 1 ||
		*q.Parameters[0].ParameterValue.Value != "7" || q.ParameterMode != "NAMED" {
		t.Errorf("jobs.query decoded as %+v", q)
	}
	j := got[1].Query
	if j == nil || j.SQL != "SELECT 2" || !j.LegacySQL || j.UseLegacySQL != nil || j.JobID != "client_job_1" ||
		j.Destination == nil || j.Destination.TableID != "out" || j.WriteDisposition != "WRITE_TRUNCATE" {
		t.Errorf("jobs.insert decoded as %+v (absent useLegacySql must mean legacy)", j)
	}
	if got[1].Call.Project != "p" || got[1].Call.API.String() != "jobs.insert" {
		t.Errorf("call = %+v", got[1].Call)
	}
}

// TestQueryExtractedObservable checks what the decoded request shows outside the
// module: the log line carries the dialect and SQL size, never the SQL.
func TestQueryExtractedObservable(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host := configuredHost(t, vm)
		sql := "SELECT secret_column FROM t"
		o := send(t, host, request{method: "POST", path: "/bigquery/v2/projects/p/queries",
			chunks: withBody(`{"query":"` + sql + `","useLegacySql":false,"dryRun":true,"defaultDataset":{"projectId":"p","datasetId":"d"}}`)})
		wantAllowed(t, o)
		line := o.logLine(t)
		for _, want := range []string{"api=jobs.query", "sql_bytes=27", "legacy_sql=false", "dry_run=true", `default_dataset="p.d"`} {
			if !strings.Contains(line, want) {
				t.Errorf("log line %q lacks %s", line, want)
			}
		}
		o = send(t, host, request{method: "POST", path: "/bigquery/v2/projects/p/queries", chunks: withBody(`{"query":"SELECT 1"}`)})
		if line := o.logLine(t); !strings.Contains(line, "legacy_sql=true") {
			t.Errorf("absent useLegacySql must be legacy: %q", line)
		}
		for _, l := range host.GetInfoLogs() {
			if strings.Contains(l, "secret_column") {
				t.Errorf("SQL text logged at info: %q", l)
			}
		}
	})
}
