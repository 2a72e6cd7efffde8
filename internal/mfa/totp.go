// Package mfa implements the second sign-in factor: RFC 6238 time-based
// one-time passwords (HMAC-SHA1, 6 digits, 30-second steps, accepted one
// step either side), enrolment through an otpauth:// URI shown as a QR code
// rendered server side, single-use recovery codes stored as hashes, and
// replay protection that refuses any step at or before the last one used.
// TOTP keys are stored sealed (AES-256-GCM) under a key derived from the
// server's key-encryption key.
package mfa

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // RFC 6238 default; what authenticator apps implement
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// TOTP parameters (RFC 6238 defaults, understood by every authenticator app).
const (
	Digits  = 6
	Period  = 30 * time.Second
	KeySize = 20 // bytes: 160 bits, the HMAC-SHA1 output size (RFC 4226 §4 R6)
	// Window is how many steps before and after the current one are accepted.
	Window = 1
)

// Step returns the RFC 6238 time step of t.
func Step(t time.Time) int64 {
	return t.Unix() / int64(Period/time.Second)
}

// Code returns the HOTP value (RFC 4226 §5.3) of key at counter step, as
// Digits decimal digits.
func Code(key []byte, step int64) string {
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], uint64(step))
	mac := hmac.New(sha1.New, key)
	mac.Write(msg[:])
	sum := mac.Sum(nil)
	off := sum[len(sum)-1] & 0x0f
	bin := binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff
	return fmt.Sprintf("%0*d", Digits, bin%1_000_000)
}

// Match returns the step in [Step(now)-Window, Step(now)+Window] whose code
// equals code, comparing every candidate in constant time.
func Match(key []byte, code string, now time.Time) (int64, bool) {
	code = normalizeCode(code)
	if len(code) != Digits {
		return 0, false
	}
	cur := Step(now)
	var found int64
	ok := false
	for s := cur - Window; s <= cur+Window; s++ {
		if hmac.Equal([]byte(Code(key, s)), []byte(code)) && !ok {
			found, ok = s, true
		}
	}
	return found, ok
}

// normalizeCode drops spaces and hyphens people type inside codes.
func normalizeCode(s string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '-' || r == '\t' {
			return -1
		}
		return r
	}, strings.TrimSpace(s))
}

// b32 is the unpadded base32 encoding authenticator apps expect.
var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// EncodeKey is key as unpadded base32, for manual entry.
func EncodeKey(key []byte) string { return b32.EncodeToString(key) }

// URI is the otpauth:// key URI that authenticator apps scan.
func URI(issuer, account string, key []byte) string {
	label := url.PathEscape(issuer) + ":" + url.PathEscape(account)
	q := url.Values{}
	q.Set("secret", EncodeKey(key))
	q.Set("issuer", issuer)
	q.Set("algorithm", "SHA1")
	q.Set("digits", fmt.Sprint(Digits))
	q.Set("period", fmt.Sprint(int(Period/time.Second)))
	return "otpauth://totp/" + label + "?" + q.Encode()
}
