// Package tlsconfig holds fhirgate's server TLS policy: TLS 1.2 at least,
// forward-secret AEAD cipher suites only, modern curves, and HSTS on responses
// that travelled over TLS.
package tlsconfig

import (
	"crypto/tls"
	"fmt"
	"net/http"
)

// HSTSValue is the Strict-Transport-Security header sent on HTTPS responses:
// one year. includeSubDomains is left out because fhirgate does not own the
// parent domain's other hosts.
const HSTSValue = "max-age=31536000"

// Base returns the policy without certificates, for callers that add their
// own (such as the mTLS listener):
//
//   - TLS 1.2 minimum (TLS 1.0/1.1 and SSL are refused);
//   - TLS 1.2 suites limited to ECDHE key exchange with AES-GCM or
//     ChaCha20-Poly1305 (no CBC, no RSA key exchange, no 3DES or RC4); the
//     TLS 1.3 suites are fixed by Go and all meet the same bar;
//   - key exchange groups, most preferred first: the X25519+ML-KEM-768
//     post-quantum hybrid (TLS 1.3 only), X25519 and P-256.
func Base() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
		CurvePreferences: []tls.CurveID{tls.X25519MLKEM768, tls.X25519, tls.CurveP256},
	}
}

// Server loads a PEM certificate chain and private key and returns a server
// tls.Config carrying the policy of Base.
func Server(certFile, keyFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tlsconfig: load certificate %s and key %s: %w", certFile, keyFile, err)
	}
	cfg := Base()
	cfg.Certificates = []tls.Certificate{cert}
	return cfg, nil
}

// HSTS adds Strict-Transport-Security to every response to a request that
// arrived over TLS. Plain-HTTP responses never carry it (RFC 6797 §7.2).
func HSTS(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil {
			w.Header().Set("Strict-Transport-Security", HSTSValue)
		}
		next.ServeHTTP(w, r)
	})
}
