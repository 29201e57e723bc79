package masking

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"unicode/utf8"
)

// MaskResponse masks the rows of a jobs.query, jobs.getQueryResults or tabledata.list
// response body according to plan, and rewrites the body's schema (if any) to match.
//
// schema is the schema the rows follow: nil means "read it from the body" (first
// pages); later pages and tabledata.list carry none, so the caller passes the schema it
// remembered for the job (the original from ParseSchema, or the maskedSchema an earlier
// call returned: both mask identically). When the body has a schema too, it must have
// the same shape as the one passed, and the body's is used.
//
// The result has the same rows and the same number of cells per row (DESIGN invariant 5):
// masked leaves become strings (or null, for the null action on NULLABLE columns), and
// maskedSchema says STRING for every leaf that now holds a mask token. Cells nobody
// masks are copied byte for byte; out is body itself when nothing changed.
//
// Any body that is not valid JSON or not shaped like a BigQuery response (rows without a
// schema, cell counts that differ from the schema, a non-string value where a masked
// leaf is expected, duplicate keys) is an error: never pass the body through then.
func MaskResponse(body []byte, schema *Schema, plan Plan) (out []byte, stats Stats, maskedSchema *Schema, err error) {
	dets, err := parseDetectors(plan.Detectors)
	if err != nil {
		return nil, Stats{}, nil, err
	}
	m := &masker{plan: &plan, dets: dets, body: body}
	var root *node
	if schema != nil {
		if root, err = compile(schema, &plan, dets); err != nil {
			return nil, Stats{}, nil, err
		}
	}
	used, rerun, err := m.run(root, schema, false)
	if err == nil && rerun {
		// The rows came before the schema: mask again now that it is known.
		m.reset()
		used, rerun, err = m.run(m.bodyRoot, m.bodySchema, true)
		if err == nil && rerun {
			err = errors.New("masking: internal error: rows still ahead of the schema")
		}
	}
	if err != nil {
		return nil, Stats{}, nil, err
	}
	if used != nil {
		maskedSchema = &Schema{Fields: masked(used.s.Fields, used.n.children)}
	}
	stats = m.stats
	for i, n := range m.hits {
		if n > 0 {
			if stats.DetectorHits == nil {
				stats.DetectorHits = map[string]int{}
			}
			stats.DetectorHits[detectorNames[i]] = n
		}
	}
	if !m.changed {
		return body, stats, maskedSchema, nil
	}
	m.out = append(m.out, body[m.copied:]...)
	return m.out, stats, maskedSchema, nil
}

type compiled struct {
	s *Schema
	n *node
}

type masker struct {
	plan *Plan
	dets detSet
	body []byte
	s    scanner

	out     []byte
	copied  int // body[:copied] is in out (or unchanged)
	changed bool

	stats Stats
	hits  [numDetectors]int

	bodySchema *Schema
	bodyRoot   *node

	mac     hash.Hash
	sum     []byte
	scratch []byte // decoded cell values
	keybuf  []byte // decoded keys with escapes
}

func (m *masker) reset() {
	m.out, m.copied, m.changed = m.out[:0], 0, false
	m.stats, m.hits = Stats{}, [numDetectors]int{}
}

// replace copies the body up to start into out and skips the body up to end; the
// caller appends the replacement.
func (m *masker) replace(start, end int) {
	if !m.changed {
		m.changed = true
		if m.out == nil {
			m.out = make([]byte, 0, len(m.body)+len(m.body)/8+64)
		}
	}
	m.out = append(m.out, m.body[m.copied:start]...)
	m.copied = end
}

// run walks the response object once. It reports rerun when rows came before the body's
// schema (skipped, or masked with the remembered schema): the body's schema is
// authoritative, so the caller runs again with it (authoritative=true).
func (m *masker) run(root *node, schema *Schema, authoritative bool) (used *compiled, rerun bool, err error) {
	m.s = scanner{b: m.body}
	s := &m.s
	var rowsPending, seenRows bool
	if root != nil {
		used = &compiled{s: schema, n: root}
	}
	err = s.object(nil, func(k []byte) error {
		switch string(k) {
		case "schema":
			s.ws()
			start := s.i
			sch, err := s.parseSchema(m.keybuf)
			if err != nil || sch == nil {
				return err
			}
			if schema != nil && !sameShape(schema.Fields, sch.Fields) {
				return errors.New("masking: the response's schema differs from the remembered schema")
			}
			n, err := compile(sch, m.plan, m.dets)
			if err != nil {
				return err
			}
			m.bodySchema, m.bodyRoot = sch, n
			if seenRows && !authoritative {
				rerun = true
			}
			used = &compiled{s: sch, n: n}
			end := s.i
			s.i = start
			if err := m.rewriteSchema(n); err != nil {
				return err
			}
			if s.i != end {
				return errors.New("masking: internal error: schema rewrite out of step")
			}
			return nil
		case "rows":
			seenRows = true
			if used == nil {
				rowsPending = true
				return s.skip(1)
			}
			return m.rows(used.n)
		}
		if err := s.lookalike(k, "rows", "schema"); err != nil {
			return err
		}
		return s.skip(1)
	})
	if s.ws(); err == nil && s.i != len(s.b) {
		err = s.fail("data after the response object")
	}
	if err != nil {
		return nil, false, err
	}
	if rowsPending && m.bodyRoot == nil {
		return nil, false, errors.New("masking: the response has rows but no schema, and none was remembered")
	}
	return used, rerun, nil
}

