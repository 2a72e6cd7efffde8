// Package discovery publishes fhirgate's metadata documents: the SMART App
// Launch configuration (/.well-known/smart-configuration, also under each
// FHIR base on the issuer's origin), OpenID Connect Discovery
// (/.well-known/openid-configuration), OAuth 2.0 Authorization Server
// Metadata (RFC 8414), the JWK Set (/jwks) and the SMART style document
// (/smart-style.json). The documents are built once from Options; only the
// JWK Set is read on every request, so a key rotation shows at once.
package discovery

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Endpoint paths, fixed for every fhirgate deployment (relative to the issuer).
const (
	PathAuthorize    = "/authorize"
	PathToken        = "/token"
	PathUserinfo     = "/userinfo"
	PathJWKS         = "/jwks"
	PathRegister     = "/register"
	PathStyle        = "/smart-style.json"
	PathSMARTConfig  = "/.well-known/smart-configuration"
	PathOpenIDConfig = "/.well-known/openid-configuration"
	PathOAuthMeta    = "/.well-known/oauth-authorization-server"
)

// ErrConfig reports bad Options.
var ErrConfig = errors.New("discovery: bad configuration")

// KeySource supplies the public signing keys (implemented by *keys.Manager).
type KeySource interface {
	JWKS() jose.JSONWebKeySet
}

// Options configures the discovery handler.
type Options struct {
	// Issuer is the authorization server's issuer identifier: an absolute
	// http(s) URL without query or fragment. Endpoint URLs are built from it.
	Issuer string
	// FHIRBases are the FHIR base URLs apps send as aud. Each one on the
	// issuer's origin also serves {base}/.well-known/smart-configuration.
	FHIRBases []string
	Keys      KeySource
	// Capabilities defaults to DefaultCapabilities().
	Capabilities []string
	// ScopesSupported defaults to DefaultScopes().
	ScopesSupported []string
	// ClaimsSupported (OIDC) defaults to DefaultClaims().
	ClaimsSupported []string
	// Style is the SMART style document; zero means DefaultStyle().
	Style  Style
	Logger *slog.Logger
	Now    func() time.Time
}

// DefaultCapabilities is the honest SMART capability list of this release:
// every entry works end to end.
func DefaultCapabilities() []string {
	return []string{
		"launch-ehr",
		"launch-standalone",
		"authorize-post",
		"client-public",
		"client-confidential-symmetric",
		"sso-openid-connect",
		"context-banner",
		"context-style",
		"context-ehr-patient",
		"context-ehr-encounter",
		"context-standalone-patient",
		"permission-offline",
		"permission-patient",
		"permission-user",
		"permission-v1",
		"permission-v2",
	}
}

// DefaultScopes lists scopes the server supports (SMART: it SHALL support
// every scope it lists).
func DefaultScopes() []string {
	return []string{
		"openid", "fhirUser", "profile",
		"launch", "launch/patient", "launch/encounter",
		"offline_access",
		"patient/*.rs", "patient/*.cruds", "user/*.rs", "user/*.cruds",
		"patient/*.read", "patient/*.write", "user/*.read", "user/*.write",
	}
}

// DefaultClaims lists the id_token and userinfo claims the server issues.
func DefaultClaims() []string {
	return []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "fhirUser", "name", "preferred_username"}
}

// Style is a SMART style document (App Launch "Styling", context-style).
type Style struct {
	ColorBackground    string `json:"color_background"`
	ColorError         string `json:"color_error"`
	ColorHighlight     string `json:"color_highlight"`
	ColorModalBackdrop string `json:"color_modal_backdrop"`
	ColorSuccess       string `json:"color_success"`
	ColorText          string `json:"color_text"`
	DimBorderRadius    string `json:"dim_border_radius"`
	DimFontSize        string `json:"dim_font_size"`
	DimSpacingSize     string `json:"dim_spacing_size"`
	FontFamilyBody     string `json:"font_family_body"`
	FontFamilyHeading  string `json:"font_family_heading"`
}

