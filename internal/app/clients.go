package app

import (
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/clientauth"
	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/discovery"
	"github.com/fhirgate/fhirgate/internal/dpop"
	"github.com/fhirgate/fhirgate/internal/jwksfetch"
	"github.com/fhirgate/fhirgate/internal/keys"
	"github.com/fhirgate/fhirgate/internal/mtls"
	"github.com/fhirgate/fhirgate/internal/par"
	"github.com/fhirgate/fhirgate/internal/replay"
	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/token"
)

// buildClientAuth builds the client authenticator shared by /token and
// /par: private_key_jwt with keys from the registration or a locked-down
// jwks_uri fetcher and assertion jti values kept in the replay cache, and
// tls_client_auth against the configured client CA pool (off without one);
// client records are reused for client_auth.cache_ttl.
func buildClientAuth(cfg *config.Config, store storage.Store, replays replay.Cache, log *slog.Logger,
	now func() time.Time) (*clientauth.Authenticator, error) {
	fetcher, err := jwksfetch.New(jwksfetch.Options{
		Timeout:                       cfg.ClientAuth.JWKSTimeout,
		MaxBytes:                      int64(cfg.ClientAuth.JWKSMaxBytes),
		TTL:                           cfg.ClientAuth.JWKSCacheTTL,
		InsecureAllowPrivateAddresses: cfg.ClientAuth.InsecureJWKSPrivateAddresses,
		InsecureAllowHTTPLoopback:     cfg.ClientAuth.InsecureJWKSHTTPLoopback,
		Logger:                        log,
		Now:                           now,
	})
	if err != nil {
		return nil, fmt.Errorf("jwks fetcher: %w", err)
	}
	var pool *x509.CertPool
	if f := cfg.ClientAuth.CAFile; f != "" {
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("client_auth.ca_file: %w", err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client_auth.ca_file: %s holds no PEM certificate", f)
		}
	}
	base := strings.TrimRight(cfg.Issuer, "/")
	audiences := []string{base + discovery.PathToken, base + discovery.PathPAR, cfg.Issuer}
	if m := cfg.MTLSBaseURL(); m != "" { // the mTLS aliases (RFC 8705 §5)
		audiences = append(audiences, m+discovery.PathToken, m+discovery.PathPAR)
	}
	var clients storage.Clients = store
	if ttl := cfg.ClientAuth.CacheTTL; ttl > 0 {
		clients = clientauth.NewClientCache(store, ttl, now)
	}
	return &clientauth.Authenticator{
		Clients:   clients,
		Audiences: audiences,
		Replay:    replays,
		JWKS:      fetcher,
		ClientCAs: pool,
		Now:       now,
	}, nil
}

// backendIssuer mints client_credentials access tokens with their own short
// lifetime (tokens.backend_access_token_ttl), signed by the same keys.
func backendIssuer(cfg *config.Config, km *keys.Manager, now func() time.Time) (*token.Issuer, error) {
	iss, err := token.NewIssuer(token.Options{Signer: km, Verifier: km, Issuer: cfg.Issuer,
		AccessTokenTTL: cfg.Tokens.BackendAccessTokenTTL, IDTokenTTL: cfg.Tokens.IDTokenTTL, Now: now})
	if err != nil {
		return nil, fmt.Errorf("backend token issuer: %w", err)
	}
	return iss, nil
}

// mountPAR serves POST /par (RFC 9126) with the /authorize validation.
func mountPAR(mux *http.ServeMux, cfg *config.Config, store storage.Store, auth *clientauth.Authenticator,
	validator par.Validator, proxies mtls.TrustedProxies, auditor audit.Auditor, log *slog.Logger, now func() time.Time) error {
	h, err := par.New(par.Options{ClientAuth: auth, Requests: store, Validator: validator, TTL: cfg.PAR.TTL,
		TrustedProxies: proxies, Auditor: auditor, Logger: log, Now: now})
	if err != nil {
		return fmt.Errorf("par: %w", err)
	}
	h.Register(mux)
	return nil
}

// discoveryFeatures switches on the discovery metadata of what this
// configuration serves.
func discoveryFeatures(cfg *config.Config, o discovery.Options) discovery.Options {
	o.PrivateKeyJWT = true
	o.AssertionAlgs = nil // exactly what clientauth verifies
	for _, a := range clientauth.AssertionAlgs {
		o.AssertionAlgs = append(o.AssertionAlgs, string(a))
	}
	o.ClientCredentials = true
	o.PAR = true
	o.RequirePAR = cfg.PAR.Required
	// DPoP is always on (dpop.algs narrows the algorithms); client
	// certificates reach the server on its mTLS listener (mtls.addr, the
	// mtls_endpoint_aliases) or through a trusted TLS-terminating proxy.
	o.DPoPAlgs = (&dpop.Verifier{Algs: cfg.DPoPAlgs()}).AllowedAlgs()
	o.MTLSIssuer = cfg.MTLSBaseURL()
	if cfg.MTLS.ClientCertHeader != "" || o.MTLSIssuer != "" {
		o.CertificateBoundTokens = true
		// self_signed_tls_client_auth needs only the client's registered
		// keys; tls_client_auth also needs the client CA (client_auth.ca_file).
		o.SelfSignedTLSClientAuth = true
		o.TLSClientAuth = cfg.ClientAuth.CAFile != ""
	}
	return o
}
