package masking

import (
	"fmt"
	"unicode/utf16"
	"unicode/utf8"
)

// A hand-written JSON scanner, used instead of encoding/json on the hot path: decoding a
// 10 MB page of rows with encoding/json means reflection plus an allocation per cell (and
// per row map or slice), several times the page in garbage that the Go GC inside a wasm
// VM collects slowly; re-encoding it then loses the bytes of every cell we did not touch.
// The scanner walks the body in place, validates it, and the writer copies every span
// it does not change straight from the input (see masker.replace), so unmasked cells stay
// byte-identical and the only allocation proportional to the page is the output itself.

// maxDepth bounds nesting (BigQuery nests RECORDs at most 15 deep).
const maxDepth = 512

// SyntaxError is a body that is not valid JSON or not shaped like a BigQuery response.
type SyntaxError struct {
	Offset int
	Msg    string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("masking: response body is not a readable BigQuery response (offset %d): %s", e.Offset, e.Msg)
}

type scanner struct {
	b []byte
	i int
}

func (s *scanner) fail(format string, args ...any) error {
	return &SyntaxError{Offset: s.i, Msg: fmt.Sprintf(format, args...)}
}

func (s *scanner) ws() {
	if s.i < len(s.b) && s.b[s.i] > ' ' { // compact JSON: no space to skip
		return
	}
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// peek returns the next non-space byte (0 at the end).
func (s *scanner) peek() byte {
	s.ws()
	if s.i >= len(s.b) {
		return 0
	}
	return s.b[s.i]
}

func (s *scanner) expect(c byte) error {
	if s.peek() != c {
		if s.i >= len(s.b) {
			return s.fail("unexpected end of body, want %q", c)
		}
		return s.fail("want %q, found %q", c, s.b[s.i])
	}
	s.i++
	return nil
}

// next consumes ',' (more=true) or the closing byte (more=false).
func (s *scanner) next(closing byte) (more bool, err error) {
	switch s.peek() {
	case ',':
		s.i++
		return true, nil
	case closing:
		s.i++
		return false, nil
	case 0:
		return false, s.fail("unexpected end of body, want ',' or %q", closing)
	}
	return false, s.fail("want ',' or %q, found %q", closing, s.b[s.i])
}

// strTable marks bytes that end the fast part of a string scan.
var strTable = func() (t [256]bool) {
	for c := 0; c < 0x20; c++ {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

// str scans the string at s.i (after spaces) and returns the bounds of its raw
// content (quotes excluded) and whether it holds escapes.
func (s *scanner) str() (start, end int, esc bool, err error) {
	if s.peek() != '"' {
		return 0, 0, false, s.fail("want a string")
	}
	b := s.b
	i := s.i + 1
	start = i
	for {
		for i < len(b) && !strTable[b[i]] {
			i++
		}
		if i >= len(b) {
			s.i = i
			return 0, 0, false, s.fail("unterminated string")
		}
		switch c := b[i]; {
		case c == '"':
			s.i = i + 1
			return start, i, esc, nil
		case c == '\\':
			esc = true
			if i+1 >= len(b) {
				s.i = i
				return 0, 0, false, s.fail("unterminated escape")
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					s.i = i
					return 0, 0, false, s.fail("bad \\u escape")
				}
				i += 6
			default:
				s.i = i
				return 0, 0, false, s.fail("bad escape \\%c", b[i+1])
			}
		default:
			s.i = i
			return 0, 0, false, s.fail("control character in string")
		}
	}
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func hexVal(c byte) rune {
	switch {
	case c <= '9':
		return rune(c - '0')
	case c >= 'a':
		return rune(c-'a') + 10
	}
	return rune(c-'A') + 10
}

// unescape appends the decoded content of a validated raw string to dst.
func unescape(dst, raw []byte) []byte {
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			dst = append(dst, c)
			i++
			continue
		}
		switch raw[i+1] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := hexVal(raw[i+2])<<12 | hexVal(raw[i+3])<<8 | hexVal(raw[i+4])<<4 | hexVal(raw[i+5])
			i += 6
			if utf16.IsSurrogate(r) {
				r2 := utf8.RuneError
				if i+6 <= len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
					r2 = hexVal(raw[i+2])<<12 | hexVal(raw[i+3])<<8 | hexVal(raw[i+4])<<4 | hexVal(raw[i+5])
				}
				if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
					r = d
					i += 6
				} else {
					r = utf8.RuneError
				}
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default: // " \ /
			dst = append(dst, raw[i+1])
		}
		i += 2
	}
	return dst
}

// skip validates and skips one value.
func (s *scanner) skip(depth int) error {
	if depth > maxDepth {
		return s.fail("nested too deep")
	}
	switch c := s.peek(); c {
	case '"':
		_, _, _, err := s.str()
		return err
	case '{':
		s.i++
		if s.peek() == '}' {
			s.i++
			return nil
		}
		for {
			if _, _, _, err := s.str(); err != nil {
				return err
			}
			if err := s.expect(':'); err != nil {
				return err
			}
			if err := s.skip(depth + 1); err != nil {
				return err
			}
			more, err := s.next('}')
			if err != nil || !more {
				return err
			}
		}
	case '[':
		s.i++
		if s.peek() == ']' {
			s.i++
			return nil
		}
		for {
			if err := s.skip(depth + 1); err != nil {
				return err
			}
			more, err := s.next(']')
			if err != nil || !more {
				return err
			}
		}
	case 't':
		return s.literal("true")
	case 'f':
		return s.literal("false")
	case 'n':
		return s.literal("null")
	case 0:
		return s.fail("unexpected end of body")
	default:
		if c == '-' || '0' <= c && c <= '9' {
			return s.number()
		}
		return s.fail("unexpected %q", c)
	}
}

func (s *scanner) literal(lit string) error {
	if len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		return s.fail("bad literal, want %s", lit)
	}
	s.i += len(lit)
	return nil
}

func (s *scanner) digits() int {
	n := 0
	for s.i < len(s.b) && '0' <= s.b[s.i] && s.b[s.i] <= '9' {
		s.i++
		n++
	}
	return n
}

// number validates the JSON number grammar.
func (s *scanner) number() error {
	if s.b[s.i] == '-' {
		s.i++
	}
	if s.i < len(s.b) && s.b[s.i] == '0' {
		s.i++
	} else if s.digits() == 0 {
		return s.fail("bad number")
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if s.digits() == 0 {
			return s.fail("bad number")
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if s.digits() == 0 {
			return s.fail("bad number")
		}
	}
	return nil
}

// key reads an object key followed by ':' and returns its decoded text (no allocation
// unless it holds escapes).
func (s *scanner) key(scratch []byte) ([]byte, error) {
	start, end, esc, err := s.str()
	if err != nil {
		return nil, err
	}
	k := s.b[start:end]
	if esc {
		k = unescape(scratch[:0], k)
	}
	if err := s.expect(':'); err != nil {
		return nil, err
	}
	return k, nil
}