// rewriteSchema rewrites the TableSchema at the scanner: every field whose leaves now
// hold mask tokens says STRING, without the type's attributes (precision, scale, ...).
func (m *masker) rewriteSchema(root *node) error {
	s := &m.s
	return s.object(m.keybuf, func(k []byte) error {
		if string(k) != "fields" {
			return s.skip(1)
		}
		return m.rewriteFields(root.children)
	})
}

// typeAttrs are TableFieldSchema members that only make sense for the original type.
var typeAttrs = map[string]bool{
	"precision": true, "scale": true, "maxLength": true, "roundingMode": true,
	"rangeElementType": true, "foreignTypeDefinition": true, "defaultValueExpression": true,
}

func (m *masker) rewriteFields(nodes []*node) error {
	s := &m.s
	if s.peek() == 'n' {
		return s.literal("null")
	}
	if err := s.expect('['); err != nil {
		return err
	}
	if s.peek() == ']' {
		s.i++
		return nil
	}
	for i := 0; ; i++ {
		n := nodes[i]
		if err := m.rewriteField(n); err != nil {
			return err
		}
		more, err := s.next(']')
		if err != nil || !more {
			return err
		}
	}
}

func (m *masker) rewriteField(n *node) error {
	s := &m.s
	if err := s.expect('{'); err != nil {
		return err
	}
	kept := false
	prevEnd := 0
	for s.peek() != '}' {
		s.ws()
		keyStart := s.i
		k, err := s.key(m.keybuf)
		if err != nil {
			return err
		}
		s.ws()
		valStart := s.i
		drop := n.toString && typeAttrs[string(k)]
		switch {
		case string(k) == "type" && n.toString:
			if err := s.skip(1); err != nil {
				return err
			}
			m.replace(valStart, s.i)
			m.out = append(m.out, `"STRING"`...)
		case string(k) == "fields" && n.record:
			if err := m.rewriteFields(n.children); err != nil {
				return err
			}
		default:
			if err := s.skip(1); err != nil {
				return err
			}
		}
		valEnd := s.i
		more, err := s.next('}')
		if err != nil {
			return err
		}
		if drop {
			switch {
			case kept: // remove `, "key": value`
				m.replace(prevEnd, valEnd)
			case more: // first kept member still ahead: remove `"key": value,`
				m.replace(keyStart, s.i)
			default:
				m.replace(keyStart, valEnd)
			}
		} else {
			kept = true
		}
		prevEnd = valEnd
		if !more {
			return nil
		}
	}
	s.i++
	return nil
}

// rows masks the rows array.
func (m *masker) rows(root *node) error {
	s := &m.s
	if s.peek() == 'n' {
		return s.literal("null")
	}
	if err := s.expect('['); err != nil {
		return err
	}
	if s.peek() == ']' {
		s.i++
		return nil
	}
	for {
		m.stats.Rows++
		var err error
		if root.work {
			err = m.record(root, 1)
		} else {
			err = s.skip(1)
		}
		if err != nil {
			return err
		}
		more, err := s.next(']')
		if err != nil || !more {
			return err
		}
	}
}

// member reads the single member of a row, RECORD or cell object ({"f":...} or
// {"v":...}); name is 'f' or 'v'.
func (m *masker) member(name byte) error {
	s := &m.s
	if err := s.expect('{'); err != nil {
		return err
	}
	if b := s.b; s.i+3 < len(b) && b[s.i] == '"' && b[s.i+1] == name && b[s.i+2] == '"' && b[s.i+3] == ':' {
		s.i += 4 // the common, compact form
		return nil
	}
	k, err := s.key(m.keybuf)
	if err != nil {
		return err
	}
	if len(k) != 1 || k[0] != name {
		return s.fail("want member %q, found %q", name, k)
	}
	return nil
}

