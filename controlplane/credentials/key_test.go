package credentials

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadServiceAccountKey(t *testing.T) {
	key, path := loadTestKey(t)
	if key.ClientEmail != testEmail || key.PrivateKeyID != testKeyID || key.ProjectID != "test-project" ||
		key.TokenURI != "https://oauth2.googleapis.com/token" {
		t.Errorf("key = %+v", key)
	}
	if !key.Public().Equal(publicKeyFromFile(t, path)) {
		t.Error("public key differs from the file's")
	}

	// PKCS#1 ("BEGIN RSA PRIVATE KEY") is accepted too, and token_uri defaults.
	pkcs1 := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(testPrivateKey(t))}))
	key, err := LoadServiceAccountKey(writeKeyFile(t, map[string]any{"private_key": pkcs1, "token_uri": nil}))
	if err != nil {
		t.Fatal(err)
	}
	if key.TokenURI != DefaultTokenURI {
		t.Errorf("TokenURI = %q", key.TokenURI)
	}
}

func TestLoadServiceAccountKeyErrorsNameThePathNotTheContents(t *testing.T) {
	const canary = "CANARY-content-4d2e"
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pemWithCanary := "-----BEGIN PRIVATE KEY-----\n" + "Y2FuYXJ5LWNvbnRlbnQ=\n-----END PRIVATE KEY-----\n"
	tests := []struct {
		name string
		path string
		want string
	}{
		{"missing file", filepath.Join(t.TempDir(), "nope.json"), "no such file"},
		{"not JSON", writeFile(t, []byte("{"+canary+"}")), "not valid JSON"},
		{"not an object", writeFile(t, []byte(`["`+canary+`"]`)), "not a JSON object"},
		{"wrong field type", writeFile(t, []byte(`{"type":"service_account","client_email":["`+canary+`"]}`)), `"client_email" has the wrong JSON type`},
		{"authorized user", writeKeyFile(t, map[string]any{"type": "authorized_user" + canary}), `type is not "service_account"`},
		{"no email", writeKeyFile(t, map[string]any{"client_email": nil}), "client_email is missing"},
		{"bad email", writeKeyFile(t, map[string]any{"client_email": canary}), "client_email is not an email"},
		{"no key id", writeKeyFile(t, map[string]any{"private_key_id": ""}), "private_key_id is missing"},
		{"no key", writeKeyFile(t, map[string]any{"private_key": nil}), "private_key is missing"},
		{"key not PEM", writeKeyFile(t, map[string]any{"private_key": canary}), "private_key is not PEM"},
		{"key garbage DER", writeKeyFile(t, map[string]any{"private_key": pemWithCanary}), "not a PKCS#8 or PKCS#1 RSA"},
		{"EC key", writeKeyFile(t, map[string]any{"private_key": pkcs8PEM(t, ec)}), "not an RSA key"},
		{"1024-bit key", writeKeyFile(t, map[string]any{"private_key": pkcs8PEM(t, small)}), "1024-bit"},
		{"too large", writeFile(t, []byte(`{"x":"`+strings.Repeat("A", 70<<10)+canary+`"}`)), "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadServiceAccountKey(tt.path)
			if err == nil {
				t.Fatal("LoadServiceAccountKey succeeded")
			}
			msg := fmt.Sprintf("%v %+v", err, err)
			if !errors.Is(err, ErrKeyFile) {
				t.Errorf("error %q does not wrap ErrKeyFile", err)
			}
			if !strings.Contains(msg, tt.path) {
				t.Errorf("error %q does not name the path", err)
			}
			if !strings.Contains(msg, tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
			if strings.Contains(msg, "CANARY") || strings.Contains(msg, "BEGIN") {
				t.Errorf("error %q quotes the file", err)
			}
		})
	}
}

func TestServiceAccountKeyNeverPrintsThePrivateKey(t *testing.T) {
	key, _ := loadTestKey(t)
	pk := testPrivateKey(t)
	pemBody := strings.Split(pkcs8PEM(t, pk), "\n")[2] // a line of the key's base64
	forbidden := []string{pk.D.String(), pk.Primes[0].String(), pemBody, "PRIVATE KEY"}

	var outs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		outs = append(outs, fmt.Sprintf(verb, key), fmt.Sprintf(verb, *key), fmt.Sprintf(verb, struct{ K *ServiceAccountKey }{key}))
	}
	j1, _ := json.Marshal(key)
	j2, _ := json.Marshal(*key)
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("loaded", "key", key, "copy", *key)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("loaded", "key", key, "copy", *key)
	outs = append(outs, string(j1), string(j2), buf.String())
	for _, out := range outs {
		for _, f := range forbidden {
			if strings.Contains(out, f) {
				t.Fatalf("printed key contains private material: %s", out)
			}
		}
		if !strings.Contains(out, testEmail) {
			t.Errorf("printed key lacks the client email: %s", out)
		}
	}
}
