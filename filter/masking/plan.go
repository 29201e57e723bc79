package masking

import (
	"fmt"
	"io"
)

// Action says what a masked cell becomes. The names are those of policies.MaskAction.
type Action string

// The mask actions, strongest first (the order policies.MaskActions uses).
const (
	Redact      Action = "redact"       // the fixed token "[REDACTED]"
	Null        Action = "null"         // null where the column is NULLABLE, else redact
	Hash        Action = "hash"         // "h:" + 32 hex of HMAC-SHA256(key, value)
	EmailDomain Action = "email-domain" // "***@domain"; a value without "@" is redacted
	Last4       Action = "last4"        // "****" + the last 4 runes; 4 runes or fewer: "****"
)

// RedactedToken is what redact writes (and every fallback to redact).
const RedactedToken = "[REDACTED]"

// strength orders actions like policies.MaskStrength: higher reveals less. An unknown
// action ranks above redact and is applied as redact (fail closed).
func strength(a Action) int {
	switch a {
	case "":
		return 0
	case Last4:
		return 1
	case EmailDomain:
		return 2
	case Hash:
		return 3
	case Null:
		return 4
	case Redact:
		return 5
	}
	return 6
}

// stronger returns the action of a and b that reveals less.
func stronger(a, b Action) Action {
	if strength(b) > strength(a) {
		return b
	}
	return a
}

// Rule masks one output column: Path is the column's position in schema.fields, then
// the position in each nested RECORD's fields ([3] is the 4th column, [3,0,2] the 3rd
// field of the 1st field of that RECORD column). A rule on a RECORD masks every leaf
// below it; when rules overlap the strongest action wins.
type Rule struct {
	Path   []int  `json:"path"`
	Action Action `json:"action"`
}

// Plan is the final masking of one query's result: the control plane has already
// resolved lineage and allowed aggregates, so every rule here is applied as is.
type Plan struct {
	Rules []Rule `json:"rules,omitempty"`
	// Detectors run over every STRING (and JSON) cell no rule masks: email, ssn, card,
	// phone, iban, ip, privateKey, cloudKey (policies.Detectors).
	Detectors []string `json:"detectors,omitempty"`
	// Key is the HMAC key of the hash action; required when a rule hashes.
	Key Key `json:"key"`
}

// Key is an HMAC key. It never prints: String, GoString, Format (every verb) and
// MarshalJSON all show "[redacted]", and it cannot be decoded from JSON by accident.
type Key struct{ b []byte }

// NewKey copies b into a Key.
func NewKey(b []byte) Key { return Key{b: append([]byte(nil), b...)} }

// Len is the key's length in bytes (0: no key).
func (k Key) Len() int { return len(k.b) }

const redactedKey = "masking.Key([redacted])"

func (k Key) String() string   { return redactedKey }
func (k Key) GoString() string { return redactedKey }

// Format writes the redacted form for every verb (%x and %#v included).
func (k Key) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, redactedKey) }

// MarshalJSON writes "[redacted]": a logged plan never carries the key.
func (k Key) MarshalJSON() ([]byte, error) { return []byte(`"[redacted]"`), nil }

// Stats summarise one masked response for the audit record.
type Stats struct {
	Rows        int // rows in the page
	CellsMasked int // leaf values replaced by a rule's action (array elements count one each)
	// DetectorHits counts cells redacted by each content detector (nil when none).
	DetectorHits map[string]int
}

// CountRows returns the number of rows in a BigQuery response body (the length of its
// top-level "rows" array; 0 when absent or null). It validates the JSON as it goes and
// uses the same hand-written scanner as MaskResponse, so counting a large page costs one
// pass without decoding a cell. An error means the body is not a JSON object.
func CountRows(body []byte) (int, error) {
	s := &scanner{b: body}
	rows := 0
	err := s.object(nil, func(k []byte) error {
		if string(k) != "rows" {
			return s.skip(1)
		}
		switch s.peek() {
		case 'n':
			return s.literal("null")
		case '[':
		default:
			return s.fail("rows is not an array")
		}
		s.i++
		if s.peek() == ']' {
			s.i++
			return nil
		}
		for {
			rows++
			if err := s.skip(2); err != nil {
				return err
			}
			more, err := s.next(']')
			if err != nil || !more {
				return err
			}
		}
	})
	if s.ws(); err == nil && s.i != len(s.b) {
		err = s.fail("data after the response object")
	}
	if err != nil {
		return 0, err
	}
	return rows, nil
}
