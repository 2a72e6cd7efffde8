// Package jwksfetch fetches and caches the JWK Sets that clients publish at
// their registered jwks_uri (RFC 7591 §2), for private_key_jwt and
// self_signed_tls_client_auth.
//
// A jwks_uri is attacker-chosen input, so fetching is locked down: https
// only, no redirects, no proxy, a timeout, a size limit, and the address the
// connection actually goes to (after DNS resolution, so DNS rebinding does
// not help) must not be loopback, private, link-local or otherwise special
// unless InsecureAllowPrivateAddresses is set. Sets are cached for TTL, or
// less when the response's Cache-Control (max-age, no-store, no-cache) says so; a
// forced refresh (an assertion names an unknown kid) happens at most once per
// MinRefreshInterval per URI. Only public keys are accepted.
package jwksfetch

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Defaults.
const (
	DefaultTimeout            = 5 * time.Second
	DefaultMaxBytes           = 64 << 10
	DefaultTTL                = time.Hour
	DefaultMinRefreshInterval = time.Minute
	DefaultMaxEntries         = 1024
	// MaxKeys bounds the number of keys a fetched set may hold.
	MaxKeys = 32
)

// Errors. Every Get/Refresh error wraps ErrFetch or ErrInvalidURI.
var (
	// ErrInvalidURI: the URI is not an acceptable jwks_uri (not https, has
	// credentials or a fragment, ...).
	ErrInvalidURI = errors.New("jwksfetch: unacceptable jwks_uri")
	// ErrFetch: the set could not be fetched or is not an acceptable JWK Set.
	ErrFetch = errors.New("jwksfetch: fetch failed")
	// ErrForbiddenAddress: the host resolved to an address that may not be
	// contacted. It wraps ErrFetch.
	ErrForbiddenAddress = fmt.Errorf("%w: forbidden address", ErrFetch)
	// ErrTooLarge: the response exceeded MaxBytes. It wraps ErrFetch.
	ErrTooLarge = fmt.Errorf("%w: response too large", ErrFetch)
	// ErrPrivateKey: the set contains a private or symmetric key. It wraps ErrFetch.
	ErrPrivateKey = fmt.Errorf("%w: set contains a non-public key", ErrFetch)
	// ErrRecentFailure: the last fetch failed less than MinRefreshInterval
	// ago; no new attempt was made. It wraps ErrFetch.
	ErrRecentFailure = fmt.Errorf("%w: recent fetch failed", ErrFetch)
)

// Options configures a Fetcher.
type Options struct {
	Timeout            time.Duration // whole request; DefaultTimeout when zero
	MaxBytes           int64         // response body limit; DefaultMaxBytes when zero
	TTL                time.Duration // cache lifetime; DefaultTTL when zero
	MinRefreshInterval time.Duration // least time between fetches of one URI; DefaultMinRefreshInterval when zero
	MaxEntries         int           // cached URIs; DefaultMaxEntries when zero
	// RootCAs verifies servers' certificates; the system pool when nil.
	RootCAs *x509.CertPool
	// InsecureAllowPrivateAddresses lets fetches reach loopback, private,
	// link-local and other non-public addresses (tests, closed networks).
	InsecureAllowPrivateAddresses bool
	// InsecureAllowHTTPLoopback accepts http:// URIs whose host is a
	// loopback name or address (tests only). It implies reaching loopback.
	InsecureAllowHTTPLoopback bool
	Logger                    *slog.Logger
	Now                       func() time.Time
}

// Fetcher fetches and caches JWK Sets. It is safe for concurrent use.
type Fetcher struct {
	opts   Options
	client *http.Client

	mu      sync.Mutex
	entries map[string]*entry
}

type entry struct {
	fetch       sync.Mutex // serialises fetches of this URI
	set         *jose.JSONWebKeySet
	fetchedAt   time.Time     // last successful fetch
	ttl         time.Duration // cache lifetime of set: TTL, shortened by the response's Cache-Control
	attemptedAt time.Time     // last attempt, successful or not
	lastErr     error
	lastUsed    time.Time
}

