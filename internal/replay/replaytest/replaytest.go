// Package replaytest is the conformance suite for replay.Cache
// implementations. Run it from each implementation's tests with a cache that
// uses the real clock.
package replaytest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/replay"
)

// Run checks c: first use succeeds, a second use is ErrReplayed, keys are
// independent, exactly one of many concurrent callers wins, an expired value
// may be used again, an already expired value and an empty key are refused.
// Keys carry a random prefix so that runs sharing a backend do not collide.
func Run(t *testing.T, c replay.Cache) {
	t.Helper()
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	run := hex.EncodeToString(b[:]) + ":"
	ctx := context.Background()

	t.Run("OnceThenReplayed", func(t *testing.T) {
		exp := time.Now().Add(time.Minute)
		if err := c.UseOnce(ctx, run+"a", exp); err != nil {
			t.Fatalf("first use: %v", err)
		}
		for i := range 3 {
			if err := c.UseOnce(ctx, run+"a", exp); !errors.Is(err, replay.ErrReplayed) {
				t.Fatalf("replay %d: err = %v, want ErrReplayed", i, err)
			}
		}
		// A later expiry does not make the value usable again.
		if err := c.UseOnce(ctx, run+"a", exp.Add(time.Hour)); !errors.Is(err, replay.ErrReplayed) {
			t.Fatalf("replay with another expiry: err = %v, want ErrReplayed", err)
		}
	})

	t.Run("KeysIndependent", func(t *testing.T) {
		exp := time.Now().Add(time.Minute)
		for i := range 20 {
			if err := c.UseOnce(ctx, fmt.Sprintf("%sk%d", run, i), exp); err != nil {
				t.Fatalf("key %d: %v", i, err)
			}
		}
		// Keys differing only in case are different keys.
		if err := c.UseOnce(ctx, run+"K1", exp); err != nil {
			t.Fatalf("K1: %v", err)
		}
	})

	t.Run("ConcurrentExactlyOne", func(t *testing.T) {
		for round := range 5 {
			key := fmt.Sprintf("%sc%d", run, round)
			exp := time.Now().Add(time.Minute)
			const n = 32
			var wins, replays atomic.Int32
			var wg sync.WaitGroup
			start := make(chan struct{})
			for range n {
				wg.Go(func() {
					<-start
					switch err := c.UseOnce(ctx, key, exp); {
					case err == nil:
						wins.Add(1)
					case errors.Is(err, replay.ErrReplayed):
						replays.Add(1)
					default:
						t.Errorf("unexpected error: %v", err)
					}
				})
			}
			close(start)
			wg.Wait()
			if wins.Load() != 1 || replays.Load() != n-1 {
				t.Fatalf("round %d: %d winners, %d replays; want 1 and %d", round, wins.Load(), replays.Load(), n-1)
			}
		}
	})

	t.Run("ExpiredMayBeReused", func(t *testing.T) {
		key := run + "short"
		if err := c.UseOnce(ctx, key, time.Now().Add(300*time.Millisecond)); err != nil {
			t.Fatalf("first use: %v", err)
		}
		if err := c.UseOnce(ctx, key, time.Now().Add(time.Minute)); !errors.Is(err, replay.ErrReplayed) {
			t.Fatalf("replay before expiry: err = %v, want ErrReplayed", err)
		}
		time.Sleep(600 * time.Millisecond)
		if err := c.UseOnce(ctx, key, time.Now().Add(time.Minute)); err != nil {
			t.Fatalf("use after expiry: %v", err)
		}
	})

	t.Run("AlreadyExpiredRefused", func(t *testing.T) {
		if err := c.UseOnce(ctx, run+"past", time.Now().Add(-time.Second)); !errors.Is(err, replay.ErrExpired) {
			t.Fatalf("err = %v, want ErrExpired", err)
		}
	})

	t.Run("EmptyKeyRefused", func(t *testing.T) {
		if err := c.UseOnce(ctx, "", time.Now().Add(time.Minute)); !errors.Is(err, replay.ErrInvalidKey) {
			t.Fatalf("err = %v, want ErrInvalidKey", err)
		}
	})
}
