package config

import (
	"encoding/base64"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// DPoP configures RFC 9449 proof checking at /token, /userinfo and the gateway.
type DPoP struct {
	IATWindow time.Duration `yaml:"iat_window" env:"FHIRGATE_DPOP_IAT_WINDOW" doc:"how old a DPoP proof may be (iat), at most 5m"`
	Algs      string        `yaml:"algs" env:"FHIRGATE_DPOP_ALGS" doc:"space-separated DPoP proof algorithms accepted; empty = ES256 ES384 RS256 PS256 EdDSA"`
	Nonce     bool          `yaml:"nonce" env:"FHIRGATE_DPOP_NONCE" doc:"require server-provided DPoP nonces (DPoP-Nonce, use_dpop_nonce)"`
	NonceKey  string        `yaml:"nonce_key" env:"FHIRGATE_DPOP_NONCE_KEY" doc:"base64 of at least 32 random bytes signing DPoP nonces, shared by every node; empty = random per process" secret:"true"`
}

// MTLS configures RFC 8705 client certificates: a listener of its own that
// requests them (addr), and/or certificates passed by a TLS-terminating proxy.
type MTLS struct {
	Addr             string `yaml:"addr" env:"FHIRGATE_MTLS_ADDR" doc:"host:port of a second TLS listener that requests client certificates (tls_client_auth, self_signed_tls_client_auth, certificate-bound tokens) and serves /token, /par, /revoke, /introspect, /userinfo and the FHIR base; needs tls.cert_file and tls.key_file"`
	BaseURL          string `yaml:"base_url" env:"FHIRGATE_MTLS_BASE_URL" doc:"public https URL of the mTLS endpoints (mtls_endpoint_aliases); default https://<issuer host>:<mtls.addr port>"`
	ClientCertHeader string `yaml:"client_cert_header" env:"FHIRGATE_MTLS_CLIENT_CERT_HEADER" doc:"request header carrying the URL-encoded PEM client certificate from a trusted TLS-terminating proxy (e.g. X-Client-Cert)"`
	TrustedProxies   string `yaml:"trusted_proxies" env:"FHIRGATE_MTLS_TRUSTED_PROXIES" doc:"comma-separated addresses or CIDR prefixes of the proxies allowed to send client_cert_header; nobody else is believed"`
}

// SenderConstraint is the server policy on unbound access tokens.
type SenderConstraint struct {
	RequireConfidential bool `yaml:"require_confidential" env:"FHIRGATE_SENDER_CONSTRAINT_REQUIRE_CONFIDENTIAL" doc:"confidential clients get only DPoP- or certificate-bound access tokens"`
	RequireSystem       bool `yaml:"require_system" env:"FHIRGATE_SENDER_CONSTRAINT_REQUIRE_SYSTEM" doc:"client_credentials (backend services) access tokens must be DPoP- or certificate-bound"`
}

// Replay selects where one-time values (DPoP proof and client assertion
// jti) are remembered.
type Replay struct {
	Backend    string `yaml:"backend" env:"FHIRGATE_REPLAY_BACKEND" doc:"store (the database, shared by every node), memory (one node only) or redis"`
	RedisURL   string `yaml:"redis_url" env:"FHIRGATE_REPLAY_REDIS_URL" doc:"redis://[:password@]host:port[/db] for the redis backend" secret:"true"`
	MaxEntries int    `yaml:"max_entries" env:"FHIRGATE_REPLAY_MAX_ENTRIES" doc:"capacity of the memory backend (full = requests refused)"`
}

// Defaults of the sender-constraint keys.
const (
	DefaultDPoPIATWindow    = 60 * time.Second
	MaxDPoPIATWindow        = 5 * time.Minute
	DefaultReplayBackend    = "store"
	DefaultReplayMaxEntries = 100_000
)

// dpopAlgs are the algorithms dpop.algs may name (those internal/dpop verifies).
var dpopAlgs = []string{"ES256", "ES384", "RS256", "PS256", "EdDSA"}

// DPoPAlgs returns dpop.algs as a list (nil for the default set).
func (c *Config) DPoPAlgs() []string { return strings.Fields(c.DPoP.Algs) }

// DPoPNonceKey decodes dpop.nonce_key (nil when empty).
func (c *Config) DPoPNonceKey() ([]byte, error) {
	if c.DPoP.NonceKey == "" {
		return nil, nil
	}
	return base64.StdEncoding.DecodeString(c.DPoP.NonceKey)
}

// MTLSBaseURL returns the public base URL of the mTLS endpoints, or "" when
// there are none: mtls.base_url, else https://<issuer host>:<port of
// mtls.addr> when mtls.addr is set.
func (c *Config) MTLSBaseURL() string {
	if c.MTLS.BaseURL != "" {
		return strings.TrimRight(c.MTLS.BaseURL, "/")
	}
	if c.MTLS.Addr == "" {
		return ""
	}
	_, port, err := net.SplitHostPort(c.MTLS.Addr)
	iss, perr := url.Parse(c.Issuer)
	if err != nil || perr != nil || iss.Hostname() == "" {
		return ""
	}
	return "https://" + net.JoinHostPort(iss.Hostname(), port)
}

// SetMTLSListenAddr tells the configuration the address the mTLS listener
// actually listens on (it differs from mtls.addr when its port is 0).
func (c *Config) SetMTLSListenAddr(actual string) { c.MTLS.Addr = actual }

// TrustedProxyList returns mtls.trusted_proxies as a list.
func (c *Config) TrustedProxyList() []string {
	var out []string
	for p := range strings.SplitSeq(c.MTLS.TrustedProxies, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// validateBinding checks the DPoP, mTLS proxy and replay keys.
func (c *Config) validateBinding(add func(key, format string, args ...any)) {
	switch w := c.DPoP.IATWindow; {
	case w < time.Second:
		add("dpop.iat_window", "must be at least 1s, got %s", w)
	case w > MaxDPoPIATWindow:
		add("dpop.iat_window", "must be at most %s, got %s", formatDuration(MaxDPoPIATWindow), formatDuration(w))
	}
	for _, a := range c.DPoPAlgs() {
		ok := false
		for _, s := range dpopAlgs {
			ok = ok || a == s
		}
		if !ok {
			add("dpop.algs", "%q is not one of %s", a, strings.Join(dpopAlgs, " "))
		}
	}
	if k, err := c.DPoPNonceKey(); err != nil {
		add("dpop.nonce_key", "not base64")
	} else if k != nil && len(k) < 32 {
		add("dpop.nonce_key", "must hold at least 32 bytes (generate one with: head -c 32 /dev/urandom | base64)")
	}

	if c.MTLS.Addr != "" {
		if _, _, err := net.SplitHostPort(c.MTLS.Addr); err != nil {
			add("mtls.addr", "must be host:port, got %q", c.MTLS.Addr)
		}
		if !c.TLSEnabled() {
			add("mtls.addr", "needs tls.cert_file and tls.key_file (the mTLS listener serves the same certificate)")
		}
	}
	if b := c.MTLS.BaseURL; b != "" {
		if u, err := url.Parse(b); err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			add("mtls.base_url", "must be an absolute https URL without query or fragment, got %q", b)
		}
		if c.MTLS.Addr == "" && c.MTLS.ClientCertHeader == "" {
			add("mtls.base_url", "needs mtls.addr, or a TLS-terminating proxy (mtls.client_cert_header) serving that URL")
		}
	}

	proxies := c.TrustedProxyList()
	if (c.MTLS.ClientCertHeader == "") != (len(proxies) == 0) {
		if c.MTLS.ClientCertHeader == "" {
			add("mtls.client_cert_header", "required when mtls.trusted_proxies is set")
		} else {
			add("mtls.trusted_proxies", "required when mtls.client_cert_header is set: the header is believed only from these addresses")
		}
	}
	for _, p := range proxies {
		var prefix netip.Prefix
		var err error
		if strings.Contains(p, "/") {
			prefix, err = netip.ParsePrefix(p)
		} else {
			var a netip.Addr
			a, err = netip.ParseAddr(p)
			prefix = netip.PrefixFrom(a, a.BitLen())
		}
		switch {
		case err != nil:
			add("mtls.trusted_proxies", "%q is not an address or CIDR prefix", p)
		case prefix.Bits() == 0:
			add("mtls.trusted_proxies", "%q would trust every address", p)
		}
	}

	switch c.Replay.Backend {
	case "store", "memory":
	case "redis":
		if c.Replay.RedisURL == "" {
			add("replay.redis_url", "required with replay.backend redis")
		} else if u, err := url.Parse(c.Replay.RedisURL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
			add("replay.redis_url", "must be a redis:// or rediss:// URL")
		}
	default:
		add("replay.backend", "must be store, memory or redis, got %q", c.Replay.Backend)
	}
	if c.Replay.MaxEntries < 0 {
		add("replay.max_entries", "must not be negative")
	}
}
