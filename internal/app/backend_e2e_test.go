package app

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/fhirgate/fhirgate/internal/clientauth"
	"github.com/fhirgate/fhirgate/internal/clientreg"
)

func postForm(t *testing.T, u string, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := http.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var body map[string]any
	_ = json.Unmarshal(raw, &body)
	return resp.StatusCode, body
}

// TestBackendServicesEndToEnd registers a SMART Backend Services client
// with the CLI's code path and gets a system/ token with a private_key_jwt
// assertion (ES384), as a backend would.
func TestBackendServicesEndToEnd(t *testing.T) {
	ts := startServer(t, nil)
	ctx := context.Background()
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	set, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "b1", Algorithm: "ES384"}}})
	c, secret, err := clientreg.Create(ctx, ts.app.Store(), clientreg.Metadata{ClientName: "bulk", Scope: "system/Patient.rs system/Observation.rs",
		TokenEndpointAuthMethod: "private_key_jwt", GrantTypes: []string{"client_credentials"}, JWKS: set}, time.Now())
	if err != nil || secret != "" {
		t.Fatalf("create: %v (secret %q)", err, secret)
	}
	tokenURL := ts.app.Issuer() + "/token"
	assertion := func(aud string) string {
		s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES384, Key: jose.JSONWebKey{Key: key, KeyID: "b1"}}, nil)
		b, _ := json.Marshal(map[string]any{"iss": c.ID, "sub": c.ID, "aud": aud, "jti": time.Now().String(),
			"exp": time.Now().Add(4 * time.Minute).Unix()})
		o, _ := s.Sign(b)
		raw, _ := o.CompactSerialize()
		return raw
	}
	form := func(scope, aud string) url.Values {
		return url.Values{"grant_type": {"client_credentials"}, "scope": {scope},
			"client_assertion_type": {clientauth.AssertionTypeJWTBearer}, "client_assertion": {assertion(aud)}}
	}
	status, body := postForm(t, tokenURL, form("system/Patient.rs", tokenURL))
	if status != 200 || body["scope"] != "system/Patient.rs" || body["expires_in"] != float64(300) || body["refresh_token"] != nil {
		t.Fatalf("token: %d %v", status, body)
	}
	if status, body = postForm(t, tokenURL, form("patient/*.rs", tokenURL)); status != 400 || body["error"] != "invalid_scope" {
		t.Fatalf("patient scope: %d %v", status, body)
	}
	if status, body = postForm(t, tokenURL, form("system/Patient.rs", "https://evil.example/token")); status != 401 {
		t.Fatalf("wrong aud: %d %v", status, body)
	}
	// Discovery tells the truth about it.
	resp, err := http.Get(ts.app.Issuer() + "/.well-known/smart-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc map[string]any
	json.NewDecoder(resp.Body).Decode(&doc)
	raw, _ := json.Marshal(doc)
	for _, want := range []string{`"private_key_jwt"`, `"client_credentials"`, `"client-confidential-asymmetric"`, `"ES384"`,
		`"pushed_authorization_request_endpoint"`} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("smart-configuration lacks %s", want)
		}
	}
}

// TestPAREndToEnd pushes a request and starts the browser flow with its request_uri.
func TestPAREndToEnd(t *testing.T) {
	ts := startServer(t, nil)
	ctx := context.Background()
	c, _, err := clientreg.Create(ctx, ts.app.Store(), clientreg.Metadata{ClientName: "par app", Scope: "openid launch/patient patient/*.rs",
		TokenEndpointAuthMethod: "none", RedirectURIs: []string{"https://app.example/cb"}, RequirePushedAuthorizationRequests: true}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	q := url.Values{"response_type": {"code"}, "client_id": {c.ID}, "redirect_uri": {"https://app.example/cb"},
		"scope": {"openid launch/patient patient/*.rs"}, "state": {"s"}, "aud": {ts.app.FHIRBase()},
		"code_challenge": {strings.Repeat("a", 43)}, "code_challenge_method": {"S256"}}
	status, body := postForm(t, ts.app.Issuer()+"/par", q)
	uri, _ := body["request_uri"].(string)
	if status != 201 || uri == "" {
		t.Fatalf("par: %d %v", status, body)
	}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(v url.Values) *http.Response {
		resp, err := noFollow.Get(ts.app.Issuer() + "/authorize?" + v.Encode())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if r := get(url.Values{"client_id": {c.ID}, "request_uri": {uri}}); r.StatusCode != http.StatusSeeOther ||
		!strings.Contains(r.Header.Get("Location"), "/authorize/login") {
		t.Fatalf("pickup: %d %s", r.StatusCode, r.Header.Get("Location"))
	}
	if r := get(url.Values{"client_id": {c.ID}, "request_uri": {uri}}); r.StatusCode != http.StatusBadRequest {
		t.Fatalf("reuse: %d", r.StatusCode)
	}
	// This client may not skip PAR.
	if r := get(q); !strings.Contains(r.Header.Get("Location"), "error=invalid_request") {
		t.Fatalf("plain authorize: %d %s", r.StatusCode, r.Header.Get("Location"))
	}
}