// New validates opts, fills defaults and builds the locked-down HTTP client.
func New(opts Options) (*Fetcher, error) {
	if opts.Timeout < 0 || opts.MaxBytes < 0 || opts.TTL < 0 || opts.MinRefreshInterval < 0 || opts.MaxEntries < 0 {
		return nil, errors.New("jwksfetch: negative option")
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.MaxBytes == 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.TTL == 0 {
		opts.TTL = DefaultTTL
	}
	if opts.MinRefreshInterval == 0 {
		opts.MinRefreshInterval = DefaultMinRefreshInterval
	}
	if opts.MaxEntries == 0 {
		opts.MaxEntries = DefaultMaxEntries
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.InsecureAllowPrivateAddresses {
		opts.Logger.Warn("INSECURE: client jwks_uri fetches may reach private, loopback and link-local addresses")
	}
	if opts.InsecureAllowHTTPLoopback {
		opts.Logger.Warn("INSECURE: client jwks_uri may be plain http on loopback")
	}
	f := &Fetcher{opts: opts, entries: map[string]*entry{}}
	dialer := &net.Dialer{Timeout: opts.Timeout, Control: f.control}
	tr := &http.Transport{
		Proxy:                  nil, // a proxy would hide the real destination from control
		DialContext:            dialer.DialContext,
		TLSClientConfig:        &tls.Config{RootCAs: opts.RootCAs, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:    opts.Timeout,
		ResponseHeaderTimeout:  opts.Timeout,
		MaxIdleConns:           16,
		IdleConnTimeout:        30 * time.Second,
		MaxResponseHeaderBytes: 16 << 10,
	}
	f.client = &http.Client{
		Transport: tr,
		Timeout:   opts.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	return f, nil
}

// control runs after DNS resolution, just before connecting: address is the
// IP and port actually dialled.
func (f *Fetcher) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %q", ErrForbiddenAddress, address)
	}
	ip := ap.Addr().Unmap()
	if f.opts.InsecureAllowPrivateAddresses || (f.opts.InsecureAllowHTTPLoopback && ip.IsLoopback()) {
		return nil
	}
	if !PublicAddress(ip) {
		return fmt.Errorf("%w: %s", ErrForbiddenAddress, ip)
	}
	return nil
}

// nonPublic lists special-purpose ranges the netip predicates do not cover.
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // TEST-NET-1
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // TEST-NET-2
	netip.MustParsePrefix("203.0.113.0/24"),  // TEST-NET-3
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, broadcast
	netip.MustParsePrefix("64:ff9b::/96"),    // NAT64 (may map to private IPv4)
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use NAT64
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("2002::/16"),       // 6to4 (embeds IPv4)
	netip.MustParsePrefix("100::/64"),        // discard
}

// PublicAddress reports whether ip is a globally routable unicast address
// that a jwks_uri fetch may contact.
func PublicAddress(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsValid() || ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() ||
		ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() || ip.IsMulticast() ||
		ip.IsUnspecified() || !ip.IsGlobalUnicast() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// ValidateURI checks that raw is an acceptable jwks_uri: an absolute https
// URL with a host, no user info and no fragment. With insecureHTTPLoopback,
// http on a loopback host is accepted too.
func ValidateURI(raw string, insecureHTTPLoopback bool) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w: not a URL", ErrInvalidURI)
	}
	if u.Host == "" || u.User != nil || u.Fragment != "" || u.Opaque != "" {
		return fmt.Errorf("%w: must be an absolute URL with a host, without user info or fragment", ErrInvalidURI)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if insecureHTTPLoopback && isLoopbackHost(u.Hostname()) {
			return nil
		}
	}
	return fmt.Errorf("%w: must use https", ErrInvalidURI)
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(h)
	return err == nil && ip.Unmap().IsLoopback()
}

// Get returns the set at uri, from the cache while it is younger than TTL.
func (f *Fetcher) Get(ctx context.Context, uri string) (*jose.JSONWebKeySet, error) {
	if err := ValidateURI(uri, f.opts.InsecureAllowHTTPLoopback); err != nil {
		return nil, err
	}
	e := f.entry(uri)
	e.fetch.Lock()
	defer e.fetch.Unlock()
	now := f.opts.Now()
	if e.set != nil && now.Sub(e.fetchedAt) < e.ttl {
		return e.set, nil
	}
	return f.fetchLocked(ctx, e, uri, now)
}

// Refresh fetches the set at uri again, unless it was fetched (or tried)
// less than MinRefreshInterval ago; then it returns the cached set (and
// refreshed false) or the recent failure.
func (f *Fetcher) Refresh(ctx context.Context, uri string) (set *jose.JSONWebKeySet, refreshed bool, err error) {
	if err := ValidateURI(uri, f.opts.InsecureAllowHTTPLoopback); err != nil {
		return nil, false, err
	}
	e := f.entry(uri)
	e.fetch.Lock()
	defer e.fetch.Unlock()
	now := f.opts.Now()
	if !e.attemptedAt.IsZero() && now.Sub(e.attemptedAt) < f.opts.MinRefreshInterval {
		if e.set != nil {
			return e.set, false, nil
		}
		return nil, false, fmt.Errorf("%w: %w", ErrRecentFailure, e.lastErr)
	}
	set, err = f.fetchLocked(ctx, e, uri, now)
	return set, err == nil, err
}

