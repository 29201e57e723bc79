package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jitgate/jitgate/controlplane/credentials"
	"github.com/jitgate/jitgate/filter/authorize"
	"github.com/jitgate/jitgate/filter/bqapi"
)

func collect(t *testing.T, f func(fn func(Entry) error) error) []Record {
	t.Helper()
	var out []Record
	if err := f(func(e Entry) error {
		if e.Err != nil {
			return e.Err
		}
		out = append(out, e.Record)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestReplayOrderAndAgentFilter(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, Config{})
	const alice = "alice@agents.example.com" // dots and @ need subject encoding
	appendN(t, e.w, 0, 4, alice)
	appendN(t, e.w, 100, 4, "bob")
	time.Sleep(20 * time.Millisecond)
	since := time.Now()
	appendN(t, e.w, 200, 6, alice)
	appendN(t, e.w, 300, 2, "bob")
	appendN(t, e.w, 400, 2, alice)

	all := collect(t, func(fn func(Entry) error) error { return e.r.Replay(ctx, alice, time.Time{}, fn) })
	if len(all) != 12 {
		t.Fatalf("alice has %d records, want 12", len(all))
	}
	for i, r := range all {
		if r.Agent.ID != alice || (i > 0 && r.Seq <= all[i-1].Seq) {
			t.Fatalf("record %d = seq %d agent %q", i, r.Seq, r.Agent.ID)
		}
	}
	recent := collect(t, func(fn func(Entry) error) error { return e.r.Replay(ctx, alice, since, fn) })
	if len(recent) != 8 || recent[0].DecisionID != "dec_0200" || recent[7].DecisionID != "dec_0400" {
		t.Fatalf("alice since = %d records, first %+v", len(recent), recent)
	}
	if got := collect(t, func(fn func(Entry) error) error { return e.r.Replay(ctx, "nobody", time.Time{}, fn) }); len(got) != 0 {
		t.Fatalf("unknown agent has %d records", len(got))
	}
	if got := collect(t, func(fn func(Entry) error) error { return e.r.Replay(ctx, "", since, fn) }); len(got) != 10 {
		t.Fatalf("everyone since = %d records, want 10", len(got))
	}
	if got := collect(t, func(fn func(Entry) error) error { return e.r.Replay(ctx, alice, time.Now().Add(time.Hour), fn) }); len(got) != 0 {
		t.Fatalf("future since = %d records", len(got))
	}
}

func TestShow(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, Config{})
	appendN(t, e.w, 0, 6, "alice")
	got, err := e.r.Show(ctx, "dec_0002")
	if err != nil || len(got) != 2 || got[0].Record.Kind != KindDecision || got[1].Record.Kind != KindResponse ||
		got[0].Record.DecisionID != "dec_0002" || got[1].Record.DecisionID != "dec_0002" {
		t.Fatalf("show = %+v, %v", got, err)
	}
	if got, err := e.r.Show(ctx, "dec_missing"); err != nil || len(got) != 0 {
		t.Fatalf("show missing = %v, %v", got, err)
	}
}

func TestTail(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, Config{})
	appendN(t, e.w, 0, 10, "alice")
	appendN(t, e.w, 10, 3, "bob")
	last := collect(t, func(fn func(Entry) error) error { return e.r.Tail(ctx, "", 4, false, fn) })
	if len(last) != 4 || last[0].Seq != 10 || last[3].Seq != 13 {
		t.Fatalf("tail 4 = %+v", last)
	}
	alice := collect(t, func(fn func(Entry) error) error { return e.r.Tail(ctx, "alice", 3, false, fn) })
	if len(alice) != 3 || alice[0].Seq != 8 || alice[2].Seq != 10 {
		t.Fatalf("tail alice 3 = %+v", alice)
	}

	// Follow: the last record, then new ones as they come.
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	got := make(chan Record, 10)
	done := make(chan error, 1)
	go func() {
		done <- e.r.Tail(fctx, "alice", 1, true, func(en Entry) error { got <- en.Record; return nil })
	}()
	first := <-got
	if first.Seq != 10 {
		t.Fatalf("follow starts at seq %d", first.Seq)
	}
	appendN(t, e.w, 20, 1, "bob")
	appendN(t, e.w, 21, 2, "alice")
	for _, want := range []uint64{15, 16} {
		select {
		case r := <-got:
			if r.Seq != want || r.Agent.ID != "alice" {
				t.Fatalf("followed %d/%s, want seq %d", r.Seq, r.Agent.ID, want)
			}
		case <-fctx.Done():
			t.Fatal("follow delivered nothing")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("follow ended with %v", err)
	}
}

func TestExportRoundTrip(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, Config{})
	as := appendN(t, e.w, 0, 30, "alice")
	var buf bytes.Buffer
	n, err := e.r.Export(ctx, &buf, Filter{})
	if err != nil || n != 30 {
		t.Fatalf("export = %d, %v", n, err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 30 {
		t.Fatalf("%d lines", len(lines))
	}
	for i, l := range lines {
		var r Record
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatal(err)
		}
		want := testRecord(i, "alice")
		if r.Seq != uint64(i+1) || r.Hash != as[i].Hash || r.DecisionID != want.DecisionID || r.SQL != want.SQL ||
			!reflect.DeepEqual(r.Analysis, want.Analysis) || !reflect.DeepEqual(r.Response, want.Response) {
			t.Fatalf("line %d = %+v", i, r)
		}
	}
	res, err := VerifyJSONL(bytes.NewReader(buf.Bytes()))
	if err != nil || !res.OK() || res.Records != 30 || res.HeadHash != as[29].Hash {
		t.Fatalf("verify export = %+v %v, %v", res, res.Broken, err)
	}
	// An edited export is caught too.
	edited := strings.Replace(buf.String(), "WHERE id = 17", "WHERE id = 71", 1)
	res, err = VerifyJSONL(strings.NewReader(edited))
	if err != nil || res.OK() || res.Broken.Seq != 18 || res.Broken.DecisionID != "dec_0016" {
		t.Fatalf("verify edited export = %+v %v, %v", res, res.Broken, err)
	}
	// A line removed from an export is named.
	res, _ = VerifyJSONL(strings.NewReader(strings.Join(append(lines[:5:5], lines[6:]...), "\n")))
	if res.OK() || res.Broken.Seq != 6 {
		t.Fatalf("verify export with a line removed = %+v %v", res, res.Broken)
	}
	// A filtered export is a valid subset but not a chain; it still round-trips.
	buf.Reset()
	if n, err := e.r.Export(ctx, &buf, Filter{Kind: KindResponse}); err != nil || n != 15 {
		t.Fatalf("export responses = %d, %v", n, err)
	}
}

// TestSecretsNeverReachARecord puts an upstream credential and an agent token everywhere a
// caller could through the normal APIs, and checks that neither appears in any stored
// byte, any read-back record or any export.
func TestSecretsNeverReachARecord(t *testing.T) {
	ctx := context.Background()
	var logs bytes.Buffer
	e := newEnv(t, Config{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	const upstream = "ya29.UPSTREAM-CANARY-8f3e2a"
	const agentToken = "eyJhbGciOiJSUzI1NiJ9.AGENT-CANARY-77d1.sig"
	secret := credentials.NewSecret(upstream)
	cred := credentials.Credential{Token: secret, ID: "jti-123", Mode: credentials.Mode("self-signed-jwt")}

	req := authorize.Request{
		RequestID: "req-canary", Token: agentToken,
		Client: authorize.Client{Address: "10.1.1.1:4444", UserAgent: "canary/1"},
		Call:   authorize.Call{API: "jobs.query", Method: "POST", Project: "p"},
		Query: &authorize.Query{SQL: "SELECT 1",
			Parameters: []bqapi.QueryParameter{{Name: "x", ParameterType: &bqapi.QueryParameterType{Type: "STRING"},
				ParameterValue: &bqapi.QueryParameterValue{Value: ptr("parameter-value")}}}},
	}
	rec := FromRequest("dec_canary", req)
	rec.Agent = Agent{ID: fmt.Sprint(secret), Issuer: fmt.Sprintf("%v", secret), Groups: []string{fmt.Sprintf("%s", secret), fmt.Sprintf("%q", secret), fmt.Sprintf("%x", secret), fmt.Sprintf("%#v", secret), fmt.Sprintf("%+v", cred)}}
	rec.CredentialID = cred.ID
	rec.Reason = cred.AuthorizationHeader().String()
	rec.Rule = fmt.Sprint(cred.AuthorizationHeader())
	j, _ := json.Marshal(map[string]any{"authorization": secret, "cred": cred.Token})
	rec.SQL += " -- " + string(j)
	rec.Decision = "allow"
	if _, err := e.w.Append(ctx, rec); err != nil {
		t.Fatal(err)
	}
	resp := Record{Kind: KindResponse, DecisionID: "dec_canary", CredentialID: cred.ID,
		Response: &Response{UpstreamStatus: 200, BodyExcerpt: string(j) + fmt.Sprint(cred.Token)}}
	if _, err := e.w.Append(ctx, resp); err != nil {
		t.Fatal(err)
	}
	// A failing append logs; the log line must not carry secrets either.
	_, _ = e.w.Append(ctx, Record{Kind: "bad", DecisionID: fmt.Sprint(secret)})

	var all bytes.Buffer
	if _, err := e.r.Export(ctx, &all, Filter{}); err != nil {
		t.Fatal(err)
	}
	shown, _ := e.r.Show(ctx, "dec_canary")
	for _, en := range shown {
		all.Write(en.Data)
		fmt.Fprintf(&all, "%+v %#v", en.Record, en.Record)
	}
	raw, err := e.w.stream.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	all.Write(raw.Data)
	all.Write(logs.Bytes())
	for _, canary := range []string{upstream, "UPSTREAM-CANARY", agentToken, "AGENT-CANARY", "parameter-value"} {
		if strings.Contains(all.String(), canary) {
			t.Errorf("%q reached the audit trail", canary)
		}
	}
	if len(shown) != 2 || !strings.Contains(string(shown[0].Data), "jti-123") || shown[0].Record.ParametersDigest == "" {
		t.Fatalf("records = %s", all.String())
	}
}

func ptr[T any](v T) *T { return &v }

// TestRecordHoldsOnlyPlainData: a Record's fields are strings, numbers, bools, times,
// string slices and this package's structs of the same, so no credentials.Secret (or any
// value that could hold one: interfaces, maps, byte slices, funcs) can be put in a record.
func TestRecordHoldsOnlyPlainData(t *testing.T) {
	secretType := reflect.TypeFor[credentials.Secret]()
	var check func(path string, ty reflect.Type)
	check = func(path string, ty reflect.Type) {
		if ty == secretType {
			t.Errorf("%s is a credentials.Secret", path)
			return
		}
		switch ty.Kind() {
		case reflect.String, reflect.Int, reflect.Int64, reflect.Uint64, reflect.Bool:
		case reflect.Pointer:
			check(path, ty.Elem())
		case reflect.Slice:
			if ty.Elem().Kind() != reflect.String {
				t.Errorf("%s is a %s", path, ty)
			}
		case reflect.Struct:
			if ty == reflect.TypeFor[time.Time]() {
				return
			}
			if ty.PkgPath() != reflect.TypeFor[Record]().PkgPath() {
				t.Errorf("%s is a foreign struct %s", path, ty)
				return
			}
			for f := range ty.Fields() {
				check(path+"."+f.Name, f.Type)
			}
		default:
			t.Errorf("%s is a %s (could hold a secret)", path, ty)
		}
	}
	check("Record", reflect.TypeFor[Record]())
}

func TestCanonicalAndHash(t *testing.T) {
	a := []byte(`{"b": 1, "a": {"y": [1, 2.50, "x<y"], "x": null}, "hash": "abc"}`)
	b := []byte(`{"a":{"x":null,"y":[1,2.50,"x<y"]},"b":1}`)
	ca, err := Canonical(a)
	if err != nil || string(ca) != `{"a":{"x":null,"y":[1,2.50,"x<y"]},"b":1,"hash":"abc"}` {
		t.Fatalf("canonical = %s, %v", ca, err)
	}
	ha, stored, _ := HashOf(a)
	hb, _, _ := HashOf(b)
	if ha != hb || stored != "abc" || len(ha) != 64 {
		t.Fatalf("hashes %s %s stored %q", ha, hb, stored)
	}
	if _, _, err := HashOf([]byte(`[1]`)); err == nil {
		t.Error("a non-object hashed")
	}
	if _, err := Canonical([]byte(`{} {}`)); err == nil {
		t.Error("trailing data accepted")
	}
}
