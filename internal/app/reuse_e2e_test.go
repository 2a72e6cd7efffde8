package app

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/clientreg"
)

// TestRefreshReuseEndsIntrospection: presenting a spent refresh token whose
// successor was already used is reuse: invalid_grant, and every token of
// the family, including the access tokens the legitimate rotations issued,
// then introspects as {"active": false} and nothing else.
func TestRefreshReuseEndsIntrospection(t *testing.T) {
	fx := setup(t)
	rs, rsSecret, err := CreateClient(context.Background(), fx.srv.app.Store(), clientreg.Metadata{ClientName: "resource server",
		Scope: "system/Patient.rs", TokenEndpointAuthMethod: "client_secret_basic", GrantTypes: []string{"client_credentials"}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	oc := fx.oauthConfig(fx.conf, fx.secret, "launch/patient", "openid", "offline_access", "patient/*.rs")
	r := fx.launch(t, oc, "amy", "amy-password", "")

	post := func(endpoint, id, secret string, form url.Values) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, fx.srv.app.Issuer()+endpoint, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(id, secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		return resp.StatusCode, m
	}
	refresh := func(rt string) (int, map[string]any) {
		return post("/token", fx.conf.ID, fx.secret, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	}
	introspect := func(tok string) map[string]any {
		t.Helper()
		code, m := post("/introspect", rs.ID, rsSecret, url.Values{"token": {tok}})
		if code != 200 {
			t.Fatalf("introspect: %d %v", code, m)
		}
		return m
	}

	code, second := refresh(r.tok.RefreshToken)
	at2, _ := second["access_token"].(string)
	rt2, _ := second["refresh_token"].(string)
	if code != 200 || at2 == "" || rt2 == "" {
		t.Fatalf("refresh: %d %v", code, second)
	}
	code, third := refresh(rt2) // the successor is used: the first token is now spent for good
	at3, _ := third["access_token"].(string)
	rt3, _ := third["refresh_token"].(string)
	if code != 200 || at3 == "" || rt3 == "" {
		t.Fatalf("second refresh: %d %v", code, third)
	}
	if m := introspect(at3); m["active"] != true {
		t.Fatalf("descendant access token before reuse: %v", m)
	}
	if code, m := refresh(r.tok.RefreshToken); code != 400 || m["error"] != "invalid_grant" {
		t.Fatalf("reuse: %d %v", code, m)
	}
	for name, tok := range map[string]string{"newest access token": at3, "middle access token": at2, "first access token": r.tok.AccessToken,
		"newest refresh token": rt3, "spent refresh token": r.tok.RefreshToken} {
		if m := introspect(tok); m["active"] != false || len(m) != 1 {
			t.Errorf("%s after reuse: %v", name, m)
		}
	}
	if code, m := refresh(rt3); code != 400 || m["error"] != "invalid_grant" {
		t.Fatalf("newest refresh token after reuse: %d %v", code, m)
	}
}
