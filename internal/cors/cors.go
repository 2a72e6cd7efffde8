// Package cors lets browser-based SMART apps call /token and /userinfo
// (and other non-interactive endpoints the composition root chooses) from
// their own origin. The allowed origins are exactly the origins
// (scheme://host[:port]) of the redirect URIs of every enabled registered
// client, read from the client store and cached briefly. The policy never
// answers "*" and never allows credentials (cookies); it must not wrap
// /authorize (RFC 9700 §2.6).
package cors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/fhirgate/fhirgate/internal/storage"
)

// Defaults.
const (
	// DefaultCacheTTL is how long the origin list is reused before the client
	// store is read again.
	DefaultCacheTTL = 5 * time.Second
	// DefaultMaxAge is how long a browser may cache a preflight answer.
	DefaultMaxAge = 10 * time.Minute
)

// ErrOptions is returned by New when a required option is missing.
var ErrOptions = errors.New("cors: invalid options")

// Options configures the policy.
type Options struct {
	Clients  storage.Clients
	CacheTTL time.Duration // default DefaultCacheTTL
	MaxAge   time.Duration // preflight cache lifetime, default DefaultMaxAge
	Logger   *slog.Logger
	Now      func() time.Time
}

// Policy decides which origins may call the wrapped endpoints.
type Policy struct {
	opts Options

	mu       sync.Mutex
	origins  map[string]struct{}
	loadedAt time.Time
}

// New validates opts and fills defaults.
func New(opts Options) (*Policy, error) {
	if opts.Clients == nil {
		return nil, fmt.Errorf("%w: missing Clients", ErrOptions)
	}
	if opts.CacheTTL < 0 || opts.MaxAge < 0 {
		return nil, fmt.Errorf("%w: negative duration", ErrOptions)
	}
	if opts.CacheTTL == 0 {
		opts.CacheTTL = DefaultCacheTTL
	}
	if opts.MaxAge == 0 {
		opts.MaxAge = DefaultMaxAge
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Policy{opts: opts}, nil
}

// Allowed reports whether origin (an Origin header value) belongs to a
// registered, enabled client. A store failure is returned and means "not
// allowed" to the caller (fail closed).
func (p *Policy) Allowed(ctx context.Context, origin string) (bool, error) {
	norm, ok := Normalize(origin)
	if !ok {
		return false, nil
	}
	origins, err := p.load(ctx)
	if err != nil {
		return false, err
	}
	_, ok = origins[norm]
	return ok, nil
}

func (p *Policy) load(ctx context.Context) (map[string]struct{}, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.opts.Now()
	if p.origins != nil && now.Sub(p.loadedAt) < p.opts.CacheTTL && !now.Before(p.loadedAt) {
		return p.origins, nil
	}
	clients, err := p.opts.Clients.ListClients(ctx)
	if err != nil {
		return nil, fmt.Errorf("cors: list clients: %w", err)
	}
	origins := make(map[string]struct{})
	for _, c := range clients {
		if c.Disabled {
			continue
		}
		for _, uri := range c.RedirectURIs {
			if o, ok := originOf(uri); ok {
				origins[o] = struct{}{}
			}
		}
	}
	p.origins, p.loadedAt = origins, now
	return origins, nil
}

// originOf returns the normalized origin of an absolute http(s) URL.
func originOf(raw string) (string, bool) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return "", false
	}
	return Normalize(u.Scheme + "://" + u.Host)
}

// Normalize returns the canonical form of an origin (RFC 6454): lower-case
// scheme and host, the default port dropped. Only http and https origins
// without path, query, fragment or user info qualify; "null" never does.
func Normalize(origin string) (string, bool) {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || u.User != nil || u.Opaque != "" ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(origin, "?") {
		return "", false
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return "", false
	}
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	if (scheme == "https" && port == "443") || (scheme == "http" && port == "80") {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		host += ":" + port
	}
	return scheme + "://" + host, true
}
