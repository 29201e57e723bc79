package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jitgate/jitgate/controlplane/approvals"
)

const approvalsUsage = `Usage:
  jitgate approvals list [--all] [--json]     approvals you may decide (pending; --all: every state)
  jitgate approvals watch [--all]             print approval events as they happen (NATS)
  jitgate approve ID [--uses N] [--ttl D] [--reason TEXT]
  jitgate deny ID --reason TEXT

list, approve and deny call jitgated's API (--api, default $JITGATE_API, else
http://127.0.0.1:18001) with YOUR OIDC token, verified like an agent's: --token, or
--token-file FILE, or $JITGATE_TOKEN. You may decide an approval only when every approval
rule it carries names an ApproverGroup you belong to (spec.members lists your identity, or
spec.groups one of your token's groups), and never your own request. On a laptop:
  export JITGATE_TOKEN=$(jitgate dev token --agent dana --groups security-oncall)

approve grants the rule's uses and ttl unless --uses (1..1000) or --ttl (up to 168h) say
otherwise; the agent then sends the same call again (reject mode), or its held call
proceeds (hold mode). deny needs a reason; the agent sees it.

watch subscribes to the NATS subjects jitgate.approvals.created|approved|denied|expired
(stream JITGATE_APPROVAL_EVENTS) at --nats-url (default $JITGATE_NATS_URL, else
nats://127.0.0.1:4222; jitgated --nats-listen opens that port). It prints new events until
Ctrl-C; --all replays the stream's history first.
`

// apiFlags are the flags of the commands that call jitgated's approvals API.
type apiFlags struct {
	api, token, tokenFile string
	timeout               time.Duration
}

func addAPIFlags(fs *flag.FlagSet) *apiFlags {
	f := &apiFlags{}
	def := os.Getenv("JITGATE_API")
	if def == "" {
		def = "http://127.0.0.1:18001"
	}
	fs.StringVar(&f.api, "api", def, "jitgated's API base URL ($JITGATE_API)")
	fs.StringVar(&f.token, "token", "", "your OIDC token (prefer --token-file or $JITGATE_TOKEN: flags show in ps)")
	fs.StringVar(&f.tokenFile, "token-file", "", "file holding your OIDC token")
	fs.DurationVar(&f.timeout, "timeout", 10*time.Second, "request timeout")
	return f
}

func (f *apiFlags) bearer() (string, error) {
	tok := f.token
	if tok == "" && f.tokenFile != "" {
		b, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return "", fmt.Errorf("--token-file: %v", err)
		}
		tok = string(b)
	}
	if tok == "" {
		tok = os.Getenv("JITGATE_TOKEN")
	}
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return "", errors.New("no token: give --token-file FILE, --token or $JITGATE_TOKEN (your own OIDC token)")
	}
	return tok, nil
}

// call sends one API request and decodes a 200 answer into out; any other status is an
// error carrying the server's message.
func (f *apiFlags) call(method, path string, body, out any) error {
	tok, err := f.bearer()
	if err != nil {
		return err
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(f.api, "/")+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("jitgated at %s: %v", f.api, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s (HTTP %d)", e.Error, resp.StatusCode)
		}
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(data)))
	}
	return json.Unmarshal(data, out)
}

func approvalsCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stdout, approvalsUsage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	switch args[0] {
	case "list":
		return approvalsList(args[1:], stdout, stderr)
	case "watch":
		return approvalsWatch(args[1:], stdout, stderr)
	}
	fmt.Fprint(stderr, approvalsUsage)
	return 2
}

func approvalsList(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("jitgate approvals list", flag.ContinueOnError)
	fs.SetOutput(stderr)
	all := fs.Bool("all", false, "every state, not only pending")
	asJSON := fs.Bool("json", false, "print the JSON of each approval, one per line")
	af := addAPIFlags(fs)
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	path := approvals.ListPath
	if *all {
		path += "?state=all"
	}
	var out approvals.ListResponse
	if err := af.call(http.MethodGet, path, nil, &out); err != nil {
		fmt.Fprintln(stderr, "jitgate approvals list:", err)
		return 1
	}
	for _, a := range out.Approvals {
		if *asJSON {
			b, _ := json.Marshal(a)
			fmt.Fprintln(stdout, string(b))
			continue
		}
		fmt.Fprintln(stdout, approvalLine(a))
	}
	if len(out.Approvals) == 0 && !*asJSON {
		fmt.Fprintln(stderr, "no approvals for you to decide")
	}
	return 0
}

func approvalLine(a *approvals.Approval) string {
	line := fmt.Sprintf("%s  %-8s  %-6s  agent %s  groups %s  expires %s  %s", a.ID, a.State, a.Mode, a.Agent.ID,
		strings.Join(a.ApproverGroupNames(), ","), a.ExpiresAt.UTC().Format(time.RFC3339), a.Waiting())
	if a.Binding.LegacySQL {
		// Legacy SQL is only ever allowed unanalysed (what.legacySql): the approver is the check.
		line += "  NOT ANALYSED: legacy SQL (tables, deny rules and masking unchecked)"
	}
	if len(a.Binding.Parameters) > 0 {
		line += "  params " + clip(string(a.Binding.Parameters), 200)
	}
	if a.Approver != "" {
		line += fmt.Sprintf("  by %s (%s) uses left %d", a.Approver, orDash(a.Reason), a.UsesLeft)
	}
	return line
}

