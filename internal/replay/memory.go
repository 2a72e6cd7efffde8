package replay

import (
	"container/heap"
	"context"
	"sync"
	"time"
)

// DefaultMemoryMax is the capacity of a Memory cache created with max <= 0.
const DefaultMemoryMax = 100_000

// Memory is an in-process Cache holding at most a fixed number of unexpired
// values. Expired values are dropped as new ones arrive. When it is full of
// unexpired values it refuses new ones with ErrFull rather than forgetting a
// live value (which would let it be replayed). It suits a single node; several
// nodes need FromStore or replay/redis.
type Memory struct {
	now func() time.Time
	max int

	mu      sync.Mutex
	entries map[string]time.Time
	byExp   expiryHeap
}

// NewMemory returns a Memory cache with capacity max (DefaultMemoryMax when
// max <= 0) and clock now (time.Now when nil).
func NewMemory(now func() time.Time, max int) *Memory {
	if now == nil {
		now = time.Now
	}
	if max <= 0 {
		max = DefaultMemoryMax
	}
	return &Memory{now: now, max: max, entries: make(map[string]time.Time)}
}

// UseOnce implements Cache.
func (m *Memory) UseOnce(ctx context.Context, key string, expiresAt time.Time) error {
	if key == "" {
		return ErrInvalidKey
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	now := m.now()
	if !expiresAt.After(now) {
		return ErrExpired
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.purge(now)
	if exp, ok := m.entries[key]; ok && exp.After(now) {
		return ErrReplayed
	}
	if len(m.entries) >= m.max {
		return ErrFull
	}
	m.entries[key] = expiresAt
	heap.Push(&m.byExp, expiryEntry{key: key, exp: expiresAt})
	return nil
}

// Len reports how many values are held (expired ones not yet purged included).
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.entries)
}

// purge drops every value expired at now. m.mu is held.
func (m *Memory) purge(now time.Time) {
	for m.byExp.Len() > 0 && !m.byExp[0].exp.After(now) {
		e := heap.Pop(&m.byExp).(expiryEntry)
		if exp, ok := m.entries[e.key]; ok && exp.Equal(e.exp) {
			delete(m.entries, e.key)
		}
	}
}

type expiryEntry struct {
	key string
	exp time.Time
}

// expiryHeap is a min-heap of entries by expiry.
type expiryHeap []expiryEntry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].exp.Before(h[j].exp) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiryEntry)) }
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}
