package grant_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/fhirgate/fhirgate/internal/clientauth"
	"github.com/fhirgate/fhirgate/internal/grant"
	"github.com/fhirgate/fhirgate/internal/oauth"
	"github.com/fhirgate/fhirgate/internal/replay"
	"github.com/fhirgate/fhirgate/internal/secret"
	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/token"
)

// backendFixture is the grant fixture with private_key_jwt and a 5-minute
// backend token issuer.
type backendFixture struct {
	*fixture
	key *ecdsa.PrivateKey
}

func newBackendFixture(t *testing.T) *backendFixture {
	f := newFixture(t)
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	backend, err := token.NewIssuer(token.Options{Signer: f.keys, Verifier: f.keys, Issuer: issuerURL,
		AccessTokenTTL: grant.DefaultBackendAccessTokenTTL, Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	h, err := grant.New(grant.Options{
		Clients: f.store, Codes: f.store, Tokens: f.store, Issuer: f.issuer, BackendIssuer: backend,
		ClientAuth: &clientauth.Authenticator{Clients: f.store, Audiences: []string{issuerURL + "/token"},
			Replay: replay.NewMemory(f.clock.Now, 1000), Now: f.clock.Now},
		IssuerURL: issuerURL, FHIRBase: fhirBase, Auditor: f.audit, Now: f.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	f.h = h
	f.mux = http.NewServeMux()
	h.Register(f.mux)
	return &backendFixture{fixture: f, key: key}
}

func (f *backendFixture) backendClient(t *testing.T, mods ...func(*storage.Client)) *storage.Client {
	t.Helper()
	set, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &f.key.PublicKey, KeyID: "k1", Algorithm: "ES384"}}})
	c := &storage.Client{ID: "b-" + secret.ID(), Name: "backend", AuthMethod: string(oauth.AuthPrivateKeyJWT), JWKS: set,
		Scope: "system/Patient.rs system/Observation.rs", GrantTypes: []string{string(oauth.GrantClientCredentials)},
		CreatedAt: f.clock.Now()}
	for _, m := range mods {
		m(c)
	}
	if err := f.store.CreateClient(f.ctx, c); err != nil {
		t.Fatal(err)
	}
	return c
}

func (f *backendFixture) assertion(t *testing.T, clientID string) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES384, Key: jose.JSONWebKey{Key: f.key, KeyID: "k1"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := f.clock.Now()
	b, _ := json.Marshal(map[string]any{"iss": clientID, "sub": clientID, "aud": issuerURL + "/token",
		"exp": now.Add(4 * time.Minute).Unix(), "jti": secret.ID()})
	obj, err := s.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := obj.CompactSerialize()
	return raw
}

func (f *backendFixture) request(t *testing.T, clientID, scope string) *http.Request {
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {scope},
		"client_assertion_type": {clientauth.AssertionTypeJWTBearer}, "client_assertion": {f.assertion(t, clientID)}}
	return tokenRequest(form, auth{})
}

func TestClientCredentials(t *testing.T) {
	f := newBackendFixture(t)
	c := f.backendClient(t)
	w := f.do(f.request(t, c.ID, "system/Patient.rs system/Observation.r"))
	b := wantOK(t, w)
	if b.str("token_type") != "Bearer" || b.str("scope") != "system/Patient.rs system/Observation.r" {
		t.Fatalf("body %v", b)
	}
	if b["expires_in"].(float64) != 300 {
		t.Fatalf("expires_in %v, want 300", b["expires_in"])
	}
	for _, k := range []string{"refresh_token", "id_token", "patient"} {
		if _, ok := b[k]; ok {
			t.Fatalf("%s in a backend token response", k)
		}
	}
	claims, err := f.issuer.ParseAccessToken(b.str("access_token"), fhirBase)
	if err != nil || claims.Subject != c.ID || claims.ClientID != c.ID {
		t.Fatalf("claims %+v err %v", claims, err)
	}
	// Wider than registered is narrowed.
	b = wantOK(t, f.do(f.request(t, c.ID, "system/*.cruds")))
	if b.str("scope") != "system/Patient.rs system/Observation.rs" {
		t.Fatalf("narrowed scope %q", b.str("scope"))
	}
	// Secret-authenticated confidential clients may use the grant too.
	sc, sec := f.client(oauth.AuthClientSecretBasic, func(c *storage.Client) {
		c.Scope = "system/*.rs"
		c.GrantTypes = []string{string(oauth.GrantClientCredentials)}
	})
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"system/Patient.rs"}}
	wantOK(t, f.do(tokenRequest(form, basic(sc, sec))))
}

func TestClientCredentialsRefusals(t *testing.T) {
	f := newBackendFixture(t)
	c := f.backendClient(t)
	notRegistered := f.backendClient(t, func(c *storage.Client) { c.GrantTypes = []string{"authorization_code"} })
	pub, _ := f.client(oauth.AuthNone, func(c *storage.Client) {
		c.Scope = "system/*.rs"
		c.GrantTypes = []string{string(oauth.GrantClientCredentials)}
	})
	wantError(t, f.do(f.request(t, c.ID, "patient/*.rs")), http.StatusBadRequest, oauth.InvalidScope)
	wantError(t, f.do(f.request(t, c.ID, "system/Patient.rs user/*.rs")), http.StatusBadRequest, oauth.InvalidScope)
	wantError(t, f.do(f.request(t, c.ID, "system/Patient.rs openid")), http.StatusBadRequest, oauth.InvalidScope)
	wantError(t, f.do(f.request(t, c.ID, "system/Encounter.rs")), http.StatusBadRequest, oauth.InvalidScope)
	wantError(t, f.do(f.request(t, c.ID, "")), http.StatusBadRequest, oauth.InvalidScope)
	wantError(t, f.do(f.request(t, notRegistered.ID, "system/Patient.rs")), http.StatusBadRequest, oauth.UnauthorizedClient)
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"system/Patient.rs"}}
	wantError(t, f.do(tokenRequest(form, public(pub))), http.StatusBadRequest, oauth.UnauthorizedClient)
	// A replayed assertion is refused.
	raw := f.assertion(t, c.ID)
	mk := func() *http.Request {
		return tokenRequest(url.Values{"grant_type": {"client_credentials"}, "scope": {"system/Patient.rs"},
			"client_assertion_type": {clientauth.AssertionTypeJWTBearer}, "client_assertion": {raw}}, auth{})
	}
	wantOK(t, f.do(mk()))
	wantError(t, f.do(mk()), http.StatusUnauthorized, oauth.InvalidClient)
	if last := f.audit.Events(); len(last) == 0 || !strings.Contains(last[len(last)-1].Reason, "invalid_client") {
		t.Fatalf("refusal not audited")
	}
}
