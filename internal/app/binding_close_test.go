package app

import (
	"context"
	"errors"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// TestShutdownClosesReplayRedis: the Redis client of replay.backend redis is
// closed when the App shuts down (no connection needs to exist: the client
// connects lazily, and a closed one answers ErrClosed).
func TestShutdownClosesReplayRedis(t *testing.T) {
	ts := startServer(t, map[string]string{"replay.backend": "redis", "replay.redis_url": "redis://127.0.0.1:1/0"})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ts.app.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	err := ts.app.bnd.replay.UseOnce(ctx, "after-shutdown", time.Now().Add(time.Minute))
	if !errors.Is(err, goredis.ErrClosed) {
		t.Fatalf("replay cache after shutdown: %v, want the Redis client closed", err)
	}
}
