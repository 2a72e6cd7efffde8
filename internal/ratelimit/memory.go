package ratelimit

import (
	"context"
	"hash/maphash"
	"sync"
	"time"
)

// DefaultMaxKeys bounds the buckets a Memory limiter keeps per shard group.
const DefaultMaxKeys = 100_000

const shards = 64

// MemoryOptions configure NewMemory.
type MemoryOptions struct {
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// MaxKeys bounds the number of buckets kept; when full, buckets that have
	// refilled completely (and so carry no state) are dropped, then the
	// oldest. DefaultMaxKeys when zero.
	MaxKeys int
}

// Memory is the in-process token-bucket Limiter: the default backend, and
// the local fallback of the Redis limiter.
type Memory struct {
	now     func() time.Time
	maxKeys int
	seed    maphash.Seed
	shards  [shards]memShard
}

type memShard struct {
	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
	rate   Rate
}

// NewMemory returns an in-process limiter.
func NewMemory(opts MemoryOptions) *Memory {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxKeys <= 0 {
		opts.MaxKeys = DefaultMaxKeys
	}
	m := &Memory{now: opts.Now, maxKeys: opts.MaxKeys, seed: maphash.MakeSeed()}
	for i := range m.shards {
		m.shards[i].buckets = make(map[string]*bucket)
	}
	return m
}

// Allow implements Limiter. It never returns an error.
func (m *Memory) Allow(_ context.Context, key string, r Rate) (Decision, error) {
	if r.Unlimited() {
		return Decision{Allowed: true, Limit: -1, Remaining: -1}, nil
	}
	now := m.now()
	s := &m.shards[maphash.String(m.seed, key)%shards]
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.buckets[key]
	if !ok || b.rate != r {
		// A new bucket, or a changed budget (a config reload): start full.
		if !ok {
			s.evict(m.maxKeys/shards+1, now)
		}
		b = &bucket{tokens: float64(r.Capacity()), last: now, rate: r}
		s.buckets[key] = b
	}
	d, tokens, last := take(b.tokens, b.last, now, r)
	b.tokens, b.last = tokens, last
	return d, nil
}

// evict makes room for one more bucket when the shard is at its limit:
// first it drops every bucket that has refilled completely, then, if none
// did, the least recently used one.
func (s *memShard) evict(limit int, now time.Time) {
	if len(s.buckets) < limit {
		return
	}
	var oldestKey string
	var oldest time.Time
	for k, b := range s.buckets {
		full := b.tokens+now.Sub(b.last).Seconds()*b.rate.PerSecond() >= float64(b.rate.Capacity())
		if full {
			delete(s.buckets, k)
			continue
		}
		if oldestKey == "" || b.last.Before(oldest) {
			oldestKey, oldest = k, b.last
		}
	}
	if len(s.buckets) >= limit && oldestKey != "" {
		delete(s.buckets, oldestKey)
	}
}

// Len returns the number of buckets held (for tests and metrics).
func (m *Memory) Len() int {
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		n += len(s.buckets)
		s.mu.Unlock()
	}
	return n
}
