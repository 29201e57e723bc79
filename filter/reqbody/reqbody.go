// Package reqbody turns a buffered HTTP request body into the bytes the BigQuery decoder
// reads: it applies Content-Encoding (gzip, which Java sends) under a hard size cap, so
// a small compressed body cannot inflate past the gateway's limit. Wasm-safe.
package reqbody

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"strconv"
	"strings"

	"github.com/jitgate/jitgate/filter/bqapi"
)

// TooLarge is the rejection for a body over limit bytes (before or after inflating).
func TooLarge(limit int64) *bqapi.Rejection {
	return bqapi.Reject(bqapi.ReasonBodyTooLarge, "the request body exceeds the gateway limit of "+strconv.FormatInt(limit, 10)+" bytes")
}

// Decode returns body decoded per the Content-Encoding header value (empty when absent).
// Decoded bodies larger than limit are refused with 413, bad gzip with 400, and any
// encoding but gzip and identity with 400.
func Decode(contentEncoding string, body []byte, limit int64) ([]byte, *bqapi.Rejection) {
	if int64(len(body)) > limit {
		return nil, TooLarge(limit)
	}
	switch strings.ToLower(strings.TrimSpace(contentEncoding)) {
	case "", "identity":
		return body, nil
	case "gzip", "x-gzip":
		return inflate(body, limit)
	}
	return nil, bqapi.Reject(bqapi.ReasonUnsupportedEncoding, "request Content-Encoding must be gzip or identity")
}

func inflate(body []byte, limit int64) ([]byte, *bqapi.Rejection) {
	out, err := Inflate(body, limit)
	switch {
	case errors.Is(err, ErrTooLarge):
		return nil, TooLarge(limit)
	case err != nil:
		return nil, badGzip()
	}
	return out, nil
}

// ErrTooLarge and ErrBadGzip are Inflate's failures.
var (
	ErrTooLarge = errors.New("inflated body exceeds the limit")
	ErrBadGzip  = errors.New("invalid gzip data")
)

// Inflate decodes a gzip body (request or response) and refuses to produce more than
// limit bytes, so a small compressed body cannot exhaust the VM's memory.
func Inflate(body []byte, limit int64) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		return nil, ErrBadGzip
	}
	defer zr.Close()
	var out bytes.Buffer
	// Read one byte past the limit to tell "exactly at the limit" from "over it".
	n, err := out.ReadFrom(io.LimitReader(zr, limit+1))
	if n > limit {
		return nil, ErrTooLarge
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, ErrBadGzip
	}
	return out.Bytes(), nil
}

func badGzip() *bqapi.Rejection {
	return bqapi.Reject(bqapi.ReasonBadGzip, "the gzip-encoded request body cannot be decoded")
}
