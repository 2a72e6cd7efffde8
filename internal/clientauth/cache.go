package clientauth

import (
	"context"
	"sync"
	"time"

	"github.com/fhirgate/fhirgate/internal/storage"
)

// MaxClientCacheTTL bounds how stale a cached client may be.
const MaxClientCacheTTL = 30 * time.Second

// clientCacheSize bounds the number of cached clients.
const clientCacheSize = 10000

// ClientCache is a storage.Clients whose GetClient answers from memory for
// up to TTL after it last read a client from the store, so the token
// endpoints do not query the store for every request of a busy client. A
// client disabled, changed or deleted elsewhere (another node, the CLI) is
// therefore seen at most TTL late; changes made through the ClientCache
// itself drop its entry at once. Unknown client ids are never cached (a
// flood of made-up ids cannot fill memory or hide a later registration),
// and the cache holds at most clientCacheSize clients.
type ClientCache struct {
	storage.Clients
	ttl time.Duration
	now func() time.Time

	mu      sync.RWMutex
	entries map[string]cachedClient
}

type cachedClient struct {
	c       storage.Client
	expires time.Time
}

// NewClientCache wraps clients; ttl is capped at MaxClientCacheTTL.
func NewClientCache(clients storage.Clients, ttl time.Duration, now func() time.Time) *ClientCache {
	if now == nil {
		now = time.Now
	}
	ttl = min(ttl, MaxClientCacheTTL)
	return &ClientCache{Clients: clients, ttl: ttl, now: now, entries: make(map[string]cachedClient)}
}

// GetClient implements storage.Clients. The result is a copy of the cached
// struct; its slices are shared and must not be modified.
func (c *ClientCache) GetClient(ctx context.Context, id string) (*storage.Client, error) {
	now := c.now()
	c.mu.RLock()
	e, ok := c.entries[id]
	c.mu.RUnlock()
	if ok && now.Before(e.expires) {
		cl := e.c
		return &cl, nil
	}
	cl, err := c.Clients.GetClient(ctx, id)
	if err != nil {
		if ok {
			c.forget(id)
		}
		return nil, err
	}
	c.mu.Lock()
	if len(c.entries) >= clientCacheSize {
		for k, v := range c.entries {
			if !now.Before(v.expires) {
				delete(c.entries, k)
			}
		}
	}
	if len(c.entries) < clientCacheSize {
		c.entries[id] = cachedClient{c: *cl, expires: now.Add(c.ttl)}
	}
	c.mu.Unlock()
	out := *cl
	return &out, nil
}

// UpdateClient implements storage.Clients and drops the cached entry.
func (c *ClientCache) UpdateClient(ctx context.Context, id string, update func(*storage.Client) error) (*storage.Client, error) {
	defer c.forget(id)
	return c.Clients.UpdateClient(ctx, id, update)
}

// DeleteClient implements storage.Clients and drops the cached entry.
func (c *ClientCache) DeleteClient(ctx context.Context, id string) error {
	defer c.forget(id)
	return c.Clients.DeleteClient(ctx, id)
}

func (c *ClientCache) forget(id string) {
	c.mu.Lock()
	delete(c.entries, id)
	c.mu.Unlock()
}
