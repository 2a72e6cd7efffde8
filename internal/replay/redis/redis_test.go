package redis_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/fhirgate/fhirgate/internal/replay"
	"github.com/fhirgate/fhirgate/internal/replay/redis"
	"github.com/fhirgate/fhirgate/internal/replay/replaytest"
)

// addrEnv names the Redis address the tests use (e.g. 127.0.0.1:6379).
const addrEnv = "FHIRGATE_TEST_REDIS_ADDR"

func client(t *testing.T) *goredis.Client {
	t.Helper()
	addr := os.Getenv(addrEnv)
	if addr == "" {
		t.Skipf("%s is not set: skipping the Redis replay cache tests (CI sets it)", addrEnv)
	}
	c := goredis.NewClient(&goredis.Options{Addr: addr})
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("Redis at %s does not answer: %v", addr, err)
	}
	return c
}

func TestRedisConformance(t *testing.T) {
	replaytest.Run(t, redis.New(client(t), "fhirgate-test:replay:"))
}

func TestRedisKeyExpiresInRedis(t *testing.T) {
	c := client(t)
	cache := redis.New(c, "fhirgate-test:replay:")
	ctx := context.Background()
	key := "ttl-" + time.Now().Format(time.RFC3339Nano)
	if err := cache.UseOnce(ctx, key, time.Now().Add(30*time.Second)); err != nil {
		t.Fatal(err)
	}
	ttl, err := c.PTTL(ctx, "fhirgate-test:replay:"+key).Result()
	if err != nil {
		t.Fatal(err)
	}
	if ttl <= 25*time.Second || ttl > 30*time.Second {
		t.Fatalf("PTTL = %s, want about 30s", ttl)
	}
}

func TestRedisDownFailsClosed(t *testing.T) {
	// Nothing listens on port 1.
	c := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer c.Close()
	err := redis.New(c, "x:").UseOnce(context.Background(), "k", time.Now().Add(time.Minute))
	if err == nil || errors.Is(err, replay.ErrReplayed) {
		t.Fatalf("err = %v, want a connection error", err)
	}
}
