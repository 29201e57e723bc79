package masking

import (
	"errors"
	"fmt"
	"strings"
)

// Schema is a BigQuery TableSchema (schema.fields[] of a query or tabledata response).
type Schema struct {
	Fields []Field `json:"fields"`
}

// Field is a TableFieldSchema: only what masking needs.
type Field struct {
	Name   string  `json:"name"`
	Type   string  `json:"type"`
	Mode   string  `json:"mode,omitempty"` // NULLABLE (or empty), REQUIRED, REPEATED
	Fields []Field `json:"fields,omitempty"`
}

func normType(t string) string {
	t = strings.ToUpper(t)
	switch t {
	case "INT64":
		return "INTEGER"
	case "FLOAT64":
		return "FLOAT"
	case "BOOL":
		return "BOOLEAN"
	case "STRUCT":
		return "RECORD"
	case "DECIMAL":
		return "NUMERIC"
	case "BIGDECIMAL":
		return "BIGNUMERIC"
	}
	return t
}

func normMode(m string) string {
	m = strings.ToUpper(m)
	if m == "" {
		return "NULLABLE"
	}
	return m
}

// node is a schema field compiled against a plan.
type node struct {
	children []*node
	record   bool
	repeated bool
	nullable bool   // NULLABLE and not REPEATED
	rule     Action // strongest rule naming this field
	action   Action // leaves: the action applied to each value ("" = none)
	detect   bool   // leaves: unmasked STRING/JSON cell the detectors read
	jsonType bool
	toString bool // the returned schema says STRING
	work     bool // something in this subtree changes or is inspected
}

func build(fields []Field, depth int) ([]*node, error) {
	if depth > maxDepth {
		return nil, errors.New("masking: schema nested too deep")
	}
	nodes := make([]*node, len(fields))
	for i, f := range fields {
		n := &node{}
		switch normMode(f.Mode) {
		case "NULLABLE":
			n.nullable = true
		case "REQUIRED":
		case "REPEATED":
			n.repeated = true
		default:
			return nil, fmt.Errorf("masking: field %q has unknown mode %q", f.Name, f.Mode)
		}
		switch t := normType(f.Type); t {
		case "":
			return nil, fmt.Errorf("masking: field %q has no type", f.Name)
		case "RECORD":
			n.record = true
			c, err := build(f.Fields, depth+1)
			if err != nil {
				return nil, err
			}
			n.children = c
		default:
			if len(f.Fields) > 0 {
				return nil, fmt.Errorf("masking: field %q of type %s has nested fields", f.Name, f.Type)
			}
			n.jsonType = t == "JSON"
			n.detect = t == "STRING" || t == "JSON" // provisional: resolve clears it
		}
		nodes[i] = n
	}
	return nodes, nil
}

// compile applies the plan to a schema.
func compile(s *Schema, plan *Plan, dets detSet) (*node, error) {
	if s == nil {
		return nil, errors.New("masking: no schema")
	}
	children, err := build(s.Fields, 0)
	if err != nil {
		return nil, err
	}
	root := &node{record: true, children: children}
	for _, r := range plan.Rules {
		if len(r.Path) == 0 {
			return nil, errors.New("masking: a plan rule has an empty path")
		}
		n := root
		for d, p := range r.Path {
			if !n.record || p < 0 || p >= len(n.children) {
				return nil, fmt.Errorf("masking: plan rule %v does not match the schema (position %d of the path)", r.Path, d)
			}
			n = n.children[p]
		}
		n.rule = stronger(n.rule, r.Action)
		if r.Action == Hash && plan.Key.Len() == 0 {
			return nil, errors.New("masking: the plan hashes a column but carries no key")
		}
	}
	resolve(root, "", dets != 0)
	return root, nil
}

func resolve(n *node, inherited Action, detectors bool) {
	eff := stronger(inherited, n.rule)
	if n.record {
		n.detect = false
		for _, c := range n.children {
			resolve(c, eff, detectors)
			n.work = n.work || c.work
		}
		return
	}
	switch {
	case eff == "":
		n.detect = n.detect && detectors
		n.work = n.detect
		return
	case eff == Null && n.nullable:
		n.action = Null // the type may stay: null is valid for every type
	case strength(eff) > strength(Redact), eff == Null:
		// unknown actions fail closed; REQUIRED is never null and an element of a
		// REPEATED array cannot be null: both are redacted instead.
		n.action = Redact
	default:
		n.action = eff
	}
	n.toString = n.action != Null
	n.detect, n.work = false, true
}

// masked returns the schema as the client sees it after masking.
func masked(fields []Field, nodes []*node) []Field {
	out := make([]Field, len(fields))
	for i, f := range fields {
		g := Field{Name: f.Name, Type: f.Type, Mode: f.Mode}
		if nodes[i].toString {
			g.Type = "STRING"
		}
		if len(f.Fields) > 0 {
			g.Fields = masked(f.Fields, nodes[i].children)
		}
		out[i] = g
	}
	return out
}

