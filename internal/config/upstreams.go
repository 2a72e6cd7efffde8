package config

import (
	"fmt"
	"strings"
	"time"
)

// Gateway configures the FHIR gateway in front of fhir_base. It is enabled
// when gateway.upstream or upstreams is set.
type Gateway struct {
	Upstream        string        `yaml:"upstream" env:"FHIRGATE_GATEWAY_UPSTREAM" doc:"URL of the FHIR server behind fhir_base (--upstream); empty = no gateway unless upstreams is set"`
	UpstreamAuth    string        `yaml:"upstream_auth" env:"FHIRGATE_GATEWAY_UPSTREAM_AUTH" doc:"credentials for gateway.upstream: none, basic:USER:PASS or header:NAME:VALUE (--upstream-auth)" secret:"true"`
	UpstreamTimeout time.Duration `yaml:"upstream_timeout" env:"FHIRGATE_GATEWAY_UPSTREAM_TIMEOUT" doc:"longest upstream exchange before 504"`
	IdentityHeader  bool          `yaml:"identity_header" env:"FHIRGATE_GATEWAY_IDENTITY_HEADER" doc:"send a signed identity JWT (X-Fhirgate-Identity) to upstreams"`
	// Issuer, when set, runs this process as a gateway only, apart from the
	// authorization server named here: no authorization-server endpoints,
	// tokens verified with the issuer's published keys.
	Issuer  string `yaml:"issuer" env:"FHIRGATE_GATEWAY_ISSUER" doc:"run the gateway only, accepting tokens of this remote authorization server (keys from its JWKS); empty = the in-process authorization server"`
	JWKSURI string `yaml:"jwks_uri" env:"FHIRGATE_GATEWAY_JWKS_URI" doc:"JWK Set of gateway.issuer; empty = discovered from the issuer's metadata"`
}

// GatewayOnly reports whether this process runs the gateway apart from the
// authorization server (gateway.issuer is set).
func (c *Config) GatewayOnly() bool { return c.Gateway.Issuer != "" }

// Upstream is one backend of the gateway (YAML only: the upstreams list).
type Upstream struct {
	// Prefix is the FHIR path prefix (below fhir_base) routed here; "/" or
	// empty for everything. The longest matching prefix wins.
	Prefix          string        `yaml:"prefix"`
	URL             string        `yaml:"url"`
	Auth            UpstreamAuth  `yaml:"auth"`
	ResponseTimeout time.Duration `yaml:"response_timeout"`
}

// UpstreamAuth is how the gateway authenticates to one upstream.
type UpstreamAuth struct {
	Type         string `yaml:"type"` // none, basic, header, client_credentials, mtls
	Username     string `yaml:"username"`
	Password     string `yaml:"password"`
	Header       string `yaml:"header"`
	Value        string `yaml:"value"`
	TokenURL     string `yaml:"token_url"`
	ClientID     string `yaml:"client_id"`
	ClientSecret string `yaml:"client_secret"`
	Scope        string `yaml:"scope"`
	Audience     string `yaml:"audience"`
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	CAFile       string `yaml:"ca_file"`
}

// DefaultUpstreamTimeout bounds one upstream exchange.
const DefaultUpstreamTimeout = 60 * time.Second

// GatewayEnabled reports whether an upstream is configured.
func (c *Config) GatewayEnabled() bool { return c.Gateway.Upstream != "" || len(c.Upstreams) > 0 }

// validateGateway checks the gateway keys; the adapters check the details
// again when they are built.
func (c *Config) validateGateway(add func(key, format string, args ...any)) {
	if c.Gateway.UpstreamTimeout < 0 {
		add("gateway.upstream_timeout", "must not be negative")
	}
	if c.Gateway.Issuer != "" {
		if _, msg := checkURL(c.Gateway.Issuer); msg != "" {
			add("gateway.issuer", "%s", msg)
		}
		if !c.GatewayEnabled() {
			add("gateway.issuer", "set without gateway.upstream or upstreams")
		}
	}
	if c.Gateway.JWKSURI != "" {
		if _, msg := checkURL(c.Gateway.JWKSURI); msg != "" {
			add("gateway.jwks_uri", "%s", msg)
		}
		if c.Gateway.Issuer == "" {
			add("gateway.jwks_uri", "set without gateway.issuer")
		}
	}
	if c.Gateway.Upstream != "" {
		if _, msg := checkURL(c.Gateway.Upstream); msg != "" {
			add("gateway.upstream", "%s", msg)
		}
		if len(c.Upstreams) > 0 {
			if c.Upstreams[0].Prefix == "" || c.Upstreams[0].Prefix == "/" {
				add("gateway.upstream", "conflicts with an upstreams entry for prefix /")
			}
		}
	} else if c.Gateway.UpstreamAuth != "" {
		add("gateway.upstream_auth", "set without gateway.upstream")
	}
	if a := c.Gateway.UpstreamAuth; a != "" && a != "none" {
		kind, rest, _ := strings.Cut(a, ":")
		name, val, ok := strings.Cut(rest, ":")
		if (kind != "basic" && kind != "header") || !ok || name == "" || val == "" {
			add("gateway.upstream_auth", "must be none, basic:USER:PASS or header:NAME:VALUE")
		}
	}
	seen := map[string]bool{}
	for i, u := range c.Upstreams {
		key := fmt.Sprintf("upstreams[%d]", i)
		if _, msg := checkURL(u.URL); msg != "" {
			add(key+".url", "%s", msg)
		}
		p := strings.TrimRight(u.Prefix, "/")
		if u.Prefix != "" && !strings.HasPrefix(u.Prefix, "/") {
			add(key+".prefix", "must start with /, got %q", u.Prefix)
		}
		if seen[p] {
			add(key+".prefix", "prefix %q used twice", u.Prefix)
		}
		seen[p] = true
		switch u.Auth.Type {
		case "", "none", "mtls":
		case "basic":
			if u.Auth.Username == "" || u.Auth.Password == "" {
				add(key+".auth", "basic needs username and password")
			}
		case "header":
			if u.Auth.Header == "" || u.Auth.Value == "" {
				add(key+".auth", "header needs header and value")
			}
		case "client_credentials":
			if u.Auth.TokenURL == "" || u.Auth.ClientID == "" {
				add(key+".auth", "client_credentials needs token_url and client_id")
			}
		default:
			add(key+".auth.type", "must be none, basic, header, client_credentials or mtls, got %q", u.Auth.Type)
		}
		if u.Auth.Type == "mtls" && (u.Auth.CertFile == "" || u.Auth.KeyFile == "") {
			add(key+".auth", "mtls needs cert_file and key_file")
		}
		if u.ResponseTimeout < 0 {
			add(key+".response_timeout", "must not be negative")
		}
	}
}
