package masking

import (
	"bufio"
	"encoding/json"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
)

func allDetectors() []string { return detectorNames[:] }

func readLines(t testing.TB, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if sc.Text() != "" {
			lines = append(lines, sc.Text())
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

// TestDetectorsNegativeSample: no detector fires on ordinary values (ids, UUIDs, dates,
// timestamps, amounts, versions, order numbers, URLs, free text).
func TestDetectorsNegativeSample(t *testing.T) {
	neg := readLines(t, "testdata/negative.txt")
	if len(neg) < 500 {
		t.Fatalf("negative sample has %d values, want at least 500", len(neg))
	}
	hits := 0
	for _, v := range neg {
		if d, _ := Detect(allDetectors(), []byte(v)); d != "" {
			hits++
			t.Errorf("false positive: %s on %q", d, v)
		}
	}
	t.Logf("false positives: %d of %d (%.2f%%)", hits, len(neg), 100*float64(hits)/float64(len(neg)))
}

// TestDetectorsPositiveSample: every detector finds every value of its sample, alone
// and with all detectors on.
func TestDetectorsPositiveSample(t *testing.T) {
	perDetector := map[string]int{}
	for _, line := range readLines(t, "testdata/positive.jsonl") {
		var p struct{ Detector, Value string }
		if err := json.Unmarshal([]byte(line), &p); err != nil {
			t.Fatal(err)
		}
		perDetector[p.Detector]++
		if d, err := Detect([]string{p.Detector}, []byte(p.Value)); err != nil || d != p.Detector {
			t.Errorf("%s alone missed %q (got %q, %v)", p.Detector, p.Value, d, err)
		}
		if d, _ := Detect(allDetectors(), []byte(p.Value)); d == "" {
			t.Errorf("all detectors missed %q (%s)", p.Value, p.Detector)
		}
	}
	for _, d := range detectorNames {
		if perDetector[d] < 5 {
			t.Errorf("positive sample has %d values for %s, want at least 5", perDetector[d], d)
		}
	}
	t.Logf("positives per detector: %v", perDetector)
}

// TestDetectorNegatives: near misses of each detector.
func TestDetectorNegatives(t *testing.T) {
	cases := map[string][]string{
		"email":      {"user@host", "pkg@1.2.3", "@handle", "a@b.c", "x@-bad.com", "name at example dot com"},
		"ssn":        {"000-12-3456", "666-12-3456", "912-34-5678", "123-00-4567", "123-45-0000", "123456789", "1-123-45-6789", "123-45-67890"},
		"card":       {"4111111111111112", "1234567812345678", "4111 1111 1111", "10 20 30 40 50 60 70 80", "411111111111111111111", "1710498600000000"},
		"phone":      {"+12345", "+0 12345", "4155550100", "+12345678.90", "123-456-7890", "2024-03-15", "415-555-01000", "v415-555-0100"},
		"iban":       {"DE89370400440532013001", "XX89370400440532013000", "DE8937040044053201300", "de89370400440532013000"},
		"ip":         {"1.2.3", "256.1.1.1", "01.2.3.4", "1.2.3.4.5", "v1.2.3.4", "1.2.3.4-rc1", "0.0.0.0", "12:30:45", "std::vector", "00:1A:2B:3C:4D:5E", "::"},
		"privateKey": {"-----BEGIN CERTIFICATE-----", "-----BEGIN PUBLIC KEY-----", "private key rotation"},
		"cloudKey":   {"AKIA", "AKIAIOSFODNN7EXAMPL", "xAKIAIOSFODNN7EXAMPLE", "ghp_short", "xoxb-1", "AIzaShort"},
	}
	for det, vals := range cases {
		for _, v := range vals {
			if d, _ := Detect([]string{det}, []byte(v)); d != "" {
				t.Errorf("%s matched %q", det, v)
			}
		}
	}
}

func TestDetectUnknown(t *testing.T) {
	if _, err := Detect([]string{"emails"}, []byte("x")); err == nil {
		t.Fatal("unknown detector accepted")
	}
}

// TestCardRandomIDs measures (does not bound) how often uniformly random 13-19 digit
// strings look like cards: the residual risk for numeric string ids of that length.
func TestCardRandomIDs(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	hits, n := 0, 20000
	for range n {
		l := 13 + rng.IntN(7)
		b := []byte(strconv.Itoa(1 + rng.IntN(9)))
		for len(b) < l {
			b = append(b, byte('0'+rng.IntN(10)))
		}
		if card(b) {
			hits++
		}
	}
	t.Logf("card detector on %d uniformly random 13-19 digit strings: %d hits (%.2f%%)", n, hits, 100*float64(hits)/float64(n))
}
