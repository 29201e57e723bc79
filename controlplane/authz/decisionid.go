package authz

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"time"
)

// decisionIDEncoding is Crockford's lowercase base32 alphabet: its characters ascend in
// ASCII, so ids of equal length sort by time.
var decisionIDEncoding = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

// NewDecisionID returns "dec_" and 26 base32 characters: 48 bits of milliseconds since the
// epoch, then 80 random bits. Ids sort by time (to the millisecond) and never repeat in
// practice.
func NewDecisionID(now time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[0:8], uint64(now.UnixMilli())<<16)
	_, _ = rand.Read(b[6:])
	return "dec_" + decisionIDEncoding.EncodeToString(b[:])
}
