// Package redis keeps one-time values (replay.Cache) in Redis, shared by
// every fhirgate node: SET key NX PXAT expiry records a value exactly once,
// and Redis forgets it when it expires.
package redis

import (
	"context"
	"errors"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/fhirgate/fhirgate/internal/replay"
)

// Cache is a replay.Cache in Redis. It is safe for concurrent use.
type Cache struct {
	client *goredis.Client
	prefix string
	now    func() time.Time
}

// New returns a cache storing its keys under prefix (e.g. "fhirgate:replay:")
// through client.
func New(client *goredis.Client, prefix string) *Cache {
	return &Cache{client: client, prefix: prefix, now: time.Now}
}

// UseOnce implements replay.Cache. Any Redis failure is returned as an error
// (not ErrReplayed), so the caller refuses the request.
func (c *Cache) UseOnce(ctx context.Context, key string, expiresAt time.Time) error {
	if key == "" {
		return replay.ErrInvalidKey
	}
	if !expiresAt.After(c.now()) {
		return replay.ErrExpired
	}
	err := c.client.Do(ctx, "SET", c.prefix+key, "1", "NX", "PXAT", expiresAt.UnixMilli()).Err()
	switch {
	case err == nil:
		return nil
	case errors.Is(err, goredis.Nil):
		return replay.ErrReplayed
	default:
		return fmt.Errorf("replay/redis: set: %w", err)
	}
}
