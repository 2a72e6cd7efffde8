// Package replay remembers one-time values (DPoP proof jti, client assertion
// jti, server nonces) until they expire, so that a value presented a second
// time is refused. Cache is the contract; Memory is a bounded in-process
// implementation, FromStore adapts a storage.Replays backend (shared by every
// node using the same database), and replay/redis shares the values through
// Redis. replaytest holds the conformance suite every implementation passes.
//
// Implementations fail closed: when they cannot record a value they return an
// error other than ErrReplayed, and the caller must refuse the request.
package replay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fhirgate/fhirgate/internal/storage"
)

// Errors returned by caches. Callers test them with errors.Is.
var (
	// ErrReplayed: the value was recorded before and has not expired.
	ErrReplayed = errors.New("replay: value already used")
	// ErrExpired: the value's lifetime has already passed; it is not
	// recorded and must be refused by the caller.
	ErrExpired = errors.New("replay: value already expired")
	// ErrFull: a bounded cache holds its maximum of unexpired values; the
	// value is not recorded and the request must be refused (fail closed).
	ErrFull = errors.New("replay: cache full")
	// ErrInvalidKey: the key is empty.
	ErrInvalidKey = errors.New("replay: empty key")
)

// Cache records one-time values.
type Cache interface {
	// UseOnce records key until expiresAt. It returns nil the first time,
	// ErrReplayed while key is recorded and unexpired, and another error when
	// the value could not be recorded (the caller must then refuse). Exactly
	// one of several concurrent callers with the same key gets nil.
	UseOnce(ctx context.Context, key string, expiresAt time.Time) error
}

// storeCache adapts storage.Replays.
type storeCache struct {
	store storage.Replays
	now   func() time.Time
}

// FromStore returns a Cache kept in a storage backend (the database every
// node shares). now is the clock (time.Now when nil).
func FromStore(s storage.Replays, now func() time.Time) Cache {
	if now == nil {
		now = time.Now
	}
	return &storeCache{store: s, now: now}
}

// UseOnce implements Cache.
func (c *storeCache) UseOnce(ctx context.Context, key string, expiresAt time.Time) error {
	if key == "" {
		return ErrInvalidKey
	}
	now := c.now()
	if !expiresAt.After(now) {
		return ErrExpired
	}
	err := c.store.UseOnce(ctx, key, expiresAt, now)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, storage.ErrAlreadyUsed):
		return fmt.Errorf("%w: %w", ErrReplayed, err)
	default:
		return fmt.Errorf("replay: store: %w", err)
	}
}
