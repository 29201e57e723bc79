package bqapi

import (
	"encoding/json"
	"reflect"
	"strings"
)

// encoding/json matches keys case-insensitively and keeps the last of duplicate keys,
// while BigQuery's JSON parser also accepts proto field names (use_legacy_sql). A body
// the gateway reads one way and BigQuery another would let an agent smuggle a setting
// past the analysis, so before decoding, checkKeys refuses
//   - keys repeated in one object, also after ignoring case and underscores, and
//   - keys in a modelled object that are not the exact name of the field they alias, and
//   - non-ASCII keys in a modelled object (encoding/json folds Unicode: 'ſ' ~ 's').
// Keys the model does not know pass (they are forwarded untouched).

// keySchema lists the JSON names of a modelled object, by normalised name.
type keySchema struct {
	names    map[string]string     // normalised -> exact
	children map[string]*keySchema // exact name -> schema of the member's objects
}

var (
	rawMessageType     = reflect.TypeFor[json.RawMessage]()
	queryRequestSchema = schemaOf(reflect.TypeFor[QueryRequest](), map[reflect.Type]*keySchema{})
	jobSchema          = schemaOf(reflect.TypeFor[Job](), map[reflect.Type]*keySchema{})
)

// schemaOf runs once per type at start-up; there is no reflection on the request path.
// seen ties recursive types (QueryParameterType, QueryParameterValue) into loops.
func schemaOf(t reflect.Type, seen map[reflect.Type]*keySchema) *keySchema {
	for t != rawMessageType && (t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice) {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil // maps (labels, structValues) have free keys; RawMessage is opaque
	}
	if s, ok := seen[t]; ok {
		return s
	}
	s := &keySchema{names: map[string]string{}, children: map[string]*keySchema{}}
	seen[t] = s
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		s.names[normaliseKey(name)] = name
		s.children[name] = schemaOf(f.Type, seen)
	}
	return s
}

func normaliseKey(k string) string {
	return strings.ToLower(strings.ReplaceAll(k, "_", ""))
}

// maxJSONDepth bounds nesting (encoding/json allows 10000); BigQuery's own documents
// nest far less, and the scan recurses once per level.
const maxJSONDepth = 100

// keyScanner walks a document json.Unmarshal has already accepted, so it can skip
// values without re-validating them; it only looks at object keys. (A json.Decoder
// Token walk did the same at three times the cost of the decode itself.)
type keyScanner struct {
	data []byte
	pos  int
}

// checkKeys reports an ambiguous-json rejection, or nil. data must be valid JSON.
func checkKeys(data []byte, root *keySchema) *Rejection {
	s := keyScanner{data: data}
	return s.value(root, 0)
}

func (s *keyScanner) value(schema *keySchema, depth int) *Rejection {
	s.skipSpace()
	if s.pos >= len(s.data) {
		return nil
	}
	switch s.data[s.pos] {
	case '{':
		return s.object(schema, depth+1)
	case '[':
		return s.array(schema, depth+1)
	case '"':
		s.str()
	default: // number, true, false, null
		for s.pos < len(s.data) && !strings.ContainsRune(",]} \t\r\n", rune(s.data[s.pos])) {
			s.pos++
		}
	}
	return nil
}

func (s *keyScanner) object(schema *keySchema, depth int) *Rejection {
	if depth > maxJSONDepth {
		return tooDeep()
	}
	s.pos++ // {
	seen := map[string]struct{}{}
	for {
		s.skipSpace()
		switch s.data[s.pos] {
		case '}':
			s.pos++
			return nil
		case ',':
			s.pos++
			continue
		}
		key := s.str()
		s.skipSpace()
		s.pos++ // :
		norm := normaliseKey(key)
		if _, dup := seen[norm]; dup {
			return Reject(ReasonAmbiguousJSON, "the request body repeats the key "+quoteKey(key)+" (also counting case and underscore variants)")
		}
		seen[norm] = struct{}{}
		var child *keySchema
		if schema != nil && !isASCII(key) {
			// encoding/json folds keys with Unicode case folding ("defaultDataſet", with
			// U+017F, decodes into defaultDataset), which the normalised names above do
			// not; BigQuery's field names are ASCII, so such a key is refused.
			return Reject(ReasonAmbiguousJSON, "the request body has a non-ASCII key "+quoteKey(key)+" where BigQuery's fields are named; use the exact REST name")
		}
		if schema != nil {
			if exact, known := schema.names[norm]; known {
				if exact != key {
					return Reject(ReasonAmbiguousJSON, "the request body spells "+quoteKey(exact)+" as "+quoteKey(key)+"; use the exact REST name")
				}
				child = schema.children[exact]
			}
		}
		if rej := s.value(child, depth); rej != nil {
			return rej
		}
	}
}

func (s *keyScanner) array(elem *keySchema, depth int) *Rejection {
	if depth > maxJSONDepth {
		return tooDeep()
	}
	s.pos++ // [
	for {
		s.skipSpace()
		switch s.data[s.pos] {
		case ']':
			s.pos++
			return nil
		case ',':
			s.pos++
			continue
		}
		if rej := s.value(elem, depth); rej != nil {
			return rej
		}
	}
}

// str consumes a string at s.pos and returns it unescaped.
func (s *keyScanner) str() string {
	start := s.pos + 1
	escaped := false
	i := start
	for ; s.data[i] != '"'; i++ {
		if s.data[i] == '\\' {
			escaped = true
			i++
		}
	}
	s.pos = i + 1
	if !escaped {
		return string(s.data[start:i])
	}
	var out string
	_ = json.Unmarshal(s.data[start-1:i+1], &out) // valid JSON: cannot fail
	return out
}

func (s *keyScanner) skipSpace() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\r', '\n':
			s.pos++
		default:
			return
		}
	}
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func tooDeep() *Rejection {
	return Reject(ReasonMalformedJSON, "the request body nests deeper than the gateway accepts")
}

func quoteKey(k string) string {
	if len(k) > 40 {
		k = k[:40] + "..."
	}
	if hasControl(k) {
		return "(unprintable)"
	}
	return `"` + k + `"`
}
