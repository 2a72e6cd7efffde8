// Package secret generates the random values fhirgate hands out: codes,
// tokens, ids, client secrets. All are URL-safe base64 without padding.
package secret

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
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

// ID returns a new 128-bit URL-safe identifier (not a secret, but unguessable).
func ID() string { return New(16) }

// Equal compares two secrets (or their hashes) in constant time.
func Equal(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }
