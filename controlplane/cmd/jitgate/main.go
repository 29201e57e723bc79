// Command jitgate is the operator CLI of jitgate: it renders the Envoy bootstrap a gateway
// needs and, for local development, mints agent tokens from jitgated's development issuer
// and writes throwaway service-account keys; it checks, explains and diffs policy
// directories (jitgate policy); it reads and verifies the audit trail (jitgate audit).
// Approval commands join it in a later issue.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/jitgate/jitgate/controlplane/mtls"
	"github.com/jitgate/jitgate/envoy"
)

const usage = `Usage: jitgate <command> [flags]

Commands:
  envoy bootstrap          print the Envoy bootstrap for a gateway (node id, admin, ADS cluster
                           over mutual TLS: --tls-dir or --tls-ca/--tls-cert/--tls-key)
  dev token                print an agent token minted by jitgated's development issuer
                           (jitgated --dev-issuer); TOKEN=$(jitgate dev token --agent NAME)
  dev service-account-key  write a throwaway service-account JSON key for local runs
                           (jitgated --credentials-key-file PATH)
  policy check DIR         validate a policy directory; file:line:col errors, exit 0/1
  policy explain …         decide one call as jitgated would and say why
                           (--policies DIR --agent A --groups g1,g2 --sql ... --tables ...)
  policy diff OLD NEW      which agents and groups gain or lose access
  audit tail|show|replay|verify|export
                           read the hash-chained audit trail from NATS (--nats-url);
                           'jitgate audit help' for details
  approvals list|watch     approvals waiting for you (API, your token) / events (NATS)
  approve ID [--uses N] [--ttl D] [--reason TEXT]
  deny ID --reason TEXT    decide an approval with your own OIDC token;
                           'jitgate approvals help' for details

Run 'jitgate <command> -h' for a command's flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) >= 1 && args[0] == "policy" {
		return policyCmd(args[1:], stdout, stderr)
	}
	if len(args) >= 1 && args[0] == "audit" {
		return auditCmd(args[1:], stdout, stderr)
	}
	if len(args) >= 1 {
		switch args[0] {
		case "approvals":
			return approvalsCmd(args[1:], stdout, stderr)
		case "approve":
			return decideCmd(true, args[1:], stdout, stderr)
		case "deny":
			return decideCmd(false, args[1:], stdout, stderr)
		}
	}
	if len(args) >= 2 {
		switch args[0] + " " + args[1] {
		case "envoy bootstrap":
			return envoyBootstrap(args[2:], stdout, stderr)
		case "dev token":
			return devToken(args[2:], stdout, stderr)
		case "dev service-account-key":
			return devServiceAccountKey(args[2:], stdout, stderr)
		}
	}
	if len(args) == 1 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprint(stderr, usage)
	return 2
}

func envoyBootstrap(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("jitgate envoy bootstrap", flag.ContinueOnError)
	fs.SetOutput(stderr)
	node := fs.String("node-id", "jitgate-envoy", "this Envoy's node id (unique per Envoy; shown in jitgated's logs)")
	cluster := fs.String("node-cluster", "jitgate", "node cluster; every jitgate Envoy gets the same configuration")
	xds := fs.String("xds", "127.0.0.1:18000", "jitgated's ADS address (literal IP:port)")
	xdsName := fs.String("xds-server-name", "", "the name (IP or DNS) jitgated's certificate must be valid for; default the --xds IP")
	tlsDir := fs.String("tls-dir", ".jitgate/tls", "jitgated's generated TLS material (its tls.dir, as this Envoy sees it): ca.pem, envoy.pem, envoy-key.pem; --tls-ca/--tls-cert/--tls-key override single files")
	ca := fs.String("tls-ca", "", "CA file that verifies jitgated's certificate (default TLS-DIR/ca.pem)")
	cert := fs.String("tls-cert", "", "Envoy's client certificate file (default TLS-DIR/envoy.pem)")
	key := fs.String("tls-key", "", "Envoy's client key file (default TLS-DIR/envoy-key.pem); only its path goes into the bootstrap")
	admin := fs.String("admin", "127.0.0.1:9901", "Envoy's admin address; loopback only unless --allow-non-loopback-admin")
	allowAdmin := fs.Bool("allow-non-loopback-admin", false, "permit a non-loopback --admin (the admin API has no authentication)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: jitgate envoy bootstrap [flags] > envoy.yaml\n\nThen: envoy -c envoy.yaml\n\n"+
			"ADS is mutual TLS: Envoy presents the client certificate and verifies jitgated's certificate.\n"+
			"The same files are named in CDS for the filter's callouts (jitgated's tls.envoy*File).\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	dir, err := filepath.Abs(*tlsDir)
	if err != nil {
		fmt.Fprintf(stderr, "jitgate: %v\n", err)
		return 1
	}
	files := mtls.Paths(dir).Envoy
	for _, o := range []struct{ flag, dst *string }{{ca, &files.CA}, {cert, &files.Cert}, {key, &files.Key}} {
		if *o.flag != "" {
			if *o.dst, err = filepath.Abs(*o.flag); err != nil {
				fmt.Fprintf(stderr, "jitgate: %v\n", err)
				return 1
			}
		}
	}
	y, err := envoy.Render(envoy.Params{NodeID: *node, NodeCluster: *cluster, XDS: *xds, XDSServerName: *xdsName,
		CAFile: files.CA, CertFile: files.Cert, KeyFile: files.Key, Admin: *admin, AllowNonLoopbackAdmin: *allowAdmin})
	if err != nil {
		fmt.Fprintf(stderr, "jitgate: %v\n", err)
		return 1
	}
	_, _ = stdout.Write(y)
	return 0
}
