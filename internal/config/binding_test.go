package config

import (
	"slices"
	"testing"
)

func TestBindingDefaults(t *testing.T) {
	cfg, err := Load(LoadOptions{LookupEnv: noEnv})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DPoP.IATWindow != DefaultDPoPIATWindow || cfg.Replay.Backend != "store" || cfg.Replay.MaxEntries != DefaultReplayMaxEntries ||
		cfg.DPoP.Nonce || cfg.SenderConstraint.RequireConfidential || len(cfg.TrustedProxyList()) != 0 {
		t.Fatalf("defaults %+v %+v %+v", cfg.DPoP, cfg.Replay, cfg.MTLS)
	}
}

func TestBindingValid(t *testing.T) {
	cfg, err := Load(LoadOptions{LookupEnv: noEnv, Overrides: map[string]string{
		"dpop.algs": "ES256 EdDSA", "dpop.nonce": "true", "dpop.nonce_key": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
		"mtls.client_cert_header": "X-Client-Cert", "mtls.trusted_proxies": "10.0.0.1, 192.168.0.0/16",
		"replay.backend": "redis", "replay.redis_url": "redis://127.0.0.1:6379/0",
	}})
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.TrustedProxyList(); !slices.Equal(got, []string{"10.0.0.1", "192.168.0.0/16"}) {
		t.Fatalf("proxies %v", got)
	}
	if k, err := cfg.DPoPNonceKey(); err != nil || len(k) != 32 {
		t.Fatalf("nonce key %d %v", len(k), err)
	}
}

func TestBindingRefusals(t *testing.T) {
	for _, tc := range []struct {
		ov   map[string]string
		want string
	}{
		{map[string]string{"dpop.iat_window": "0s"}, "dpop.iat_window"},
		{map[string]string{"dpop.iat_window": "1h"}, "dpop.iat_window"},
		{map[string]string{"dpop.algs": "ES256 HS256"}, "dpop.algs"},
		{map[string]string{"dpop.algs": "none"}, "dpop.algs"},
		{map[string]string{"dpop.nonce_key": "c2hvcnQ="}, "dpop.nonce_key"},
		{map[string]string{"dpop.nonce_key": "!!"}, "dpop.nonce_key"},
		{map[string]string{"mtls.client_cert_header": "X-Client-Cert"}, "mtls.trusted_proxies"},
		{map[string]string{"mtls.trusted_proxies": "10.0.0.1"}, "mtls.client_cert_header"},
		{map[string]string{"mtls.client_cert_header": "X", "mtls.trusted_proxies": "0.0.0.0/0"}, "mtls.trusted_proxies"},
		{map[string]string{"mtls.client_cert_header": "X", "mtls.trusted_proxies": "proxy.example"}, "mtls.trusted_proxies"},
		{map[string]string{"mtls.addr": "127.0.0.1:0"}, "mtls.addr"}, // no tls.cert_file/key_file
		{map[string]string{"mtls.addr": "9443", "tls.cert_file": "c.pem", "tls.key_file": "k.pem"}, "mtls.addr"},
		{map[string]string{"mtls.base_url": "https://mtls.example.org"}, "mtls.base_url"}, // no listener, no proxy
		{map[string]string{"mtls.addr": ":9443", "tls.cert_file": "c.pem", "tls.key_file": "k.pem", "mtls.base_url": "http://mtls.example.org"}, "mtls.base_url"},
		{map[string]string{"replay.backend": "file"}, "replay.backend"},
		{map[string]string{"replay.backend": "redis"}, "replay.redis_url"},
		{map[string]string{"replay.backend": "redis", "replay.redis_url": "http://x"}, "replay.redis_url"},
		{map[string]string{"replay.max_entries": "-1"}, "replay.max_entries"},
	} {
		_, err := Load(LoadOptions{LookupEnv: noEnv, Overrides: tc.ov})
		if keys := problemKeys(t, err); !slices.Contains(keys, tc.want) {
			t.Errorf("%v: want a problem with %s, got %v", tc.ov, tc.want, err)
		}
	}
}

func TestMTLSBaseURL(t *testing.T) {
	cfg, err := Load(LoadOptions{LookupEnv: noEnv, Overrides: map[string]string{
		"addr": "127.0.0.1:8443", "issuer": "https://localhost:8443", "tls.cert_file": "c.pem", "tls.key_file": "k.pem", "mtls.addr": ":0",
	}})
	if err != nil {
		t.Fatal(err)
	}
	cfg.SetMTLSListenAddr("[::]:9443")
	if got := cfg.MTLSBaseURL(); got != "https://localhost:9443" {
		t.Fatalf("derived mTLS base %q", got)
	}
	cfg.MTLS.BaseURL = "https://mtls.fhir.example.org/"
	if got := cfg.MTLSBaseURL(); got != "https://mtls.fhir.example.org" {
		t.Fatalf("configured mTLS base %q", got)
	}
	none, err := Load(LoadOptions{LookupEnv: noEnv})
	if err != nil || none.MTLSBaseURL() != "" {
		t.Fatalf("no mTLS endpoints: %q %v", none.MTLSBaseURL(), err)
	}
}