// DefaultStyle is fhirgate's own neutral style.
func DefaultStyle() Style {
	return Style{
		ColorBackground:    "#f7f7f5",
		ColorError:         "#b3261e",
		ColorHighlight:     "#1f6feb",
		ColorModalBackdrop: "rgba(0, 0, 0, 0.4)",
		ColorSuccess:       "#2e7d32",
		ColorText:          "#1c1c1c",
		DimBorderRadius:    "4px",
		DimFontSize:        "14px",
		DimSpacingSize:     "16px",
		FontFamilyBody:     "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
		FontFamilyHeading:  "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
	}
}

// Endpoints are the absolute URLs of the server's endpoints.
type Endpoints struct {
	Issuer        string
	Authorization string
	Token         string
	Userinfo      string
	JWKS          string
	Registration  string
	Style         string
}

// EndpointsFor builds the endpoint URLs for issuer.
func EndpointsFor(issuer string) Endpoints {
	base := strings.TrimRight(issuer, "/")
	return Endpoints{
		Issuer:        issuer,
		Authorization: base + PathAuthorize,
		Token:         base + PathToken,
		Userinfo:      base + PathUserinfo,
		JWKS:          base + PathJWKS,
		Registration:  base + PathRegister,
		Style:         base + PathStyle,
	}
}

// SMARTConfiguration is the /.well-known/smart-configuration document
// (SMART App Launch 2.2 conformance.html#metadata).
type SMARTConfiguration struct {
	Issuer                            string   `json:"issuer"`
	JWKSURI                           string   `json:"jwks_uri"`
	AuthorizationEndpoint             string   `json:"authorization_endpoint"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	UserinfoEndpoint                  string   `json:"userinfo_endpoint"`
	RegistrationEndpoint              string   `json:"registration_endpoint"`
	GrantTypesSupported               []string `json:"grant_types_supported"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	ScopesSupported                   []string `json:"scopes_supported"`
	ResponseTypesSupported            []string `json:"response_types_supported"`
	Capabilities                      []string `json:"capabilities"`
	CodeChallengeMethodsSupported     []string `json:"code_challenge_methods_supported"`
	AuthorizationResponseISSSupported bool     `json:"authorization_response_iss_parameter_supported"`
}

// OpenIDConfiguration is the OpenID Connect Discovery 1.0 provider metadata.
type OpenIDConfiguration struct {
	Issuer                            string   `json:"issuer"`
	AuthorizationEndpoint             string   `json:"authorization_endpoint"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	UserinfoEndpoint                  string   `json:"userinfo_endpoint"`
	JWKSURI                           string   `json:"jwks_uri"`
	RegistrationEndpoint              string   `json:"registration_endpoint"`
	ScopesSupported                   []string `json:"scopes_supported"`
	ResponseTypesSupported            []string `json:"response_types_supported"`
	ResponseModesSupported            []string `json:"response_modes_supported"`
	GrantTypesSupported               []string `json:"grant_types_supported"`
	SubjectTypesSupported             []string `json:"subject_types_supported"`
	IDTokenSigningAlgValuesSupported  []string `json:"id_token_signing_alg_values_supported"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	ClaimsSupported                   []string `json:"claims_supported"`
	CodeChallengeMethodsSupported     []string `json:"code_challenge_methods_supported"`
	ClaimsParameterSupported          bool     `json:"claims_parameter_supported"`
	RequestParameterSupported         bool     `json:"request_parameter_supported"`
	RequestURIParameterSupported      bool     `json:"request_uri_parameter_supported"`
	AuthorizationResponseISSSupported bool     `json:"authorization_response_iss_parameter_supported"`
}

