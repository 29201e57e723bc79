package config

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadHashKey(t *testing.T) {
	dir := t.TempDir()
	raw := []byte("0123456789abcdef0123456789abcdef\x00\xff")
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		name    string
		content []byte
		want    []byte // nil: error
	}{
		{"base64 with a newline", []byte(base64.StdEncoding.EncodeToString(raw) + "\n"), raw},
		{"raw bytes", raw, raw},
		{"base64 of too few bytes", []byte(base64.StdEncoding.EncodeToString([]byte("short-key")) + "\n"), nil},
		{"raw too short", []byte("short\x00key"), nil},
		{"empty", nil, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			k, err := LoadHashKey(write(strings.ReplaceAll(c.name, " ", "_"), c.content))
			if c.want == nil {
				if err == nil {
					t.Fatalf("key %q accepted", k)
				}
				if len(c.content) > 0 && strings.Contains(err.Error(), strings.TrimSpace(string(c.content))) {
					t.Errorf("error quotes the key file: %v", err)
				}
				return
			}
			if err != nil || !bytes.Equal(k, c.want) {
				t.Errorf("LoadHashKey = %q, %v", k, err)
			}
		})
	}
	if _, err := LoadHashKey(filepath.Join(dir, "missing")); err == nil || strings.Contains(err.Error(), dir) {
		t.Errorf("missing file: %v (must not name the path)", err)
	}
}

func TestMaskingHashKeyFile(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "jitgated.yaml")
	c, err := Parse(cfgPath, []byte(header+"masking:\n  hashKeyFile: keys/hash.key\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "keys", "hash.key"); c.Masking.HashKeyFile != want {
		t.Errorf("hashKeyFile = %q, want %q (relative to the file)", c.Masking.HashKeyFile, want)
	}
	if _, err := Parse(cfgPath, []byte(header+"masking:\n  hashKey: abc\n")); err == nil || !strings.Contains(err.Error(), "field hashKey not found") {
		t.Errorf("unknown masking field: %v", err)
	}
	// Flag override, then the serve check reads the key (and fails on a short one).
	key := filepath.Join(dir, "flag.key")
	if err := os.WriteFile(key, []byte("too short"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, _ = Default()
	if err := c.Apply(Overrides{HashKeyFile: &key}); err != nil {
		t.Fatal(err)
	}
	if c.Masking.HashKeyFile != key {
		t.Errorf("override: %q", c.Masking.HashKeyFile)
	}
	c.DevIssuer.Enabled = true
	c.Credentials.KeyFile = writeSAKey(t)
	err = c.ValidateForServe()
	if err == nil || !strings.Contains(err.Error(), "--masking-hash-key-file") || !strings.Contains(err.Error(), "masking.hashKeyFile") ||
		strings.Contains(err.Error(), "too short") {
		t.Errorf("ValidateForServe with a short key: %v", err)
	}
	if err := os.WriteFile(key, []byte(base64.StdEncoding.EncodeToString(make([]byte, 32))), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.ValidateForServe(); err != nil {
		t.Errorf("ValidateForServe with a good key: %v", err)
	}
}
