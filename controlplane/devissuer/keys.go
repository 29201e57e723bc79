package devissuer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"

	jose "github.com/go-jose/go-jose/v4"
)

// signingKey is one published key. Its kid is the RFC 7638 thumbprint, so a key loaded
// from a file keeps its kid across restarts.
type signingKey struct {
	alg     string
	kid     string
	private crypto.Signer
}

func newSigningKey(alg string, private crypto.Signer) (*signingKey, error) {
	thumb, err := (&jose.JSONWebKey{Key: private.Public()}).Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("devissuer: key thumbprint: %w", err)
	}
	return &signingKey{alg: alg, kid: base64.RawURLEncoding.EncodeToString(thumb), private: private}, nil
}

func (k *signingKey) publicJWK() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.private.Public(), KeyID: k.kid, Algorithm: k.alg, Use: "sig"}
}

func (k *signingKey) publicPEM() []byte {
	der, err := x509.MarshalPKIXPublicKey(k.private.Public())
	if err != nil {
		panic(err) // only RSA and P-256 keys exist here; both always marshal
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func generateKey(alg string) (*signingKey, error) {
	var (
		private crypto.Signer
		err     error
	)
	switch alg {
	case RS256:
		private, err = rsa.GenerateKey(rand.Reader, 2048)
	case ES256:
		private, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		return nil, fmt.Errorf("devissuer: unsupported algorithm %q (want RS256 or ES256)", alg)
	}
	if err != nil {
		return nil, fmt.Errorf("devissuer: generate %s key: %w", alg, err)
	}
	return newSigningKey(alg, private)
}

// loadOrCreateKey returns the key in path (creating it when missing) or, with no path, a
// fresh in-memory key.
func loadOrCreateKey(path, alg string) (*signingKey, string, error) {
	if path == "" {
		if alg == "" {
			alg = RS256
		}
		key, err := generateKey(alg)
		return key, alg, err
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if alg == "" {
			alg = RS256
		}
		key, err := generateKey(alg)
		if err != nil {
			return nil, "", err
		}
		return key, alg, writeKey(path, key)
	}
	if err != nil {
		return nil, "", fmt.Errorf("devissuer: read key file: %w", err)
	}
	key, err := parseKey(data)
	if err != nil {
		return nil, "", fmt.Errorf("devissuer: key file %s: %w", path, err)
	}
	if alg != "" && alg != key.alg {
		return nil, "", fmt.Errorf("devissuer: key file %s holds a %s key, not %s", path, key.alg, alg)
	}
	return key, key.alg, nil
}

func parseKey(data []byte) (*signingKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New(`want a PEM "PRIVATE KEY" (PKCS#8) block`)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	switch k := parsed.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("RSA key of %d bits is too small", k.N.BitLen())
		}
		return newSigningKey(RS256, k)
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, errors.New("EC key is not on P-256")
		}
		return newSigningKey(ES256, k)
	default:
		return nil, fmt.Errorf("unsupported key type %T", parsed)
	}
}

func writeKey(path string, key *signingKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key.private)
	if err != nil {
		return fmt.Errorf("devissuer: encode key: %w", err)
	}
	// O_EXCL: never overwrite a key another process created meanwhile.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("devissuer: create key file: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		return fmt.Errorf("devissuer: write key file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("devissuer: write key file: %w", err)
	}
	return nil
}
