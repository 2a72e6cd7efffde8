package gateway

import (
	"crypto/sha256"
	"sync"
	"time"

	"github.com/fhirgate/fhirgate/internal/policy"
	"github.com/fhirgate/fhirgate/internal/token"
)

// verified is a token that passed signature, issuer, audience and time
// checks, with its parsed scopes. It is immutable once cached.
type verified struct {
	claims    *token.AccessClaims
	principal policy.Principal
	expires   time.Time // the token's exp; the entry is never used at or past it
}

// tokenCache holds verified tokens keyed by the SHA-256 of the token, so the
// token itself is never kept. It is bounded: when full, expired entries are
// dropped first, then arbitrary ones. Revocation is not cached here.
type tokenCache struct {
	max    int
	shards [16]cacheShard
}

type cacheShard struct {
	mu sync.RWMutex
	m  map[[32]byte]*verified
}

func newTokenCache(max int) *tokenCache {
	c := &tokenCache{max: max}
	for i := range c.shards {
		c.shards[i].m = make(map[[32]byte]*verified)
	}
	return c
}

func tokenKey(raw string) [32]byte { return sha256.Sum256([]byte(raw)) }

func (c *tokenCache) shard(k [32]byte) *cacheShard { return &c.shards[k[0]&15] }

// get returns the cached entry if it is still before its exp.
func (c *tokenCache) get(k [32]byte, now time.Time) *verified {
	s := c.shard(k)
	s.mu.RLock()
	v := s.m[k]
	s.mu.RUnlock()
	if v == nil || !now.Before(v.expires) {
		return nil
	}
	return v
}

func (c *tokenCache) put(k [32]byte, v *verified, now time.Time) {
	if c.max <= 0 || !now.Before(v.expires) {
		return
	}
	per := max(1, c.max/len(c.shards))
	s := c.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= per {
		for key, e := range s.m {
			if !now.Before(e.expires) {
				delete(s.m, key)
			}
		}
		for key := range s.m {
			if len(s.m) < per {
				break
			}
			delete(s.m, key)
		}
	}
	s.m[k] = v
}

func (c *tokenCache) remove(k [32]byte) {
	s := c.shard(k)
	s.mu.Lock()
	delete(s.m, k)
	s.mu.Unlock()
}

func (c *tokenCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}
