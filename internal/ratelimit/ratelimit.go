// Package ratelimit defines fhirgate's rate-limiting contract, the Limiter,
// and its in-process token-bucket implementation. A Redis implementation in
// internal/ratelimit/redis lets several nodes share one budget; both pass the
// suite in internal/ratelimit/ratelimittest.
//
// A token bucket holds at most Rate.Burst tokens and refills at
// Rate.Requests tokens per Rate.Per. Each request takes one token; a request
// that finds the bucket empty is refused with the time until a token is back.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"
)

// ErrUnavailable reports that the shared limiter backend could not be
// reached and the limiter is configured to fail closed. The Decision that
// comes with it refuses the request.
var ErrUnavailable = errors.New("ratelimit: backend unavailable")

// ErrInvalidRate reports a Rate that cannot be enforced.
var ErrInvalidRate = errors.New("ratelimit: invalid rate")

// Rate is a token-bucket budget: Requests per Per, with bursts of up to
// Burst (Requests when zero). The zero Rate means "unlimited".
type Rate struct {
	Requests int           `yaml:"requests" json:"requests"`
	Per      time.Duration `yaml:"per" json:"per"`
	Burst    int           `yaml:"burst" json:"burst"`
}

// Unlimited reports whether r imposes no limit.
func (r Rate) Unlimited() bool { return r.Requests <= 0 }

// Validate reports whether r can be enforced.
func (r Rate) Validate() error {
	if r.Unlimited() {
		return nil
	}
	if r.Per <= 0 {
		return fmt.Errorf("%w: per must be positive", ErrInvalidRate)
	}
	if r.Burst < 0 {
		return fmt.Errorf("%w: burst must not be negative", ErrInvalidRate)
	}
	return nil
}

// Capacity is the bucket size: Burst, or Requests when Burst is zero.
func (r Rate) Capacity() int {
	if r.Burst > 0 {
		return r.Burst
	}
	return r.Requests
}

// PerSecond is the refill rate in tokens per second.
func (r Rate) PerSecond() float64 {
	if r.Unlimited() || r.Per <= 0 {
		return math.Inf(1)
	}
	return float64(r.Requests) / r.Per.Seconds()
}

// String renders r like "10/1m0s burst 20".
func (r Rate) String() string {
	if r.Unlimited() {
		return "unlimited"
	}
	return fmt.Sprintf("%d/%s burst %d", r.Requests, r.Per, r.Capacity())
}

// Decision is a limiter's answer for one request.
type Decision struct {
	// Allowed is whether the request may proceed.
	Allowed bool
	// Limit is the bucket capacity.
	Limit int
	// Remaining is the number of whole tokens left after this request.
	Remaining int
	// RetryAfter is, for a refused request, how long until a token is back.
	RetryAfter time.Duration
}

// RetryAfterSeconds is RetryAfter rounded up to whole seconds (at least 1),
// as sent in a Retry-After header.
func (d Decision) RetryAfterSeconds() int {
	s := int(math.Ceil(d.RetryAfter.Seconds()))
	if s < 1 {
		s = 1
	}
	return s
}

// Limiter takes one token from the bucket named key with budget r.
// An unlimited r always allows. Implementations are safe for concurrent use.
// An error means the backend failed; the Decision then says what to do
// (a fail-closed limiter refuses and wraps ErrUnavailable).
type Limiter interface {
	Allow(ctx context.Context, key string, r Rate) (Decision, error)
}

// Key joins a bucket kind and an identifier into a bucket key, e.g.
// Key("client", "app1") is "client:app1".
func Key(kind, id string) string { return kind + ":" + id }

// take applies the token-bucket arithmetic shared by the backends: given
// the stored tokens and the time they were measured, it returns the
// decision and the new stored state.
func take(tokens float64, last, now time.Time, r Rate) (Decision, float64, time.Time) {
	capacity := float64(r.Capacity())
	perSec := r.PerSecond()
	if now.After(last) {
		tokens = math.Min(capacity, tokens+now.Sub(last).Seconds()*perSec)
		last = now
	}
	d := Decision{Limit: r.Capacity()}
	if tokens >= 1 {
		tokens--
		d.Allowed = true
	} else {
		d.RetryAfter = time.Duration(math.Ceil((1 - tokens) / perSec * float64(time.Second)))
	}
	d.Remaining = int(math.Floor(tokens))
	return d, tokens, last
}
