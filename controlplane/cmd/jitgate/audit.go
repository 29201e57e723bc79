package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jitgate/jitgate/controlplane/audit"
)

const auditUsage = `Usage: jitgate audit <command> [flags]

Read jitgate's audit trail: every authorize decision and every response summary, stored
hash-chained in the JetStream stream JITGATE_AUDIT (subjects jitgate.audit.>).

Commands:
  tail [--agent A] [-n N] [--follow]   the newest records, one line each; --follow waits for more
  show DECISION_ID                     everything recorded about one decision (and its response)
  replay --agent A --since 1h          an agent's session in order: time, decision, SQL, rule,
                                       and what came back (rows, masked cells, masked excerpt)
  verify [--anchor SEQ:HASH]           recompute the hash chain; exit 0 intact, 1 broken (the
                                       first broken record is named), 2 could not read
  export --format jsonl [-o FILE]      every record exactly as stored, one JSON per line (SIEM);
                                       an export can be checked offline: jitgate audit verify --file F

Every command reads from NATS:
  --nats-url URL     NATS with the audit stream (default $JITGATE_NATS_URL, else
                     nats://127.0.0.1:4222): the cluster jitgated uses (jitgated --nats-url).
                     jitgated's embedded NATS is in-process only unless it opens a
                     loopback client port: jitgated --nats-listen 127.0.0.1:4222 (config
                     nats.listen), then --nats-url nats://127.0.0.1:4222.
  --nats-creds FILE  NATS credentials file, when the cluster requires one
  --stream NAME      audit stream (default JITGATE_AUDIT)

Run 'jitgate audit <command> -h' for a command's flags.
`

// auditContext is the context commands run in (tests replace it); Ctrl-C ends it.
var auditContext = func() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func auditCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, auditUsage)
		return 2
	}
	switch args[0] {
	case "tail":
		return auditTail(args[1:], stdout, stderr)
	case "show":
		return auditShow(args[1:], stdout, stderr)
	case "replay":
		return auditReplay(args[1:], stdout, stderr)
	case "verify":
		return auditVerify(args[1:], stdout, stderr)
	case "export":
		return auditExport(args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, auditUsage)
		return 0
	}
	fmt.Fprintf(stderr, "jitgate audit: unknown command %q\n\n%s", args[0], auditUsage)
	return 2
}

// natsFlags are the connection flags every audit command takes.
type natsFlags struct {
	url, creds, stream string
	timeout            time.Duration
}

func addNATSFlags(fs *flag.FlagSet) *natsFlags {
	f := &natsFlags{}
	def := os.Getenv("JITGATE_NATS_URL")
	if def == "" {
		def = nats.DefaultURL
	}
	fs.StringVar(&f.url, "nats-url", def, "NATS URL with the audit stream ($JITGATE_NATS_URL)")
	fs.StringVar(&f.creds, "nats-creds", "", "NATS user credentials file")
	fs.StringVar(&f.stream, "stream", audit.DefaultStream, "audit stream name")
	fs.DurationVar(&f.timeout, "timeout", 5*time.Second, "connect and request timeout")
	return f
}

// session is what every audit command starts with: the command's context (Ctrl-C ends
// it) and a reader on the audit stream. done cancels the context and closes the
// connection.
func (f *natsFlags) session() (ctx context.Context, r *audit.Reader, done func(), err error) {
	ctx, cancel := auditContext()
	r, closeConn, err := f.open(ctx)
	if err != nil {
		cancel()
		return nil, nil, nil, err
	}
	return ctx, r, func() { closeConn(); cancel() }, nil
}

// open connects and opens the audit stream; the returned close drains the connection.
func (f *natsFlags) open(ctx context.Context) (*audit.Reader, func(), error) {
	opts := []nats.Option{nats.Name("jitgate-cli"), nats.Timeout(f.timeout), nats.MaxReconnects(3)}
	if f.creds != "" {
		opts = append(opts, nats.UserCredentials(f.creds))
	}
	nc, err := nats.Connect(f.url, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to NATS at %s: %v (is --nats-url the NATS jitgated uses?)", redactURL(f.url), err)
	}
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(f.timeout))
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	octx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	r, err := audit.NewReader(octx, js, f.stream)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return r, nc.Close, nil
}

