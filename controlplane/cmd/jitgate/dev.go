package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jitgate/jitgate/controlplane/config"
	"github.com/jitgate/jitgate/controlplane/credentials"
	"github.com/jitgate/jitgate/controlplane/devissuer"
)

// DefaultDevServiceAccount is the client_email of keys written by dev service-account-key.
const DefaultDevServiceAccount = "dev-gateway@jitgate-dev.iam.gserviceaccount.com"

// devToken asks the development issuer's mint endpoint for an agent token and prints just
// the token, so $(jitgate dev token --agent x) works.
func devToken(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("jitgate dev token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	agent := fs.String("agent", "", "agent id: the token's sub claim, which jitgated reports as the agent (required)")
	groups := fs.String("groups", "", "comma-separated groups for the token's groups claim, e.g. analysts,etl")
	ttl := fs.Duration("ttl", devissuer.DefaultTokenTTL, "token lifetime (at most 24h)")
	issuer := fs.String("issuer", "http://"+config.DefaultDevIssuerListen, "URL of the development issuer (jitgated --dev-issuer-listen)")
	audience := fs.String("audience", "", "token audience; default: the issuer's (jitgated devIssuer.audience, \"jitgate\")")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: jitgate dev token --agent NAME [--groups a,b] [--ttl 10m] [--issuer URL]

Prints an OIDC ID token for agent NAME, minted by the development issuer that
'jitgated --dev-issuer' runs on loopback. Give it to a BigQuery client as its bearer token:

  TOKEN=$(jitgate dev token --agent etl-bot --groups analysts)

Development only: the issuer mints a token for any agent to anyone on this machine.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "jitgate dev token: unexpected arguments: %s\n", strings.Join(fs.Args(), " "))
		return 2
	}
	if *agent == "" {
		fmt.Fprintln(stderr, "jitgate dev token: --agent is required")
		return 2
	}
	req := devissuer.TokenRequest{Agent: *agent, TTL: ttl.String(), Audience: *audience}
	for _, g := range strings.Split(*groups, ",") {
		if g = strings.TrimSpace(g); g != "" {
			req.Groups = append(req.Groups, g)
		}
	}
	body, _ := json.Marshal(req)
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Post(strings.TrimRight(*issuer, "/")+devissuer.TokenPath, "application/json", bytes.NewReader(body))
	if err != nil {
		fmt.Fprintf(stderr, "jitgate dev token: %v\n(is jitgated running with --dev-issuer, listening at %s?)\n", err, *issuer)
		return 1
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(out, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(out))
		}
		fmt.Fprintf(stderr, "jitgate dev token: %s: %s\n", resp.Status, e.Error)
		return 1
	}
	var tr devissuer.TokenResponse
	if err := json.Unmarshal(out, &tr); err != nil || tr.Token == "" {
		fmt.Fprintf(stderr, "jitgate dev token: unexpected answer from %s (not a development issuer?)\n", *issuer)
		return 1
	}
	fmt.Fprintln(stdout, tr.Token)
	return 0
}

// devServiceAccountKey writes a throwaway Google-format key for local runs against the
// emulator (which checks no credentials); Google has never heard of it.
func devServiceAccountKey(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("jitgate dev service-account-key", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "where to write the JSON key (required); created with mode 0600")
	email := fs.String("email", DefaultDevServiceAccount, "the key's client_email")
	force := fs.Bool("force", false, "replace an existing file")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: jitgate dev service-account-key --out PATH [--email EMAIL] [--force]

Writes a throwaway service-account JSON key in Google's format (RSA 2048) for local runs of
jitgated against the BigQuery emulator:

  jitgate dev service-account-key --out .jitgate/dev-sa-key.json
  jitgated --dev-issuer --credentials-key-file .jitgate/dev-sa-key.json --upstream http://127.0.0.1:9050

Google has never seen this key: real BigQuery rejects the credentials it signs.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "jitgate dev service-account-key: unexpected arguments: %s\n", strings.Join(fs.Args(), " "))
		return 2
	}
	if *out == "" {
		fmt.Fprintln(stderr, "jitgate dev service-account-key: --out is required")
		return 2
	}
	data, err := credentials.GenerateServiceAccountKey(*email)
	if err == nil {
		err = writeSecretFile(*out, data, *force)
	}
	if errors.Is(err, os.ErrExist) {
		fmt.Fprintf(stderr, "jitgate dev service-account-key: %s already exists; use --force to replace it\n", *out)
		return 1
	}
	if err != nil {
		fmt.Fprintf(stderr, "jitgate dev service-account-key: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "wrote a throwaway service-account key for %s to %s (development only)\n", *email, *out)
	return 0
}

// writeSecretFile writes data with mode 0600, creating parent directories (0700). Without
// force an existing file is an os.ErrExist; with force it is replaced atomically.
func writeSecretFile(path string, data []byte, force bool) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	if !force {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		if _, err := f.Write(data); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".sa-key-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func flagExit(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 2
}
