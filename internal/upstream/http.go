package upstream

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
)

// Auth adds a backend's credentials to an outgoing request.
type Auth interface {
	Apply(r *http.Request) error
}

// NoAuth sends no credentials.
type NoAuth struct{}

// Apply implements Auth.
func (NoAuth) Apply(*http.Request) error { return nil }

// BasicAuth sends HTTP Basic credentials.
type BasicAuth struct{ Username, Password string }

// Apply implements Auth.
func (b BasicAuth) Apply(r *http.Request) error {
	r.SetBasicAuth(b.Username, b.Password)
	return nil
}

// HeaderAuth sets one static header, such as an API key.
type HeaderAuth struct{ Name, Value string }

// Apply implements Auth.
func (h HeaderAuth) Apply(r *http.Request) error {
	r.Header.Set(h.Name, h.Value)
	return nil
}

// Upstream is one configured backend.
type Upstream struct {
	// Prefix is the FHIR path prefix routed here ("/" for everything).
	Prefix string
	// URL is the backend's FHIR base.
	URL *url.URL
	// Transport carries requests to the backend and injects its
	// credentials. It keeps connections alive.
	Transport http.RoundTripper
	// Identity, if set, signs an identity assertion for each request.
	Identity *Identity
}

// Options are what Build needs besides the Config.
type Options struct {
	Logger *slog.Logger
	Now    func() time.Time
	// BaseTransport, if set, replaces the tuned *http.Transport Build makes
	// (tests use it); TLS settings of the Config are then not applied.
	BaseTransport http.RoundTripper
}

// Build validates c and returns the upstream with its transport.
func Build(c Config, opts Options) (*Upstream, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	u, _ := url.Parse(c.URL)
	u.Path = strings.TrimRight(u.Path, "/")
	base := opts.BaseTransport
	if base == nil {
		tlsCfg, err := clientTLS(c.Auth)
		if err != nil {
			return nil, err
		}
		base = NewTransport(c, tlsCfg)
	}
	var auth Auth
	switch c.Auth.Type {
	case "", AuthNone, AuthMTLS:
		auth = NoAuth{}
	case AuthBasic:
		auth = BasicAuth{Username: c.Auth.Username, Password: c.Auth.Password}
	case AuthHeader:
		auth = HeaderAuth{Name: c.Auth.HeaderName, Value: c.Auth.HeaderValue}
	case AuthClientCredentials:
		cc, err := NewClientCredentials(ClientCredentialsOptions{
			TokenURL: c.Auth.TokenURL, ClientID: c.Auth.ClientID, ClientSecret: c.Auth.ClientSecret,
			Scope: c.Auth.Scope, Audience: c.Auth.Audience,
			HTTPClient: &http.Client{Transport: base, Timeout: 15 * time.Second},
			Logger:     opts.Logger, Now: opts.Now,
		})
		if err != nil {
			return nil, err
		}
		auth = cc
	}
	prefix := c.Prefix
	if prefix == "" {
		prefix = "/"
	}
	return &Upstream{Prefix: prefix, URL: u, Transport: &AuthTransport{Base: base, Auth: auth}}, nil
}

// NewTransport returns a connection-pooling transport for c: dial and
// response-header timeouts, a large idle pool per host, HTTP/2 when the
// backend offers it over TLS.
func NewTransport(c Config, tlsCfg *tls.Config) *http.Transport {
	dial := c.DialTimeout
	if dial <= 0 {
		dial = DefaultDialTimeout
	}
	rh := c.ResponseHeaderTimeout
	if rh <= 0 {
		rh = DefaultResponseHeaderTimeout
	}
	idle := c.MaxIdleConnsPerHost
	if idle <= 0 {
		idle = DefaultMaxIdleConnsPerHost
	}
	return &http.Transport{
		Proxy:                 nil, // backends are reached directly, never through an environment proxy
		DialContext:           (&net.Dialer{Timeout: dial, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsCfg,
		TLSHandshakeTimeout:   dial,
		ResponseHeaderTimeout: rh,
		ExpectContinueTimeout: time.Second,
		MaxIdleConns:          idle * 2,
		MaxIdleConnsPerHost:   idle,
		IdleConnTimeout:       DefaultIdleConnTimeout,
		ForceAttemptHTTP2:     true,
	}
}

// AuthTransport applies Auth to every request (on a clone: the caller's
// request is not modified) and sends it with Base.
type AuthTransport struct {
	Base http.RoundTripper
	Auth Auth
}

// RoundTrip implements http.RoundTripper. A client_credentials token the
// backend rejects with 401 is dropped from the cache, so the next request
// fetches a fresh one.
func (t *AuthTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	out := r.Clone(r.Context())
	out.Header.Del("Authorization")
	if err := t.Auth.Apply(out); err != nil {
		if r.Body != nil {
			_ = r.Body.Close()
		}
		return nil, fmt.Errorf("upstream: credentials: %w", err)
	}
	resp, err := t.Base.RoundTrip(out)
	if err == nil && resp.StatusCode == http.StatusUnauthorized {
		if cc, ok := t.Auth.(*ClientCredentials); ok {
			cc.Invalidate()
		}
	}
	return resp, err
}

// CloseIdleConnections closes the base transport's idle connections.
func (t *AuthTransport) CloseIdleConnections() {
	if c, ok := t.Base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// Router picks the upstream of a FHIR path by longest prefix.
type Router struct {
	ups []*Upstream // longest prefix first
}

// NewRouter returns a router over ups; prefixes must be distinct.
func NewRouter(ups ...*Upstream) (*Router, error) {
	if len(ups) == 0 {
		return nil, fmt.Errorf("%w: no upstream", ErrConfig)
	}
	seen := map[string]bool{}
	sorted := append([]*Upstream(nil), ups...)
	for _, u := range sorted {
		p := strings.TrimRight(u.Prefix, "/")
		if seen[p] {
			return nil, fmt.Errorf("%w: prefix %q used twice", ErrConfig, u.Prefix)
		}
		seen[p] = true
	}
	sort.SliceStable(sorted, func(i, j int) bool { return len(sorted[i].Prefix) > len(sorted[j].Prefix) })
	return &Router{ups: sorted}, nil
}

// Route returns the upstream for path (relative to the FHIR base, with a
// leading '/'), or nil when no prefix matches. A prefix matches whole path
// segments only: "/Binary" matches "/Binary/1" but not "/BinaryX".
func (rt *Router) Route(path string) *Upstream {
	for _, u := range rt.ups {
		p := strings.TrimRight(u.Prefix, "/")
		if p == "" || path == p || strings.HasPrefix(path, p+"/") || strings.HasPrefix(path, p+"?") {
			return u
		}
	}
	return nil
}

// Upstreams lists the routed upstreams, longest prefix first.
func (rt *Router) Upstreams() []*Upstream { return append([]*Upstream(nil), rt.ups...) }