func redactURL(u string) string {
	if at := strings.LastIndex(u, "@"); at >= 0 {
		if i := strings.Index(u, "://"); i >= 0 && i < at {
			return u[:i+3] + "[REDACTED]" + u[at:]
		}
		return "[REDACTED]" + u[at:]
	}
	return u
}

// parseArgs parses flags anywhere among the positional arguments ("show ID --json").
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func newFlagSet(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("jitgate audit "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	return fs
}

func fail(stderr io.Writer, err error) int {
	fmt.Fprintf(stderr, "jitgate audit: %v\n", err)
	return 2
}

func auditTail(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("tail", `Usage: jitgate audit tail [--agent A] [-n N] [--follow] [--json]

Prints the newest audit records, one line each (time, seq, kind, decision or upstream
status, agent, API, project, policy/rule, decision id, SQL). --follow keeps printing new
records until Ctrl-C.

`, stderr)
	nf := addNATSFlags(fs)
	agent := fs.String("agent", "", "only this agent id")
	n := fs.Int("n", 20, "how many of the newest records to print first")
	follow := fs.Bool("follow", false, "wait for new records")
	fs.BoolVar(follow, "f", false, "shorthand for --follow")
	asJSON := fs.Bool("json", false, "print records as stored (JSON lines)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return flagExit(err)
	}
	if len(pos) > 0 || *n < 0 {
		fs.Usage()
		return 2
	}
	ctx, r, done, err := nf.session()
	if err != nil {
		return fail(stderr, err)
	}
	defer done()
	err = r.Tail(ctx, *agent, *n, *follow, func(e audit.Entry) error {
		if *asJSON {
			_, err := fmt.Fprintf(stdout, "%s\n", e.Data)
			return err
		}
		_, err := fmt.Fprintln(stdout, oneLine(e))
		return err
	})
	if err != nil {
		return fail(stderr, err)
	}
	return 0
}

func auditShow(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("show", `Usage: jitgate audit show DECISION_ID [--json]

Prints every record of one decision (the decision id is in the agent's error message, the
filter's and jitgated's logs): the decision, and the response the agent received.
Exit 1 when there is none.

`, stderr)
	nf := addNATSFlags(fs)
	asJSON := fs.Bool("json", false, "print records as stored (JSON lines)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return flagExit(err)
	}
	if len(pos) != 1 {
		fs.Usage()
		return 2
	}
	ctx, r, done, err := nf.session()
	if err != nil {
		return fail(stderr, err)
	}
	defer done()
	entries, err := r.Show(ctx, pos[0])
	if err != nil {
		return fail(stderr, err)
	}
	if len(entries) == 0 {
		fmt.Fprintf(stderr, "jitgate audit: no records for decision %s\n", pos[0])
		return 1
	}
	for _, e := range entries {
		if *asJSON {
			fmt.Fprintf(stdout, "%s\n", e.Data)
			continue
		}
		printDetail(stdout, e)
	}
	return 0
}

func auditReplay(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("replay", `Usage: jitgate audit replay --agent A [--since 1h] [--json]

Replays an agent's session in the order it happened: each decision with its time, verdict,
policy and rule, the SQL, and what came back (upstream status, rows, masked cells, the
masked excerpt of the body the agent received).

`, stderr)
	nf := addNATSFlags(fs)
	agent := fs.String("agent", "", "agent id (required; \"*\" for every agent)")
	since := fs.String("since", "1h", "how far back: a duration (90m, 24h) or an RFC 3339 time")
	asJSON := fs.Bool("json", false, "print records as stored (JSON lines)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return flagExit(err)
	}
	from, serr := parseSince(*since, time.Now())
	if len(pos) > 0 || *agent == "" || serr != nil {
		if serr != nil {
			fmt.Fprintf(stderr, "jitgate audit replay: %v\n", serr)
		}
		fs.Usage()
		return 2
	}
	if *agent == "*" {
		*agent = ""
	}
	ctx, r, done, err := nf.session()
	if err != nil {
		return fail(stderr, err)
	}
	defer done()
	n := 0
	err = r.Replay(ctx, *agent, from, func(e audit.Entry) error {
		n++
		if *asJSON {
			_, err := fmt.Fprintf(stdout, "%s\n", e.Data)
			return err
		}
		printReplay(stdout, e)
		return nil
	})
	if err != nil {
		return fail(stderr, err)
	}
	if !*asJSON {
		fmt.Fprintf(stdout, "-- %d record(s) since %s\n", n, from.UTC().Format(time.RFC3339))
	}
	return 0
}

func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("--since %q is neither a duration (1h) nor an RFC 3339 time", s)
}