// decideCmd is `jitgate approve ID` and `jitgate deny ID`.
func decideCmd(approve bool, args []string, stdout, stderr io.Writer) int {
	name := "deny"
	if approve {
		name = "approve"
	}
	fs := flag.NewFlagSet("jitgate "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	reason := fs.String("reason", "", "why (required for deny; recorded in the audit trail and shown to the agent on deny)")
	var uses *int
	var ttl *time.Duration
	if approve {
		uses = fs.Int("uses", 0, "calls this approval covers (default: the rule's uses)")
		ttl = fs.Duration("ttl", 0, "how long the approval stays usable (default: the rule's ttl)")
	}
	af := addAPIFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: jitgate %s ID [flags]\n\n", name)
		fs.PrintDefaults()
	}
	// The id comes first (jitgate approve apr-... --uses 2); flags may follow it.
	var id string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		id, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if id == "" && fs.NArg() == 1 {
		id = fs.Arg(0)
	} else if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "jitgate %s: unexpected arguments %q\n", name, fs.Args())
		return 2
	}
	if id == "" {
		fs.Usage()
		return 2
	}
	req := approvals.DecideRequest{Reason: *reason}
	if approve {
		req.Uses = *uses
		if *ttl > 0 {
			req.TTL = ttl.String()
		}
	} else if strings.TrimSpace(*reason) == "" {
		fmt.Fprintln(stderr, "jitgate deny: --reason is required")
		return 2
	}
	var a approvals.Approval
	if err := af.call(http.MethodPost, approvals.ItemPath+url.PathEscape(id)+"/"+name, req, &a); err != nil {
		fmt.Fprintf(stderr, "jitgate %s: %v\n", name, err)
		return 1
	}
	if approve {
		fmt.Fprintf(stdout, "approved %s: %d use(s) until %s for agent %s\n", a.ID, a.UsesLeft, a.ExpiresAt.UTC().Format(time.RFC3339), a.Agent.ID)
	} else {
		fmt.Fprintf(stdout, "denied %s for agent %s: %s\n", a.ID, a.Agent.ID, a.Reason)
	}
	return 0
}

func approvalsWatch(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("jitgate approvals watch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	all := fs.Bool("all", false, "replay the event stream's history first")
	asJSON := fs.Bool("json", false, "print each event's JSON")
	def := os.Getenv("JITGATE_NATS_URL")
	if def == "" {
		def = nats.DefaultURL
	}
	natsURL := fs.String("nats-url", def, "NATS URL jitgated uses ($JITGATE_NATS_URL)")
	creds := fs.String("nats-creds", "", "NATS user credentials file")
	timeout := fs.Duration("timeout", 5*time.Second, "connect timeout")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	ctx, cancel := auditContext()
	defer cancel()
	opts := []nats.Option{nats.Name("jitgate-cli"), nats.Timeout(*timeout)}
	if *creds != "" {
		opts = append(opts, nats.UserCredentials(*creds))
	}
	nc, err := nats.Connect(*natsURL, opts...)
	if err != nil {
		fmt.Fprintf(stderr, "jitgate approvals watch: connect to NATS at %s: %v\n", redactURL(*natsURL), err)
		return 1
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		fmt.Fprintln(stderr, "jitgate approvals watch:", err)
		return 1
	}
	policy := jetstream.DeliverNewPolicy
	if *all {
		policy = jetstream.DeliverAllPolicy
	}
	cons, err := js.OrderedConsumer(ctx, approvals.EventsStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{approvals.SubjectPrefix + ".>"}, DeliverPolicy: policy})
	if err != nil {
		fmt.Fprintf(stderr, "jitgate approvals watch: stream %s: %v\n", approvals.EventsStream, err)
		return 1
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		if *asJSON {
			fmt.Fprintln(stdout, string(m.Data()))
			return
		}
		var ev approvals.Event
		if err := json.Unmarshal(m.Data(), &ev); err != nil || ev.Approval == nil {
			fmt.Fprintf(stdout, "%s  (unreadable event)\n", m.Subject())
			return
		}
		fmt.Fprintf(stdout, "%s  %-8s  %s\n", ev.Time.UTC().Format("2006-01-02T15:04:05Z"), ev.Type, approvalLine(ev.Approval))
		if ev.Type == approvals.EventCreated {
			fmt.Fprintf(stdout, "    approve: %s    deny: jitgate deny %s --reason ...\n", ev.ApproveCommand, ev.Approval.ID)
		}
	})
	if err != nil {
		fmt.Fprintln(stderr, "jitgate approvals watch:", err)
		return 1
	}
	defer cc.Stop()
	fmt.Fprintf(stderr, "watching %s.> on %s (Ctrl-C to stop)\n", approvals.SubjectPrefix, redactURL(*natsURL))
	<-ctx.Done()
	return 0
}
