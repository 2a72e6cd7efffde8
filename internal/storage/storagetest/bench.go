package storagetest

import (
	"context"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/secret"
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
	// In parallel with a context that cannot end, and with one that can,
	// as an HTTP request's: a database driver may watch such a context for
	// the length of each query.
	req, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, run := range []struct {
		name string
		ctx  context.Context
	}{{"parallel", ctx}, {"parallel-request-context", req}} {
		b.Run(run.name, func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := s.GetClient(run.ctx, "bench-client"); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchRedeemAuthCode measures what the token endpoint writes for a code
// exchange on s: consume the code and insert its token family, from 64
// goroutines at once (a busy token endpoint). The codes are created before
// the timer starts. It runs twice: with random family IDs and with the
// time-ordered IDs (secret.TimeID) that /authorize assigns, whose inserts
// share index pages instead of each writing a random one. open returns a
// fresh store for each run.
func BenchRedeemAuthCode(b *testing.B, open func(*testing.B) storage.Store) {
	ctx := context.Background()
	for _, ids := range []struct {
		name string
		id   func() string
	}{
		{"random-family-ids", secret.ID},
		{"time-ordered-family-ids", func() string { return secret.TimeID(time.Now()) }},
	} {
		b.Run(ids.name, func(b *testing.B) {
			s := open(b)
			now := time.Now()
			codes := make([]*storage.AuthCode, b.N)
			for i := range codes {
				c := newAuthCode(ids.name + strconv.Itoa(i) + secret.ID())
				c.FamilyID, c.CreatedAt, c.ExpiresAt = ids.id(), now, now.Add(time.Hour)
				if err := s.CreateAuthCode(ctx, c); err != nil {
					b.Fatal(err)
				}
				codes[i] = c
			}
			parallelEach(b, func(i int) error {
				_, err := redeem(ctx, s, codes[i].Hash, now, func(c *storage.AuthCode, _ *storage.User) (*storage.Redemption, error) {
					return &storage.Redemption{Family: &storage.TokenFamily{ID: c.FamilyID, ClientID: c.ClientID,
						UserID: c.UserID, Scope: c.Scope, Context: c.Context, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}}, nil
				})
				return err
			})
		})
	}
}

// BenchRotateRefreshToken measures what the token endpoint writes for a
// refresh: rotate a token (mark it used, insert its successor), from 64
// goroutines at once, each token in a family of its own. It runs with
// tokens filed under their plain hash (random keys) and under
// storage.RefreshTokenKey of secret.TimedToken tokens (time-ordered keys),
// as the grant issues them. open returns a fresh store for each run.
func BenchRotateRefreshToken(b *testing.B, open func(*testing.B) storage.Store) {
	ctx := context.Background()
	for _, keys := range []struct {
		name string
		key  func() []byte
	}{
		{"random-keys", func() []byte { return storage.HashSecret(secret.Token()) }},
		{"time-ordered-keys", func() []byte { return storage.RefreshTokenKey(secret.TimedToken(time.Now())) }},
	} {
		b.Run(keys.name, func(b *testing.B) {
			s := open(b)
			now := time.Now()
			olds := make([][]byte, b.N)
			fams := make([]string, b.N)
			for i := range olds {
				fams[i] = secret.TimeID(time.Now())
				f := newFamily(fams[i], "u1", "c1")
				f.CreatedAt, f.ExpiresAt = now, now.Add(time.Hour)
				if err := s.CreateFamily(ctx, f); err != nil {
					b.Fatal(err)
				}
				olds[i] = keys.key()
				rt := &storage.RefreshToken{Hash: olds[i], FamilyID: fams[i], ClientID: "c1", UserID: "u1",
					Scope: f.Scope, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
				if err := s.CreateRefreshToken(ctx, rt); err != nil {
					b.Fatal(err)
				}
			}
			parallelEach(b, func(i int) error {
				succ := &storage.RefreshToken{Hash: keys.key(), FamilyID: fams[i], ClientID: "c1", UserID: "u1",
					Scope: "openid offline_access patient/*.rs", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
				_, err := s.RotateRefreshToken(ctx, olds[i], succ, now, 0)
				return err
			})
		})
	}
}

// parallelEach is the timed loop of a write benchmark: b.N calls of fn,
// each index once, from 64 goroutines at once (a busy token endpoint).
func parallelEach(b *testing.B, fn func(i int) error) {
	var next atomic.Int64
	b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := fn(int(next.Add(1) - 1)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