func auditVerify(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("verify", `Usage: jitgate audit verify [--anchor SEQ:HASH]... [--file EXPORT.jsonl]

Recomputes the hash chain from the first stored record: every record's hash must match its
content, link to the previous record's hash and sit at its own sequence. Exit 0 and print
the head (SEQ:HASH) when intact; exit 1 naming the first broken record (seq and decision
id) when not; exit 2 when the trail cannot be read.

Keep the printed head somewhere else (a ticket, another system) and pass it as --anchor
later: a store that lost or rewrote its newest records can present a shorter chain that is
valid in itself, and only an anchor shows that. Records removed by the stream's retention
limits (max age, max bytes) are reported, not treated as broken.

`, stderr)
	nf := addNATSFlags(fs)
	var anchors []audit.Anchor
	fs.Func("anchor", "a head printed by an earlier verify, SEQ:HASH (repeatable)", func(s string) error {
		a, err := audit.ParseAnchor(s)
		anchors = append(anchors, a)
		return err
	})
	file := fs.String("file", "", "verify an export (jitgate audit export) instead of the stream")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return flagExit(err)
	}
	if len(pos) > 0 {
		fs.Usage()
		return 2
	}
	var res audit.VerifyResult
	if *file != "" {
		f, err := os.Open(*file)
		if err != nil {
			return fail(stderr, err)
		}
		res, err = audit.VerifyJSONL(f)
		f.Close()
		if err != nil {
			return fail(stderr, err)
		}
	} else {
		ctx, r, done, err := nf.session()
		if err != nil {
			return fail(stderr, err)
		}
		defer done()
		if res, err = r.Verify(ctx, anchors...); err != nil {
			return fail(stderr, err)
		}
	}
	if b := res.Broken; b != nil {
		fmt.Fprintf(stdout, "BROKEN: first broken record: %s\n", b)
		fmt.Fprintf(stdout, "checked %d record(s) from seq %d; records after the break are not trusted\n", res.Records, res.FirstSeq)
		return 1
	}
	if res.Records == 0 {
		fmt.Fprintln(stdout, "OK: no records")
		return 0
	}
	fmt.Fprintf(stdout, "OK: %d record(s), seq %d..%d intact\n", res.Records, res.FirstSeq, res.LastSeq)
	if res.Truncated {
		fmt.Fprintf(stdout, "note: records before seq %d are gone (retention limits or purge); the chain is checked from there\n", res.FirstSeq)
	}
	fmt.Fprintf(stdout, "head: %d:%s\n", res.LastSeq, res.HeadHash)
	return 0
}

