package jobs

import "testing"

func TestKeys(t *testing.T) {
	for _, tt := range []struct{ got, want string }{
		{jobKey("jitgate-demo", "job_AbC-1"), "job.jitgate-demo.job_AbC-1"},
		{queryKey("p", "q1"), "query.p.q1"},
		{tableKey("p", "_anon1", "anon_t"), "table.p._anon1.anon_t"},
		// Domain-scoped projects and names with dots, spaces or unicode are encoded.
		{jobKey("example.com:proj", "j"), "job.=ZXhhbXBsZS5jb206cHJvag.j"},
		{tableKey("p", "d", "t.x"), "table.p.d.=dC54"},
		{jobKey("", "j"), ""},
	} {
		if tt.got != tt.want {
			t.Errorf("key %q, want %q", tt.got, tt.want)
		}
	}
	// One-to-one: a plain token never starts with "=".
	if token("=abc") == "=abc" || token("a.b") == token("a_b") {
		t.Error("token is not injective")
	}
	if _, err := decisionKey("dec_0123abc"); err != nil {
		t.Error(err)
	}
	for _, bad := range []string{"", "a.b", "dec *", string(make([]byte, 200))} {
		if _, err := decisionKey(bad); err == nil {
			t.Errorf("decision id %q accepted", bad)
		}
	}
}
