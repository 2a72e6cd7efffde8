// Package revocation lets a resource server (the gateway) answer "is this
// access token revoked?" on every request without a store round trip: a
// Checker keeps the server's revocation list (revoked access-token ids and
// token families, storage.RevocationList) in memory and refreshes it by
// polling RevokedSince every Interval.
//
// The list refreshes itself on demand, so a Checker needs no goroutine of
// its own: a lookup finding the list older than Interval starts one
// background poll, and a lookup finding it older than MaxStaleness (or
// never loaded) polls synchronously first. Run adds a steady background
// loop, so the first request after a quiet spell does not pay for a poll.
//
// Staleness is bounded: when the list cannot be refreshed and is older than
// MaxStaleness, Revoked returns ErrStale and the gateway refuses the request
// (fail closed) instead of answering from an old list. A token revoked at
// the authorization server therefore stops working at the gateway within
// Interval plus one poll's latency, and never later than MaxStaleness.
package revocation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fhirgate/fhirgate/internal/storage"
)

// Defaults.
const (
	// DefaultInterval is how often the list is polled.
	DefaultInterval = 2 * time.Second
	// DefaultStalenessFactor times Interval is the default MaxStaleness.
	DefaultStalenessFactor = 3
	// DefaultOverlap is how far before the previous poll each poll reads
	// again, covering clock differences between the nodes that revoke and
	// commit delays (entries are idempotent, so rereading is harmless).
	DefaultOverlap = 30 * time.Second
	// DefaultPollTimeout bounds one poll.
	DefaultPollTimeout = 5 * time.Second
)

// Errors.
var (
	// ErrOptions: New was given unusable options.
	ErrOptions = errors.New("revocation: invalid options")
	// ErrStale: the list has not been refreshed within MaxStaleness, so no
	// answer can be given (the caller must refuse the token).
	ErrStale = errors.New("revocation: revocation list is stale")
)

// Source is the part of storage.RevocationList the Checker reads.
type Source interface {
	RevokedSince(ctx context.Context, since, now time.Time) ([]storage.RevokedToken, error)
}

// Options configures a Checker.
type Options struct {
	// Source is the revocation list (the store). Required.
	Source Source
	// Interval between polls; default DefaultInterval.
	Interval time.Duration
	// MaxStaleness is the age of the last successful poll beyond which
	// Revoked fails (ErrStale); default DefaultStalenessFactor*Interval.
	// It must be at least Interval.
	MaxStaleness time.Duration
	// Overlap is how far before the previous poll each poll reads again;
	// default DefaultOverlap.
	Overlap time.Duration
	// PollTimeout bounds one poll; default DefaultPollTimeout.
	PollTimeout time.Duration
	Logger      *slog.Logger
	Now         func() time.Time
}

type key struct {
	kind storage.RevokedKind
	id   string
}

// Checker is an in-memory copy of the revocation list. It is safe for
// concurrent use. Call Run (usually in its own goroutine) to keep it fresh.
type Checker struct {
	opts Options

	mu       sync.RWMutex
	entries  map[key]time.Time // -> ExpiresAt
	lastOK   time.Time         // Now() when the last successful poll started
	lastPoll time.Time         // the now passed to the last successful poll

	pollMu  sync.Mutex  // one poll at a time
	polling atomic.Bool // a background poll is in flight
}