func auditExport(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("export", `Usage: jitgate audit export --format jsonl [--agent A] [--since 24h] [-o FILE]

Writes records exactly as stored, one JSON object per line, oldest first, for a SIEM. An
unfiltered export is the whole chain and can be checked offline with
'jitgate audit verify --file FILE'.

`, stderr)
	nf := addNATSFlags(fs)
	format := fs.String("format", "jsonl", "output format (jsonl)")
	agent := fs.String("agent", "", "only this agent id")
	since := fs.String("since", "", "only records since: a duration (24h) or an RFC 3339 time")
	out := fs.String("o", "", "write to FILE instead of stdout")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return flagExit(err)
	}
	if len(pos) > 0 || *format != "jsonl" {
		if *format != "jsonl" {
			fmt.Fprintf(stderr, "jitgate audit export: format %q is not supported (jsonl)\n", *format)
		}
		fs.Usage()
		return 2
	}
	f := audit.Filter{Agent: *agent}
	if *since != "" {
		if f.Since, err = parseSince(*since, time.Now()); err != nil {
			return fail(stderr, err)
		}
	}
	ctx, r, done, err := nf.session()
	if err != nil {
		return fail(stderr, err)
	}
	defer done()
	w := stdout
	if *out != "" {
		file, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return fail(stderr, err)
		}
		defer file.Close()
		w = file
	}
	n, err := r.Export(ctx, w, f)
	if err != nil {
		return fail(stderr, err)
	}
	if *out != "" {
		fmt.Fprintf(stderr, "exported %d record(s) to %s\n", n, *out)
	}
	return 0
}

// oneLine is a record as one tail line.
func oneLine(e audit.Entry) string {
	if e.Err != nil {
		return fmt.Sprintf("#%d  UNREADABLE  %v", e.StreamSeq, e.Err)
	}
	r := e.Record
	verdict := strings.ToUpper(r.Decision)
	if r.Kind == audit.KindResponse && r.Response != nil {
		verdict = fmt.Sprintf("%d rows=%d masked=%d bytes=%d", r.Response.UpstreamStatus, r.Response.Rows, r.Response.CellsMasked, r.Response.Bytes)
	}
	parts := []string{
		r.Time.UTC().Format("2006-01-02T15:04:05.000Z"),
		fmt.Sprintf("#%d", r.Seq),
		string(r.Kind),
		verdict,
		orDash(r.Agent.ID),
		orDash(r.API),
		orDash(r.Project),
		orDash(policyRule(r)),
		r.DecisionID,
	}
	if r.SQL != "" {
		parts = append(parts, clip(oneLineSQL(r.SQL), 100))
	}
	return strings.Join(parts, "  ")
}

func policyRule(r audit.Record) string {
	rule := r.Rule
	if rule == "" {
		rule = r.Reason
	}
	switch {
	case r.Policy != "" && rule != "":
		return r.Policy + " " + rule
	case r.Policy != "":
		return r.Policy
	}
	return rule
}

func printReplay(w io.Writer, e audit.Entry) {
	if e.Err != nil {
		fmt.Fprintf(w, "#%d  UNREADABLE  %v\n", e.StreamSeq, e.Err)
		return
	}
	r := e.Record
	ts := r.Time.UTC().Format("2006-01-02 15:04:05.000")
	if r.Kind == audit.KindResponse {
		resp := r.Response
		if resp == nil {
			resp = &audit.Response{}
		}
		fmt.Fprintf(w, "%s  RESPONSE  upstream %d, %d row(s), %d cell(s) masked, %d bytes  (%s)\n",
			ts, resp.UpstreamStatus, resp.Rows, resp.CellsMasked, resp.Bytes, r.DecisionID)
		if resp.BodyExcerpt != "" {
			more := ""
			if resp.ExcerptTruncated {
				more = " …"
			}
			fmt.Fprintf(w, "    body: %s%s\n", clip(resp.BodyExcerpt, 400), more)
		}
		return
	}
	fmt.Fprintf(w, "%s  %s  %s  %s %s  (%s)\n", ts, strings.ToUpper(orDash(r.Decision)), orDash(r.Agent.ID), orDash(r.API), r.Project, r.DecisionID)
	if pr := policyRule(r); pr != "" {
		fmt.Fprintf(w, "    policy: %s\n", pr)
	}
	if r.Decision != "allow" && r.Reason != "" && r.Reason != r.Rule {
		fmt.Fprintf(w, "    reason: %s\n", r.Reason)
	}
	if r.SQL != "" {
		fmt.Fprintf(w, "    sql: %s\n", clip(oneLineSQL(r.SQL), 2000))
	}
	if a := r.Analysis; a != nil && len(a.ReferencedTables) > 0 {
		fmt.Fprintf(w, "    tables: %s\n", strings.Join(a.ReferencedTables, ", "))
	}
	if a := r.Analysis; a != nil && a.NotAnalysed != "" {
		fmt.Fprintf(w, "    analysis: not analysed: %s\n", a.NotAnalysed)
	}
	if r.ApprovalID != "" {
		fmt.Fprintf(w, "    approval: %s by %s\n", r.ApprovalID, orDash(r.Approver))
	}
}

func printDetail(w io.Writer, e audit.Entry) {
	if e.Err != nil {
		fmt.Fprintf(w, "seq %d: UNREADABLE: %v\n%s\n\n", e.StreamSeq, e.Err, e.Data)
		return
	}
	r := e.Record
	row := func(k string, v any) {
		switch x := v.(type) {
		case string:
			if x == "" {
				return
			}
		case int:
			if x == 0 {
				return
			}
		}
		fmt.Fprintf(w, "  %-16s %v\n", k+":", v)
	}
	fmt.Fprintf(w, "%s record, seq %d\n", r.Kind, r.Seq)
	row("time", r.Time.UTC().Format(time.RFC3339Nano))
	row("decision id", r.DecisionID)
	row("request id", r.RequestID)
	row("agent", r.Agent.ID)
	row("issuer", r.Agent.Issuer)
	row("groups", strings.Join(r.Agent.Groups, ", "))
	row("client", strings.TrimSpace(r.Client.Address+" "+r.Client.UserAgent))
	row("api", r.API)
	row("project", r.Project)
	row("dataset", r.Dataset)
	row("table", r.Table)
	row("job", r.JobID)
	row("decision", r.Decision)
	row("status", r.Status)
	row("reason", r.Reason)
	row("rule", r.Rule)
	row("step", r.Step)
	row("policy", r.Policy)
	row("policy bundle", r.PolicyBundle)
	row("approval", r.ApprovalID)
	row("approver", r.Approver)
	row("credential id", r.CredentialID)
	if a := r.Analysis; a != nil {
		if a.NotAnalysed != "" {
			row("analysis", "not analysed: "+a.NotAnalysed)
		}
		row("statement", a.StatementKind)
		row("reads", strings.Join(a.ReferencedTables, ", "))
		row("writes", strings.Join(a.WrittenTables, ", "))
	}
	row("parameters", r.ParametersDigest)
	if r.SQL != "" {
		fmt.Fprintf(w, "  sql:\n    %s\n", strings.ReplaceAll(r.SQL, "\n", "\n    "))
	}
	if resp := r.Response; resp != nil {
		row("upstream", resp.UpstreamStatus)
		fmt.Fprintf(w, "  %-16s %d rows, %d cells masked, %d bytes\n", "returned:", resp.Rows, resp.CellsMasked, resp.Bytes)
		row("digest", resp.Digest)
		if resp.BodyExcerpt != "" {
			more := ""
			if resp.ExcerptTruncated {
				more = "\n    … (excerpt truncated)"
			}
			fmt.Fprintf(w, "  masked body:\n    %s%s\n", prettyJSON(resp.BodyExcerpt), more)
		}
	}
	row("writer", r.Writer)
	row("hash", r.Hash)
	row("prev hash", r.PrevHash)
	fmt.Fprintln(w)
}

func prettyJSON(s string) string {
	var v any
	if json.Unmarshal([]byte(s), &v) != nil {
		return s
	}
	b, err := json.MarshalIndent(v, "    ", "  ")
	if err != nil {
		return s
	}
	return string(b)
}

func oneLineSQL(s string) string { return strings.Join(strings.Fields(s), " ") }

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && (s[n]&0xC0) == 0x80 {
		n--
	}
	return s[:n] + "…"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
