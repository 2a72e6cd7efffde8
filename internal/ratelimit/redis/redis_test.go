package redis_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/fhirgate/fhirgate/internal/ratelimit"
	"github.com/fhirgate/fhirgate/internal/ratelimit/ratelimittest"
	rlredis "github.com/fhirgate/fhirgate/internal/ratelimit/redis"
)

// client connects to FHIRGATE_TEST_REDIS_ADDR, skipping the test when unset.
func client(t testing.TB) *goredis.Client {
	t.Helper()
	addr := os.Getenv("FHIRGATE_TEST_REDIS_ADDR")
	if addr == "" {
		t.Skip("FHIRGATE_TEST_REDIS_ADDR is unset: skipping the Redis rate limiter tests (set it to host:port of a Redis server, e.g. 127.0.0.1:6379; .ci/run does)")
	}
	c := goredis.NewClient(&goredis.Options{Addr: addr})
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("Redis at %s: %v", addr, err)
	}
	return c
}

func prefix() string { return fmt.Sprintf("fhirgate:test:rl:%d:", time.Now().UnixNano()) }

func TestRedis(t *testing.T) {
	c := client(t)
	ratelimittest.Run(t, func(t *testing.T, now func() time.Time) ratelimit.Limiter {
		l, err := rlredis.New(rlredis.Options{Client: c, Prefix: prefix(), Now: now})
		if err != nil {
			t.Fatal(err)
		}
		return l
	})
}

// Two nodes, each with its own client and limiter, share one budget.
func TestTwoNodesShareOneBudget(t *testing.T) {
	c1, c2 := client(t), client(t)
	p := prefix()
	n1, _ := rlredis.New(rlredis.Options{Client: c1, Prefix: p})
	n2, _ := rlredis.New(rlredis.Options{Client: c2, Prefix: p})
	g1, _ := ratelimit.NewGuard(n1, policy())
	g2, _ := ratelimit.NewGuard(n2, policy())
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for i := range 8 {
		g := g1
		if i%2 == 1 {
			g = g2
		}
		wg.Go(func() {
			for range 25 {
				r, err := g.Check(context.Background(), ratelimit.EndpointToken, ratelimit.Subject{ClientID: "shared-app"})
				if err != nil {
					t.Error(err)
					return
				}
				if r.Allowed {
					allowed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if got := allowed.Load(); got != 30 {
		t.Fatalf("two nodes allowed %d of 200 requests, want the shared budget of 30", got)
	}
}

func policy() ratelimit.Policy {
	return ratelimit.Policy{Endpoints: map[ratelimit.Endpoint]ratelimit.Rates{
		ratelimit.EndpointToken: {Client: ratelimit.Rate{Requests: 30, Per: time.Hour}},
	}}
}

// unreachable is a client for a port nothing listens on.
func unreachable(t *testing.T) *goredis.Client {
	c := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:1", DialTimeout: 50 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestUnreachableFailClosed(t *testing.T) {
	var logs bytes.Buffer
	l, _ := rlredis.New(rlredis.Options{Client: unreachable(t), Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	for range 3 {
		d, err := l.Allow(context.Background(), "k", ratelimit.Rate{Requests: 100, Per: time.Second})
		if !errors.Is(err, ratelimit.ErrUnavailable) || d.Allowed {
			t.Fatalf("fail closed: %+v %v, want refused with ErrUnavailable", d, err)
		}
	}
	if !l.Down() || bytes.Count(logs.Bytes(), []byte("failing closed")) != 1 {
		t.Fatalf("want one fail-closed log line, got %q", logs.String())
	}
}

func TestUnreachableFailOpen(t *testing.T) {
	var logs bytes.Buffer
	clk := ratelimittest.NewClock(time.Unix(0, 0))
	l, _ := rlredis.New(rlredis.Options{Client: unreachable(t), FailOpen: true, Now: clk.Now, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	r := ratelimit.Rate{Requests: 2, Per: time.Hour}
	for i := range 2 {
		if d, err := l.Allow(context.Background(), "k", r); err != nil || !d.Allowed {
			t.Fatalf("request %d failing open: %+v %v", i+1, d, err)
		}
	}
	// The local limiter still enforces the budget.
	if d, err := l.Allow(context.Background(), "k", r); err != nil || d.Allowed {
		t.Fatalf("third request failing open: %+v %v, want refused by the local limiter", d, err)
	}
	if bytes.Count(logs.Bytes(), []byte("failing open")) != 1 {
		t.Fatalf("want one fail-open log line, got %q", logs.String())
	}
}

func TestNewRequiresClient(t *testing.T) {
	if _, err := rlredis.New(rlredis.Options{}); err == nil {
		t.Fatal("New accepted a nil client")
	}
}

func BenchmarkRedisAllow(b *testing.B) {
	c := client(b)
	l, _ := rlredis.New(rlredis.Options{Client: c, Prefix: prefix()})
	ratelimittest.Bench(b, l)
}

func TestServerTime(t *testing.T) {
	c := client(t)
	p := prefix()
	// Two nodes whose clocks are an hour apart share one exact budget.
	behind := ratelimittest.NewClock(time.Now().Add(-time.Hour))
	ahead := ratelimittest.NewClock(time.Now().Add(time.Hour))
	n1, _ := rlredis.New(rlredis.Options{Client: c, Prefix: p, ServerTime: true, Now: behind.Now})
	n2, _ := rlredis.New(rlredis.Options{Client: c, Prefix: p, ServerTime: true, Now: ahead.Now})
	r := ratelimit.Rate{Requests: 4, Per: time.Hour}
	allowed := 0
	for i := range 10 {
		l := n1
		if i%2 == 1 {
			l = n2
		}
		d, err := l.Allow(context.Background(), "k", r)
		if err != nil {
			t.Fatal(err)
		}
		if d.Allowed {
			allowed++
		}
	}
	if allowed != 4 {
		t.Fatalf("%d allowed with skewed clocks, want 4", allowed)
	}
}
