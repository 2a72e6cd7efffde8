// Package clientreg validates OAuth client metadata and creates clients. It is
// shared by the CLI (`fhirgate clients create`) and by dynamic client
// registration (RFC 7591), so both apply exactly the same rules.
package clientreg

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/fhirgate/fhirgate/internal/clientauth"
	"github.com/fhirgate/fhirgate/internal/jwksfetch"
	"github.com/fhirgate/fhirgate/internal/oauth"
	"github.com/fhirgate/fhirgate/internal/scope"
)

// Limits on registered metadata.
const (
	MaxRedirectURIs   = 20
	MaxNameLength     = 200 // characters
	MaxScopeLength    = 4000
	MaxScopes         = 100
	MaxJWKSBytes      = 32 << 10
	DefaultClientName = "Unnamed app"
)

// ID token signing algorithms a client may register.
const (
	AlgRS256 = "RS256"
	AlgES256 = "ES256"
)

// Metadata is the client metadata of RFC 7591 §2 that fhirgate understands,
// plus the SMART launch URI.
type Metadata struct {
	ClientName               string
	RedirectURIs             []string
	Scope                    string
	TokenEndpointAuthMethod  string
	GrantTypes               []string
	ResponseTypes            []string
	LogoURI                  string
	LaunchURI                string
	IDTokenSignedResponseAlg string
	JWKS                     json.RawMessage
	JWKSURI                  string
	// TLSClientAuthSubjectDN is the expected certificate subject for
	// tls_client_auth (RFC 8705 §2.1.2).
	TLSClientAuthSubjectDN string
	// DPoPBoundAccessTokens: the client always gets DPoP-bound tokens (RFC 9449 §5.2).
	DPoPBoundAccessTokens bool
	// RequirePushedAuthorizationRequests: /authorize only with a PAR request_uri (RFC 9126 §6).
	RequirePushedAuthorizationRequests bool
}

// metadataError returns an invalid_client_metadata error.
func metadataError(format string, args ...any) error {
	return oauth.Errorf(oauth.InvalidClientMetadata, format, args...)
}

// Validate checks m and returns it normalised, with defaults filled in:
// client_name "Unnamed app", grant_types ["authorization_code"],
// response_types ["code"] (none for a client_credentials-only client),
// token_endpoint_auth_method client_secret_basic (RFC 7591 §2; pass "none"
// for a public client), id_token_signed_response_alg RS256, and the scope in
// canonical form. On failure it returns an *oauth.Error with code
// invalid_redirect_uri or invalid_client_metadata whose description names the
// rule broken.
//
// Confidential-client rules: client_credentials (SMART Backend Services) and
// system/ scopes need a confidential client and go together; private_key_jwt
// and self_signed_tls_client_auth need jwks or jwks_uri; tls_client_auth
// needs tls_client_auth_subject_dn.
func Validate(m Metadata) (Metadata, error) {
	var out Metadata
	var err error

	if out.ClientName, err = validateName(m.ClientName); err != nil {
		return Metadata{}, err
	}
	if out.GrantTypes, err = validateGrantTypes(m.GrantTypes); err != nil {
		return Metadata{}, err
	}
	authCode := slices.Contains(out.GrantTypes, string(oauth.GrantAuthorizationCode))
	if out.ResponseTypes, err = validateResponseTypes(m.ResponseTypes, authCode); err != nil {
		return Metadata{}, err
	}
	if out.TokenEndpointAuthMethod, err = validateAuthMethod(m.TokenEndpointAuthMethod); err != nil {
		return Metadata{}, err
	}
	if out.Scope, err = validateScope(m.Scope); err != nil {
		return Metadata{}, err
	}
	if len(m.GrantTypes) == 0 && wantsRefresh(out.Scope) {
		// A SMART app registering offline_access or online_access expects
		// refresh tokens; RFC 7591's default of authorization_code alone
		// would silently withhold them.
		out.GrantTypes = append(out.GrantTypes, string(oauth.GrantRefreshToken))
	}
	if out.IDTokenSignedResponseAlg, err = validateAlg(m.IDTokenSignedResponseAlg); err != nil {
		return Metadata{}, err
	}
	if out.RedirectURIs, err = validateRedirectURIs(m.RedirectURIs, authCode); err != nil {
		return Metadata{}, err
	}
	if m.LogoURI != "" {
		if err := validateHTTPSURI("logo_uri", m.LogoURI); err != nil {
			return Metadata{}, err
		}
		out.LogoURI = m.LogoURI
	}
	if m.LaunchURI != "" {
		if err := validateLaunchURI(m.LaunchURI); err != nil {
			return Metadata{}, err
		}
		out.LaunchURI = m.LaunchURI
	}
	if out.JWKS, out.JWKSURI, err = validateKeys(m.JWKS, m.JWKSURI); err != nil {
		return Metadata{}, err
	}
	out.TLSClientAuthSubjectDN = strings.TrimSpace(m.TLSClientAuthSubjectDN)
	out.DPoPBoundAccessTokens = m.DPoPBoundAccessTokens
	out.RequirePushedAuthorizationRequests = m.RequirePushedAuthorizationRequests
	if err := validateConfidential(out); err != nil {
		return Metadata{}, err
	}
	return out, nil
}

