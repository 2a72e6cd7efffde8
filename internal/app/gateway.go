package app

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/discovery"
	"github.com/fhirgate/fhirgate/internal/gateway"
	"github.com/fhirgate/fhirgate/internal/keys"
	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/token"
	"github.com/fhirgate/fhirgate/internal/upstream"
)

// upstreamConfigs turns the gateway keys into upstream configurations: the
// single gateway.upstream (prefix "/") and every upstreams entry.
func upstreamConfigs(cfg *config.Config) ([]upstream.Config, error) {
	var out []upstream.Config
	if cfg.Gateway.Upstream != "" {
		auth, err := upstream.ParseAuthFlag(cfg.Gateway.UpstreamAuth)
		if err != nil {
			return nil, fmt.Errorf("gateway.upstream_auth: %w", err)
		}
		out = append(out, upstream.Config{Prefix: "/", URL: cfg.Gateway.Upstream, Auth: auth})
	}
	for _, u := range cfg.Upstreams {
		typ := upstream.AuthType(u.Auth.Type)
		if typ == "" {
			typ = upstream.AuthNone
		}
		out = append(out, upstream.Config{
			Prefix: u.Prefix, URL: u.URL, ResponseHeaderTimeout: u.ResponseTimeout,
			Auth: upstream.AuthConfig{
				Type: typ, Username: u.Auth.Username, Password: u.Auth.Password,
				HeaderName: u.Auth.Header, HeaderValue: u.Auth.Value,
				TokenURL: u.Auth.TokenURL, ClientID: u.Auth.ClientID, ClientSecret: u.Auth.ClientSecret,
				Scope: u.Auth.Scope, Audience: u.Auth.Audience,
				CertFile: u.Auth.CertFile, KeyFile: u.Auth.KeyFile, CAFile: u.Auth.CAFile,
			},
		})
	}
	return out, nil
}

// buildGateway builds the FHIR gateway in front of the configured
// upstreams, or returns nil when none is configured. tokens verifies access
// tokens (the in-process issuer, or the remote issuer's keys); issuer is the
// authorization server advertised in metadata; smart is the SMART
// configuration served under the FHIR base.
func buildGateway(cfg *config.Config, store storage.Store, km *keys.Manager, tokens gateway.TokenParser, issuer string,
	smart func() ([]byte, error), origins gateway.Origins, bnd *binding, auditor audit.Auditor, log *slog.Logger, now func() time.Time, prot *protection) (*gateway.Handler, error) {
	if !cfg.GatewayEnabled() {
		return nil, nil
	}
	confs, err := upstreamConfigs(cfg)
	if err != nil {
		return nil, err
	}
	var ups []*upstream.Upstream
	for i, c := range confs {
		up, err := upstream.Build(c, upstream.Options{Logger: log, Now: now})
		if err != nil {
			return nil, fmt.Errorf("upstream %d (%s): %w", i, c.URL, err)
		}
		if cfg.Gateway.IdentityHeader {
			if up.Identity, err = upstream.NewIdentity(upstream.IdentityOptions{
				Signer: km, Issuer: cfg.FHIRBase, Audience: strings.TrimRight(c.URL, "/"), Now: now,
			}); err != nil {
				return nil, fmt.Errorf("upstream %d identity: %w", i, err)
			}
		}
		up.Transport = prot.upstreamTransport(c.Prefix, up.Transport)
		ups = append(ups, up)
	}
	revs, err := gateway.NewFamilyRevocations(store, 0, 0, now) // Leaked: revokes exposed tokens' families
	if err != nil {
		return nil, err
	}
	checker, err := revocationChecker(cfg, store, log, now)
	if err != nil {
		return nil, err
	}
	issuer = strings.TrimRight(issuer, "/")
	gw, err := gateway.New(gateway.Options{
		BaseURL: cfg.FHIRBase, Upstreams: ups, Tokens: tokens, Revocations: checker, Leaked: revs,
		CORS: origins, DPoP: bnd.gatewayDPoP(), TrustedProxies: bnd.proxies, Admit: prot.gatewayAdmit(),
		OAuth: gateway.OAuthURIs{
			Authorize: issuer + discovery.PathAuthorize, Token: issuer + discovery.PathToken,
			Register: issuer + discovery.PathRegister,
			Revoke:   issuer + discovery.PathRevoke, Introspect: issuer + discovery.PathIntrospect,
		},
		SMARTConfiguration: smart,
		UpstreamTimeout:    cfg.Gateway.UpstreamTimeout,
		Auditor:            auditor, Logger: log, Now: now,
	})
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	return gw, nil
}

// mountGateway builds the gateway, when configured, and mounts it at the
// FHIR base path.
func mountGateway(mux *http.ServeMux, cfg *config.Config, store storage.Store, km *keys.Manager, tokens *token.Issuer,
	disc *discovery.Handler, origins gateway.Origins, bnd *binding, auditor audit.Auditor, log *slog.Logger, now func() time.Time, prot *protection) error {
	smart, err := json.Marshal(disc.SMARTConfiguration())
	if err != nil {
		return fmt.Errorf("smart configuration: %w", err)
	}
	gw, err := buildGateway(cfg, store, km, tokens, cfg.Issuer, func() ([]byte, error) { return smart, nil }, origins, bnd, auditor, log, now, prot)
	if err != nil || gw == nil {
		return err
	}
	gw.Register(mux)
	return nil
}
