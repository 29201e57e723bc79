package bqapi

import "testing"

func BenchmarkClassify(b *testing.B) {
	paths := []struct{ method, path string }{
		{"POST", "/bigquery/v2/projects/my-project/queries?alt=json&prettyPrint=false"},
		{"GET", "/bigquery/v2/projects/my-project/queries/job_abc123?fields=rows,pageToken,totalRows&pageToken=xyz&location=US"},
		{"GET", "/projects/my-project/datasets/d/tables/t/data?startIndex=0&maxResults=1000"},
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		p := paths[i%len(paths)]
		if _, rej := Classify(p.method, "", p.path); rej != nil {
			b.Fatal(rej)
		}
	}
}

var benchQueryRequest = []byte(`{"query":"SELECT name, SUM(amount) AS total FROM ` + "`my-project.sales.orders`" + ` WHERE region = @region AND day BETWEEN @from AND @to GROUP BY name ORDER BY total DESC LIMIT 100",
"useLegacySql":false,"formatOptions":{"useInt64Timestamp":true},"requestId":"2c1f5e8a-0a7b-4c1e-9f7e-3e2b9d1a6c44","maxResults":1000,
"queryParameters":[{"name":"region","parameterType":{"type":"STRING"},"parameterValue":{"value":"EMEA"}},
{"name":"from","parameterType":{"type":"DATE"},"parameterValue":{"value":"2026-01-01"}},
{"name":"to","parameterType":{"type":"DATE"},"parameterValue":{"value":"2026-03-31"}}],"parameterMode":"NAMED",
"defaultDataset":{"projectId":"my-project","datasetId":"sales"},"labels":{"agent":"reporting-bot"}}`)

func BenchmarkDecodeQueryRequest(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(benchQueryRequest)))
	for b.Loop() {
		if _, rej := DecodeQueryRequest(benchQueryRequest); rej != nil {
			b.Fatal(rej)
		}
	}
}
