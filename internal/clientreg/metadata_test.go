package clientreg

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/fhirgate/fhirgate/internal/oauth"
)

func valid() Metadata {
	return Metadata{
		ClientName:   "Growth Chart",
		RedirectURIs: []string{"https://app.example.com/cb"},
		Scope:        "openid fhirUser launch/patient offline_access patient/*.rs",
	}
}

// backend turns m into a SMART Backend Services client.
func backend(m *Metadata) {
	m.GrantTypes = []string{"client_credentials"}
	m.RedirectURIs = nil
	m.Scope = "system/Patient.rs system/Observation.rs"
	m.TokenEndpointAuthMethod = "private_key_jwt"
	m.JWKS = backendJWKS
}

var backendJWKS = func() json.RawMessage {
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		panic(err)
	}
	b, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.PublicKey, KeyID: "k1", Algorithm: "ES384"}}})
	return b
}()

func ecJWKS(t *testing.T) json.RawMessage {
	t.Helper()
	return backendJWKS
}

func TestValidateDefaults(t *testing.T) {
	m := valid()
	m.ClientName = "  "
	got, err := Validate(m)
	if err != nil {
		t.Fatal(err)
	}
	if got.ClientName != DefaultClientName {
		t.Errorf("name %q", got.ClientName)
	}
	if !slices.Equal(got.ResponseTypes, []string{"code"}) {
		t.Errorf("response_types %v", got.ResponseTypes)
	}
	// offline_access in the scope brings the refresh_token grant by default.
	if !slices.Equal(got.GrantTypes, []string{"authorization_code", "refresh_token"}) {
		t.Errorf("grant_types %v", got.GrantTypes)
	}
	if got.TokenEndpointAuthMethod != "client_secret_basic" {
		t.Errorf("auth method %q", got.TokenEndpointAuthMethod)
	}
	if got.IDTokenSignedResponseAlg != "RS256" {
		t.Errorf("alg %q", got.IDTokenSignedResponseAlg)
	}
	if got.Scope != m.Scope {
		t.Errorf("scope %q", got.Scope)
	}
}

func TestValidateDefaultGrantTypes(t *testing.T) {
	for _, tc := range []struct {
		scope  string
		grants []string
		want   []string
	}{
		{"openid launch/patient patient/*.rs", nil, []string{"authorization_code"}},
		{"launch/patient online_access patient/*.rs", nil, []string{"authorization_code", "refresh_token"}},
		// An explicit list is kept: the client chose no refresh tokens.
		{"launch/patient offline_access patient/*.rs", []string{"authorization_code"}, []string{"authorization_code"}},
	} {
		m := valid()
		m.Scope, m.GrantTypes = tc.scope, tc.grants
		got, err := Validate(m)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.GrantTypes, tc.want) {
			t.Errorf("scope %q grants %v: got %v, want %v", tc.scope, tc.grants, got.GrantTypes, tc.want)
		}
	}
}

func TestValidateNormalises(t *testing.T) {
	m := valid()
	m.GrantTypes = []string{"refresh_token", "authorization_code", "refresh_token"}
	m.RedirectURIs = []string{"https://a.example/cb", "https://a.example/cb", "http://127.0.0.1:9/cb"}
	m.Scope = "  patient/Observation.rs?category=laboratory   openid "
	m.TokenEndpointAuthMethod = "none"
	m.IDTokenSignedResponseAlg = "ES256"
	got, err := Validate(m)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.GrantTypes, []string{"authorization_code", "refresh_token"}) {
		t.Errorf("grant_types %v", got.GrantTypes)
	}
	if !slices.Equal(got.RedirectURIs, []string{"https://a.example/cb", "http://127.0.0.1:9/cb"}) {
		t.Errorf("redirect_uris %v", got.RedirectURIs)
	}
	if got.Scope != "patient/Observation.rs?category=laboratory openid" {
		t.Errorf("scope %q", got.Scope)
	}
	if got.TokenEndpointAuthMethod != "none" || got.IDTokenSignedResponseAlg != "ES256" {
		t.Errorf("method %q alg %q", got.TokenEndpointAuthMethod, got.IDTokenSignedResponseAlg)
	}
}

