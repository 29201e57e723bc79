package masking

import (
	"bytes"
	"fmt"
	"net/netip"
)

// Content detectors: the backstop for sensitive values the plan did not foresee. Each is
// a hand-written scanner over the decoded cell (no regexp: it is several times slower
// and the detectors run on every unmasked STRING cell). They favour precision on
// ordinary data (ids, dates, amounts, versions, free text): see detect_test.go for the
// measured false-positive rate on testdata/negative.txt.

const (
	detPrivateKey = iota
	detCloudKey
	detEmail
	detSSN
	detCard
	detIBAN
	detPhone
	detIP
	numDetectors
)

// detectorNames are the policies.Detector names, in the order detectors run (the first
// hit names the cell).
var detectorNames = [numDetectors]string{"privateKey", "cloudKey", "email", "ssn", "card", "iban", "phone", "ip"}

type detSet uint16

func (d detSet) has(i int) bool { return d&(1<<i) != 0 }

func parseDetectors(names []string) (detSet, error) {
	var d detSet
next:
	for _, n := range names {
		for i, x := range detectorNames {
			if n == x {
				d |= 1 << i
				continue next
			}
		}
		return 0, fmt.Errorf("masking: unknown detector %q", n)
	}
	return d, nil
}

// Detect runs the named detectors over v and returns the name of the first that matches
// ("" when none does). The filter may use it on other text it releases (error messages).
func Detect(detectors []string, v []byte) (string, error) {
	d, err := parseDetectors(detectors)
	if err != nil {
		return "", err
	}
	if i := d.detect(v); i >= 0 {
		return detectorNames[i], nil
	}
	return "", nil
}

// detect returns the index of the first detector matching v, or -1.
func (d detSet) detect(v []byte) int {
	if len(v) < 3 {
		return -1
	}
	// One table-driven pass decides which detectors can possibly match.
	var f uint8
	nd := 0
	for _, c := range v {
		x := classes[c]
		f |= x
		nd += int(x & clDigit)
	}
	if d.has(detPrivateKey) && f&clDash != 0 && len(v) >= 27 && privateKey(v) {
		return detPrivateKey
	}
	if d.has(detCloudKey) && f&clKeyStart != 0 && len(v) >= 15 && cloudKey(v) {
		return detCloudKey
	}
	if d.has(detEmail) && f&clAt != 0 && email(v) {
		return detEmail
	}
	if d.has(detSSN) && nd >= 9 && ssn(v) {
		return detSSN
	}
	if d.has(detCard) && nd >= 13 && card(v) {
		return detCard
	}
	if d.has(detIBAN) && f&clUpper != 0 && nd >= 2 && len(v) >= 15 && iban(v) {
		return detIBAN
	}
	if d.has(detPhone) && nd >= 8 && phone(v) {
		return detPhone
	}
	if d.has(detIP) && (nd >= 4 && f&clDot != 0 && ipv4(v) || nd >= 1 && f&clColon != 0 && ipv6(v)) {
		return detIP
	}
	return -1
}

const (
	clDigit    = 1 << iota // must stay 1: detect adds it up
	clUpper                // A-Z
	clAt                   // @
	clColon                // :
	clDash                 // -
	clDot                  // .
	clKeyStart             // A g x: cloud key prefixes
)

var classes = func() (t [256]uint8) {
	for c := '0'; c <= '9'; c++ {
		t[c] = clDigit
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = clUpper
	}
	t['@'], t[':'], t['-'], t['.'] = clAt, clColon, clDash, clDot
	t['A'] |= clKeyStart
	t['g'] |= clKeyStart
	t['x'] |= clKeyStart
	return t
}()

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
func isUpper(c byte) bool { return 'A' <= c && c <= 'Z' }
func isAlpha(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isAlnum(c byte) bool { return isDigit(c) || isAlpha(c) }

// leftOK: a number starting at i is not the tail of a longer token (a word, or digits
// joined by a separator such as 2024-123-45-6789).
func leftOK(v []byte, i int) bool {
	if i == 0 {
		return true
	}
	c := v[i-1]
	if isAlnum(c) || c == '_' || c >= 0x80 {
		return false
	}
	if (c == '-' || c == '.' || c == '/' || c == ':' || c == ',' || c == '+') && i >= 2 && isDigit(v[i-2]) {
		return false
	}
	return true
}

// rightOK: a number ending before j is not continued by a longer token.
func rightOK(v []byte, j int) bool {
	if j >= len(v) {
		return true
	}
	c := v[j]
	if isAlnum(c) || c == '_' || c >= 0x80 {
		return false
	}
	if (c == '-' || c == '.' || c == '/' || c == ':' || c == ',') && j+1 < len(v) && isDigit(v[j+1]) {
		return false
	}
	return true
}

// privateKey: a PEM private key block header (RSA, EC, DSA, OPENSSH, ENCRYPTED, PGP ...).
func privateKey(v []byte) bool {
	for {
		i := bytes.Index(v, []byte("-----BEGIN "))
		if i < 0 {
			return false
		}
		v = v[i+11:]
		head := v
		if len(head) > 64 {
			head = head[:64]
		}
		if j := bytes.Index(head, []byte("PRIVATE KEY")); j >= 0 {
			ok := true
			for _, c := range head[:j] {
				if !isUpper(c) && c != ' ' && !isDigit(c) {
					ok = false
					break
				}
			}
			if ok {
				return true
			}
		}
	}
}

// cloudKey: AWS access key ids, Google API keys, GitHub tokens, Slack tokens.
func cloudKey(v []byte) bool {
	for i := 0; i+8 <= len(v); i++ {
		c := v[i]
		if c != 'A' && c != 'g' && c != 'x' {
			continue
		}
		if i > 0 && (isAlnum(v[i-1]) || v[i-1] == '_') {
			continue
		}
		rest := v[i:]
		switch c {
		case 'A':
			switch {
			case hasPrefixAny(rest, "AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "AIPA"):
				if n := run(rest[4:], isUpperDigit); n == 16 {
					return true
				}
			case bytes.HasPrefix(rest, []byte("AIza")):
				if n := run(rest[4:], isKeyChar); n == 35 {
					return true
				}
			}
		case 'g':
			switch {
			case hasPrefixAny(rest, "ghp_", "gho_", "ghu_", "ghs_", "ghr_"):
				if run(rest[4:], isAlnum) >= 36 {
					return true
				}
			case bytes.HasPrefix(rest, []byte("github_pat_")):
				if run(rest[11:], isWordChar) >= 40 {
					return true
				}
			}
		case 'x':
			if len(rest) > 5 && bytes.HasPrefix(rest, []byte("xox")) && bytes.IndexByte([]byte("bpaors"), rest[3]) >= 0 && rest[4] == '-' {
				if run(rest[5:], isSlackChar) >= 10 {
					return true
				}
			}
		}
	}
	return false
}

func hasPrefixAny(v []byte, prefixes ...string) bool {
	for _, p := range prefixes {
		if len(v) >= len(p) && string(v[:len(p)]) == p {
			return true
		}
	}
	return false
}

func isUpperDigit(c byte) bool { return isUpper(c) || isDigit(c) }
func isKeyChar(c byte) bool    { return isAlnum(c) || c == '_' || c == '-' }
func isWordChar(c byte) bool   { return isAlnum(c) || c == '_' }
func isSlackChar(c byte) bool  { return isAlnum(c) || c == '-' }

// run is the length of the prefix of v whose bytes satisfy ok.
func run(v []byte, ok func(byte) bool) int {
	n := 0
	for n < len(v) && ok(v[n]) {
		n++
	}
	return n
}

// email: local@domain.tld, with a letters-only TLD of 2+ letters (so npm's pkg@1.2.3
// and user@host do not count).
func email(v []byte) bool {
	for p := bytes.IndexByte(v, '@'); p >= 0; {
		j := p
		for j > 0 && isLocalChar(v[j-1]) {
			j--
		}
		if j < p && v[j] != '.' && domain(v[p+1:]) {
			return true
		}
		q := bytes.IndexByte(v[p+1:], '@')
		if q < 0 {
			return false
		}
		p += 1 + q
	}
	return false
}

func isLocalChar(c byte) bool {
	return isAlnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-' || c == '\''
}

// domain: label(.label)+ where the last label is 2+ letters.
func domain(v []byte) bool {
	labels, i := 0, 0
	tldAlpha := false
	for {
		n := run(v[i:], isLabelChar)
		if n == 0 || n > 63 || v[i] == '-' || v[i+n-1] == '-' {
			return false
		}
		labels++
		tldAlpha = n >= 2 && run(v[i:i+n], isAlpha) == n
		i += n
		if i+1 < len(v) && v[i] == '.' && isAlnum(v[i+1]) {
			i++
			continue
		}
		break
	}
	return labels >= 2 && tldAlpha
}

func isLabelChar(c byte) bool { return isAlnum(c) || c == '-' }

// ssn: US social security numbers written AAA-GG-SSSS or AAA GG SSSS, excluding area
// 000, 666 and 900-999, group 00 and serial 0000 (never issued). Bare 9-digit runs are
// not matched: they are indistinguishable from ids.
func ssn(v []byte) bool {
	for i := 0; i+11 <= len(v); i++ {
		if !isDigit(v[i]) || !leftOK(v, i) {
			continue
		}
		w := v[i : i+11]
		sep := w[3]
		if (sep != '-' && sep != ' ') || w[6] != sep ||
			!isDigit(w[1]) || !isDigit(w[2]) || !isDigit(w[4]) || !isDigit(w[5]) ||
			!isDigit(w[7]) || !isDigit(w[8]) || !isDigit(w[9]) || !isDigit(w[10]) || !rightOK(v, i+11) {
			continue
		}
		area := string(w[0:3])
		if area == "000" || area == "666" || w[0] == '9' || string(w[4:6]) == "00" || string(w[7:11]) == "0000" {
			continue
		}
		return true
	}
	return false
}

// digitGroups reads digits from v[i:] joined by single separators from seps (one kind
// throughout). It returns the digits (up to 19 kept), their count, the group lengths
// (up to 8 kept), the group count and the end offset.
type groups struct {
	d      [19]byte
	n      int
	g      [8]int
	ng     int
	end    int
	sep    byte
	dotSep int
}

func readGroups(v []byte, i int, seps string, gr *groups) {
	*gr = groups{}
	for {
		start := i
		for i < len(v) && isDigit(v[i]) {
			if gr.n < len(gr.d) {
				gr.d[gr.n] = v[i]
			}
			gr.n++
			i++
		}
		if gr.ng < len(gr.g) {
			gr.g[gr.ng] = i - start
		}
		gr.ng++
		gr.end = i
		if i+1 < len(v) && isDigit(v[i+1]) && bytes.IndexByte([]byte(seps), v[i]) >= 0 && (gr.sep == 0 || gr.sep == v[i]) {
			gr.sep = v[i]
			i++
			continue
		}
		return
	}
}

// card: 13-19 digit payment card numbers (bare, or in groups of 4 / Amex 4-6-5 / Diners
// 4-6-4 separated by spaces or dashes) with a known issuer prefix and a valid Luhn digit.
func card(v []byte) bool {
	var gr groups
	for i := 0; i < len(v); i++ {
		if !isDigit(v[i]) {
			continue
		}
		if !leftOK(v, i) {
			for i < len(v) && isDigit(v[i]) {
				i++
			}
			continue
		}
		readGroups(v, i, " -", &gr)
		if gr.n >= 13 && gr.n <= 19 && rightOK(v, gr.end) && cardGroups(&gr) && issuer(gr.d[:gr.n]) && luhn(gr.d[:gr.n]) {
			return true
		}
		i = gr.end
	}
	return false
}

func cardGroups(gr *groups) bool {
	if gr.ng == 1 {
		return true
	}
	if gr.ng > len(gr.g) {
		return false
	}
	if gr.ng == 3 && gr.g[0] == 4 && gr.g[1] == 6 && (gr.g[2] == 5 || gr.g[2] == 4) {
		return true
	}
	for k := 0; k < gr.ng-1; k++ {
		if gr.g[k] != 4 {
			return false
		}
	}
	return gr.g[gr.ng-1] >= 1 && gr.g[gr.ng-1] <= 4
}

// issuer checks the IIN prefix against the length.
func issuer(d []byte) bool {
	n := len(d)
	p2 := int(d[0]-'0')*10 + int(d[1]-'0')
	p4 := p2*100 + int(d[2]-'0')*10 + int(d[3]-'0')
	p3 := p4 / 10
	switch {
	case d[0] == '4': // Visa
		return n == 13 || n == 16 || n == 19
	case p2 >= 51 && p2 <= 55, p4 >= 2221 && p4 <= 2720: // Mastercard
		return n == 16
	case p2 == 34 || p2 == 37: // Amex
		return n == 15
	case p4 == 6011, p2 == 65, p3 >= 644 && p3 <= 649, p2 == 62: // Discover, UnionPay
		return n >= 16
	case p4 >= 3528 && p4 <= 3589, p4 >= 2200 && p4 <= 2204: // JCB, Mir
		return n >= 16
	case p3 >= 300 && p3 <= 305, p2 == 36, p2 == 38, p2 == 39: // Diners
		return n >= 14
	case p2 == 50, p2 >= 56 && p2 <= 58, p2 == 63, p2 == 67: // Maestro
		return n >= 13
	}
	return false
}

func luhn(d []byte) bool {
	sum := 0
	double := false
	for i := len(d) - 1; i >= 0; i-- {
		x := int(d[i] - '0')
		if double {
			x *= 2
			if x > 9 {
				x -= 9
			}
		}
		sum += x
		double = !double
	}
	return sum%10 == 0
}

// ibanLengths: IBAN length per country (SWIFT IBAN registry).
var ibanLengths = map[string]int{
	"AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
	"BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
	"EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
	"GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27,
	"JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25,
	"MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18,
	"NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33,
	"SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
	"TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}

// iban: a country code, 2 check digits and the country's BBAN length, bare or in groups
// of 4 separated by single spaces, with a valid ISO 7064 mod-97 checksum.
func iban(v []byte) bool {
	for i := 0; i+15 <= len(v); i++ {
		if !isUpper(v[i]) || !isUpper(v[i+1]) || !isDigit(v[i+2]) || !isDigit(v[i+3]) ||
			(i > 0 && (isAlnum(v[i-1]) || v[i-1] == '_')) {
			continue
		}
		want := ibanLengths[string(v[i:i+2])]
		if want == 0 {
			continue
		}
		var buf [34]byte
		n, g, j := 0, 0, i
		for j < len(v) && n <= want {
			c := v[j]
			if isUpper(c) || isDigit(c) {
				if n < len(buf) {
					buf[n] = c
				}
				n++
				g++
				j++
				continue
			}
			if c == ' ' && g == 4 && j+1 < len(v) && (isUpper(v[j+1]) || isDigit(v[j+1])) && n < want {
				g = 0
				j++
				continue
			}
			break
		}
		if n != want || (j < len(v) && (isAlnum(v[j]) || v[j] == '_')) {
			continue
		}
		if mod97(buf[:n]) == 1 {
			return true
		}
	}
	return false
}

func mod97(s []byte) int {
	r := 0
	add := func(c byte) {
		if isDigit(c) {
			r = (r*10 + int(c-'0')) % 97
		} else {
			r = (r*100 + int(c-'A') + 10) % 97
		}
	}
	for _, c := range s[4:] {
		add(c)
	}
	for _, c := range s[:4] {
		add(c)
	}
	return r
}

// phone: E.164 (+ and 8-15 digits, country code not 0, separators space - . ( ) allowed;
// dots only as in +1.415.555.0100), NANP national forms with separators ((415) 555-0100,
// 415-555-0100, 415.555.0100, 1-800-555-0199), and trunk-0 national forms in 2+ groups
// (020 7946 0958, 07700 900123). Bare digit runs are never phones: they are ids.
func phone(v []byte) bool {
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '+':
			if i+1 < len(v) && v[i+1] >= '1' && v[i+1] <= '9' && (i == 0 || !isAlnum(v[i-1]) && v[i-1] != '_') && e164(v, i+1) {
				return true
			}
		case c == '(' || isDigit(c):
			if leftOK(v, i) && (nanp(v, i) || trunk0(v, i)) {
				return true
			}
			if isDigit(c) {
				for i+1 < len(v) && isDigit(v[i+1]) {
					i++
				}
			}
		}
	}
	return false
}

func e164(v []byte, i int) bool {
	n, dots, lastDigit := 0, 0, i
	seps := 0
	for j := i; j < len(v); j++ {
		c := v[j]
		if isDigit(c) {
			n++
			seps = 0
			lastDigit = j
			continue
		}
		if c == ' ' || c == '-' || c == '.' || c == '(' || c == ')' {
			seps++
			if seps > 2 {
				break
			}
			if c == '.' {
				dots++
			}
			continue
		}
		break
	}
	if n < 8 || n > 15 || dots == 1 || !rightOK(v, lastDigit+1) {
		return false
	}
	return true
}

// nanp: [1 sep] (AAA) [ -]XXX s XXXX or AAA s XXX s XXXX, s one of - . space, with
// area and exchange starting 2-9.
func nanp(v []byte, i int) bool {
	j := i
	if v[j] == '1' && j+1 < len(v) && isNanpSep(v[j+1]) {
		j += 2
	}
	var sep byte
	if j < len(v) && v[j] == '(' {
		if !digitsAt(v, j+1, 3) || v[j+1] < '2' || j+4 >= len(v) || v[j+4] != ')' {
			return false
		}
		j += 5
		if j < len(v) && (v[j] == ' ' || v[j] == '-') {
			j++
		}
		if !digitsAt(v, j, 3) || j+3 >= len(v) || !isNanpSep(v[j+3]) {
			return false
		}
		sep = v[j+3]
	} else {
		if !digitsAt(v, j, 3) || v[j] < '2' || j+3 >= len(v) || !isNanpSep(v[j+3]) {
			return false
		}
		sep = v[j+3]
		j += 4
		if !digitsAt(v, j, 3) || j+3 >= len(v) || v[j+3] != sep {
			return false
		}
	}
	if v[j] < '2' || !digitsAt(v, j+4, 4) {
		return false
	}
	return rightOK(v, j+8)
}

func isNanpSep(c byte) bool { return c == '-' || c == '.' || c == ' ' }

func digitsAt(v []byte, j, n int) bool {
	if j+n > len(v) {
		return false
	}
	for k := j; k < j+n; k++ {
		if !isDigit(v[k]) {
			return false
		}
	}
	return true
}

// trunk0: 0 + 9-10 more digits in 2+ groups (first 2-5 digits) separated by one kind of
// single space or dash.
func trunk0(v []byte, i int) bool {
	if v[i] != '0' || i+1 >= len(v) || v[i+1] == '0' {
		return false
	}
	var gr groups
	readGroups(v, i, " -", &gr)
	if gr.ng < 2 || gr.ng > 4 || gr.n < 10 || gr.n > 11 || gr.g[0] < 2 || gr.g[0] > 5 || !rightOK(v, gr.end) {
		return false
	}
	for k := 1; k < gr.ng; k++ {
		if gr.g[k] < 2 {
			return false
		}
	}
	return true
}

// ipv4: a dotted quad that net/netip accepts (no leading zeros), not 0.0.0.0, not part
// of a longer dotted number (OIDs, 5-part versions), not right after a letter (v1.2.3.4)
// and not followed by a semver suffix (2.0.0.0-beta). A bare 4-part version with every
// part <= 255 (1.2.3.4) is indistinguishable from an address and counts as one.
func ipv4(v []byte) bool {
	for i := 0; i+7 <= len(v); i++ {
		if !isDigit(v[i]) {
			continue
		}
		if !leftOK(v, i) || i > 0 && v[i-1] == '.' {
			for i < len(v) && isDigit(v[i]) {
				i++
			}
			continue
		}
		j, parts := i, 0
		for {
			n := run(v[j:], isDigit)
			if n == 0 || n > 3 {
				break
			}
			j += n
			parts++
			if parts < 4 && j+1 < len(v) && v[j] == '.' && isDigit(v[j+1]) {
				j++
				continue
			}
			break
		}
		// (a trailing -beta or +build suffix makes it a version, not an address)
		if parts == 4 && !(j < len(v) && (isAlnum(v[j]) || v[j] == '.' && j+1 < len(v) && isDigit(v[j+1]) ||
			(v[j] == '-' || v[j] == '+') && j+1 < len(v) && isAlpha(v[j+1]))) {
			if a, err := netip.ParseAddr(string(v[i:j])); err == nil && !a.IsUnspecified() {
				return true
			}
		}
		for i < len(v) && (isDigit(v[i]) || v[i] == '.') {
			i++
		}
	}
	return false
}

// ipv6: a token of hex digits, colons (and a trailing dotted quad) with 2+ colons that
// net/netip parses as IPv6, bounded by non-word characters (so std::vector, times and
// MAC addresses do not count).
func ipv6(v []byte) bool {
	for p := bytes.IndexByte(v, ':'); p >= 0; {
		a := p
		for a > 0 && (isHex(v[a-1]) || v[a-1] == ':' || v[a-1] == '.') {
			a--
		}
		b := p
		for b < len(v) && (isHex(v[b]) || v[b] == ':' || v[b] == '.') {
			b++
		}
		tok := v[a:b]
		if (a == 0 || !isAlnum(v[a-1]) && v[a-1] != '_') && (b == len(v) || !isAlnum(v[b]) && v[b] != '_') &&
			bytes.Count(tok, []byte(":")) >= 2 && len(tok) >= 3 {
			if ad, err := netip.ParseAddr(string(tok)); err == nil && ad.Is6() && !ad.IsUnspecified() {
				return true
			}
		}
		if b >= len(v) {
			return false
		}
		q := bytes.IndexByte(v[b:], ':')
		if q < 0 {
			return false
		}
		p = b + q
	}
	return false
}