// wantsRefresh reports whether a validated scope string asks for refresh
// tokens (offline_access or online_access).
func wantsRefresh(scopes string) bool {
	for _, s := range strings.Fields(scopes) {
		if s == "offline_access" || s == "online_access" {
			return true
		}
	}
	return false
}

// validateConfidential applies the rules tying auth methods, keys, grant
// types and system/ scopes together.
func validateConfidential(m Metadata) error {
	method := oauth.AuthMethod(m.TokenEndpointAuthMethod)
	backend := slices.Contains(m.GrantTypes, string(oauth.GrantClientCredentials))
	set, _, _ := scope.ParseSet(m.Scope)
	system := false
	for _, s := range set {
		if s.Kind == scope.Resource && s.Context == scope.System {
			system = true
		}
	}
	hasKeys := len(m.JWKS) > 0 || m.JWKSURI != ""
	switch {
	case backend && method == oauth.AuthNone:
		return metadataError("grant type client_credentials needs a confidential client (token_endpoint_auth_method private_key_jwt recommended)")
	case system && method == oauth.AuthNone:
		return metadataError("system/ scopes need a confidential client")
	case system && !backend:
		return metadataError("system/ scopes are granted only with the client_credentials grant: add it to grant_types")
	case backend && !system:
		return metadataError("a client_credentials client needs at least one system/ scope")
	case method == oauth.AuthPrivateKeyJWT && !hasKeys:
		return metadataError("private_key_jwt needs the client's public keys: jwks or jwks_uri")
	case method == oauth.AuthSelfSignedTLSClientAuth && !hasKeys:
		return metadataError("self_signed_tls_client_auth needs the client's certificate keys: jwks (with x5c or keys) or jwks_uri")
	case method == oauth.AuthTLSClientAuth && m.TLSClientAuthSubjectDN == "":
		return metadataError("tls_client_auth needs tls_client_auth_subject_dn")
	case method != oauth.AuthTLSClientAuth && m.TLSClientAuthSubjectDN != "":
		return metadataError("tls_client_auth_subject_dn is only for token_endpoint_auth_method tls_client_auth")
	}
	if m.TLSClientAuthSubjectDN != "" {
		if len(m.TLSClientAuthSubjectDN) > 1024 || !clientauth.SameDN(m.TLSClientAuthSubjectDN, m.TLSClientAuthSubjectDN) {
			return metadataError("tls_client_auth_subject_dn must be a distinguished name in RFC 4514 form, e.g. \"CN=backend,O=Example,C=US\"")
		}
	}
	if len(m.JWKS) > 0 {
		if _, err := jwksfetch.ParseSet(m.JWKS); err != nil {
			return metadataError("jwks must hold usable public signing keys (RSA of at least 2048 bits or EC)")
		}
	}
	return nil
}

func validateName(name string) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		return DefaultClientName, nil
	}
	if !utf8.ValidString(name) {
		return "", metadataError("client_name must be valid UTF-8")
	}
	if n := utf8.RuneCountInString(name); n > MaxNameLength {
		return "", metadataError("client_name is longer than %d characters", MaxNameLength)
	}
	for _, r := range name {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' ||
			unicode.Is(unicode.Bidi_Control, r) {
			return "", metadataError("client_name must not contain control or bidirectional formatting characters")
		}
	}
	return name, nil
}

func validateResponseTypes(types []string, authCode bool) ([]string, error) {
	if len(types) == 0 {
		if !authCode {
			return nil, nil
		}
		return []string{string(oauth.ResponseCode)}, nil
	}
	if !authCode {
		return nil, metadataError("response_types must be empty without the authorization_code grant")
	}
	for _, t := range types {
		if oauth.ResponseType(t) != oauth.ResponseCode {
			return nil, metadataError("response_types must be [\"code\"]: only the authorization code flow is supported (got %q)", truncate(t))
		}
	}
	return []string{string(oauth.ResponseCode)}, nil
}

func validateGrantTypes(types []string) ([]string, error) {
	if len(types) == 0 {
		return []string{string(oauth.GrantAuthorizationCode)}, nil
	}
	if len(types) > 10 {
		return nil, metadataError("too many grant_types")
	}
	var out []string
	for _, t := range types {
		switch oauth.GrantType(t) {
		case oauth.GrantAuthorizationCode, oauth.GrantRefreshToken, oauth.GrantClientCredentials:
			if !slices.Contains(out, t) {
				out = append(out, t)
			}
		case "password", "implicit":
			return nil, metadataError("grant type %s is never offered (RFC 9700 §2.4, §2.1.2)", t)
		default:
			return nil, metadataError("unsupported grant type %q: use authorization_code, refresh_token or client_credentials", truncate(t))
		}
	}
	authCode := slices.Contains(out, string(oauth.GrantAuthorizationCode))
	if !authCode && !slices.Contains(out, string(oauth.GrantClientCredentials)) {
		return nil, metadataError("grant_types must include authorization_code or client_credentials")
	}
	if !authCode && slices.Contains(out, string(oauth.GrantRefreshToken)) {
		return nil, metadataError("refresh_token needs the authorization_code grant (client_credentials gets no refresh token)")
	}
	// Keep a stable order: authorization_code first.
	slices.SortFunc(out, func(a, b string) int { return grantRank(a) - grantRank(b) })
	return out, nil
}

func grantRank(g string) int {
	switch oauth.GrantType(g) {
	case oauth.GrantAuthorizationCode:
		return 0
	case oauth.GrantRefreshToken:
		return 1
	}
	return 2
}

func validateAuthMethod(raw string) (string, error) {
	if raw == "" {
		return string(oauth.AuthClientSecretBasic), nil
	}
	m, ok := oauth.ParseAuthMethod(raw)
	if !ok {
		return "", metadataError("unknown token_endpoint_auth_method %q: use none, client_secret_basic, client_secret_post, "+
			"private_key_jwt, tls_client_auth or self_signed_tls_client_auth", truncate(raw))
	}
	return string(m), nil
}

func validateScope(raw string) (string, error) {
	if strings.TrimSpace(raw) == "" {
		return "", metadataError("scope is required: list the scopes the app may request, e.g. \"openid fhirUser launch/patient patient/*.rs\"")
	}
	if len(raw) > MaxScopeLength {
		return "", metadataError("scope is longer than %d characters", MaxScopeLength)
	}
	if n := len(strings.Fields(raw)); n > MaxScopes {
		return "", metadataError("scope lists more than %d scopes", MaxScopes)
	}
	set, unknown, err := scope.ParseSet(raw)
	if err != nil {
		if errors.Is(err, scope.ErrMalformed) {
			// The parser's message only echoes the client's own input.
			return "", oauth.Wrap(oauth.InvalidClientMetadata, "scope is malformed: "+truncate(strings.TrimPrefix(err.Error(), scope.ErrMalformed.Error()+": ")), err)
		}
		return "", oauth.Wrap(oauth.InvalidClientMetadata, "scope could not be parsed", err)
	}
	if len(unknown) > 0 {
		return "", metadataError("scope contains unsupported scopes: %s", truncate(strings.Join(unknown, " ")))
	}
	return set.String(), nil
}

