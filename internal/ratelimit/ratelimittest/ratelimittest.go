// Package ratelimittest is the conformance suite every ratelimit.Limiter
// backend runs, and a controllable clock for it.
package ratelimittest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/ratelimit"
)

// Clock is a manual clock safe for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock set to t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the current time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Factory builds a fresh limiter (with empty buckets) driven by now.
type Factory func(t *testing.T, now func() time.Time) ratelimit.Limiter

var seq atomic.Int64

// key returns a bucket key unique to this run, so backends that share
// state between tests (Redis) start from empty buckets.
func key(t *testing.T, name string) string {
	return fmt.Sprintf("%s:%d:%d:%s", t.Name(), time.Now().UnixNano(), seq.Add(1), name)
}

// Run runs the suite against the limiters newLimiter builds.
func Run(t *testing.T, newLimiter Factory) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ctx := context.Background()

	t.Run("BurstThenRefuse", func(t *testing.T) {
		clk := NewClock(start)
		l := newLimiter(t, clk.Now)
		r := ratelimit.Rate{Requests: 5, Per: time.Second}
		k := key(t, "a")
		for i := range 5 {
			d := allow(t, l, k, r)
			if !d.Allowed {
				t.Fatalf("request %d refused within the burst", i+1)
			}
			if d.Remaining != 4-i || d.Limit != 5 {
				t.Fatalf("request %d: remaining %d limit %d, want %d and 5", i+1, d.Remaining, d.Limit, 4-i)
			}
		}
		d := allow(t, l, k, r)
		if d.Allowed {
			t.Fatal("request beyond the burst allowed")
		}
		if d.RetryAfter <= 0 || d.RetryAfter > 200*time.Millisecond+time.Millisecond {
			t.Fatalf("RetryAfter = %v, want about 200ms", d.RetryAfter)
		}
		if d.RetryAfterSeconds() != 1 {
			t.Fatalf("RetryAfterSeconds = %d, want 1", d.RetryAfterSeconds())
		}
	})

	t.Run("Refill", func(t *testing.T) {
		clk := NewClock(start)
		l := newLimiter(t, clk.Now)
		r := ratelimit.Rate{Requests: 2, Per: time.Minute}
		k := key(t, "a")
		allow(t, l, k, r)
		allow(t, l, k, r)
		if allow(t, l, k, r).Allowed {
			t.Fatal("third request allowed")
		}
		clk.Advance(29 * time.Second)
		if d := allow(t, l, k, r); d.Allowed {
			t.Fatal("allowed before a token refilled")
		} else if d.RetryAfter > time.Second+time.Millisecond {
			t.Fatalf("RetryAfter = %v after 29s of a 30s refill", d.RetryAfter)
		}
		clk.Advance(time.Second)
		if !allow(t, l, k, r).Allowed {
			t.Fatal("refused after a token refilled")
		}
		if allow(t, l, k, r).Allowed {
			t.Fatal("only one token should have refilled")
		}
		// A long idle period refills to capacity, not beyond.
		clk.Advance(time.Hour)
		for i := range 2 {
			if !allow(t, l, k, r).Allowed {
				t.Fatalf("request %d after idle refused", i+1)
			}
		}
		if allow(t, l, k, r).Allowed {
			t.Fatal("bucket refilled beyond its capacity")
		}
	})

	t.Run("BurstLargerThanRate", func(t *testing.T) {
		clk := NewClock(start)
		l := newLimiter(t, clk.Now)
		r := ratelimit.Rate{Requests: 1, Per: time.Second, Burst: 3}
		k := key(t, "a")
		for i := range 3 {
			if !allow(t, l, k, r).Allowed {
				t.Fatalf("request %d refused within burst 3", i+1)
			}
		}
		if allow(t, l, k, r).Allowed {
			t.Fatal("fourth request allowed")
		}
	})

	t.Run("KeysIndependent", func(t *testing.T) {
		clk := NewClock(start)
		l := newLimiter(t, clk.Now)
		r := ratelimit.Rate{Requests: 1, Per: time.Hour}
		a, b := key(t, "a"), key(t, "b")
		if !allow(t, l, a, r).Allowed || allow(t, l, a, r).Allowed {
			t.Fatal("bucket a: want one allowed then refused")
		}
		if !allow(t, l, b, r).Allowed {
			t.Fatal("bucket b affected by bucket a")
		}
	})

	t.Run("Unlimited", func(t *testing.T) {
		clk := NewClock(start)
		l := newLimiter(t, clk.Now)
		k := key(t, "a")
		for range 100 {
			if !allow(t, l, k, ratelimit.Rate{}).Allowed {
				t.Fatal("the zero Rate refused a request")
			}
		}
	})

	t.Run("ClockGoingBackwards", func(t *testing.T) {
		clk := NewClock(start)
		l := newLimiter(t, clk.Now)
		r := ratelimit.Rate{Requests: 1, Per: time.Minute}
		k := key(t, "a")
		allow(t, l, k, r)
		clk.Advance(-time.Hour) // another node's clock lags
		if allow(t, l, k, r).Allowed {
			t.Fatal("a lagging clock refilled the bucket")
		}
	})

	t.Run("ConcurrentExactlyBudget", func(t *testing.T) {
		clk := NewClock(start)
		l := newLimiter(t, clk.Now)
		const budget = 50
		r := ratelimit.Rate{Requests: budget, Per: time.Hour}
		k := key(t, "a")
		var allowed atomic.Int64
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				for range 10 {
					d, err := l.Allow(ctx, k, r)
					if err != nil {
						t.Error(err)
						return
					}
					if d.Allowed {
						allowed.Add(1)
					}
				}
			})
		}
		wg.Wait()
		if got := allowed.Load(); got != budget {
			t.Fatalf("%d of 200 concurrent requests allowed, want exactly %d", got, budget)
		}
	})
}

func allow(t *testing.T, l ratelimit.Limiter, key string, r ratelimit.Rate) ratelimit.Decision {
	t.Helper()
	d, err := l.Allow(context.Background(), key, r)
	if err != nil {
		t.Fatalf("Allow(%q): %v", key, err)
	}
	return d
}

// Bench measures Allow on a handful of hot keys.
func Bench(b *testing.B, l ratelimit.Limiter) {
	r := ratelimit.Rate{Requests: 1 << 30, Per: time.Second}
	keys := make([]string, 64)
	for i := range keys {
		keys[i] = fmt.Sprintf("bench:%d:%d", time.Now().UnixNano(), i)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := l.Allow(ctx, keys[i%len(keys)], r); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}
