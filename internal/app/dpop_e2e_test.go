package app

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"

	"github.com/fhirgate/fhirgate/internal/clientreg"
	"github.com/fhirgate/fhirgate/internal/dpop"
	"github.com/fhirgate/fhirgate/internal/secret"
	"github.com/fhirgate/fhirgate/internal/storage"
)

// dpopTransport signs a DPoP proof for every request with key: at the token
// endpoint without ath; elsewhere it turns "Bearer" into the DPoP scheme and
// adds ath. It is how a DPoP-aware client library behaves.
type dpopTransport struct {
	key  *ecdsa.PrivateKey
	next http.RoundTripper
	htu  string // when set, the proofs name this URL instead of the request's
}

// CloseIdleConnections closes the idle connections of the transport below.
func (d *dpopTransport) CloseIdleConnections() {
	if c, ok := d.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

func (d *dpopTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	htu := *r.URL
	htu.RawQuery, htu.Fragment = "", ""
	claims := map[string]any{"jti": secret.ID(), "htm": r.Method, "htu": htu.String(), "iat": time.Now().Unix()}
	if d.htu != "" {
		claims["htu"] = d.htu
	}
	if at, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		r.Header.Set("Authorization", "DPoP "+at)
		claims["ath"] = dpop.ATH(at)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: d.key}, (&jose.SignerOptions{EmbedJWK: true}).WithType("dpop+jwt"))
	if err != nil {
		return nil, err
	}
	payload, _ := json.Marshal(claims)
	jws, err := s.Sign(payload)
	if err != nil {
		return nil, err
	}
	p, _ := jws.CompactSerialize()
	r.Header.Set("DPoP", p)
	return d.next.RoundTrip(r)
}

// TestEndToEndDPoP: a public SMART app with a DPoP key (x/oauth2 over a
// DPoP-signing transport) gets a DPoP-bound token, uses it at /userinfo and
// through the gateway, and refreshes it; the same token without proofs, or
// with another key, is refused everywhere.
func TestEndToEndDPoP(t *testing.T) {
	ctx := context.Background()
	ehrURL := startDemoEHR(t)
	srv := startServer(t, map[string]string{"gateway.upstream": ehrURL, "gateway.upstream_auth": "basic:gw:ehr-secret"})
	st := srv.app.Store()
	now := time.Now()
	if _, err := CreateUser(ctx, st, NewUser{Username: "amy", Password: "amy-password", Role: storage.RolePatient, FHIRUser: "Patient/pt-001"}, fastPW, now); err != nil {
		t.Fatal(err)
	}
	pub, _, err := CreateClient(ctx, st, clientreg.Metadata{ClientName: "DPoP app", RedirectURIs: []string{redirectURI},
		Scope: "openid fhirUser launch/patient offline_access patient/*.rs", TokenEndpointAuthMethod: "none",
		GrantTypes: []string{"authorization_code", "refresh_token"}}, now)
	if err != nil {
		t.Fatal(err)
	}
	provider, err := oidc.NewProvider(ctx, srv.app.Issuer())
	if err != nil {
		t.Fatal(err)
	}
	var meta struct {
		DPoPAlgs []string `json:"dpop_signing_alg_values_supported"`
	}
	if err := provider.Claims(&meta); err != nil || len(meta.DPoPAlgs) == 0 || meta.DPoPAlgs[0] != "ES256" {
		t.Fatalf("dpop_signing_alg_values_supported %v %v", meta.DPoPAlgs, err)
	}
	fx := &fixture{srv: srv, provider: provider, public: pub}
	oc := fx.oauthConfig(pub, "", "launch/patient", "openid", "fhirUser", "offline_access", "patient/*.rs")

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	dpopClient := &http.Client{Transport: &dpopTransport{key: key, next: http.DefaultTransport}}
	dctx := context.WithValue(ctx, oauth2.HTTPClient, dpopClient)

	verifier := oauth2.GenerateVerifier()
	b := newBrowser(t, srv.app.URL(), redirectURI)
	fl := runBrowserFlow(t, b, oc.AuthCodeURL("state-1", oauth2.S256ChallengeOption(verifier),
		oauth2.SetAuthURLParam("aud", srv.app.FHIRBase())), "amy", "amy-password", "")
	tok, err := oc.Exchange(dctx, fl.code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	if tok.TokenType != "DPoP" {
		t.Fatalf("token_type %q", tok.TokenType)
	}

	call := func(c *http.Client, u string, tk *oauth2.Token) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		req.Header.Set("Authorization", "Bearer "+tk.AccessToken)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	otherClient := &http.Client{Transport: &dpopTransport{key: other, next: http.DefaultTransport}}
	for _, u := range []string{srv.app.Issuer() + "/userinfo", srv.app.FHIRBase() + "/Patient/pt-001"} {
		if got := call(dpopClient, u, tok); got != http.StatusOK {
			t.Errorf("%s with DPoP: %d", u, got)
		}
		if got := call(http.DefaultClient, u, tok); got != http.StatusUnauthorized {
			t.Errorf("%s as Bearer: %d", u, got)
		}
		if got := call(otherClient, u, tok); got != http.StatusUnauthorized {
			t.Errorf("%s with another key: %d", u, got)
		}
	}

	// Refresh: with the key, a new DPoP token; the public client's refresh
	// token is refused without a proof and with another key.
	expired := &oauth2.Token{RefreshToken: tok.RefreshToken, Expiry: time.Now().Add(-time.Hour)}
	if _, err := oc.TokenSource(ctx, expired).Token(); err == nil || !strings.Contains(err.Error(), "invalid_dpop_proof") {
		t.Fatalf("refresh without proof: %v", err)
	}
	if _, err := oc.TokenSource(context.WithValue(ctx, oauth2.HTTPClient, otherClient), expired).Token(); err == nil || !strings.Contains(err.Error(), "invalid_grant") {
		t.Fatalf("refresh with another key: %v", err)
	}
	next, err := oc.TokenSource(dctx, expired).Token()
	if err != nil || next.TokenType != "DPoP" {
		t.Fatalf("refresh with the key: %v %+v", err, next)
	}
	if got := call(dpopClient, srv.app.FHIRBase()+"/Patient/pt-001", next); got != http.StatusOK {
		t.Fatalf("refreshed token at the gateway: %d", got)
	}
}
