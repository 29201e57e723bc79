package credentials

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/mail"
	"os"
)

// DefaultTokenURI is used when a key file has no token_uri.
const DefaultTokenURI = "https://oauth2.googleapis.com/token"

// maxKeyFileBytes bounds how much of a key file is read; real ones are about 2.3 KB.
const maxKeyFileBytes = 64 << 10

// ServiceAccountKey is a parsed Google service-account JSON key (type "service_account").
// The private key is unexported and never printed: fmt, json and slog show only the
// non-secret fields.
type ServiceAccountKey struct {
	// ClientEmail is the service account's email; iss and sub of every JWT it signs.
	ClientEmail string
	// PrivateKeyID is the key's id; the kid header of every JWT it signs.
	PrivateKeyID string
	// TokenURI is the OAuth2 token endpoint from the file (unused by jitgate's modes, which
	// never exchange a JWT for a token; kept for completeness and diagnostics).
	TokenURI string
	// ProjectID is the project the service account belongs to, when the file says.
	ProjectID string

	privateKey *rsa.PrivateKey
}

// keyFile is the on-disk shape; only the fields jitgate uses.
type keyFile struct {
	Type         string `json:"type"`
	ProjectID    string `json:"project_id"`
	PrivateKeyID string `json:"private_key_id"`
	PrivateKey   string `json:"private_key"`
	ClientEmail  string `json:"client_email"`
	TokenURI     string `json:"token_uri"`
}

// LoadServiceAccountKey reads and parses the JSON key file at path. Errors name the path
// and what is wrong, never the file's contents.
func LoadServiceAccountKey(path string) (*ServiceAccountKey, error) {
	f, err := os.Open(path)
	if err != nil {
		// *PathError carries only the operation, the path and the errno.
		return nil, fmt.Errorf("%w: %w", ErrKeyFile, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: read %s: %w", ErrKeyFile, path, err)
	}
	if len(data) > maxKeyFileBytes {
		return nil, fmt.Errorf("%w: %s: larger than %d bytes", ErrKeyFile, path, maxKeyFileBytes)
	}
	key, err := ParseServiceAccountKey(data)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return key, nil
}

// ParseServiceAccountKey parses the contents of a JSON key file. Its errors describe the
// problem without quoting the input (json's own messages can quote bytes of it).
func ParseServiceAccountKey(data []byte) (*ServiceAccountKey, error) {
	var kf keyFile
	if err := json.Unmarshal(data, &kf); err != nil {
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syn):
			return nil, fmt.Errorf("%w: not valid JSON (at byte offset %d)", ErrKeyFile, syn.Offset)
		case errors.As(err, &typ) && typ.Field != "":
			return nil, fmt.Errorf("%w: field %q has the wrong JSON type", ErrKeyFile, typ.Field)
		default:
			return nil, fmt.Errorf("%w: not a JSON object", ErrKeyFile)
		}
	}
	if kf.Type != "service_account" {
		// The type is not secret, but an arbitrary value could be anything; say what we want.
		return nil, fmt.Errorf("%w: type is not \"service_account\" (only service-account keys are supported)", ErrKeyFile)
	}
	if kf.ClientEmail == "" {
		return nil, fmt.Errorf("%w: client_email is missing", ErrKeyFile)
	}
	if _, err := mail.ParseAddress(kf.ClientEmail); err != nil {
		return nil, fmt.Errorf("%w: client_email is not an email address", ErrKeyFile)
	}
	if kf.PrivateKeyID == "" {
		return nil, fmt.Errorf("%w: private_key_id is missing", ErrKeyFile)
	}
	if kf.PrivateKey == "" {
		return nil, fmt.Errorf("%w: private_key is missing", ErrKeyFile)
	}
	pk, err := parseRSAPrivateKey([]byte(kf.PrivateKey))
	if err != nil {
		return nil, err
	}
	if kf.TokenURI == "" {
		kf.TokenURI = DefaultTokenURI
	}
	return &ServiceAccountKey{
		ClientEmail:  kf.ClientEmail,
		PrivateKeyID: kf.PrivateKeyID,
		TokenURI:     kf.TokenURI,
		ProjectID:    kf.ProjectID,
		privateKey:   pk,
	}, nil
}

// parseRSAPrivateKey accepts PKCS#8 (what Google issues) and PKCS#1 PEM. The x509 errors are
// dropped on purpose: they never need the key to be understood, and we promise not to
// echo anything derived from it.
func parseRSAPrivateKey(pemBytes []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, fmt.Errorf("%w: private_key is not PEM", ErrKeyFile)
	}
	if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("%w: private_key is not an RSA key (RS256 needs RSA)", ErrKeyFile)
		}
		return checkRSA(rk)
	}
	if rk, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return checkRSA(rk)
	}
	return nil, fmt.Errorf("%w: private_key is not a PKCS#8 or PKCS#1 RSA private key", ErrKeyFile)
}

func checkRSA(k *rsa.PrivateKey) (*rsa.PrivateKey, error) {
	if k.N.BitLen() < 2048 {
		return nil, fmt.Errorf("%w: private_key is a %d-bit RSA key; at least 2048 bits are required", ErrKeyFile, k.N.BitLen())
	}
	return k, nil
}

// Public returns the public half of the key (for verifying what it signed).
func (k *ServiceAccountKey) Public() *rsa.PublicKey { return &k.privateKey.PublicKey }

// String describes the key by its non-secret fields. The printing methods have value
// receivers so that a copied ServiceAccountKey redacts itself as well as a pointer does.
func (k ServiceAccountKey) String() string {
	return fmt.Sprintf("ServiceAccountKey{client_email=%s private_key_id=%s private_key=%s}", k.ClientEmail, k.PrivateKeyID, Redacted)
}

// GoString implements fmt.GoStringer.
func (k ServiceAccountKey) GoString() string { return k.String() }

// Format prints String for every verb, so %+v and %#v cannot walk into the private key.
func (k ServiceAccountKey) Format(f fmt.State, verb rune) { _, _ = io.WriteString(f, k.String()) }

// MarshalJSON emits only the non-secret fields.
func (k ServiceAccountKey) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]string{
		"client_email":   k.ClientEmail,
		"private_key_id": k.PrivateKeyID,
		"private_key":    Redacted,
	})
}

// LogValue implements slog.LogValuer.
func (k ServiceAccountKey) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("client_email", k.ClientEmail),
		slog.String("private_key_id", k.PrivateKeyID),
	)
}
