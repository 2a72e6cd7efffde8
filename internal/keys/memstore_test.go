package keys_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/fhirgate/fhirgate/internal/storage"
)

// memKeys is a small in-memory storage.Keys used until (and besides) the
// SQLite store; it follows the interface's documented semantics.
type memKeys struct {
	mu   sync.Mutex
	keys []storage.SigningKey
}

func (s *memKeys) CreateSigningKey(_ context.Context, k *storage.SigningKey) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.keys {
		if e.KID == k.KID {
			return fmt.Errorf("kid %s: %w", k.KID, storage.ErrConflict)
		}
	}
	c := *k
	c.PublicJWK = bytes.Clone(k.PublicJWK)
	c.EncryptedPrivate = bytes.Clone(k.EncryptedPrivate)
	s.keys = append(s.keys, c)
	return nil
}

func (s *memKeys) ListSigningKeys(context.Context) ([]storage.SigningKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]storage.SigningKey, len(s.keys))
	for i, k := range s.keys {
		k.PublicJWK = bytes.Clone(k.PublicJWK)
		k.EncryptedPrivate = bytes.Clone(k.EncryptedPrivate)
		out[i] = k
	}
	return out, nil
}

func (s *memKeys) ActivateSigningKey(_ context.Context, kid string, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	idx := -1
	for i, k := range s.keys {
		if k.KID == kid {
			idx = i
		}
	}
	if idx < 0 {
		return fmt.Errorf("kid %s: %w", kid, storage.ErrNotFound)
	}
	alg := s.keys[idx].Alg
	for i := range s.keys {
		if s.keys[i].Alg == alg && s.keys[i].Active && i != idx {
			s.keys[i].Active = false
			s.keys[i].RetiredAt = now
		}
	}
	s.keys[idx].Active = true
	s.keys[idx].RetiredAt = time.Time{}
	return nil
}

// set replaces a stored record (to simulate tampering at rest).
func (s *memKeys) set(i int, k storage.SigningKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[i] = k
}
