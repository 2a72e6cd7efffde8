package keys

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/go-jose/go-jose/v4"
)

// KEKSize is the length in bytes of a key-encryption key (AES-256).
const KEKSize = 32

// sealVersion prefixes every sealed private key so the format can change.
const sealVersion byte = 1

// devKEKLabel is hashed into the development key-encryption key. It is public
// on purpose: anything sealed under DevKEK is readable by anyone.
const devKEKLabel = "fhirgate development key-encryption key: NOT SECRET, never use in production"

// ErrBadKEK is returned when a key-encryption key is malformed.
var ErrBadKEK = errors.New("keys: key-encryption key must be 32 bytes, base64 encoded")

// ErrDecrypt is returned when a stored private key cannot be opened: the
// key-encryption key is wrong, or the record was altered.
var ErrDecrypt = errors.New("keys: cannot decrypt signing key (wrong key-encryption key or altered record)")

// DevKEK returns the fixed development key-encryption key: the SHA-256 digest
// of a public label. It lets a development server start without
// configuration; it protects nothing, so New logs a loud warning when it is
// used, and production deployments must set their own key.
func DevKEK() []byte {
	sum := sha256.Sum256([]byte(devKEKLabel))
	return sum[:]
}

// IsDevKEK reports whether kek is the public development key.
func IsDevKEK(kek []byte) bool {
	return subtle.ConstantTimeCompare(kek, DevKEK()) == 1
}

// ParseKEK decodes a key-encryption key given as standard or URL-safe base64
// (padded or not) of exactly 32 bytes.
func ParseKEK(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{
		base64.StdEncoding, base64.RawStdEncoding,
		base64.URLEncoding, base64.RawURLEncoding,
	} {
		b, err := enc.DecodeString(s)
		if err == nil {
			if len(b) != KEKSize {
				return nil, fmt.Errorf("%w (got %d bytes)", ErrBadKEK, len(b))
			}
			return b, nil
		}
	}
	return nil, fmt.Errorf("%w (not base64)", ErrBadKEK)
}

// seal encrypts a private key (PKCS#8 DER) with AES-256-GCM under kek, with
// kid as additional data so a sealed key cannot be moved to another record.
// Layout: version(1) | nonce(12) | ciphertext+tag.
func seal(kek []byte, kid string, priv crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("keys: encode private key: %w", err)
	}
	aead, err := newAEAD(kek)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 1+aead.NonceSize(), 1+aead.NonceSize()+len(der)+aead.Overhead())
	out[0] = sealVersion
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, fmt.Errorf("keys: nonce: %w", err)
	}
	return aead.Seal(out, out[1:1+aead.NonceSize()], der, []byte(kid)), nil
}

// open reverses seal and checks the key type matches alg.
func open(kek []byte, kid, alg string, sealed []byte) (crypto.Signer, error) {
	aead, err := newAEAD(kek)
	if err != nil {
		return nil, err
	}
	ns := aead.NonceSize()
	if len(sealed) < 1+ns+aead.Overhead() || sealed[0] != sealVersion {
		return nil, fmt.Errorf("%w: kid %s: bad format", ErrDecrypt, kid)
	}
	der, err := aead.Open(nil, sealed[1:1+ns], sealed[1+ns:], []byte(kid))
	if err != nil {
		return nil, fmt.Errorf("%w: kid %s", ErrDecrypt, kid)
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("%w: kid %s: %w", ErrDecrypt, kid, err)
	}
	switch key := k.(type) {
	case *ecdsa.PrivateKey:
		if alg != string(jose.ES256) || key.Curve != elliptic.P256() {
			return nil, fmt.Errorf("keys: kid %s: EC key does not match alg %s", kid, alg)
		}
		return key, nil
	case *rsa.PrivateKey:
		if alg != string(jose.RS256) || key.N.BitLen() < 2048 {
			return nil, fmt.Errorf("keys: kid %s: RSA key does not match alg %s", kid, alg)
		}
		return key, nil
	default:
		return nil, fmt.Errorf("keys: kid %s: unsupported key type %T", kid, k)
	}
}

func newAEAD(kek []byte) (cipher.AEAD, error) {
	if len(kek) != KEKSize {
		return nil, ErrBadKEK
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	return cipher.NewGCM(block)
}

// generate creates a new private key for alg.
func generate(alg string) (crypto.Signer, error) {
	switch alg {
	case string(jose.ES256):
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case string(jose.RS256):
		return rsa.GenerateKey(rand.Reader, 2048)
	default:
		return nil, fmt.Errorf("%w: %q", ErrUnsupportedAlg, alg)
	}
}

// publicJWK returns the public JWK of priv with its kid: the RFC 7638
// SHA-256 thumbprint, base64url.
func publicJWK(alg string, priv crypto.Signer) (jose.JSONWebKey, error) {
	jwk := jose.JSONWebKey{Key: priv.Public(), Algorithm: alg, Use: "sig"}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return jose.JSONWebKey{}, fmt.Errorf("keys: thumbprint: %w", err)
	}
	jwk.KeyID = base64.RawURLEncoding.EncodeToString(tp)
	return jwk, nil
}