// ServerMetadata is the RFC 8414 authorization server metadata.
type ServerMetadata struct {
	Issuer                            string   `json:"issuer"`
	AuthorizationEndpoint             string   `json:"authorization_endpoint"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	JWKSURI                           string   `json:"jwks_uri"`
	RegistrationEndpoint              string   `json:"registration_endpoint"`
	ScopesSupported                   []string `json:"scopes_supported"`
	ResponseTypesSupported            []string `json:"response_types_supported"`
	ResponseModesSupported            []string `json:"response_modes_supported"`
	GrantTypesSupported               []string `json:"grant_types_supported"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	CodeChallengeMethodsSupported     []string `json:"code_challenge_methods_supported"`
	AuthorizationResponseISSSupported bool     `json:"authorization_response_iss_parameter_supported"`
}

// Protocol facts of this release.
func grantTypes() []string    { return []string{"authorization_code", "refresh_token"} }
func authMethods() []string   { return []string{"none", "client_secret_basic", "client_secret_post"} }
func responseTypes() []string { return []string{"code"} }
func responseModes() []string { return []string{"query"} }
func pkceMethods() []string   { return []string{"S256"} }
func idTokenAlgs() []string   { return []string{"RS256", "ES256"} }

// documents holds the built metadata and the paths they are served under.
type documents struct {
	endpoints  Endpoints
	smart      SMARTConfiguration
	openid     OpenIDConfiguration
	oauth      ServerMetadata
	style      Style
	smartPaths []string // every path serving the SMART configuration
	oidcPath   string
	oauthPaths []string
}

func buildDocuments(opts *Options) (*documents, error) {
	iss, err := parseHTTPURL(opts.Issuer)
	if err != nil {
		return nil, fmt.Errorf("%w: Issuer: %w", ErrConfig, err)
	}
	ep := EndpointsFor(opts.Issuer)
	caps := opts.Capabilities
	if caps == nil {
		caps = DefaultCapabilities()
	}
	if err := checkList("Capabilities", caps); err != nil {
		return nil, err
	}
	scopes := opts.ScopesSupported
	if scopes == nil {
		scopes = DefaultScopes()
	}
	if err := checkList("ScopesSupported", scopes); err != nil {
		return nil, err
	}
	claims := opts.ClaimsSupported
	if claims == nil {
		claims = DefaultClaims()
	}
	if err := checkList("ClaimsSupported", claims); err != nil {
		return nil, err
	}
	style := opts.Style
	if style == (Style{}) {
		style = DefaultStyle()
	}

	d := &documents{endpoints: ep, style: style}
	d.smart = SMARTConfiguration{
		Issuer:                            ep.Issuer,
		JWKSURI:                           ep.JWKS,
		AuthorizationEndpoint:             ep.Authorization,
		TokenEndpoint:                     ep.Token,
		UserinfoEndpoint:                  ep.Userinfo,
		RegistrationEndpoint:              ep.Registration,
		GrantTypesSupported:               grantTypes(),
		TokenEndpointAuthMethodsSupported: authMethods(),
		ScopesSupported:                   slices.Clone(scopes),
		ResponseTypesSupported:            responseTypes(),
		Capabilities:                      slices.Clone(caps),
		CodeChallengeMethodsSupported:     pkceMethods(),
		AuthorizationResponseISSSupported: true,
	}
	d.openid = OpenIDConfiguration{
		Issuer:                            ep.Issuer,
		AuthorizationEndpoint:             ep.Authorization,
		TokenEndpoint:                     ep.Token,
		UserinfoEndpoint:                  ep.Userinfo,
		JWKSURI:                           ep.JWKS,
		RegistrationEndpoint:              ep.Registration,
		ScopesSupported:                   slices.Clone(scopes),
		ResponseTypesSupported:            responseTypes(),
		ResponseModesSupported:            responseModes(),
		GrantTypesSupported:               grantTypes(),
		SubjectTypesSupported:             []string{"public"},
		IDTokenSigningAlgValuesSupported:  idTokenAlgs(),
		TokenEndpointAuthMethodsSupported: authMethods(),
		ClaimsSupported:                   slices.Clone(claims),
		CodeChallengeMethodsSupported:     pkceMethods(),
		AuthorizationResponseISSSupported: true,
	}
	d.oauth = ServerMetadata{
		Issuer:                            ep.Issuer,
		AuthorizationEndpoint:             ep.Authorization,
		TokenEndpoint:                     ep.Token,
		JWKSURI:                           ep.JWKS,
		RegistrationEndpoint:              ep.Registration,
		ScopesSupported:                   slices.Clone(scopes),
		ResponseTypesSupported:            responseTypes(),
		ResponseModesSupported:            responseModes(),
		GrantTypesSupported:               grantTypes(),
		TokenEndpointAuthMethodsSupported: authMethods(),
		CodeChallengeMethodsSupported:     pkceMethods(),
		AuthorizationResponseISSSupported: true,
	}

	// Paths. The issuer's own path prefix (if any) is honoured for the OIDC
	// document (appended, OIDC Discovery §4) and RFC 8414 (inserted, §3).
	issPath := strings.TrimRight(iss.Path, "/")
	if err := checkPath(issPath); err != nil {
		return nil, fmt.Errorf("%w: Issuer path: %w", ErrConfig, err)
	}
	d.oidcPath = issPath + PathOpenIDConfig
	d.oauthPaths = uniq([]string{PathOAuthMeta + issPath, issPath + PathOAuthMeta})
	smart := []string{PathSMARTConfig, issPath + PathSMARTConfig}
	for _, b := range opts.FHIRBases {
		u, err := parseHTTPURL(b)
		if err != nil {
			return nil, fmt.Errorf("%w: FHIR base %q: %w", ErrConfig, b, err)
		}
		if !sameOrigin(iss, u) {
			opts.Logger.Info("FHIR base is on another origin; it must serve its own smart-configuration", slog.String("fhir_base", b))
			continue
		}
		p := strings.TrimRight(u.Path, "/")
		if err := checkPath(p); err != nil {
			return nil, fmt.Errorf("%w: FHIR base %q: %w", ErrConfig, b, err)
		}
		smart = append(smart, p+PathSMARTConfig)
	}
	d.smartPaths = uniq(smart)
	return d, nil
}

func parseHTTPURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("%q is not an absolute http(s) URL", s)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("%q must not carry a query, fragment or user info", s)
	}
	return u, nil
}

// sameOrigin compares scheme, host and effective port.
func sameOrigin(a, b *url.URL) bool {
	return strings.EqualFold(a.Scheme, b.Scheme) &&
		strings.EqualFold(a.Hostname(), b.Hostname()) &&
		effectivePort(a) == effectivePort(b)
}

func effectivePort(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if strings.EqualFold(u.Scheme, "https") {
		return "443"
	}
	return "80"
}

// checkPath accepts plain URL paths that can be used in a ServeMux pattern.
func checkPath(p string) error {
	for _, r := range p {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/-._~", r)
		if !ok {
			return fmt.Errorf("path %q has a character other than letters, digits and /-._~", p)
		}
	}
	if strings.Contains(p, "//") || strings.Contains(p, "/./") || strings.Contains(p, "/../") || strings.HasSuffix(p, "/.") || strings.HasSuffix(p, "/..") {
		return fmt.Errorf("path %q is not clean", p)
	}
	return nil
}

func checkList(name string, l []string) error {
	if len(l) == 0 {
		return fmt.Errorf("%w: %s is empty", ErrConfig, name)
	}
	seen := map[string]bool{}
	for _, s := range l {
		if s == "" || strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			return fmt.Errorf("%w: %s has an empty or blank-containing entry %q", ErrConfig, name, s)
		}
		if seen[s] {
			return fmt.Errorf("%w: %s lists %q twice", ErrConfig, name, s)
		}
		seen[s] = true
	}
	return nil
}

func uniq(l []string) []string {
	var out []string
	for _, s := range l {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}
