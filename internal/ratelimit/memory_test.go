package ratelimit_test

import (
	"context"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/ratelimit"
	"github.com/fhirgate/fhirgate/internal/ratelimit/ratelimittest"
)

func TestMemory(t *testing.T) {
	ratelimittest.Run(t, func(t *testing.T, now func() time.Time) ratelimit.Limiter {
		return ratelimit.NewMemory(ratelimit.MemoryOptions{Now: now})
	})
}

func TestMemoryBoundsKeys(t *testing.T) {
	clk := ratelimittest.NewClock(time.Unix(0, 0))
	m := ratelimit.NewMemory(ratelimit.MemoryOptions{Now: clk.Now, MaxKeys: 640})
	r := ratelimit.Rate{Requests: 1, Per: time.Hour}
	for i := range 10000 {
		if _, err := m.Allow(context.Background(), ratelimit.Key("ip", string(rune(i))), r); err != nil {
			t.Fatal(err)
		}
	}
	if n := m.Len(); n > 640+64 {
		t.Fatalf("memory limiter holds %d buckets, want at most about 640", n)
	}
}

func TestMemoryRateChangeResets(t *testing.T) {
	clk := ratelimittest.NewClock(time.Unix(0, 0))
	m := ratelimit.NewMemory(ratelimit.MemoryOptions{Now: clk.Now})
	ctx := context.Background()
	one := ratelimit.Rate{Requests: 1, Per: time.Hour}
	m.Allow(ctx, "k", one)
	if d, _ := m.Allow(ctx, "k", one); d.Allowed {
		t.Fatal("second request allowed")
	}
	if d, _ := m.Allow(ctx, "k", ratelimit.Rate{Requests: 5, Per: time.Hour}); !d.Allowed {
		t.Fatal("a new budget for the key did not apply")
	}
}

func BenchmarkMemoryAllow(b *testing.B) {
	ratelimittest.Bench(b, ratelimit.NewMemory(ratelimit.MemoryOptions{}))
}
