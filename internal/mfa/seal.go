package mfa

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
)

// errSealed reports a sealed key that does not open (wrong key-encryption
// key or tampered record).
var errSealed = errors.New("mfa: sealed TOTP key does not open")

// sealer encrypts TOTP keys with AES-256-GCM; the user id is bound as
// additional data so a sealed key cannot be moved to another account.
type sealer struct{ aead cipher.AEAD }

func newSealer(kek []byte) (*sealer, error) {
	if len(kek) < 16 {
		return nil, errors.New("mfa: key-encryption key must be at least 16 bytes")
	}
	k := sha256.Sum256(append([]byte("fhirgate mfa totp v1\x00"), kek...))
	block, err := aes.NewCipher(k[:])
	if err != nil {
		return nil, fmt.Errorf("mfa: cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("mfa: gcm: %w", err)
	}
	return &sealer{aead: aead}, nil
}

func (s *sealer) seal(userID string, key []byte) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("mfa: nonce: %w", err)
	}
	return s.aead.Seal(nonce, nonce, key, []byte(userID)), nil
}

func (s *sealer) open(userID string, sealed []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n {
		return nil, errSealed
	}
	key, err := s.aead.Open(nil, sealed[:n], sealed[n:], []byte(userID))
	if err != nil {
		return nil, errSealed
	}
	return key, nil
}