// New validates opts and fills defaults. The Checker answers ErrStale until
// its first successful Poll.
func New(opts Options) (*Checker, error) {
	if opts.Source == nil {
		return nil, fmt.Errorf("%w: Source is required", ErrOptions)
	}
	if opts.Interval < 0 || opts.MaxStaleness < 0 || opts.Overlap < 0 || opts.PollTimeout < 0 {
		return nil, fmt.Errorf("%w: negative duration", ErrOptions)
	}
	if opts.Interval == 0 {
		opts.Interval = DefaultInterval
	}
	if opts.MaxStaleness == 0 {
		opts.MaxStaleness = DefaultStalenessFactor * opts.Interval
	}
	if opts.MaxStaleness < opts.Interval {
		return nil, fmt.Errorf("%w: MaxStaleness %s is below Interval %s", ErrOptions, opts.MaxStaleness, opts.Interval)
	}
	if opts.Overlap == 0 {
		opts.Overlap = DefaultOverlap
	}
	if opts.PollTimeout == 0 {
		opts.PollTimeout = DefaultPollTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Checker{opts: opts, entries: map[key]time.Time{}}, nil
}

// Interval returns the polling interval in use.
func (c *Checker) Interval() time.Duration { return c.opts.Interval }

// MaxStaleness returns the staleness bound in use.
func (c *Checker) MaxStaleness() time.Duration { return c.opts.MaxStaleness }

// Revoked reports whether the access token jti, or its token family, is on
// the revocation list. A list older than MaxStaleness (or never loaded) is
// refreshed first; if that fails, Revoked returns ErrStale and the caller
// must refuse. A list older than Interval is refreshed in the background.
func (c *Checker) Revoked(ctx context.Context, jti, familyID string) (bool, error) {
	c.mu.RLock()
	last := c.lastOK
	c.mu.RUnlock()
	now := c.opts.Now()
	switch age := now.Sub(last); {
	case last.IsZero() || age > c.opts.MaxStaleness:
		if err := c.refresh(ctx); err != nil {
			if last.IsZero() {
				return false, fmt.Errorf("%w: never loaded: %w", ErrStale, err)
			}
			return false, fmt.Errorf("%w: last refreshed %s ago (bound %s): %w", ErrStale,
				age.Truncate(time.Millisecond), c.opts.MaxStaleness, err)
		}
	case age >= c.opts.Interval:
		c.refreshAsync()
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if jti != "" {
		if _, ok := c.entries[key{storage.RevokedAccessToken, jti}]; ok {
			return true, nil
		}
	}
	if familyID != "" {
		if _, ok := c.entries[key{storage.RevokedFamily, familyID}]; ok {
			return true, nil
		}
	}
	return false, nil
}

// refresh polls unless another caller refreshed the list meanwhile.
func (c *Checker) refresh(ctx context.Context) error {
	c.pollMu.Lock()
	defer c.pollMu.Unlock()
	c.mu.RLock()
	last := c.lastOK
	c.mu.RUnlock()
	if !last.IsZero() && c.opts.Now().Sub(last) < c.opts.Interval {
		return nil
	}
	return c.poll(context.WithoutCancel(ctx))
}

// refreshAsync starts one background poll unless one is in flight.
func (c *Checker) refreshAsync() {
	if !c.polling.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer c.polling.Store(false)
		if err := c.refresh(context.Background()); err != nil {
			c.opts.Logger.Error("revocation list poll failed", "error", err)
		}
	}()
}

// Add records an entry locally at once (for revocations this process made
// itself); the next polls confirm it from the store.
func (c *Checker) Add(e storage.RevokedToken) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.entries[key{e.Kind, e.ID}] = e.ExpiresAt
}

// Len returns how many entries are held.
func (c *Checker) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}

// Poll reads the entries revoked since the previous poll (less Overlap; all
// unexpired entries on the first poll), merges them, drops expired ones and
// marks the list fresh.
func (c *Checker) Poll(ctx context.Context) error {
	c.pollMu.Lock()
	defer c.pollMu.Unlock()
	return c.poll(ctx)
}

// poll is Poll with pollMu held.
func (c *Checker) poll(ctx context.Context) error {
	started := c.opts.Now()
	c.mu.RLock()
	since := time.Time{}
	if !c.lastPoll.IsZero() {
		since = c.lastPoll.Add(-c.opts.Overlap)
	}
	c.mu.RUnlock()
	ctx, cancel := context.WithTimeout(ctx, c.opts.PollTimeout)
	defer cancel()
	list, err := c.opts.Source.RevokedSince(ctx, since, started)
	if err != nil {
		return fmt.Errorf("revocation: poll: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range list {
		c.entries[key{e.Kind, e.ID}] = e.ExpiresAt
	}
	for k, exp := range c.entries {
		if !started.Before(exp) {
			delete(c.entries, k)
		}
	}
	c.lastOK, c.lastPoll = started, started
	return nil
}

// Run polls at once and then every Interval until ctx is done, logging
// failed polls (Revoked turns them into ErrStale once MaxStaleness passes).
// It returns ctx.Err().
func (c *Checker) Run(ctx context.Context) error {
	t := time.NewTicker(c.opts.Interval)
	defer t.Stop()
	for {
		if err := c.Poll(ctx); err != nil && ctx.Err() == nil {
			c.opts.Logger.ErrorContext(ctx, "revocation list poll failed", "error", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
