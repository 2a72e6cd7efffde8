package replay_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/replay"
	"github.com/fhirgate/fhirgate/internal/replay/replaytest"
	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/storage/storagetest/backends"
)

func TestMemoryConformance(t *testing.T) {
	replaytest.Run(t, replay.NewMemory(time.Now, 1000))
}

func TestFromStoreConformance(t *testing.T) {
	replaytest.Run(t, replay.FromStore(newFakeReplays(), time.Now))
}

// TestFromStoreBackends runs the suite on SQLite and, when configured,
// PostgreSQL: the replay cache every node sharing the database uses.
func TestFromStoreBackends(t *testing.T) {
	backends.Run(t, func(t *testing.T, open func(t testing.TB) storage.Store) {
		replaytest.Run(t, replay.FromStore(open(t), time.Now))
	})
}

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestMemoryBoundedFailsClosed(t *testing.T) {
	ctx := context.Background()
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	m := replay.NewMemory(clk.Now, 3)
	for i := range 3 {
		if err := m.UseOnce(ctx, fmt.Sprint(i), clk.Now().Add(time.Duration(i+1)*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	// Full of live values: refuse, and never forget a live value.
	if err := m.UseOnce(ctx, "x", clk.Now().Add(time.Minute)); !errors.Is(err, replay.ErrFull) {
		t.Fatalf("err = %v, want ErrFull", err)
	}
	for i := range 3 {
		if err := m.UseOnce(ctx, fmt.Sprint(i), clk.Now().Add(time.Hour)); !errors.Is(err, replay.ErrReplayed) {
			t.Fatalf("key %d after a full refusal: err = %v, want ErrReplayed", i, err)
		}
	}
	// Once the first value expires, there is room again.
	clk.Add(time.Minute)
	if err := m.UseOnce(ctx, "x", clk.Now().Add(time.Minute)); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
	if n := m.Len(); n != 3 {
		t.Fatalf("Len = %d, want 3", n)
	}
	// The expired key is usable again; the others are not.
	clk.Add(time.Minute) // "1" expires
	if err := m.UseOnce(ctx, "1", clk.Now().Add(time.Minute)); err != nil {
		t.Fatalf("expired key reuse: %v", err)
	}
	if err := m.UseOnce(ctx, "2", clk.Now().Add(time.Minute)); !errors.Is(err, replay.ErrReplayed) {
		t.Fatalf("live key: err = %v, want ErrReplayed", err)
	}
}

func TestMemoryExpiryBoundary(t *testing.T) {
	ctx := context.Background()
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	m := replay.NewMemory(clk.Now, 0)
	exp := clk.Now().Add(time.Second)
	if err := m.UseOnce(ctx, "k", exp); err != nil {
		t.Fatal(err)
	}
	clk.Add(999 * time.Millisecond)
	if err := m.UseOnce(ctx, "k", exp.Add(time.Minute)); !errors.Is(err, replay.ErrReplayed) {
		t.Fatalf("just before expiry: err = %v, want ErrReplayed", err)
	}
	if err := m.UseOnce(ctx, "now", clk.Now()); !errors.Is(err, replay.ErrExpired) {
		t.Fatalf("expiresAt == now: err = %v, want ErrExpired", err)
	}
}

func TestMemoryCanceledContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	m := replay.NewMemory(nil, 0)
	if err := m.UseOnce(ctx, "k", time.Now().Add(time.Minute)); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestFromStoreFailsClosed(t *testing.T) {
	boom := errors.New("database is down")
	c := replay.FromStore(failingReplays{boom}, nil)
	err := c.UseOnce(context.Background(), "k", time.Now().Add(time.Minute))
	if !errors.Is(err, boom) || errors.Is(err, replay.ErrReplayed) || err == nil {
		t.Fatalf("err = %v, want the store error and not ErrReplayed", err)
	}
}

func TestFromStoreMapsAlreadyUsed(t *testing.T) {
	c := replay.FromStore(newFakeReplays(), nil)
	ctx := context.Background()
	exp := time.Now().Add(time.Minute)
	if err := c.UseOnce(ctx, "k", exp); err != nil {
		t.Fatal(err)
	}
	err := c.UseOnce(ctx, "k", exp)
	if !errors.Is(err, replay.ErrReplayed) || !errors.Is(err, storage.ErrAlreadyUsed) {
		t.Fatalf("err = %v, want ErrReplayed wrapping storage.ErrAlreadyUsed", err)
	}
}

func BenchmarkMemoryUseOnce(b *testing.B) {
	m := replay.NewMemory(nil, 1<<20)
	ctx := context.Background()
	exp := time.Now().Add(time.Hour)
	i := 0
	for b.Loop() {
		i++
		if err := m.UseOnce(ctx, fmt.Sprint(i), exp); err != nil {
			b.Fatal(err)
		}
	}
}

// fakeReplays is an in-memory storage.Replays with the contract's semantics.
type fakeReplays struct {
	mu   sync.Mutex
	keys map[string]time.Time
}

func newFakeReplays() *fakeReplays { return &fakeReplays{keys: map[string]time.Time{}} }

func (f *fakeReplays) UseOnce(_ context.Context, key string, expiresAt, now time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if exp, ok := f.keys[key]; ok && exp.After(now) {
		return fmt.Errorf("fake: %w", storage.ErrAlreadyUsed)
	}
	f.keys[key] = expiresAt
	return nil
}

type failingReplays struct{ err error }

func (f failingReplays) UseOnce(context.Context, string, time.Time, time.Time) error { return f.err }
