// Package envoy owns the Envoy bootstrap of a jitgate gateway: the only static Envoy
// configuration, naming the node and the ADS cluster that reaches the control plane over
// mutual TLS.
// Everything else is pushed over xDS by jitgated.
package envoy

import (
	"bytes"
	_ "embed"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"text/template"
)

// XDSClusterName is the static cluster Envoy uses to reach the control plane's ADS server.
const XDSClusterName = "jitgate_xds"

//go:embed bootstrap.yaml.tmpl
var bootstrapTemplate string

var tmpl = template.Must(template.New("bootstrap").Option("missingkey=error").Parse(bootstrapTemplate))

// Params are the values a bootstrap is rendered from.
type Params struct {
	// NodeID identifies this Envoy to the control plane (unique per Envoy).
	NodeID string
	// NodeCluster groups Envoys; every jitgate Envoy receives the same configuration.
	NodeCluster string
	// XDS is the control plane's ADS address, host:port with a literal IP.
	XDS string
	// XDSServerName is the name (IP address or DNS name) jitgated's certificate must be
	// valid for; default the host of XDS.
	XDSServerName string
	// CAFile, CertFile and KeyFile are the TLS files as Envoy opens them: the CA that
	// verifies jitgated's certificate and Envoy's client certificate and key (with
	// generated material: ca.pem, envoy.pem, envoy-key.pem in jitgated's tls.dir).
	// Required: ADS is always mutual TLS.
	CAFile, CertFile, KeyFile string
	// Admin is Envoy's admin listener, host:port; loopback unless AllowNonLoopbackAdmin.
	Admin string
	// AllowNonLoopbackAdmin permits an admin address that is not loopback. The admin API
	// has no authentication and can stop Envoy or dump its configuration.
	AllowNonLoopbackAdmin bool
}

type rendered struct {
	NodeID, NodeCluster, AdminAddress, XDSAddress string
	AdminPort, XDSPort                            int
	CAFile, CertFile, KeyFile                     string
	SNI, ServerName, SANType                      string
}

// Render returns the bootstrap YAML for p.
func Render(p Params) ([]byte, error) {
	if p.NodeID == "" {
		return nil, fmt.Errorf("envoy bootstrap: node id is empty")
	}
	if p.NodeCluster == "" {
		p.NodeCluster = "jitgate"
	}
	r := rendered{NodeID: strconv.Quote(p.NodeID), NodeCluster: strconv.Quote(p.NodeCluster)}
	var err error
	if r.XDSAddress, r.XDSPort, err = splitIPPort("xds", p.XDS); err != nil {
		return nil, err
	}
	if r.AdminAddress, r.AdminPort, err = splitIPPort("admin", p.Admin); err != nil {
		return nil, err
	}
	if !p.AllowNonLoopbackAdmin && !net.ParseIP(r.AdminAddress).IsLoopback() {
		return nil, fmt.Errorf("envoy bootstrap: admin address %q is not loopback: Envoy's admin API has no authentication "+
			"(anyone who reaches it can dump the configuration or stop Envoy); use 127.0.0.1 or allow it explicitly", p.Admin)
	}
	for _, f := range []struct {
		name string
		v    string
		out  *string
	}{{"ca file", p.CAFile, &r.CAFile}, {"client certificate file", p.CertFile, &r.CertFile}, {"client key file", p.KeyFile, &r.KeyFile}} {
		if f.v == "" {
			return nil, fmt.Errorf("envoy bootstrap: the %s is required: ADS is mutual TLS (with jitgated's generated material: --tls-dir .jitgate/tls)", f.name)
		}
		if !filepath.IsAbs(f.v) {
			return nil, fmt.Errorf("envoy bootstrap: %s %q is not an absolute path", f.name, f.v)
		}
		*f.out = strconv.Quote(f.v)
	}
	name := p.XDSServerName
	if name == "" {
		name = r.XDSAddress
	}
	r.ServerName, r.SANType = strconv.Quote(name), "DNS"
	if net.ParseIP(name) != nil {
		r.SANType = "IP_ADDRESS" // and no SNI: it carries host names only
	} else if strings.ContainsAny(name, " \t\r\n\"'") {
		return nil, fmt.Errorf("envoy bootstrap: xds server name %q: want an IP address or a DNS name", name)
	} else {
		r.SNI = r.ServerName
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, r); err != nil {
		return nil, fmt.Errorf("envoy bootstrap: %w", err)
	}
	return buf.Bytes(), nil
}

// splitIPPort insists on a literal IP: the ADS cluster is STATIC, so a host name would be
// rejected by Envoy at start-up with a far less helpful message.
func splitIPPort(what, hostport string) (string, int, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", 0, fmt.Errorf("envoy bootstrap: %s address %q: %w", what, hostport, err)
	}
	if net.ParseIP(host) == nil {
		return "", 0, fmt.Errorf("envoy bootstrap: %s address %q: want a literal IP address", what, hostport)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n <= 0 || n > 65535 {
		return "", 0, fmt.Errorf("envoy bootstrap: %s address %q: bad port", what, hostport)
	}
	return host, n, nil
}