func TestValidateRules(t *testing.T) {
	many := make([]string, MaxRedirectURIs+1)
	for i := range many {
		many[i] = "https://a.example/cb" + strings.Repeat("x", i)
	}
	cases := []struct {
		name    string
		mod     func(*Metadata)
		ok      bool
		code    oauth.ErrorCode
		mention string
	}{
		{"response type token", func(m *Metadata) { m.ResponseTypes = []string{"token"} }, false, oauth.InvalidClientMetadata, "code"},
		{"response type code id_token", func(m *Metadata) { m.ResponseTypes = []string{"code id_token"} }, false, oauth.InvalidClientMetadata, "response_types"},
		{"response types code and token", func(m *Metadata) { m.ResponseTypes = []string{"code", "token"} }, false, oauth.InvalidClientMetadata, "response_types"},
		{"response type code", func(m *Metadata) { m.ResponseTypes = []string{"code"} }, true, "", ""},
		{"grant client_credentials without system scope", func(m *Metadata) { m.GrantTypes = []string{"client_credentials"} }, false, oauth.InvalidClientMetadata, "system/"},
		{"backend ok", backend, true, "", ""},
		{"backend with code grant too", func(m *Metadata) {
			backend(m)
			m.GrantTypes = []string{"client_credentials", "authorization_code"}
			m.RedirectURIs = []string{"https://a.example/cb"}
			m.Scope = "openid patient/*.rs system/*.rs"
		}, true, "", ""},
		{"backend public", func(m *Metadata) { backend(m); m.TokenEndpointAuthMethod = "none" }, false, oauth.InvalidClientMetadata, "confidential"},
		{"backend response type code", func(m *Metadata) { backend(m); m.ResponseTypes = []string{"code"} }, false, oauth.InvalidClientMetadata, "response_types"},
		{"backend refresh", func(m *Metadata) { backend(m); m.GrantTypes = []string{"client_credentials", "refresh_token"} }, false, oauth.InvalidClientMetadata, "refresh_token"},
		{"system scope for public", func(m *Metadata) { m.TokenEndpointAuthMethod = "none"; m.Scope = "system/*.rs" }, false, oauth.InvalidClientMetadata, "confidential"},
		{"backend secret", func(m *Metadata) { backend(m); m.TokenEndpointAuthMethod = "client_secret_basic"; m.JWKS = nil }, true, "", ""},
		{"backend jwks_uri", func(m *Metadata) { backend(m); m.JWKS = nil; m.JWKSURI = "https://app.example.com/jwks" }, true, "", ""},
		{"dpop and par flags", func(m *Metadata) { m.DPoPBoundAccessTokens = true; m.RequirePushedAuthorizationRequests = true }, true, "", ""},
		{"grant password", func(m *Metadata) { m.GrantTypes = []string{"authorization_code", "password"} }, false, oauth.InvalidClientMetadata, "never"},
		{"grant implicit", func(m *Metadata) { m.GrantTypes = []string{"implicit"} }, false, oauth.InvalidClientMetadata, "never"},
		{"grant unknown", func(m *Metadata) { m.GrantTypes = []string{"urn:x"} }, false, oauth.InvalidClientMetadata, "unsupported"},
		{"refresh without code", func(m *Metadata) { m.GrantTypes = []string{"refresh_token"} }, false, oauth.InvalidClientMetadata, "authorization_code"},
		{"auth none", func(m *Metadata) { m.TokenEndpointAuthMethod = "none" }, true, "", ""},
		{"auth post", func(m *Metadata) { m.TokenEndpointAuthMethod = "client_secret_post" }, true, "", ""},
		{"auth private_key_jwt without keys", func(m *Metadata) { m.TokenEndpointAuthMethod = "private_key_jwt" }, false, oauth.InvalidClientMetadata, "jwks"},
		{"auth private_key_jwt", func(m *Metadata) { m.TokenEndpointAuthMethod = "private_key_jwt"; m.JWKS = ecJWKS(t) }, true, "", ""},
		{"auth tls_client_auth without dn", func(m *Metadata) { m.TokenEndpointAuthMethod = "tls_client_auth" }, false, oauth.InvalidClientMetadata, "tls_client_auth_subject_dn"},
		{"auth tls_client_auth", func(m *Metadata) {
			m.TokenEndpointAuthMethod = "tls_client_auth"
			m.TLSClientAuthSubjectDN = "CN=app,O=Example"
		}, true, "", ""},
		{"auth tls_client_auth bad dn", func(m *Metadata) {
			m.TokenEndpointAuthMethod = "tls_client_auth"
			m.TLSClientAuthSubjectDN = "not a dn"
		}, false, oauth.InvalidClientMetadata, "distinguished name"},
		{"dn with another method", func(m *Metadata) { m.TLSClientAuthSubjectDN = "CN=app" }, false, oauth.InvalidClientMetadata, "tls_client_auth_subject_dn"},
		{"auth self_signed without keys", func(m *Metadata) { m.TokenEndpointAuthMethod = "self_signed_tls_client_auth" }, false, oauth.InvalidClientMetadata, "jwks"},
		{"auth self_signed", func(m *Metadata) { m.TokenEndpointAuthMethod = "self_signed_tls_client_auth"; m.JWKS = ecJWKS(t) }, true, "", ""},
		{"jwks bogus key", func(m *Metadata) {
			m.TokenEndpointAuthMethod = "private_key_jwt"
			m.JWKS = json.RawMessage(`{"keys":[{"kty":"EC","crv":"P-256","x":"a","y":"b"}]}`)
		}, false, oauth.InvalidClientMetadata, "usable"},
		{"auth client_secret_jwt", func(m *Metadata) { m.TokenEndpointAuthMethod = "client_secret_jwt" }, false, oauth.InvalidClientMetadata, "unknown"},
		{"scope missing", func(m *Metadata) { m.Scope = "" }, false, oauth.InvalidClientMetadata, "required"},
		{"scope malformed", func(m *Metadata) { m.Scope = "openid patient/Observation.foo" }, false, oauth.InvalidClientMetadata, "malformed"},
		{"scope bad char", func(m *Metadata) { m.Scope = "patient/Obs\"x.rs" }, false, oauth.InvalidClientMetadata, "malformed"},
		{"scope unknown", func(m *Metadata) { m.Scope = "openid bogus" }, false, oauth.InvalidClientMetadata, "bogus"},
		{"scope system v2 without client_credentials", func(m *Metadata) { m.Scope = "openid system/*.rs" }, false, oauth.InvalidClientMetadata, "client_credentials"},
		{"scope system v1", func(m *Metadata) { m.Scope = "system/Patient.read" }, false, oauth.InvalidClientMetadata, "system/"},
		{"scope user v1", func(m *Metadata) { m.Scope = "user/*.read launch" }, true, "", ""},
		{"scope too long", func(m *Metadata) { m.Scope = strings.Repeat("openid ", 700) }, false, oauth.InvalidClientMetadata, "longer"},
		{"scope too many", func(m *Metadata) { m.Scope = strings.Repeat("openid ", MaxScopes+1) }, false, oauth.InvalidClientMetadata, "more than"},
		{"alg HS256", func(m *Metadata) { m.IDTokenSignedResponseAlg = "HS256" }, false, oauth.InvalidClientMetadata, "RS256 or ES256"},
		{"alg none", func(m *Metadata) { m.IDTokenSignedResponseAlg = "none" }, false, oauth.InvalidClientMetadata, "RS256 or ES256"},
		{"logo https", func(m *Metadata) { m.LogoURI = "https://cdn.example.com/logo.png" }, true, "", ""},
		{"logo http", func(m *Metadata) { m.LogoURI = "http://cdn.example.com/logo.png" }, false, oauth.InvalidClientMetadata, "logo_uri"},
		{"logo data", func(m *Metadata) { m.LogoURI = "data:image/png;base64,AAAA" }, false, oauth.InvalidClientMetadata, "logo_uri"},
		{"logo javascript", func(m *Metadata) { m.LogoURI = "javascript:alert(1)" }, false, oauth.InvalidClientMetadata, "logo_uri"},
		{"logo relative", func(m *Metadata) { m.LogoURI = "/logo.png" }, false, oauth.InvalidClientMetadata, "logo_uri"},
		{"launch https", func(m *Metadata) { m.LaunchURI = "https://app.example.com/launch" }, true, "", ""},
		{"launch loopback", func(m *Metadata) { m.LaunchURI = "http://127.0.0.1:4567/launch" }, true, "", ""},
		{"launch http", func(m *Metadata) { m.LaunchURI = "http://app.example.com/launch" }, false, oauth.InvalidClientMetadata, "launch_uri"},
		{"launch custom scheme", func(m *Metadata) { m.LaunchURI = "com.example.app:/launch" }, false, oauth.InvalidClientMetadata, "launch_uri"},
		{"no redirect", func(m *Metadata) { m.RedirectURIs = nil }, false, oauth.InvalidRedirectURI, "at least one"},
		{"bad redirect", func(m *Metadata) { m.RedirectURIs = []string{"https://a.example/cb", "http://evil.example/cb"} }, false, oauth.InvalidRedirectURI, "evil"},
		{"too many redirects", func(m *Metadata) { m.RedirectURIs = many }, false, oauth.InvalidRedirectURI, "at most"},
		{"max redirects", func(m *Metadata) { m.RedirectURIs = many[:MaxRedirectURIs] }, true, "", ""},
		{"name too long", func(m *Metadata) { m.ClientName = strings.Repeat("é", MaxNameLength+1) }, false, oauth.InvalidClientMetadata, "client_name"},
		{"name at limit", func(m *Metadata) { m.ClientName = strings.Repeat("é", MaxNameLength) }, true, "", ""},
		{"name control", func(m *Metadata) { m.ClientName = "App\x00" }, false, oauth.InvalidClientMetadata, "control"},
		{"name newline", func(m *Metadata) { m.ClientName = "App\nEvil" }, false, oauth.InvalidClientMetadata, "control"},
		{"name bidi", func(m *Metadata) { m.ClientName = "App\u202eevil" }, false, oauth.InvalidClientMetadata, "bidirectional"},
		{"name invalid utf8", func(m *Metadata) { m.ClientName = "App\xff" }, false, oauth.InvalidClientMetadata, "UTF-8"},
		{"jwks ok", func(m *Metadata) { m.JWKS = ecJWKS(t) }, true, "", ""},
		{"jwks not a set", func(m *Metadata) { m.JWKS = json.RawMessage(`[1,2]`) }, false, oauth.InvalidClientMetadata, "keys"},
		{"jwks private", func(m *Metadata) { m.JWKS = json.RawMessage(`{"keys":[{"kty":"EC","d":"x"}]}`) }, false, oauth.InvalidClientMetadata, "public"},
		{"jwks symmetric", func(m *Metadata) { m.JWKS = json.RawMessage(`{"keys":[{"kty":"oct","k":"x"}]}`) }, false, oauth.InvalidClientMetadata, "public"},
		{"jwks no kty", func(m *Metadata) { m.JWKS = json.RawMessage(`{"keys":[{}]}`) }, false, oauth.InvalidClientMetadata, "kty"},
		{"jwks too big", func(m *Metadata) {
			m.JWKS = json.RawMessage(`{"keys":[{"kty":"EC","x":"` + strings.Repeat("a", MaxJWKSBytes) + `"}]}`)
		}, false, oauth.InvalidClientMetadata, "larger"},
		{"jwks and uri", func(m *Metadata) {
			m.JWKS = json.RawMessage(`{"keys":[]}`)
			m.JWKSURI = "https://app.example.com/jwks"
		}, false, oauth.InvalidClientMetadata, "both"},
		{"jwks_uri http", func(m *Metadata) { m.JWKSURI = "http://app.example.com/jwks" }, false, oauth.InvalidClientMetadata, "jwks_uri"},
		{"jwks null", func(m *Metadata) { m.JWKS = json.RawMessage(`null`) }, true, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := valid()
			tc.mod(&m)
			_, err := Validate(m)
			if tc.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var oe *oauth.Error
			if !errors.As(err, &oe) {
				t.Fatalf("err = %v, want *oauth.Error", err)
			}
			if oe.Code != tc.code {
				t.Fatalf("code = %s, want %s (%s)", oe.Code, tc.code, oe.Description)
			}
			if !strings.Contains(oe.Description, tc.mention) {
				t.Fatalf("description %q does not mention %q", oe.Description, tc.mention)
			}
		})
	}
}
