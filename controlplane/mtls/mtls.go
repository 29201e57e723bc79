// Package mtls owns the mutual TLS between Envoy and jitgated: the certificate files of
// both sides (given by the operator, or a private CA and two leaf certificates generated
// at start-up and reused while valid), and the server side's tls.Config, which accepts only
// clients presenting a certificate issued by that CA for client authentication. jitgated
// serves ADS and the filter's callouts with it; Envoy reads the same files (the ADS
// cluster in its bootstrap, the callout cluster in CDS).
//
// The generation is hand-written on the standard library's crypto/x509 (ECDSA P-256): a
// CA and two leaves are ~100 lines, and no library would remove a check we need here.
package mtls

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// File names of generated material inside the TLS directory.
const (
	CAFile         = "ca.pem"
	CAKeyFile      = "ca-key.pem"
	ServerCertFile = "jitgated.pem"
	ServerKeyFile  = "jitgated-key.pem"
	EnvoyCertFile  = "envoy.pem"
	EnvoyKeyFile   = "envoy-key.pem"
)

// Validity of generated certificates; material with less than RenewBefore left is
// regenerated at start-up.
const (
	CAValidity   = 5 * 365 * 24 * time.Hour
	LeafValidity = 365 * 24 * time.Hour
	RenewBefore  = 30 * 24 * time.Hour
)

// EnvoyClientName is the common name of the generated Envoy client certificate.
const EnvoyClientName = "jitgate-envoy"

// Files are the paths of one side's TLS material.
type Files struct {
	// CA verifies the peer: Envoy's client certificates on jitgated's side, jitgated's
	// server certificate on Envoy's side.
	CA string
	// Cert and Key are this side's certificate chain and private key (PEM).
	Cert, Key string
}

// Generated is the material Ensure keeps in a directory.
type Generated struct {
	Dir    string
	Server Files // jitgated's: CA, jitgated.pem, jitgated-key.pem
	Envoy  Files // Envoy's: CA, envoy.pem, envoy-key.pem
	// Created is true when Ensure wrote new material (Envoys using older files must be
	// restarted with the new ones), false when it reused what was there.
	Created bool
}

// Paths returns where Ensure keeps material in dir.
func Paths(dir string) Generated {
	ca := filepath.Join(dir, CAFile)
	return Generated{
		Dir:    dir,
		Server: Files{CA: ca, Cert: filepath.Join(dir, ServerCertFile), Key: filepath.Join(dir, ServerKeyFile)},
		Envoy:  Files{CA: ca, Cert: filepath.Join(dir, EnvoyCertFile), Key: filepath.Join(dir, EnvoyKeyFile)},
	}
}

// Ensure returns the CA and both leaf certificates in dir, generating them when any is
// missing, unreadable, not issued by the CA, expiring within RenewBefore, or when the
// server certificate does not name every host in serverHosts (IP addresses or DNS
// names). A regeneration replaces everything, the CA too. Keys are written 0600, the
// directory 0700. Errors never contain key material.
func Ensure(dir string, serverHosts []string, now time.Time) (Generated, error) {
	g := Paths(dir)
	if err := g.check(serverHosts, now); err == nil {
		return g, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return g, fmt.Errorf("tls directory: %w", err)
	}
	if err := generate(g, serverHosts, now); err != nil {
		return g, err
	}
	g.Created = true
	return g, nil
}

