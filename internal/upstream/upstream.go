// Package upstream connects the FHIR gateway to its backends: one or more
// upstream FHIR servers or legacy EHR APIs chosen by path prefix, each with
// its own credential adapter (none, HTTP Basic, a static header such as an
// API key, OAuth 2.0 client_credentials against the backend's own token
// endpoint, or a client certificate for mTLS), a tuned connection pool and
// an optional signed identity header telling the backend who is asking.
//
// The client's own Authorization header never reaches a backend: the
// gateway removes it and the adapter sets the backend's credentials.
package upstream

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/internal/tlsconfig"
)

// AuthType names a credential adapter.
type AuthType string

// Credential adapters.
const (
	AuthNone              AuthType = "none"
	AuthBasic             AuthType = "basic"
	AuthHeader            AuthType = "header"
	AuthClientCredentials AuthType = "client_credentials"
	AuthMTLS              AuthType = "mtls"
)

// ErrConfig reports an unusable upstream configuration.
var ErrConfig = errors.New("upstream: bad configuration")

// AuthConfig configures one credential adapter. Which fields apply depends
// on Type; CertFile/KeyFile (a client certificate) and CAFile (roots the
// backend's certificate must chain to) may accompany any type and are
// required for mtls.
type AuthConfig struct {
	Type AuthType
	// basic
	Username, Password string
	// header
	HeaderName, HeaderValue string
	// client_credentials: the backend's token endpoint and our client there
	// (authenticated with client_secret_basic, or by certificate when
	// ClientSecret is empty and CertFile is set).
	TokenURL, ClientID, ClientSecret, Scope, Audience string
	// TLS to the backend (mtls, or any type with a private CA).
	CertFile, KeyFile, CAFile string
}

// Config is one upstream.
type Config struct {
	// Prefix is the FHIR path prefix (relative to the gateway's FHIR base,
	// such as "/" or "/Binary") routed to this upstream; the longest
	// matching prefix wins.
	Prefix string
	// URL is the backend's FHIR base URL.
	URL  string
	Auth AuthConfig
	// Timeouts and pool; zero values take the defaults below.
	DialTimeout           time.Duration
	ResponseHeaderTimeout time.Duration
	MaxIdleConnsPerHost   int
}

// Defaults.
const (
	DefaultDialTimeout           = 5 * time.Second
	DefaultResponseHeaderTimeout = 30 * time.Second
	DefaultMaxIdleConnsPerHost   = 256
	DefaultIdleConnTimeout       = 90 * time.Second
)

// ParseAuthFlag parses the command-line form of an adapter:
// "none", "basic:USER:PASS" or "header:NAME:VALUE" (the value may contain ':').
func ParseAuthFlag(s string) (AuthConfig, error) {
	if s == "" || s == string(AuthNone) {
		return AuthConfig{Type: AuthNone}, nil
	}
	kind, rest, _ := strings.Cut(s, ":")
	a, b, ok := strings.Cut(rest, ":")
	switch AuthType(kind) {
	case AuthBasic:
		if !ok || a == "" || b == "" {
			return AuthConfig{}, fmt.Errorf("%w: want basic:USER:PASS", ErrConfig)
		}
		return AuthConfig{Type: AuthBasic, Username: a, Password: b}, nil
	case AuthHeader:
		if !ok || a == "" || b == "" {
			return AuthConfig{}, fmt.Errorf("%w: want header:NAME:VALUE", ErrConfig)
		}
		return AuthConfig{Type: AuthHeader, HeaderName: a, HeaderValue: b}, nil
	}
	return AuthConfig{}, fmt.Errorf("%w: upstream auth %q: want none, basic:USER:PASS or header:NAME:VALUE", ErrConfig, kind)
}

// Validate reports the first problem of c.
func (c Config) Validate() error {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("%w: url %q must be an absolute http(s) URL without user info, query or fragment", ErrConfig, c.URL)
	}
	if c.Prefix != "" && !strings.HasPrefix(c.Prefix, "/") {
		return fmt.Errorf("%w: prefix %q must start with /", ErrConfig, c.Prefix)
	}
	a := c.Auth
	switch a.Type {
	case "", AuthNone:
	case AuthBasic:
		if a.Username == "" || a.Password == "" || strings.Contains(a.Username, ":") {
			return fmt.Errorf("%w: basic auth needs a username (without ':') and a password", ErrConfig)
		}
	case AuthHeader:
		if !validHeaderName(a.HeaderName) || a.HeaderValue == "" || strings.ContainsAny(a.HeaderValue, "\r\n") {
			return fmt.Errorf("%w: header auth needs a valid header name and value", ErrConfig)
		}
		switch strings.ToLower(a.HeaderName) {
		case "host", "content-length", "transfer-encoding", "connection", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto":
			return fmt.Errorf("%w: header auth may not set %s", ErrConfig, a.HeaderName)
		}
	case AuthClientCredentials:
		tu, err := url.Parse(a.TokenURL)
		if err != nil || (tu.Scheme != "https" && tu.Scheme != "http") || tu.Host == "" {
			return fmt.Errorf("%w: client_credentials needs an absolute token_url", ErrConfig)
		}
		if a.ClientID == "" || (a.ClientSecret == "" && a.CertFile == "") {
			return fmt.Errorf("%w: client_credentials needs client_id and client_secret (or a client certificate)", ErrConfig)
		}
	case AuthMTLS:
		if a.CertFile == "" || a.KeyFile == "" {
			return fmt.Errorf("%w: mtls needs cert_file and key_file", ErrConfig)
		}
		if u.Scheme != "https" {
			return fmt.Errorf("%w: mtls needs an https url", ErrConfig)
		}
	default:
		return fmt.Errorf("%w: unknown auth type %q", ErrConfig, a.Type)
	}
	if (a.CertFile == "") != (a.KeyFile == "") {
		return fmt.Errorf("%w: cert_file and key_file go together", ErrConfig)
	}
	return nil
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// clientTLS builds the TLS configuration towards the backend: the server
// policy's protocol floor, the client certificate and private roots if given.
func clientTLS(a AuthConfig) (*tls.Config, error) {
	cfg := tlsconfig.Base()
	cfg.CurvePreferences = nil // let Go negotiate with older backends
	if a.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(a.CertFile, a.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: client certificate: %w", ErrConfig, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if a.CAFile != "" {
		pem, err := os.ReadFile(a.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%w: ca_file: %w", ErrConfig, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: ca_file %s holds no PEM certificate", ErrConfig, a.CAFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}
