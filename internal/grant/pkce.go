package grant

import (
	"crypto/sha256"
	"encoding/base64"

	"github.com/fhirgate/fhirgate/internal/secret"
)

// validVerifier reports whether v has the code_verifier syntax of RFC 7636
// §4.1: 43 to 128 characters of [A-Za-z0-9-._~].
func validVerifier(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9',
			c == '-', c == '.', c == '_', c == '~':
		default:
			return false
		}
	}
	return true
}

// s256Matches reports whether BASE64URL(SHA256(verifier)) equals the stored
// S256 challenge (RFC 7636 §4.6), compared in constant time. An empty
// challenge never matches: every code must carry one.
func s256Matches(verifier, challenge string) bool {
	if challenge == "" {
		return false
	}
	sum := sha256.Sum256([]byte(verifier))
	computed := base64.RawURLEncoding.EncodeToString(sum[:])
	return secret.Equal([]byte(computed), []byte(challenge))
}