// check reports why existing material cannot be reused (nil: it can).
func (g Generated) check(hosts []string, now time.Time) error {
	caPEM, err := os.ReadFile(g.Server.CA)
	if err != nil {
		return err
	}
	ca, err := parseCert(caPEM)
	if err != nil {
		return err
	}
	if _, err := tls.LoadX509KeyPair(g.Server.CA, filepath.Join(g.Dir, CAKeyFile)); err != nil {
		return err
	}
	if !ca.IsCA || now.Add(RenewBefore).After(ca.NotAfter) {
		return errors.New("ca expiring")
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	for _, leaf := range []struct {
		f     Files
		usage x509.ExtKeyUsage
	}{{g.Server, x509.ExtKeyUsageServerAuth}, {g.Envoy, x509.ExtKeyUsageClientAuth}} {
		pair, err := tls.LoadX509KeyPair(leaf.f.Cert, leaf.f.Key)
		if err != nil {
			return err
		}
		c := pair.Leaf
		if c == nil {
			return errors.New("no leaf")
		}
		if now.Add(RenewBefore).After(c.NotAfter) {
			return errors.New("leaf expiring")
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{leaf.usage}}); err != nil {
			return err
		}
		if leaf.usage == x509.ExtKeyUsageServerAuth {
			for _, h := range hosts {
				if err := c.VerifyHostname(h); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func generate(g Generated, hosts []string, now time.Time) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	start := now.Add(-5 * time.Minute) // tolerate small clock skew between hosts
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "jitgate private CA (Envoy <-> jitgated)"},
		NotBefore:             start,
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("create ca: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	leaf := func(cn string, usage x509.ExtKeyUsage, hosts []string) ([]byte, []byte, error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		t := &x509.Certificate{
			SerialNumber: serial(),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    start,
			NotAfter:     now.Add(LeafValidity),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		}
		for _, h := range hosts {
			if ip := net.ParseIP(h); ip != nil {
				t.IPAddresses = append(t.IPAddresses, ip)
			} else if h != "" && !slices.Contains(t.DNSNames, h) {
				t.DNSNames = append(t.DNSNames, h)
			}
		}
		der, err := x509.CreateCertificate(rand.Reader, t, ca, &key.PublicKey, caKey)
		if err != nil {
			return nil, nil, fmt.Errorf("create certificate %s: %w", cn, err)
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, nil, err
		}
		return pemBlock("CERTIFICATE", der), pemBlock("PRIVATE KEY", keyDER), nil
	}
	srvCert, srvKey, err := leaf("jitgated", x509.ExtKeyUsageServerAuth, hosts)
	if err != nil {
		return err
	}
	envCert, envKey, err := leaf(EnvoyClientName, x509.ExtKeyUsageClientAuth, nil)
	if err != nil {
		return err
	}
	caKeyDER, err := x509.MarshalPKCS8PrivateKey(caKey)
	if err != nil {
		return err
	}
	// Keys first and the CA last: a crash in between leaves material check() refuses,
	// so the next start regenerates instead of mixing generations.
	writes := []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{filepath.Join(g.Dir, CAKeyFile), pemBlock("PRIVATE KEY", caKeyDER), 0o600},
		{g.Server.Key, srvKey, 0o600},
		{g.Server.Cert, srvCert, 0o644},
		{g.Envoy.Key, envKey, 0o600},
		{g.Envoy.Cert, envCert, 0o644},
		{g.Server.CA, pemBlock("CERTIFICATE", caDER), 0o644},
	}
	for _, w := range writes {
		if err := writeFileAtomic(w.path, w.data, w.mode); err != nil {
			return err
		}
	}
	return nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return n
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// writeFileAtomic writes through a temporary file in the same directory, created with
// mode, so a key is never readable by others, not even while it is written.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func parseCert(pemData []byte) (*x509.Certificate, error) {
	b, _ := pem.Decode(pemData)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(b.Bytes)
}

// LoadCAPool reads a PEM bundle of CA certificates. Errors name the file, never its
// contents.
func LoadCAPool(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read ca file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("ca file %s holds no PEM certificate", path)
	}
	return pool, nil
}

// ServerConfig is the tls.Config of a jitgated listener Envoy connects to: it presents
// the server certificate and requires a client certificate issued by the CA in f.CA for
// client authentication (the generated server certificate, issued for server
// authentication only, is refused as a client certificate). nextProtos are the ALPN
// protocols offered ("h2" for gRPC). Errors never quote key material.
func ServerConfig(f Files, nextProtos ...string) (*tls.Config, error) {
	pool, err := LoadCAPool(f.CA)
	if err != nil {
		return nil, err
	}
	pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, fmt.Errorf("server certificate %s / key %s: %w", f.Cert, f.Key, redactPEMError(err))
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{pair},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		NextProtos:   nextProtos,
	}, nil
}

// CheckServerName reports whether the server certificate in certFile is valid for name
// (an IP address or DNS name), the name Envoys verify it against.
func CheckServerName(certFile, name string) error {
	data, err := os.ReadFile(certFile)
	if err != nil {
		return fmt.Errorf("read server certificate: %w", err)
	}
	c, err := parseCert(data)
	if err != nil {
		return fmt.Errorf("server certificate %s: %w", certFile, err)
	}
	if err := c.VerifyHostname(name); err != nil {
		return fmt.Errorf("server certificate %s is not valid for %q (Envoy checks this name): %v", certFile, name, err)
	}
	return nil
}

// redactPEMError keeps crypto/tls's error messages, which describe the problem without
// quoting the files' contents, but drops anything that looks like PEM just in case.
func redactPEMError(err error) error {
	if bytes.Contains([]byte(err.Error()), []byte("-----BEGIN")) {
		return errors.New("invalid certificate or key")
	}
	return err
}
