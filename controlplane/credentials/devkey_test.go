package credentials

import (
	"os"
	"path/filepath"
	"testing"
)

func TestGenerateServiceAccountKeyLoads(t *testing.T) {
	const email = "dev-gateway@jitgate-dev.iam.gserviceaccount.com"
	data, err := GenerateServiceAccountKey(email)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "key.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	key, err := LoadServiceAccountKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if key.ClientEmail != email || key.ProjectID != "jitgate-dev" || len(key.PrivateKeyID) != 40 || key.Public().N.BitLen() != 2048 {
		t.Errorf("key = %v project %q bits %d", key, key.ProjectID, key.Public().N.BitLen())
	}
	if _, err := GenerateServiceAccountKey("not an email"); err == nil {
		t.Error("a bad email was accepted")
	}
}
