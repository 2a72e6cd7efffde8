package config

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func loadYAML(t *testing.T, y string, env map[string]string) (*Config, error) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return Load(LoadOptions{File: p, LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }})
}

func TestUpstreamsFromYAML(t *testing.T) {
	c, err := loadYAML(t, `
upstreams:
  - prefix: /
    url: https://ehr.example.org/fhir
    auth: {type: client_credentials, token_url: https://ehr.example.org/token, client_id: gw, client_secret: s}
  - prefix: /Binary
    url: https://docs.example.org/fhir
    auth: {type: header, header: X-Api-Key, value: k}
`, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !c.GatewayEnabled() || len(c.Upstreams) != 2 || c.Upstreams[1].Auth.Header != "X-Api-Key" || c.Upstreams[0].Auth.Type != "client_credentials" {
		t.Fatalf("%+v", c.Upstreams)
	}
	if c.Gateway.UpstreamTimeout != DefaultUpstreamTimeout {
		t.Fatalf("timeout default %s", c.Gateway.UpstreamTimeout)
	}
}

func TestUpstreamFlagsFromEnv(t *testing.T) {
	c, err := loadYAML(t, "", map[string]string{"FHIRGATE_GATEWAY_UPSTREAM": "http://127.0.0.1:9000/fhir", "FHIRGATE_GATEWAY_UPSTREAM_AUTH": "basic:gw:pw"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Gateway.Upstream != "http://127.0.0.1:9000/fhir" || !c.GatewayEnabled() {
		t.Fatalf("%+v", c.Gateway)
	}
}

func TestGatewayOnlyKeys(t *testing.T) {
	c, err := loadYAML(t, "gateway: {upstream: http://127.0.0.1:9000/fhir, jwks_uri: https://as.example/jwks}",
		map[string]string{"FHIRGATE_GATEWAY_ISSUER": "https://as.example"})
	if err != nil {
		t.Fatal(err)
	}
	if !c.GatewayOnly() || c.Gateway.Issuer != "https://as.example" || c.Gateway.JWKSURI != "https://as.example/jwks" {
		t.Fatalf("%+v", c.Gateway)
	}
	if c, _ := loadYAML(t, "", nil); c.GatewayOnly() {
		t.Fatal("gateway-only by default")
	}
}

func TestUpstreamRefusals(t *testing.T) {
	for name, tc := range map[string]struct {
		yaml string
		key  string
	}{
		"bad url":       {"upstreams: [{url: ftp://x}]", "upstreams[0].url"},
		"bad type":      {"upstreams: [{url: http://x, auth: {type: kerberos}}]", "upstreams[0].auth.type"},
		"basic no pass": {"upstreams: [{url: http://x, auth: {type: basic, username: u}}]", "upstreams[0].auth"},
		"mtls no cert":  {"upstreams: [{url: https://x, auth: {type: mtls}}]", "upstreams[0].auth"},
		"dup prefix":    {"upstreams: [{url: http://x, prefix: /a}, {url: http://y, prefix: /a/}]", "upstreams[1].prefix"},
		"rel prefix":    {"upstreams: [{url: http://x, prefix: a}]", "upstreams[0].prefix"},
		"bad flag auth": {"gateway: {upstream: http://x, upstream_auth: 'bearer:abc'}", "gateway.upstream_auth"},
		"auth alone":    {"gateway: {upstream_auth: 'basic:a:b'}", "gateway.upstream_auth"},
		"unknown key":   {"upstreams: [{url: http://x, passwd: y}]", ""},
		"issuer no up":  {"gateway: {issuer: https://as.example}", "gateway.issuer"},
		"bad issuer":    {"gateway: {upstream: http://x, issuer: 'as.example'}", "gateway.issuer"},
		"jwks alone":    {"gateway: {upstream: http://x, jwks_uri: https://as.example/jwks}", "gateway.jwks_uri"},
		"bad jwks":      {"gateway: {upstream: http://x, issuer: https://as.example, jwks_uri: 'ftp://x'}", "gateway.jwks_uri"},
	} {
		_, err := loadYAML(t, tc.yaml, nil)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: accepted (%v)", name, err)
			continue
		}
		var ve *ValidationError
		if tc.key != "" && (!errors.As(err, &ve) || !slices.Contains(ve.Keys(), tc.key)) {
			t.Errorf("%s: %v does not name %s", name, err, tc.key)
		}
	}
}
