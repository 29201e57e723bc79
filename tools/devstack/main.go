// Command devstack is `make run`: it brings up a whole jitgate gateway on this machine
// (BigQuery emulator seeded from YAML, jitgated with embedded NATS, Envoy running the
// jitgate filter), sends one query through it with the standard Python BigQuery client,
// prints the rows and how an agent connects, and serves until Ctrl-C.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/jitgate/jitgate/e2e/stack"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "devstack: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	fs := flag.NewFlagSet("devstack", flag.ExitOnError)
	root := fs.String("root", ".", "repository root (holds .tools/, bin/, build/)")
	data := fs.String("data", "tools/demo/bigquery-data.yaml", "BigQuery emulator seed data (YAML); its first project is queried")
	project := fs.String("project", "", "project to query (default: the first project in --data)")
	sql := fs.String("sql", "", "query sent through the gateway once it is up (default: the demo customers table)")
	agent := fs.String("agent-listen", "127.0.0.1:10000", "the agents' endpoint (Envoy listener)")
	xds := fs.String("xds-listen", "127.0.0.1:18000", "jitgated's ADS address")
	api := fs.String("api-listen", "127.0.0.1:18001", "jitgated's plain HTTP API address (status, metrics, approvals)")
	filter := fs.String("filter-listen", "127.0.0.1:18003", "jitgated's filter callout address (mutual TLS, Envoy only)")
	admin := fs.String("admin", "127.0.0.1:9901", "Envoy's admin address")
	emu := fs.String("emulator", "127.0.0.1:9050", "the BigQuery emulator's address (the upstream)")
	issuer := fs.String("dev-issuer", "127.0.0.1:18002", "the development OIDC issuer's address (jitgated serves it; dev only)")
	agentID := fs.String("agent", "demo-agent", "the agent id the demo query runs as (in group analysts)")
	policies := fs.String("policies", "tools/demo/policies", "policy directory to enforce (the demo's: analysts may SELECT from crm); without policies every call is denied unless --identity-only")
	identityOnly := fs.Bool("identity-only", false, "run jitgated without policies in identity-only mode (every verified agent may do anything the filter's built-in rules allow; first setup only); excludes --policies")
	work := fs.String("workdir", ".jitgate/run", "logs, Envoy bootstrap and NATS store")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: devstack [flags]\n\nStarts the BigQuery emulator, jitgated and Envoy, queries through the gateway, serves until Ctrl-C.\n\n")
		fs.PrintDefaults()
	}
	_ = fs.Parse(os.Args[1:])

	abs := func(p string) string {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(*root, p)
	}
	rootAbs, err := filepath.Abs(*root)
	if err != nil {
		return err
	}
	*root = rootAbs
	if *project == "" {
		if *project, err = firstProject(abs(*data)); err != nil {
			return err
		}
	}
	if *sql == "" {
		*sql = "SELECT id, name, country FROM `" + *project + ".crm.customers` ORDER BY id LIMIT 5"
	}

	policyDir := ""
	var jitgatedArgs []string
	if *identityOnly {
		explicit := false
		fs.Visit(func(f *flag.Flag) { explicit = explicit || (f.Name == "policies" && f.Value.String() != "") })
		if explicit {
			return fmt.Errorf("--identity-only runs without policies; drop --policies %s", *policies)
		}
		jitgatedArgs = append(jitgatedArgs, "--identity-only")
	} else if *policies != "" {
		policyDir = abs(*policies)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	startCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	s, err := stack.Start(startCtx, stack.Options{
		Root: *root, Jitgated: abs("bin/jitgated"), CLI: abs("bin/jitgate"), Wasm: abs("build/jitgate.wasm"),
		Data: abs(*data), Project: *project, WorkDir: abs(*work),
		AgentAddr: *agent, XDSAddr: *xds, APIAddr: *api, FilterAddr: *filter, AdminAddr: *admin, EmulatorAddr: *emu, DevIssuerAddr: *issuer,
		Progress:          os.Stdout,
		PoliciesDir:       policyDir,
		ExtraJitgatedArgs: jitgatedArgs,
	})
	if err != nil {
		return err
	}
	defer s.Close()

	token, err := s.Token(ctx, *agentID, "analysts")
	if err != nil {
		return err
	}
	agentCmd := []string{stack.Python(*root), filepath.Join(*root, "tools/agent/bq_query.py"),
		"--endpoint", s.Gateway, "--project", *project, "--token", token, *sql}
	fmt.Printf("[jitgate] agent %q got a token from the development issuer; sending a query through the gateway with the standard Python client:\n  %s\n", *agentID, *sql)
	cmd := exec.CommandContext(ctx, agentCmd[0], agentCmd[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("the demo query failed: %w (logs in %s)", err, abs(*work))
	}
	fmt.Printf(`
jitgate is up. Point any standard BigQuery client at the gateway:
  endpoint   %[1]s          (Go: option.WithEndpoint("%[1]s/bigquery/v2/"))
  project    %[2]s
  token      TOKEN=$(%[8]s dev token --issuer %[9]s --agent my-agent --groups analysts)
  try        %[3]s %[4]s --endpoint %[1]s --project %[2]s --token "$TOKEN" --default-dataset crm "SELECT COUNT(*) FROM customers"
Envoy admin %[5]s, control plane %[6]s/v1/status, logs in %[7]s.
ADS (%[10]s) and the filter's callouts (%[11]s) are mutual TLS with the certificates in %[12]s.
The development issuer is for local use only; production configs name real issuers (README).
Press Ctrl-C to stop.
`, s.Gateway, *project, agentCmd[0], agentCmd[1], s.Admin, s.API, abs(*work), abs("bin/jitgate"), s.DevIssuer, s.XDS, s.FilterAPI, s.TLSDir)
	<-ctx.Done()
	fmt.Println("\n[jitgate] stopping Envoy, jitgated and the emulator")
	return nil
}

func firstProject(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	var doc struct {
		Projects []struct {
			ID string `yaml:"id"`
		} `yaml:"projects"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	if len(doc.Projects) == 0 || doc.Projects[0].ID == "" {
		return "", fmt.Errorf("%s: no projects[0].id", path)
	}
	return doc.Projects[0].ID, nil
}