// sameShape reports whether two schemas describe the same cells: names, modes and
// RECORD structure (leaf types may differ: a remembered masked schema says STRING).
// Anonymous columns match whatever their name: the control plane's analyser calls them
// "$col1", "$struct" ..., BigQuery "f0_", "f1_" ...
func sameShape(a, b []Field) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		sameName := strings.EqualFold(x.Name, y.Name) || anonymous(x.Name) || anonymous(y.Name)
		if !sameName || normMode(x.Mode) != normMode(y.Mode) ||
			(normType(x.Type) == "RECORD") != (normType(y.Type) == "RECORD") || !sameShape(x.Fields, y.Fields) {
			return false
		}
	}
	return true
}

// anonymous reports whether name is a generated column name: "$..." (GoogleSQL) or
// "f<digits>_" (BigQuery).
func anonymous(name string) bool {
	if strings.HasPrefix(name, "$") {
		return true
	}
	if len(name) < 3 || name[0] != 'f' || name[len(name)-1] != '_' {
		return false
	}
	for _, c := range name[1 : len(name)-1] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// parseSchema reads a TableSchema object at the scanner.
func (s *scanner) parseSchema(scratch []byte) (*Schema, error) {
	if s.peek() == 'n' {
		return nil, s.literal("null")
	}
	sch := &Schema{}
	err := s.object(scratch, func(k []byte) error {
		if string(k) != "fields" {
			if err := s.lookalike(k, "fields"); err != nil {
				return err
			}
			return s.skip(1)
		}
		f, err := s.parseFields(scratch, 1)
		sch.Fields = f
		return err
	})
	return sch, err
}

func (s *scanner) parseFields(scratch []byte, depth int) ([]Field, error) {
	if depth > maxDepth {
		return nil, s.fail("schema nested too deep")
	}
	if s.peek() == 'n' {
		return nil, s.literal("null")
	}
	if err := s.expect('['); err != nil {
		return nil, err
	}
	var fields []Field
	if s.peek() == ']' {
		s.i++
		return fields, nil
	}
	for {
		var f Field
		err := s.object(scratch, func(k []byte) error {
			var err error
			switch string(k) {
			case "name":
				f.Name, err = s.text(scratch)
			case "type":
				f.Type, err = s.text(scratch)
			case "mode":
				f.Mode, err = s.text(scratch)
			case "fields":
				f.Fields, err = s.parseFields(scratch, depth+1)
			default:
				if err = s.lookalike(k, "name", "type", "mode", "fields"); err == nil {
					err = s.skip(depth + 1)
				}
			}
			return err
		})
		if err != nil {
			return nil, err
		}
		if f.Type == "" {
			return nil, s.fail("schema field %q has no type", f.Name)
		}
		fields = append(fields, f)
		more, err := s.next(']')
		if err != nil {
			return nil, err
		}
		if !more {
			return fields, nil
		}
	}
}

// object calls member for each key of the object at the scanner; member consumes the
// value. Duplicate keys are refused: parsers disagree on which one wins.
func (s *scanner) object(scratch []byte, member func(k []byte) error) error {
	if err := s.expect('{'); err != nil {
		return err
	}
	if s.peek() == '}' {
		s.i++
		return nil
	}
	var seen []string
	for {
		k, err := s.key(scratch)
		if err != nil {
			return err
		}
		for _, x := range seen {
			if strings.EqualFold(x, string(k)) { // Go clients match keys case-insensitively
				return s.fail("duplicate key %q", k)
			}
		}
		seen = append(seen, string(k))
		if err := member(k); err != nil {
			return err
		}
		more, err := s.next('}')
		if err != nil || !more {
			return err
		}
	}
}

// lookalike refuses a key that is not one of names but that a case-insensitive decoder
// (encoding/json, so the Go client) would take for one ("Rows", "rowſ").
func (s *scanner) lookalike(k []byte, names ...string) error {
	for _, n := range names {
		if strings.EqualFold(string(k), n) {
			return s.fail("key %q looks like %q", k, n)
		}
	}
	return nil
}

func (s *scanner) text(scratch []byte) (string, error) {
	start, end, esc, err := s.str()
	if err != nil {
		return "", err
	}
	if esc {
		return string(unescape(scratch[:0], s.b[start:end])), nil
	}
	return string(s.b[start:end]), nil
}

// ParseSchema returns the schema of a jobs.query / getQueryResults response body (nil
// when the body has none, as later pages and tabledata.list responses do). Callers
// remember it per job (or result table) for the pages that follow.
func ParseSchema(body []byte) (*Schema, error) {
	s := &scanner{b: body}
	var scratch []byte
	var found *Schema
	err := s.object(scratch, func(k []byte) error {
		if string(k) != "schema" {
			return s.skip(1)
		}
		sch, err := s.parseSchema(scratch)
		found = sch
		return err
	})
	if s.ws(); err == nil && s.i != len(s.b) {
		err = s.fail("data after the response object")
	}
	if err != nil {
		return nil, err
	}
	return found, nil
}
