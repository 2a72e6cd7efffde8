package storagetest

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/storage"
)

// BenchConsumeAuthCode measures the token endpoint's code path on s: create
// a code, then consume it; serially and from parallel goroutines.
func BenchConsumeAuthCode(b *testing.B, s storage.Store) {
	ctx := context.Background()
	var n atomic.Int64
	one := func() error {
		now := time.Now()
		c := newAuthCode("bench-" + strconv.FormatInt(n.Add(1), 10))
		c.CreatedAt, c.ExpiresAt = now, now.Add(time.Minute)
		if err := s.CreateAuthCode(ctx, c); err != nil {
			return err
		}
		_, err := s.ConsumeAuthCode(ctx, c.Hash, now)
		return err
	}
	b.Run("serial", func(b *testing.B) {
		for b.Loop() {
			if err := one(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := one(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchGetClient measures client lookup on s, serially and in parallel.
func BenchGetClient(b *testing.B, s storage.Store) {
	ctx := context.Background()
	if err := s.CreateClient(ctx, newClient("bench-client")); err != nil {
		b.Fatal(err)
	}
	b.Run("serial", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.GetClient(ctx, "bench-client"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := s.GetClient(ctx, "bench-client"); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
