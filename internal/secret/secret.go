// Package secret generates the random values fhirgate hands out: codes,
// tokens, ids, client secrets. All are URL-safe base64 without padding.
package secret

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"time"
)

// Bytes is the default entropy of a generated secret: 256 bits.
const Bytes = 32

// New returns a URL-safe random string carrying n bytes of entropy.
// It panics only if the system random source fails, which crypto/rand
// documents as unrecoverable.
func New(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("secret: crypto/rand failed: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// Token returns a new 256-bit URL-safe secret.
func Token() string { return New(Bytes) }

// ID returns a new 128-bit URL-safe identifier (not a secret, but
// unguessable) that never starts with '-': operators pass client, user,
// admin-token and anomaly IDs to the CLI as arguments, where a leading '-'
// reads as a flag. An ID that would start with it is drawn again, so the
// others stay equally likely.
func ID() string {
	for {
		if id := New(16); id[0] != '-' {
			return id
		}
	}
}

// sortedEncoding is URL-safe base64 with its alphabet in ASCII order, so
// that encoded strings of equal length sort as the bytes they encode.
var sortedEncoding = base64.NewEncoding("-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz").WithPadding(base64.NoPadding)

// TimeID returns a new 128-bit URL-safe identifier whose first 48 bits are
// now in Unix milliseconds and the other 80 random, encoded so that an ID
// from a later millisecond sorts after one from an earlier millisecond. Rows
// inserted under such keys land at the right edge of their index, next to
// the rows inserted just before them, instead of on a random page each: a
// write transaction that inserts many of them then writes few pages. Use it
// for identifiers of rows created on hot paths that are not secrets (the
// time it carries is public) but must stay unguessable.
func TimeID(now time.Time) string {
	var b [16]byte
	ms := uint64(max(now.UnixMilli(), 0))
	binary.BigEndian.PutUint64(b[:8], ms<<16) // the low 48 bits of ms, big-endian, in b[0:6]
	if _, err := rand.Read(b[6:]); err != nil {
		panic("secret: crypto/rand failed: " + err.Error())
	}
	return sortedEncoding.EncodeToString(b[:])
}

// timeIDLen is the length of a TimeID: 16 bytes in unpadded base64.
const timeIDLen = 22

// TimedToken returns a new 256-bit URL-safe secret led by a TimeID of now
// (65 characters): a store can file it under a key that starts with the
// TimeID's bytes (TimedPrefix), so that tokens issued one after another are
// stored next to each other instead of on a random index page each. The
// prefix adds 80 random bits and reveals when the token was issued.
func TimedToken(now time.Time) string { return TimeID(now) + Token() }

// TimedPrefix returns the 16 bytes of the TimeID that leads a token from
// TimedToken, and false for any other string (a plain Token among them).
func TimedPrefix(token string) ([]byte, bool) {
	if len(token) != timeIDLen+base64.RawURLEncoding.EncodedLen(Bytes) {
		return nil, false
	}
	b, err := sortedEncoding.DecodeString(token[:timeIDLen])
	if err != nil || len(b) != 16 {
		return nil, false
	}
	return b, true
}

// Equal compares two secrets (or their hashes) in constant time.
func Equal(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }
