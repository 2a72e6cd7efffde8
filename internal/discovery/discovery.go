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
	PathPAR          = "/par"
	PathRevoke       = "/revoke"
	PathIntrospect   = "/introspect"
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
	// ACRValues (OIDC acr_values_supported) defaults to DefaultACRValues().
	ACRValues []string
	// Style is the SMART style document; zero means DefaultStyle().
	Style Style

	// Optional features, advertised only when switched on (every document
	// says the same, since client libraries read only one of them).

	// PrivateKeyJWT: private_key_jwt client authentication works; adds the
	// method, its signing algorithms and (with default capabilities)
	// client-confidential-asymmetric.
	PrivateKeyJWT bool
	// AssertionAlgs are the client assertion algorithms; DefaultAssertionAlgs when nil.
	AssertionAlgs []string
	// ClientCredentials: SMART Backend Services (client_credentials with
	// system/ scopes; the default scope list gains system/ scopes).
	ClientCredentials bool
	// PAR: /par is served. RequirePAR: every authorization request must be pushed.
	PAR        bool
	RequirePAR bool
	// MTLSIssuer is the base URL of the mTLS endpoints, when there are
	// any: adds self_signed_tls_client_auth, mtls_endpoint_aliases and
	// certificate-bound access tokens.
	MTLSIssuer string
	// TLSClientAuth (it needs a client CA), SelfSignedTLSClientAuth and
	// CertificateBoundTokens advertise the certificate methods and
	// certificate-bound tokens; MTLSIssuer implies the last two.
	TLSClientAuth           bool
	SelfSignedTLSClientAuth bool
	CertificateBoundTokens  bool
	// DPoPAlgs are the DPoP proof algorithms accepted; nil means DPoP is off.
	DPoPAlgs []string
	// Revocation and Introspection: /revoke and /introspect are served.
	Revocation    bool
	Introspection bool

	Logger *slog.Logger
	Now    func() time.Time
}

// DefaultAssertionAlgs are the client assertion algorithms advertised
// (clientauth.AssertionAlgs, strongest SMART-required ones first).
func DefaultAssertionAlgs() []string {
	return []string{"RS384", "ES384", "RS256", "ES256", "PS384", "PS256", "RS512", "ES512", "PS512"}
}

// Extensions is the metadata shared by all three documents for PAR, DPoP,
// mTLS, asymmetric client authentication, revocation and introspection
// (RFC 9126 §5, RFC 9449 §5.1, RFC 8705 §3.3 and §5, RFC 8414 §2). Its
// fields are inlined in each document.
type Extensions struct {
	TokenEndpointAuthSigningAlgValuesSupported []string          `json:"token_endpoint_auth_signing_alg_values_supported,omitempty"`
	PushedAuthorizationRequestEndpoint         string            `json:"pushed_authorization_request_endpoint,omitempty"`
	RequirePushedAuthorizationRequests         bool              `json:"require_pushed_authorization_requests"`
	DPoPSigningAlgValuesSupported              []string          `json:"dpop_signing_alg_values_supported,omitempty"`
	TLSClientCertificateBoundAccessTokens      bool              `json:"tls_client_certificate_bound_access_tokens,omitempty"`
	MTLSEndpointAliases                        map[string]string `json:"mtls_endpoint_aliases,omitempty"`
	RevocationEndpoint                         string            `json:"revocation_endpoint,omitempty"`
	RevocationEndpointAuthMethodsSupported     []string          `json:"revocation_endpoint_auth_methods_supported,omitempty"`
	IntrospectionEndpoint                      string            `json:"introspection_endpoint,omitempty"`
	IntrospectionEndpointAuthMethodsSupported  []string          `json:"introspection_endpoint_auth_methods_supported,omitempty"`
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
	return []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "amr", "acr", "fhirUser", "name", "preferred_username"}
}

// DefaultACRValues are the authentication context classes id_tokens carry
// in acr: password only, and password plus a one-time code (the values of
// session.ACRPassword and session.ACRMultiFactor; a test keeps them equal).
func DefaultACRValues() []string {
	return []string{"urn:fhirgate:acr:1fa", "urn:fhirgate:acr:2fa"}
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
	Extensions
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
	ACRValuesSupported                []string `json:"acr_values_supported"`
	CodeChallengeMethodsSupported     []string `json:"code_challenge_methods_supported"`
	ClaimsParameterSupported          bool     `json:"claims_parameter_supported"`
	RequestParameterSupported         bool     `json:"request_parameter_supported"`
	RequestURIParameterSupported      bool     `json:"request_uri_parameter_supported"`
	AuthorizationResponseISSSupported bool     `json:"authorization_response_iss_parameter_supported"`
	Extensions
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
	Extensions
}

// grantTypes and authMethods are the grant types and client authentication
// methods the options switch on.
func grantTypes(o *Options) []string {
	g := []string{"authorization_code", "refresh_token"}
	if o.ClientCredentials {
		g = append(g, "client_credentials")
	}
	return g
}

func authMethods(o *Options) []string {
	m := []string{"none", "client_secret_basic", "client_secret_post"}
	if o.PrivateKeyJWT {
		m = append(m, "private_key_jwt")
	}
	if o.TLSClientAuth {
		m = append(m, "tls_client_auth")
	}
	if o.MTLSIssuer != "" || o.SelfSignedTLSClientAuth {
		m = append(m, "self_signed_tls_client_auth")
	}
	return m
}

// Protocol facts of this release.
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
		if opts.PrivateKeyJWT {
			caps = append(caps, "client-confidential-asymmetric")
		}
	}
	if err := checkList("Capabilities", caps); err != nil {
		return nil, err
	}
	scopes := opts.ScopesSupported
	if scopes == nil {
		scopes = DefaultScopes()
		if opts.ClientCredentials {
			scopes = append(scopes, "system/*.rs", "system/*.cruds", "system/*.read", "system/*.write")
		}
	}
	ext, err := buildExtensions(opts, ep)
	if err != nil {
		return nil, err
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
	acrs := opts.ACRValues
	if acrs == nil {
		acrs = DefaultACRValues()
	}
	if err := checkList("ACRValues", acrs); err != nil {
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
		GrantTypesSupported:               grantTypes(opts),
		TokenEndpointAuthMethodsSupported: authMethods(opts),
		ScopesSupported:                   slices.Clone(scopes),
		ResponseTypesSupported:            responseTypes(),
		Capabilities:                      slices.Clone(caps),
		CodeChallengeMethodsSupported:     pkceMethods(),
		AuthorizationResponseISSSupported: true,
		Extensions:                        ext.clone(),
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
		GrantTypesSupported:               grantTypes(opts),
		SubjectTypesSupported:             []string{"public"},
		IDTokenSigningAlgValuesSupported:  idTokenAlgs(),
		TokenEndpointAuthMethodsSupported: authMethods(opts),
		ClaimsSupported:                   slices.Clone(claims),
		ACRValuesSupported:                slices.Clone(acrs),
		CodeChallengeMethodsSupported:     pkceMethods(),
		AuthorizationResponseISSSupported: true,
		Extensions:                        ext.clone(),
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
		GrantTypesSupported:               grantTypes(opts),
		TokenEndpointAuthMethodsSupported: authMethods(opts),
		CodeChallengeMethodsSupported:     pkceMethods(),
		AuthorizationResponseISSSupported: true,
		Extensions:                        ext.clone(),
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

// buildExtensions fills the shared optional metadata from opts.
func buildExtensions(opts *Options, ep Endpoints) (Extensions, error) {
	base := strings.TrimRight(ep.Issuer, "/")
	var x Extensions
	if opts.PrivateKeyJWT {
		x.TokenEndpointAuthSigningAlgValuesSupported = opts.AssertionAlgs
		if x.TokenEndpointAuthSigningAlgValuesSupported == nil {
			x.TokenEndpointAuthSigningAlgValuesSupported = DefaultAssertionAlgs()
		}
		for _, a := range x.TokenEndpointAuthSigningAlgValuesSupported {
			if a == "none" || strings.HasPrefix(a, "HS") {
				return Extensions{}, fmt.Errorf("%w: assertion algorithm %q may not be advertised", ErrConfig, a)
			}
		}
	}
	if opts.RequirePAR && !opts.PAR {
		return Extensions{}, fmt.Errorf("%w: RequirePAR without PAR", ErrConfig)
	}
	if opts.PAR {
		x.PushedAuthorizationRequestEndpoint = base + PathPAR
		x.RequirePushedAuthorizationRequests = opts.RequirePAR
	}
	if len(opts.DPoPAlgs) > 0 {
		if err := checkList("DPoPAlgs", opts.DPoPAlgs); err != nil {
			return Extensions{}, err
		}
		x.DPoPSigningAlgValuesSupported = slices.Clone(opts.DPoPAlgs)
	}
	methods := authMethods(opts)
	if opts.Revocation {
		x.RevocationEndpoint = base + PathRevoke
		x.RevocationEndpointAuthMethodsSupported = methods
	}
	if opts.Introspection {
		x.IntrospectionEndpoint = base + PathIntrospect
		x.IntrospectionEndpointAuthMethodsSupported = slices.DeleteFunc(slices.Clone(methods), func(m string) bool { return m == "none" })
	}
	x.TLSClientCertificateBoundAccessTokens = opts.CertificateBoundTokens
	if opts.MTLSIssuer != "" {
		if _, err := parseHTTPURL(opts.MTLSIssuer); err != nil {
			return Extensions{}, fmt.Errorf("%w: MTLSIssuer: %w", ErrConfig, err)
		}
		m := strings.TrimRight(opts.MTLSIssuer, "/")
		x.TLSClientCertificateBoundAccessTokens = true
		x.MTLSEndpointAliases = map[string]string{"token_endpoint": m + PathToken, "userinfo_endpoint": m + PathUserinfo}
		if opts.PAR {
			x.MTLSEndpointAliases["pushed_authorization_request_endpoint"] = m + PathPAR
		}
		if opts.Revocation {
			x.MTLSEndpointAliases["revocation_endpoint"] = m + PathRevoke
		}
		if opts.Introspection {
			x.MTLSEndpointAliases["introspection_endpoint"] = m + PathIntrospect
		}
	}
	return x, nil
}

// clone returns a deep copy, so the documents share no slices or maps.
func (x Extensions) clone() Extensions {
	x.TokenEndpointAuthSigningAlgValuesSupported = slices.Clone(x.TokenEndpointAuthSigningAlgValuesSupported)
	x.DPoPSigningAlgValuesSupported = slices.Clone(x.DPoPSigningAlgValuesSupported)
	x.RevocationEndpointAuthMethodsSupported = slices.Clone(x.RevocationEndpointAuthMethodsSupported)
	x.IntrospectionEndpointAuthMethodsSupported = slices.Clone(x.IntrospectionEndpointAuthMethodsSupported)
	if x.MTLSEndpointAliases != nil {
		m := make(map[string]string, len(x.MTLSEndpointAliases))
		for k, v := range x.MTLSEndpointAliases {
			m[k] = v
		}
		x.MTLSEndpointAliases = m
	}
	return x
}
