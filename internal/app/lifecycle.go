package app

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/clientauth"
	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/discovery"
	"github.com/fhirgate/fhirgate/internal/introspect"
	"github.com/fhirgate/fhirgate/internal/mtls"
	"github.com/fhirgate/fhirgate/internal/revocation"
	"github.com/fhirgate/fhirgate/internal/revoke"
	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/token"
)

// lifecycleAuth returns the client authenticator for /revoke and
// /introspect: auth (the one /token uses) with those endpoints added to the
// accepted client-assertion audiences, or client secrets only when auth is nil.
func lifecycleAuth(cfg *config.Config, store storage.Store, auth *clientauth.Authenticator) clientauth.Authenticator {
	if auth == nil {
		return clientauth.Authenticator{Clients: store}
	}
	a := *auth
	if len(a.Audiences) > 0 {
		issuer := strings.TrimRight(cfg.Issuer, "/")
		a.Audiences = append(append([]string(nil), a.Audiences...),
			issuer+discovery.PathRevoke, issuer+discovery.PathIntrospect)
		if m := cfg.MTLSBaseURL(); m != "" {
			a.Audiences = append(a.Audiences, m+discovery.PathRevoke, m+discovery.PathIntrospect)
		}
	}
	return a
}

// mountLifecycle mounts /revoke (wrapped by wrap, the CORS policy: browser
// apps revoke at logout) and /introspect.
func mountLifecycle(mux *http.ServeMux, cfg *config.Config, store storage.Store, tokens *token.Issuer,
	auth *clientauth.Authenticator, proxies mtls.TrustedProxies, wrap func(http.Handler) http.Handler,
	auditor audit.Auditor, log *slog.Logger, now func() time.Time) error {
	authn := lifecycleAuth(cfg, store, auth)
	rv, err := revoke.New(revoke.Options{
		Authenticator: authn, Tokens: tokens, Store: store, TrustedProxies: proxies,
		Auditor: auditor, Logger: log, Now: now,
	})
	if err != nil {
		return fmt.Errorf("revocation endpoint: %w", err)
	}
	rv.RegisterWith(mux, wrap)
	in, err := introspect.New(introspect.Options{
		Authenticator: authn, Tokens: tokens, Store: store, Sessions: store, TrustedProxies: proxies,
		IssuerURL: cfg.Issuer, Auditor: auditor, Logger: log, Now: now,
	})
	if err != nil {
		return fmt.Errorf("introspection endpoint: %w", err)
	}
	in.Register(mux)
	return nil
}

// revocationChecker is the gateway's view of the revocation list in the
// store, refreshed every revocation.poll_interval and failing closed past
// revocation.max_staleness.
func revocationChecker(cfg *config.Config, store storage.Store, log *slog.Logger, now func() time.Time) (*revocation.Checker, error) {
	c, err := revocation.New(revocation.Options{
		Source: store, Interval: cfg.Revocation.PollInterval, MaxStaleness: cfg.Revocation.MaxStaleness,
		Logger: log, Now: now,
	})
	if err != nil {
		return nil, fmt.Errorf("revocation: %w", err)
	}
	return c, nil
}
