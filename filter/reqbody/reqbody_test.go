package reqbody

import (
	"bytes"
	"compress/gzip"
	"errors"
	"strings"
	"testing"

	"github.com/jitgate/jitgate/filter/bqapi"
)

func gz(data string) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write([]byte(data))
	w.Close()
	return b.Bytes()
}

func TestDecode(t *testing.T) {
	const limit = 1000
	exact := strings.Repeat("a", limit)
	twoMembers := append(gz("hello "), gz("world")...)
	cases := []struct {
		name, encoding string
		body           []byte
		want           string
		reason         bqapi.Reason
	}{
		{"identity", "", []byte("{}"), "{}", ""},
		{"explicit identity", "Identity", []byte("{}"), "{}", ""},
		{"gzip", "gzip", gz(`{"query":"x"}`), `{"query":"x"}`, ""},
		{"x-gzip", "x-gzip", gz("x"), "x", ""},
		{"gzip exactly at limit", "GZIP", gz(exact), exact, ""},
		{"multi-member gzip", "gzip", twoMembers, "hello world", ""},
		{"gzip over limit (bomb)", "gzip", gz(exact + "a"), "", bqapi.ReasonBodyTooLarge},
		{"raw over limit", "", []byte(exact + "a"), "", bqapi.ReasonBodyTooLarge},
		{"not gzip", "gzip", []byte("{}"), "", bqapi.ReasonBadGzip},
		{"truncated gzip", "gzip", gz(exact)[:30], "", bqapi.ReasonBadGzip},
		{"trailing garbage", "gzip", append(gz("x"), "junk"...), "", bqapi.ReasonBadGzip},
		{"deflate", "deflate", []byte("x"), "", bqapi.ReasonUnsupportedEncoding},
		{"stacked", "gzip, gzip", gz("x"), "", bqapi.ReasonUnsupportedEncoding},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, rej := Decode(c.encoding, c.body, limit)
			if c.reason != "" {
				if rej == nil || rej.Reason != c.reason {
					t.Fatalf("got %v, want %s", rej, c.reason)
				}
				return
			}
			if rej != nil {
				t.Fatal(rej)
			}
			if string(got) != c.want {
				t.Errorf("got %q", got)
			}
		})
	}
}

func TestInflate(t *testing.T) {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write([]byte("0123456789"))
	zw.Close()
	if out, err := Inflate(b.Bytes(), 10); err != nil || string(out) != "0123456789" {
		t.Errorf("at the limit: %q %v", out, err)
	}
	if _, err := Inflate(b.Bytes(), 9); !errors.Is(err, ErrTooLarge) {
		t.Errorf("over the limit: %v", err)
	}
	if _, err := Inflate([]byte("not gzip"), 100); !errors.Is(err, ErrBadGzip) {
		t.Errorf("not gzip: %v", err)
	}
	if _, err := Inflate(b.Bytes()[:b.Len()-4], 100); !errors.Is(err, ErrBadGzip) {
		t.Errorf("truncated: %v", err)
	}
}