func validateAlg(raw string) (string, error) {
	switch raw {
	case "":
		return AlgRS256, nil
	case AlgRS256, AlgES256:
		return raw, nil
	default:
		return "", metadataError("id_token_signed_response_alg must be RS256 or ES256 (got %q)", truncate(raw))
	}
}

func validateRedirectURIs(uris []string, required bool) ([]string, error) {
	if len(uris) > MaxRedirectURIs {
		return nil, oauth.Errorf(oauth.InvalidRedirectURI, "at most %d redirect URIs may be registered", MaxRedirectURIs)
	}
	if required && len(uris) == 0 {
		return nil, oauth.Errorf(oauth.InvalidRedirectURI, "at least one redirect URI is required for the authorization_code grant")
	}
	var out []string
	for _, u := range uris {
		if err := ValidateRedirectURI(u); err != nil {
			return nil, err
		}
		if !slices.Contains(out, u) {
			out = append(out, u)
		}
	}
	return out, nil
}

// validateHTTPSURI accepts an absolute https URI with a host, no userinfo and
// no fragment.
func validateHTTPSURI(field, raw string) error {
	if len(raw) > MaxURILength {
		return metadataError("%s is longer than %d characters", field, MaxURILength)
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Opaque != "" || u.Hostname() == "" {
		return metadataError("%s must be an absolute https URI", field)
	}
	if u.User != nil || strings.Contains(raw, "#") {
		return metadataError("%s must not contain user information or a fragment", field)
	}
	return nil
}

// validateLaunchURI accepts the SMART EHR launch URL: https, or http on a
// loopback IP literal for local development, like a web redirect URI.
func validateLaunchURI(raw string) error {
	if len(raw) > MaxURILength {
		return metadataError("launch_uri is longer than %d characters", MaxURILength)
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") {
		return metadataError("launch_uri must be an absolute https URI")
	}
	if err := ValidateRedirectURI(raw); err != nil {
		return oauth.Wrap(oauth.InvalidClientMetadata, "launch_uri: "+oauth.As(err).Description, err)
	}
	return nil
}

// validateKeys checks the client's registered keys: jwks must be a JSON object
// with a "keys" array; jwks_uri must be https; not both (RFC 7591 §2).
func validateKeys(jwks json.RawMessage, jwksURI string) (json.RawMessage, string, error) {
	jwks = bytes.TrimSpace(jwks)
	if bytes.Equal(jwks, []byte("null")) {
		jwks = nil
	}
	if len(jwks) > 0 && jwksURI != "" {
		return nil, "", metadataError("jwks and jwks_uri must not both be present (RFC 7591 §2)")
	}
	if jwksURI != "" {
		if err := validateHTTPSURI("jwks_uri", jwksURI); err != nil {
			return nil, "", err
		}
	}
	if len(jwks) == 0 {
		return nil, jwksURI, nil
	}
	if len(jwks) > MaxJWKSBytes {
		return nil, "", metadataError("jwks is larger than %d bytes", MaxJWKSBytes)
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(jwks, &set); err != nil || set.Keys == nil {
		return nil, "", metadataError("jwks must be a JSON Web Key Set: an object with a \"keys\" array")
	}
	for _, k := range set.Keys {
		if _, ok := k["kty"].(string); !ok {
			return nil, "", metadataError("every key in jwks needs a kty")
		}
		_, private := k["d"]
		if private || k["kty"] == "oct" {
			return nil, "", metadataError("jwks must hold public keys only")
		}
	}
	return append(json.RawMessage(nil), jwks...), "", nil
}
