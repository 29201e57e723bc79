package masking

import "testing"

func TestCountRows(t *testing.T) {
	for _, tc := range []struct {
		body string
		want int
		bad  bool
	}{
		{`{"rows":[{"f":[{"v":"1"}]},{"f":[{"v":"2"}]}],"totalRows":"2"}`, 2, false},
		{`{"kind":"bigquery#tableDataList","rows":[]}`, 0, false},
		{`{"rows":null}`, 0, false},
		{`{"kind":"bigquery#job","status":{"state":"DONE"}}`, 0, false},
		{` { "schema" : {"fields":[]}, "rows" : [ {"f":[{"v":{"f":[{"v":"x"}]}}]} ] } `, 1, false},
		{`{"rows":"x"}`, 0, true},
		{`[1,2]`, 0, true},
		{`{"rows":[1,}`, 0, true},
		{`{"rows":[]} trailing`, 0, true},
	} {
		got, err := CountRows([]byte(tc.body))
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("CountRows(%s) = %d, %v; want %d, error %v", tc.body, got, err, tc.want, tc.bad)
		}
	}
}
