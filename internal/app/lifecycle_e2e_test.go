package app

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/fhirgate/fhirgate/internal/clientreg"
	"github.com/fhirgate/fhirgate/internal/demoehr"
	"github.com/fhirgate/fhirgate/internal/storage"
)

// TestEndToEndTokenLifecycle: a launched app refreshes (with a retry of a
// lost response), a resource server introspects, the app revokes, and the
// gateway stops accepting the access token within the polling interval.
func TestEndToEndTokenLifecycle(t *testing.T) {
	ctx := context.Background()
	ehr, err := demoehr.New(demoehr.Options{Username: "gw", Password: "ehr-secret"})
	if err != nil {
		t.Fatal(err)
	}
	ehrSrv := httptest.NewServer(ehr)
	defer ehrSrv.Close()
	srv := startServer(t, map[string]string{"gateway.upstream": ehrSrv.URL, "gateway.upstream_auth": "basic:gw:ehr-secret",
		"revocation.poll_interval": "100ms", "revocation.max_staleness": "2s"})
	st := srv.app.Store()
	now := time.Now()
	if _, err := CreateUser(ctx, st, NewUser{Username: "amy", Password: "amy-password", Role: storage.RolePatient, FHIRUser: "Patient/pt-001"}, fastPW, now); err != nil {
		t.Fatal(err)
	}
	app, appSecret, err := CreateClient(ctx, st, clientreg.Metadata{ClientName: "App", RedirectURIs: []string{redirectURI},
		Scope: "openid fhirUser launch/patient offline_access patient/*.rs", TokenEndpointAuthMethod: "client_secret_basic",
		GrantTypes: []string{"authorization_code", "refresh_token"}}, now)
	if err != nil {
		t.Fatal(err)
	}
	rs, rsSecret, err := CreateClient(ctx, st, clientreg.Metadata{ClientName: "Resource server", RedirectURIs: []string{redirectURI},
		Scope: "openid", TokenEndpointAuthMethod: "client_secret_basic"}, now)
	if err != nil {
		t.Fatal(err)
	}
	provider, err := oidc.NewProvider(ctx, srv.app.Issuer())
	if err != nil {
		t.Fatal(err)
	}
	var meta struct {
		Revocation    string `json:"revocation_endpoint"`
		Introspection string `json:"introspection_endpoint"`
	}
	if err := provider.Claims(&meta); err != nil {
		t.Fatal(err)
	}
	if meta.Revocation != srv.app.Issuer()+"/revoke" || meta.Introspection != srv.app.Issuer()+"/introspect" {
		t.Fatalf("discovery: %+v", meta)
	}
	fx := &fixture{srv: srv, provider: provider, conf: app, secret: appSecret}
	oc := fx.oauthConfig(app, appSecret, "launch/patient", "openid", "fhirUser", "offline_access", "patient/*.rs")
	r := fx.launch(t, oc, "amy", "amy-password", "")

	post := func(endpoint, id, secret string, form url.Values) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(id, secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	introspect := func(tok string) map[string]any {
		t.Helper()
		code, b := post(meta.Introspection, rs.ID, rsSecret, url.Values{"token": {tok}})
		var m map[string]any
		if code != 200 || json.Unmarshal(b, &m) != nil {
			t.Fatalf("introspect: %d %s", code, b)
		}
		return m
	}
	fhir := func(tok string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.app.FHIRBase()+"/Patient/pt-001", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	if m := introspect(r.tok.AccessToken); m["active"] != true || m["patient"] != "pt-001" || m["client_id"] != app.ID {
		t.Fatalf("introspection of the access token: %v", m)
	}
	if code := fhir(r.tok.AccessToken); code != http.StatusOK {
		t.Fatalf("gateway before revocation: %d", code)
	}

	// Refresh through x/oauth2; the response is "lost" and the app retries
	// with the same refresh token within the retry window.
	stale := *r.tok
	stale.Expiry = time.Now().Add(-time.Minute)
	lost, err := oc.TokenSource(ctx, &stale).Token()
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := oc.TokenSource(ctx, &stale).Token()
	if err != nil {
		t.Fatalf("retry within the window: %v", err)
	}
	if fresh.RefreshToken == lost.RefreshToken || fresh.RefreshToken == r.tok.RefreshToken {
		t.Fatal("retry did not rotate")
	}
	if m := introspect(lost.RefreshToken); m["active"] != false || len(m) != 1 {
		t.Fatalf("the lost successor (resource server asking): %v", m)
	}
	if code, b := post(meta.Introspection, app.ID, appSecret, url.Values{"token": {fresh.RefreshToken}}); code != 200 ||
		!strings.Contains(string(b), `"token_type":"refresh_token"`) {
		t.Fatalf("the app introspecting its refresh token: %d %s", code, b)
	}

	// The app revokes its refresh token: the family ends, and the gateway
	// refuses its access tokens within the polling interval.
	if code, b := post(meta.Revocation, app.ID, appSecret, url.Values{"token": {fresh.RefreshToken}, "token_type_hint": {"refresh_token"}}); code != 200 {
		t.Fatalf("revoke: %d %s", code, b)
	}
	start := time.Now()
	for fhir(fresh.AccessToken) != http.StatusUnauthorized {
		if time.Since(start) > 2*time.Second {
			t.Fatal("gateway still accepts a revoked token")
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("revocation reached the gateway in %s", time.Since(start))
	if code := fhir(r.tok.AccessToken); code != http.StatusUnauthorized {
		t.Fatalf("the first access token of the family: %d", code)
	}
	if m := introspect(fresh.AccessToken); m["active"] != false || len(m) != 1 {
		t.Fatalf("introspection after revocation: %v", m)
	}
	fresh.Expiry = time.Now().Add(-time.Minute)
	if _, err := oc.TokenSource(ctx, fresh).Token(); err == nil || !strings.Contains(err.Error(), "invalid_grant") {
		t.Fatalf("refresh after revocation: %v", err)
	}
}
