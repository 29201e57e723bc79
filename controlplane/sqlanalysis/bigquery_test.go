package sqlanalysis

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"cloud.google.com/go/bigquery"
	"google.golang.org/api/option"
)

// TestFreshTableBypassesCache: Table reuses cached metadata; FreshTable asks tables.get
// again and caches what it got, so later Table calls see the current schema too.
func TestFreshTableBypassesCache(t *testing.T) {
	var gets atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := gets.Add(1)
		w.Header().Set("Content-Type", "application/json")
		// Every answer names another second column: the table is altered between reads.
		fmt.Fprintf(w, `{"kind":"bigquery#table","type":"TABLE","tableReference":{"projectId":"p","datasetId":"d","tableId":"t"},`+
			`"schema":{"fields":[{"name":"id","type":"INTEGER"},{"name":"c%d","type":"STRING"}]}}`, n)
	}))
	defer srv.Close()
	client, err := bigquery.NewClient(context.Background(), "p", option.WithEndpoint(srv.URL+"/bigquery/v2/"), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	src := NewBigQueryTableSource(client)
	ctx := context.Background()
	second := func(m *TableMeta, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return m.Columns[1].Name
	}
	if got := second(src.Table(ctx, "p", "d", "t")); got != "c1" {
		t.Errorf("first read: %s", got)
	}
	if got := second(src.Table(ctx, "p", "d", "t")); got != "c1" || gets.Load() != 1 {
		t.Errorf("cached read: %s after %d tables.get", got, gets.Load())
	}
	if got := second(src.FreshTable(ctx, "p", "d", "t")); got != "c2" || gets.Load() != 2 {
		t.Errorf("fresh read: %s after %d tables.get", got, gets.Load())
	}
	if got := second(src.Table(ctx, "p", "d", "t")); got != "c2" || gets.Load() != 2 {
		t.Errorf("cached read after a fresh one: %s after %d tables.get", got, gets.Load())
	}
}
