package app

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/internal/adminapi"
	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/authorize"
	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/cors"
	"github.com/fhirgate/fhirgate/internal/discovery"
	"github.com/fhirgate/fhirgate/internal/grant"
	"github.com/fhirgate/fhirgate/internal/keys"
	"github.com/fhirgate/fhirgate/internal/launch"
	"github.com/fhirgate/fhirgate/internal/registration"
	"github.com/fhirgate/fhirgate/internal/session"
	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/token"
	"github.com/fhirgate/fhirgate/internal/userinfo"
)

// buildMux wires every feature handler onto one mux. CORS wraps /token and
// /userinfo (discovery and JWKS answer CORS themselves), never /authorize or
// the pages.
func buildMux(cfg *config.Config, store storage.Store, km *keys.Manager, tokens *token.Issuer, bnd *binding,
	auditor audit.Auditor, log *slog.Logger, now func() time.Time, prot *protection, deps peopleDeps) (*http.ServeMux, error) {
	if cfg.GatewayOnly() {
		return buildGatewayOnlyMux(cfg, store, km, bnd, auditor, log, now, prot)
	}
	mux := http.NewServeMux()

	policy, err := cors.New(cors.Options{Clients: store, Logger: log, Now: now})
	if err != nil {
		return nil, fmt.Errorf("cors: %w", err)
	}

	throttle := session.NewThrottle(session.ThrottleOptions{
		MaxPerAccount: cfg.Login.MaxFailures,
		LockFor:       cfg.Login.Lockout,
	})
	authn, err := session.NewAuthenticator(session.AuthenticatorOptions{
		Users: store, Throttle: throttle, Auditor: auditor, Logger: log, Now: now,
	})
	if err != nil {
		return nil, fmt.Errorf("authenticator: %w", err)
	}
	sessions, err := session.New(session.Options{Store: store, SecureCookies: secureCookies(cfg), Logger: log, Now: now})
	if err != nil {
		return nil, fmt.Errorf("sessions: %w", err)
	}

	disc, err := discovery.New(discoveryFeatures(cfg, discovery.Options{
		Issuer: cfg.Issuer, FHIRBases: []string{cfg.FHIRBase}, Keys: km, Logger: log, Now: now,
		Revocation: true, Introspection: true,
	}))
	if err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	disc.Register(mux)

	ppl, err := newPeople(cfg, store, km, sessions, authn, deps, auditor, log, now)
	if err != nil {
		return nil, err
	}
	ppl.register(mux) // second factor, account pages, admin console

	authz, err := authorize.New(authorize.Options{
		Issuer: cfg.Issuer, FHIRBases: []string{cfg.FHIRBase},
		Clients: store, AuthRequests: store, AuthCodes: store, Launches: store, Consents: store,
		Users: store, Patients: store, Sessions: sessions, Authenticator: authn,
		MFA: ppl.mfa, RequireMFAFor: ppl.require, Suspended: prot.suspended(),
		RoleScopes: map[storage.Role]string{
			storage.RolePatient:   cfg.Roles.Patient,
			storage.RoleClinician: cfg.Roles.Clinician,
			storage.RoleAdmin:     cfg.Roles.Admin,
		},
		CodeTTL: cfg.Tokens.CodeTTL, SecureCookies: secureCookies(cfg), RequirePAR: cfg.PAR.Required,
		Auditor: auditor, Logger: log, Now: now,
	})
	if err != nil {
		return nil, fmt.Errorf("authorize: %w", err)
	}
	authz.Register(mux) // also serves the pages' static assets (web.Register)

	// Sender constraints (bnd: DPoP, client certificates) and the replay
	// cache shared by DPoP proofs and client assertions come from New.
	// Client authentication for /token, /par, /revoke and /introspect.
	clientAuth, err := buildClientAuth(cfg, store, bnd.replay, log, now)
	if err != nil {
		return nil, err
	}
	backendTokens, err := backendIssuer(cfg, km, now)
	if err != nil {
		return nil, err
	}
	if err := mountPAR(mux, cfg, store, clientAuth, authz, bnd.proxies, auditor, log, now); err != nil {
		return nil, err
	}

	reg, err := registration.New(registration.Options{
		Issuer: cfg.Issuer, Clients: store, RegistrationTokens: store, Auditor: auditor, Logger: log, Now: now,
		AllowBackendClients: cfg.Registration.AllowBackendClients,
	})
	if err != nil {
		return nil, fmt.Errorf("registration: %w", err)
	}
	reg.Register(mux)

	tokenH, err := grant.New(grant.Options{
		Clients: store, Codes: store, Tokens: store, Issuer: tokens,
		IssuerURL: cfg.Issuer, FHIRBase: cfg.FHIRBase,
		RefreshIdle: cfg.Tokens.RefreshIdle, RefreshAbsolute: cfg.Tokens.RefreshAbsolute,
		RefreshRetryWindow: cfg.Tokens.RefreshRetryWindow, Sessions: store,
		ClientAuth: clientAuth, BackendIssuer: backendTokens,
		DPoP: bnd.dpop, TrustedProxies: bnd.proxies,
		RequireBoundConfidential: cfg.SenderConstraint.RequireConfidential,
		RequireBoundSystem:       cfg.SenderConstraint.RequireSystem,
		Suspended:                prot.suspended(),
		Auditor:                  auditor, Logger: log, Now: now,
	})
	if err != nil {
		return nil, fmt.Errorf("token endpoint: %w", err)
	}
	tokenH.RegisterWith(mux, prot.tokenWrap(policy.Handler)) // rate limits inside CORS
	if err := mountLifecycle(mux, cfg, store, tokens, clientAuth, bnd.proxies, policy.Handler, auditor, log, now); err != nil {
		return nil, err
	}

	uiH, err := userinfo.New(userinfo.Options{
		Issuer: tokens, Tokens: store, Users: store, FHIRBase: cfg.FHIRBase,
		DPoP: bnd.dpop, URL: strings.TrimRight(cfg.Issuer, "/") + "/userinfo", TrustedProxies: bnd.proxies,
		Auditor: auditor, Logger: log, Now: now,
	})
	if err != nil {
		return nil, fmt.Errorf("userinfo: %w", err)
	}
	uiH.RegisterWith(mux, policy.Handler)

	if err := prot.mountLaunch(store, auditor, log, now); err != nil {
		return nil, err
	}

	if err := mountGateway(mux, cfg, store, km, tokens, disc, policy, bnd, auditor, log, now, prot); err != nil {
		return nil, err
	}

	return mux, nil
}

// mountLaunch serves POST /admin/launch (an EHR creating a launch context)
// on the admin API, behind its admin-token or client-certificate
// authentication. Without admin.addr there is no HTTP route: use
// `fhirgate launch create`. It is never on the public listener.
func (p *protection) mountLaunch(store storage.Launches, auditor audit.Auditor, log *slog.Logger, now func() time.Time) error {
	if p == nil || p.admin == nil {
		return nil
	}
	h, err := launch.New(launch.Options{Launches: store, Principal: adminPrincipal, Auditor: auditor, Logger: log, Now: now})
	if err != nil {
		return fmt.Errorf("admin launch: %w", err)
	}
	p.admin.Handle(launch.Pattern, h)
	return nil
}

// adminPrincipal is who the admin API admitted r as.
func adminPrincipal(r *http.Request) (string, bool) {
	pr, ok := adminapi.PrincipalFrom(r.Context())
	return string(pr), ok
}
