// Package envoy owns the Envoy bootstrap of a jitgate gateway: the only static Envoy
// configuration, naming the node and the ADS cluster that reaches the control plane.
// Everything else is pushed over xDS by jitgated.
package envoy

import (
	"bytes"
	_ "embed"
	"fmt"
	"net"
	"strconv"
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
	// Admin is Envoy's admin listener, host:port; keep it on loopback.
	Admin string
}

type rendered struct {
	NodeID, NodeCluster, AdminAddress, XDSAddress string
	AdminPort, XDSPort                            int
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
