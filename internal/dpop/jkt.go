package dpop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"math/big"
)

// JKT returns the RFC 7638 JWK SHA-256 thumbprint (base64url, no padding) of
// a public key: the hash of its required JWK members in lexicographic order
// without whitespace. Supported: ECDSA P-256/P-384/P-521, RSA and Ed25519.
// It is the value of cnf.jkt (RFC 9449 §6.1) and of dpop_jkt (§10).
func JKT(pub crypto.PublicKey) (string, error) {
	var members string
	b64 := base64.RawURLEncoding.EncodeToString
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		crv := ""
		switch k.Curve {
		case elliptic.P256():
			crv = "P-256"
		case elliptic.P384():
			crv = "P-384"
		case elliptic.P521():
			crv = "P-521"
		default:
			return "", fmt.Errorf("%w: unsupported curve", ErrKey)
		}
		ek, err := k.ECDH()
		if err != nil {
			return "", fmt.Errorf("%w: %w", ErrKey, err)
		}
		raw := ek.Bytes() // 0x04 || X || Y, each field-sized
		n := (len(raw) - 1) / 2
		members = `{"crv":"` + crv + `","kty":"EC","x":"` + b64(raw[1:1+n]) + `","y":"` + b64(raw[1+n:]) + `"}`
	case *rsa.PublicKey:
		if k.N == nil || k.E <= 0 {
			return "", fmt.Errorf("%w: incomplete RSA key", ErrKey)
		}
		e := big.NewInt(int64(k.E)).Bytes()
		members = `{"e":"` + b64(e) + `","kty":"RSA","n":"` + b64(k.N.Bytes()) + `"}`
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return "", fmt.Errorf("%w: bad Ed25519 key length", ErrKey)
		}
		members = `{"crv":"Ed25519","kty":"OKP","x":"` + b64(k) + `"}`
	default:
		return "", fmt.Errorf("%w: unsupported key type %T", ErrKey, pub)
	}
	sum := sha256.Sum256([]byte(members))
	return b64(sum[:]), nil
}
