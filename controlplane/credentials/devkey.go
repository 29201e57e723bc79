package credentials

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/mail"
	"strings"
)

// GenerateServiceAccountKey returns a throwaway service-account JSON key in Google's format
// (RSA 2048, PKCS#8) for client_email email. Google has never heard of it: it exists for
// local runs against the BigQuery emulator and for tests, where a real key must not be
// needed. The returned bytes are secret; write them with mode 0600.
func GenerateServiceAccountKey(email string) ([]byte, error) {
	if a, err := mail.ParseAddress(email); err != nil || a.Address != email {
		return nil, fmt.Errorf("%w: %q is not a service-account email", ErrRequest, email)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generate RSA key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode RSA key: %w", err)
	}
	keyID := make([]byte, 20)
	_, _ = rand.Read(keyID)
	clientID := []byte("1")
	for range 20 {
		d, _ := rand.Int(rand.Reader, big.NewInt(10))
		clientID = append(clientID, byte('0'+d.Int64()))
	}
	// Google's service-account emails are NAME@PROJECT.iam.gserviceaccount.com.
	project, _, _ := strings.Cut(email[strings.IndexByte(email, '@')+1:], ".")
	doc := map[string]string{
		"type":                        "service_account",
		"project_id":                  project,
		"private_key_id":              hex.EncodeToString(keyID),
		"private_key":                 string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":                email,
		"client_id":                   string(clientID),
		"auth_uri":                    "https://accounts.google.com/o/oauth2/auth",
		"token_uri":                   DefaultTokenURI,
		"auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
		"client_x509_cert_url":        "https://www.googleapis.com/robot/v1/metadata/x509/" + strings.ReplaceAll(email, "@", "%40"),
		"universe_domain":             "googleapis.com",
	}
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}
