// Package redis is the Redis ratelimit.Limiter: one token bucket per key
// kept in a Redis hash and updated atomically by a Lua script, so several
// fhirgate nodes share one budget. When Redis cannot be reached the limiter
// either falls back to an in-process limiter (fail open) or refuses (fail
// closed), and logs the change of state.
package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/fhirgate/fhirgate/internal/ratelimit"
)

// DefaultPrefix namespaces the limiter's keys.
const DefaultPrefix = "fhirgate:rl:"

// DefaultTimeout bounds one Redis round trip.
const DefaultTimeout = 250 * time.Millisecond

// The bucket script. KEYS[1] is the bucket; ARGV: refill rate in tokens per
// microsecond, capacity, now in microseconds (negative: the Redis server's
// clock), idle expiry in milliseconds.
// A clock behind the stored time (another node's) does not refill.
// It returns {allowed, whole tokens left, microseconds until a token}.
var script = goredis.NewScript(`
local rate = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local v = redis.call('HMGET', KEYS[1], 't', 'ts', 'cap', 'rate')
local tokens = tonumber(v[1])
local ts = tonumber(v[2])
if tokens == nil or tonumber(v[3]) ~= cap or tonumber(v[4]) ~= rate then
  tokens = cap
  ts = now
end
if now > ts then
  tokens = math.min(cap, tokens + (now - ts) * rate)
  ts = now
end
local allowed = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = math.ceil((1 - tokens) / rate)
end
redis.call('HSET', KEYS[1], 't', string.format('%.17g', tokens), 'ts', string.format('%.17g', ts), 'cap', ARGV[2], 'rate', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {allowed, math.floor(tokens), wait}
`)

// Options configure New.
type Options struct {
	// Client is the Redis client (required).
	Client goredis.UniversalClient
	// Prefix is put before every key; DefaultPrefix when empty.
	Prefix string
	// Now is the clock; time.Now when nil. Nodes sharing a budget should
	// keep their clocks in sync (a lagging clock never refills a bucket),
	// or use ServerTime.
	Now func() time.Time
	// ServerTime measures refills with the Redis server's clock instead of
	// Now, so nodes with skewed clocks still share one budget exactly.
	ServerTime bool
	// Timeout bounds one Redis call; DefaultTimeout when zero.
	Timeout time.Duration
	// FailOpen, when Redis is unreachable, answers from Fallback instead of
	// refusing. The default is to fail closed: refuse with
	// ratelimit.ErrUnavailable.
	FailOpen bool
	// Fallback is the local limiter used when failing open; an in-process
	// ratelimit.Memory on Now when nil.
	Fallback ratelimit.Limiter
	// Logger receives the state changes (Redis lost, Redis back).
	Logger *slog.Logger
}

// Limiter is the Redis ratelimit.Limiter.
type Limiter struct {
	c        goredis.UniversalClient
	prefix   string
	now      func() time.Time
	timeout  time.Duration
	failOpen bool
	server   bool
	fallback ratelimit.Limiter
	log      *slog.Logger
	down     atomic.Bool
}

// New returns a Redis limiter.
func New(opts Options) (*Limiter, error) {
	if opts.Client == nil {
		return nil, errors.New("ratelimit/redis: nil client")
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Fallback == nil {
		opts.Fallback = ratelimit.NewMemory(ratelimit.MemoryOptions{Now: opts.Now})
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Limiter{c: opts.Client, prefix: opts.Prefix, now: opts.Now, timeout: opts.Timeout,
		failOpen: opts.FailOpen, server: opts.ServerTime, fallback: opts.Fallback, log: opts.Logger}, nil
}

// Allow implements ratelimit.Limiter.
func (l *Limiter) Allow(ctx context.Context, key string, r ratelimit.Rate) (ratelimit.Decision, error) {
	if r.Unlimited() {
		return ratelimit.Decision{Allowed: true, Limit: -1, Remaining: -1}, nil
	}
	perMicro := r.PerSecond() / 1e6
	now := l.now().UnixMicro()
	if l.server {
		now = -1
	}
	// Keep an idle bucket until it would have refilled, plus a margin.
	idle := time.Duration(float64(r.Capacity())/r.PerSecond()*float64(time.Second)) + time.Minute
	cctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	res, err := script.Run(cctx, l.c, []string{l.prefix + key},
		fmt.Sprintf("%.17g", perMicro), r.Capacity(), now, idle.Milliseconds()).Int64Slice()
	if err == nil && len(res) != 3 {
		err = fmt.Errorf("unexpected script reply %v", res)
	}
	if err != nil {
		return l.unavailable(ctx, key, r, err)
	}
	if l.down.CompareAndSwap(true, false) {
		l.log.Info("rate limiter: Redis reachable again; shared budgets restored")
	}
	d := ratelimit.Decision{Allowed: res[0] == 1, Limit: r.Capacity(), Remaining: int(res[1])}
	if !d.Allowed {
		d.RetryAfter = time.Duration(res[2]) * time.Microsecond
	}
	return d, nil
}

func (l *Limiter) unavailable(ctx context.Context, key string, r ratelimit.Rate, cause error) (ratelimit.Decision, error) {
	if l.down.CompareAndSwap(false, true) {
		if l.failOpen {
			l.log.Warn("rate limiter: Redis unreachable; failing open to the in-process limiter (budgets are per node until Redis is back)", "err", cause)
		} else {
			l.log.Error("rate limiter: Redis unreachable; failing closed (rate-limited requests are refused until Redis is back)", "err", cause)
		}
	}
	if l.failOpen {
		return l.fallback.Allow(ctx, key, r)
	}
	return ratelimit.Decision{Allowed: false, Limit: r.Capacity(), RetryAfter: time.Second},
		fmt.Errorf("%w: %w", ratelimit.ErrUnavailable, cause)
}

// Down reports whether the last Redis call failed.
func (l *Limiter) Down() bool { return l.down.Load() }