// fetchLocked fetches uri into e (whose fetch lock is held). A failure
// within MinRefreshInterval of the previous failure is not retried.
func (f *Fetcher) fetchLocked(ctx context.Context, e *entry, uri string, now time.Time) (*jose.JSONWebKeySet, error) {
	if e.lastErr != nil && now.Sub(e.attemptedAt) < f.opts.MinRefreshInterval {
		return nil, fmt.Errorf("%w: %w", ErrRecentFailure, e.lastErr)
	}
	e.attemptedAt = now
	set, ttl, err := f.fetch(ctx, uri)
	if err != nil {
		e.lastErr = err
		f.opts.Logger.InfoContext(ctx, "jwks_uri fetch failed", slog.String("jwks_uri", uri), slog.Any("err", err))
		return nil, err
	}
	e.set, e.fetchedAt, e.ttl, e.lastErr = set, now, ttl, nil
	return set, nil
}

// entry returns the cache entry for uri, evicting the least recently used
// one when the cache is full.
func (f *Fetcher) entry(uri string) *entry {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.opts.Now()
	if e, ok := f.entries[uri]; ok {
		e.lastUsed = now
		return e
	}
	if len(f.entries) >= f.opts.MaxEntries {
		var oldest string
		var t time.Time
		for k, e := range f.entries {
			if oldest == "" || e.lastUsed.Before(t) {
				oldest, t = k, e.lastUsed
			}
		}
		delete(f.entries, oldest)
	}
	e := &entry{lastUsed: now}
	f.entries[uri] = e
	return e
}

// fetch does one GET and parses the body. It returns the set and how long
// it may be cached: TTL, or less when the response's Cache-Control says so.
func (f *Fetcher) fetch(ctx context.Context, uri string) (*jose.JSONWebKeySet, time.Duration, error) {
	set, resp, err := f.get(ctx, uri)
	if err != nil {
		return nil, 0, err
	}
	return set, cacheTTL(resp.Header.Get("Cache-Control"), f.opts.TTL), nil
}

// cacheTTL applies Cache-Control (no-store, no-cache, max-age) to the
// configured TTL: the set is never cached longer than the client allows.
func cacheTTL(cc string, ttl time.Duration) time.Duration {
	for _, dir := range strings.Split(cc, ",") {
		name, val, _ := strings.Cut(strings.TrimSpace(dir), "=")
		switch strings.ToLower(name) {
		case "no-store", "no-cache":
			return 0
		case "max-age", "s-maxage":
			n, err := strconv.ParseInt(strings.Trim(val, `"`), 10, 64)
			if err != nil || n < 0 {
				return 0
			}
			if n < int64(ttl/time.Second) {
				ttl = time.Duration(n) * time.Second
			}
		}
	}
	return ttl
}

func (f *Fetcher) get(ctx context.Context, uri string) (*jose.JSONWebKeySet, *http.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, f.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrFetch, err)
	}
	req.Header.Set("Accept", "application/json, application/jwk-set+json")
	resp, err := f.client.Do(req)
	if err != nil {
		if errors.Is(err, ErrForbiddenAddress) {
			return nil, nil, ErrForbiddenAddress
		}
		return nil, nil, fmt.Errorf("%w: %w", ErrFetch, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("%w: status %d", ErrFetch, resp.StatusCode)
	}
	if resp.ContentLength > f.opts.MaxBytes {
		return nil, nil, ErrTooLarge
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, f.opts.MaxBytes+1))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: read body: %w", ErrFetch, err)
	}
	if int64(len(body)) > f.opts.MaxBytes {
		return nil, nil, ErrTooLarge
	}
	set, err := ParseSet(body)
	if err != nil {
		return nil, nil, err
	}
	return set, resp, nil
}

// ParseSet parses a JWK Set document and checks that it holds between one
// and MaxKeys keys, all public and asymmetric. Keys whose use is neither
// empty nor "sig" are dropped.
func ParseSet(data []byte) (*jose.JSONWebKeySet, error) {
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("%w: not a JWK Set", ErrFetch)
	}
	if len(raw.Keys) == 0 || len(raw.Keys) > MaxKeys {
		return nil, fmt.Errorf("%w: a JWK Set needs 1 to %d keys", ErrFetch, MaxKeys)
	}
	set := &jose.JSONWebKeySet{}
	for _, rk := range raw.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(rk); err != nil {
			// An unknown kty or curve is skipped, like any key we cannot use.
			continue
		}
		if !k.IsPublic() || !k.Valid() {
			return nil, ErrPrivateKey
		}
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		set.Keys = append(set.Keys, k)
	}
	if len(set.Keys) == 0 {
		return nil, fmt.Errorf("%w: no usable signing key in the set", ErrFetch)
	}
	return set, nil
}
