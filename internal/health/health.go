// Package health serves the liveness (/healthz) and readiness (/readyz)
// endpoints. Liveness answers as long as the process serves HTTP;
// readiness runs pluggable checks (the store, the upstream FHIR servers,
// Redis) concurrently with a timeout and reports 503 when one fails or the
// server is draining for shutdown.
package health

import (
	"context"
	"errors"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultTimeout bounds all readiness checks of one /readyz request.
const DefaultTimeout = 2 * time.Second

// Check reports whether a dependency is usable.
type Check func(ctx context.Context) error

// Options configure New.
type Options struct {
	// Timeout bounds the readiness checks; DefaultTimeout when zero.
	Timeout time.Duration
	// Logger receives failed checks with their errors (never sent to the caller).
	Logger *slog.Logger
}

// Handler holds the readiness checks.
type Handler struct {
	timeout  time.Duration
	log      *slog.Logger
	mu       sync.RWMutex
	checks   map[string]Check
	draining atomic.Bool
}

// New returns a Handler with no checks.
func New(opts Options) *Handler {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{timeout: opts.Timeout, log: opts.Logger, checks: map[string]Check{}}
}

// Add registers (or replaces) the readiness check name.
func (h *Handler) Add(name string, c Check) {
	h.mu.Lock()
	h.checks[name] = c
	h.mu.Unlock()
}

// SetDraining marks the server as shutting down: /readyz then fails so
// load balancers stop sending traffic while in-flight requests finish.
func (h *Handler) SetDraining(v bool) { h.draining.Store(v) }

// ErrDraining is the readiness failure while the server shuts down.
var ErrDraining = errors.New("health: shutting down")

// Report is the result of the readiness checks: each check's status
// ("ok" or "fail").
type Report struct {
	Ready  bool              `json:"-"`
	Status string            `json:"status"`
	Checks map[string]string `json:"checks,omitempty"`
}

// Ready runs every check concurrently within the timeout.
func (h *Handler) Ready(ctx context.Context) Report {
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	h.mu.RLock()
	names := make([]string, 0, len(h.checks))
	for n := range h.checks {
		names = append(names, n)
	}
	sort.Strings(names)
	checks := make([]Check, len(names))
	for i, n := range names {
		checks[i] = h.checks[n]
	}
	h.mu.RUnlock()

	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Go(func() {
			done := make(chan error, 1)
			go func() { done <- c(ctx) }()
			select {
			case errs[i] = <-done:
			case <-ctx.Done():
				errs[i] = ctx.Err()
			}
		})
	}
	wg.Wait()
	rep := Report{Ready: true, Status: "ok", Checks: make(map[string]string, len(names))}
	for i, n := range names {
		if errs[i] != nil {
			rep.Ready = false
			rep.Checks[n] = "fail"
			h.log.Warn("readiness check failed", "check", n, "err", errs[i])
			continue
		}
		rep.Checks[n] = "ok"
	}
	if h.draining.Load() {
		rep.Ready = false
		rep.Checks["shutdown"] = "draining"
	}
	if !rep.Ready {
		rep.Status = "unavailable"
	}
	return rep
}
