package revocation_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/revocation"
	"github.com/fhirgate/fhirgate/internal/storage"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fakeList is an in-memory revocation list that records the polls.
type fakeList struct {
	mu      sync.Mutex
	entries []storage.RevokedToken
	since   []time.Time
	fail    error
}

func (f *fakeList) add(e storage.RevokedToken) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entries = append(f.entries, e)
}

func (f *fakeList) setFail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = err
}

func (f *fakeList) RevokedSince(_ context.Context, since, now time.Time) ([]storage.RevokedToken, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.since = append(f.since, since)
	if f.fail != nil {
		return nil, f.fail
	}
	var out []storage.RevokedToken
	for _, e := range f.entries {
		if !e.RevokedAt.Before(since) && now.Before(e.ExpiresAt) {
			out = append(out, e)
		}
	}
	return out, nil
}

func newChecker(t *testing.T, src revocation.Source, clk *clock, o revocation.Options) *revocation.Checker {
	t.Helper()
	o.Source, o.Now = src, clk.Now
	c, err := revocation.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestOptions(t *testing.T) {
	if _, err := revocation.New(revocation.Options{}); !errors.Is(err, revocation.ErrOptions) {
		t.Errorf("no source: %v", err)
	}
	src := &fakeList{}
	if _, err := revocation.New(revocation.Options{Source: src, Interval: -time.Second}); !errors.Is(err, revocation.ErrOptions) {
		t.Errorf("negative interval: %v", err)
	}
	if _, err := revocation.New(revocation.Options{Source: src, Interval: 5 * time.Second, MaxStaleness: time.Second}); !errors.Is(err, revocation.ErrOptions) {
		t.Errorf("staleness below interval: %v", err)
	}
	c, err := revocation.New(revocation.Options{Source: src})
	if err != nil {
		t.Fatal(err)
	}
	if c.Interval() != revocation.DefaultInterval || c.MaxStaleness() != revocation.DefaultStalenessFactor*revocation.DefaultInterval {
		t.Errorf("defaults %s %s", c.Interval(), c.MaxStaleness())
	}
}

func TestRevokedAndIncrementalPolls(t *testing.T) {
	ctx := context.Background()
	clk := &clock{t: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	src := &fakeList{}
	// A long interval: only the explicit polls below run.
	c := newChecker(t, src, clk, revocation.Options{Interval: 2 * time.Minute, Overlap: 10 * time.Second})
	now := clk.Now()
	src.add(storage.RevokedToken{Kind: storage.RevokedAccessToken, ID: "j-old", RevokedAt: now.Add(-time.Hour), ExpiresAt: now.Add(time.Minute)})
	src.add(storage.RevokedToken{Kind: storage.RevokedFamily, ID: "f-expired", RevokedAt: now.Add(-2 * time.Hour), ExpiresAt: now.Add(-time.Hour)})
	if err := c.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	check := func(jti, fam string, want bool) {
		t.Helper()
		got, err := c.Revoked(ctx, jti, fam)
		if err != nil || got != want {
			t.Fatalf("Revoked(%q, %q) = %v, %v; want %v", jti, fam, got, err, want)
		}
	}
	check("j-old", "", true)
	check("j-old", "f-live", true)
	check("j-other", "f-live", false)
	check("", "", false)
	check("f-expired", "", false) // a family id is not a jti
	if c.Len() != 1 {
		t.Errorf("expired entries kept: %d", c.Len())
	}

	// A family revoked after the first poll is seen at the next one, and the
	// poll asks only for what is new (less the overlap).
	clk.Add(2 * time.Second)
	src.add(storage.RevokedToken{Kind: storage.RevokedFamily, ID: "f-live", RevokedAt: clk.Now(), ExpiresAt: clk.Now().Add(time.Hour)})
	check("j-other", "f-live", false)
	if err := c.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	check("j-other", "f-live", true)
	check("", "f-live", true)
	if len(src.since) != 2 || !src.since[0].IsZero() || !src.since[1].Equal(now.Add(-10*time.Second)) {
		t.Errorf("polls asked since %v", src.since)
	}

	// Entries leave the set when they expire.
	clk.Add(time.Minute - 2*time.Second)
	if err := c.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	check("j-old", "", false)

	// Add takes effect at once.
	c.Add(storage.RevokedToken{Kind: storage.RevokedAccessToken, ID: "j-local", RevokedAt: clk.Now(), ExpiresAt: clk.Now().Add(time.Minute)})
	check("j-local", "", true)
}

func TestLoadsOnDemand(t *testing.T) {
	ctx := context.Background()
	clk := &clock{t: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	src := &fakeList{}
	c := newChecker(t, src, clk, revocation.Options{Interval: time.Second, MaxStaleness: 5 * time.Second})

	// Never loaded and the store down: fail closed.
	src.setFail(errors.New("database down"))
	if _, err := c.Revoked(ctx, "j1", "f1"); !errors.Is(err, revocation.ErrStale) {
		t.Fatalf("never loaded, store down: %v", err)
	}
	// The first lookup loads the list synchronously.
	src.setFail(nil)
	now := clk.Now()
	src.add(storage.RevokedToken{Kind: storage.RevokedFamily, ID: "f1", RevokedAt: now, ExpiresAt: now.Add(time.Hour)})
	if ok, err := c.Revoked(ctx, "j1", "f1"); err != nil || !ok {
		t.Fatalf("first lookup: %v %v", ok, err)
	}
	// Older than Interval: a lookup answers at once and refreshes behind.
	clk.Add(time.Second)
	src.add(storage.RevokedToken{Kind: storage.RevokedFamily, ID: "f2", RevokedAt: clk.Now(), ExpiresAt: clk.Now().Add(time.Hour)})
	deadline := time.Now().Add(2 * time.Second)
	for {
		ok, err := c.Revoked(ctx, "", "f2")
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("background refresh never picked up f2")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestFailsClosedWhenStale(t *testing.T) {
	ctx := context.Background()
	clk := &clock{t: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	src := &fakeList{}
	c := newChecker(t, src, clk, revocation.Options{Interval: time.Second, MaxStaleness: 3 * time.Second})
	if err := c.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	src.setFail(errors.New("database down"))
	clk.Add(3 * time.Second)
	if err := c.Poll(ctx); err == nil {
		t.Fatal("failed poll reported success")
	}
	if _, err := c.Revoked(ctx, "j", "f"); err != nil {
		t.Fatalf("within the bound: %v", err)
	}
	clk.Add(time.Millisecond)
	if ok, err := c.Revoked(ctx, "j", "f"); !errors.Is(err, revocation.ErrStale) || ok {
		t.Fatalf("past the bound: %v %v", ok, err)
	}
	// Recovery.
	src.setFail(nil)
	if err := c.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Revoked(ctx, "j", "f"); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
}

func TestRunPolls(t *testing.T) {
	src := &fakeList{}
	c, err := revocation.New(revocation.Options{Source: src, Interval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	now := time.Now()
	src.add(storage.RevokedToken{Kind: storage.RevokedFamily, ID: "f", RevokedAt: now, ExpiresAt: now.Add(time.Hour)})
	deadline := time.Now().Add(2 * time.Second)
	for {
		if ok, err := c.Revoked(ctx, "", "f"); err == nil && ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Run did not pick up the revocation")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run returned %v", err)
	}
}