// record masks {"f":[cell, ...]} with one cell per field of n.
func (m *masker) record(n *node, depth int) error {
	s := &m.s
	if depth > maxDepth {
		return s.fail("nested too deep")
	}
	if err := m.member('f'); err != nil {
		return err
	}
	if err := s.expect('['); err != nil {
		return err
	}
	i := 0
	if s.peek() == ']' {
		s.i++
	} else {
		for {
			if i >= len(n.children) {
				return s.fail("more cells than the schema has fields (%d)", len(n.children))
			}
			if err := m.cell(n.children[i], depth+1); err != nil {
				return err
			}
			i++
			more, err := s.next(']')
			if err != nil {
				return err
			}
			if !more {
				break
			}
		}
	}
	if i != len(n.children) {
		return s.fail("%d cells where the schema has %d fields", i, len(n.children))
	}
	return m.end()
}

// end closes a single-member object.
func (m *masker) end() error {
	if more, err := m.s.next('}'); err != nil || more {
		if err == nil {
			err = m.s.fail("unexpected second member")
		}
		return err
	}
	return nil
}

// cell masks {"v": value} for field n.
func (m *masker) cell(n *node, depth int) error {
	s := &m.s
	if err := m.member('v'); err != nil {
		return err
	}
	var err error
	switch {
	case !n.work:
		err = s.skip(depth)
	case s.peek() == 'n':
		err = s.literal("null")
	case n.repeated:
		err = m.array(n, depth)
	default:
		err = m.elem(n, depth)
	}
	if err != nil {
		return err
	}
	return m.end()
}

// array masks [{"v": elem}, ...] of a REPEATED field.
func (m *masker) array(n *node, depth int) error {
	s := &m.s
	if err := s.expect('['); err != nil {
		return err
	}
	if s.peek() == ']' {
		s.i++
		return nil
	}
	for {
		if err := m.member('v'); err != nil {
			return err
		}
		if err := m.elem(n, depth+1); err != nil {
			return err
		}
		if err := m.end(); err != nil {
			return err
		}
		more, err := s.next(']')
		if err != nil || !more {
			return err
		}
	}
}

var (
	tokRedacted = []byte(`"` + RedactedToken + `"`)
	tokNull     = []byte("null")
)

// elem masks one value (not an array) of field n.
func (m *masker) elem(n *node, depth int) error {
	s := &m.s
	c := s.peek()
	if c == 'n' {
		return s.literal("null")
	}
	if n.record {
		return m.record(n, depth+1)
	}
	if c != '"' {
		return s.fail("want a string cell, found %q", c)
	}
	q := s.i
	start, end, esc, err := s.str()
	if err != nil {
		return err
	}
	val := m.body[start:end]
	if esc {
		m.scratch = unescape(m.scratch[:0], val)
		val = m.scratch
	}
	if n.detect {
		d := m.dets.detect(val)
		if d < 0 {
			return nil
		}
		m.hits[d]++
		m.replace(q, s.i)
		if n.jsonType { // keep the JSON column parseable: a JSON string
			m.out = append(m.out, `"\"[REDACTED:`...)
			m.out = append(m.out, detectorNames[d]...)
			m.out = append(m.out, `]\""`...)
		} else {
			m.out = append(m.out, `"[REDACTED:`...)
			m.out = append(m.out, detectorNames[d]...)
			m.out = append(m.out, `]"`...)
		}
		return nil
	}
	m.stats.CellsMasked++
	m.replace(q, s.i)
	switch n.action {
	case Null:
		m.out = append(m.out, tokNull...)
	case Hash:
		if m.mac == nil {
			m.mac = hmac.New(sha256.New, m.plan.Key.b)
		}
		m.mac.Reset()
		m.mac.Write(val)
		m.sum = m.mac.Sum(m.sum[:0])
		m.out = append(m.out, `"h:`...)
		m.out = hex.AppendEncode(m.out, m.sum[:16])
		m.out = append(m.out, '"')
	case Last4:
		if utf8.RuneCount(val) <= 4 {
			m.out = append(m.out, `"****"`...)
			break
		}
		i := len(val)
		for range 4 {
			_, size := utf8.DecodeLastRune(val[:i])
			i -= size
		}
		m.out = append(m.out, `"****`...)
		m.out = appendEscaped(m.out, val[i:])
		m.out = append(m.out, '"')
	case EmailDomain:
		at := bytes.LastIndexByte(val, '@')
		if at < 0 || at == len(val)-1 {
			m.out = append(m.out, tokRedacted...)
			break
		}
		m.out = append(m.out, `"***@`...)
		m.out = appendEscaped(m.out, val[at+1:])
		m.out = append(m.out, '"')
	default:
		m.out = append(m.out, tokRedacted...)
	}
	return nil
}

// appendEscaped appends v as the content of a JSON string.
func appendEscaped(dst, v []byte) []byte {
	const hexd = "0123456789abcdef"
	for _, c := range v {
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hexd[c>>4], hexd[c&15])
		default:
			dst = append(dst, c)
		}
	}
	return dst
}
