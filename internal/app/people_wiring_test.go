package app

import (
	"context"
	"encoding/base32"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/fhirgate/fhirgate/internal/clientreg"
	"github.com/fhirgate/fhirgate/internal/demoehr"
	"github.com/fhirgate/fhirgate/internal/mfa"
	"github.com/fhirgate/fhirgate/internal/storage"
)

// gatewayFixture is a running App with the demo EHR behind its gateway, a
// patient (amy, Patient/pt-001), an admin (ada) and a public app.
type gatewayFixture struct {
	*fixture
	oc *oauth2.Config
}

func newGatewayFixture(t *testing.T, overrides map[string]string) *gatewayFixture {
	t.Helper()
	ctx := context.Background()
	ehr, err := demoehr.New(demoehr.Options{Username: "gw", Password: "ehr-secret"})
	if err != nil {
		t.Fatal(err)
	}
	ehrSrv := httptest.NewServer(ehr)
	t.Cleanup(ehrSrv.Close)
	ov := map[string]string{"gateway.upstream": ehrSrv.URL, "gateway.upstream_auth": "basic:gw:ehr-secret"}
	for k, v := range overrides {
		ov[k] = v
	}
	srv := startServer(t, ov)
	st := srv.app.Store()
	now := time.Now()
	for _, u := range []NewUser{{Username: "amy", Password: "amy-password", Role: storage.RolePatient, FHIRUser: "Patient/pt-001"},
		{Username: "ada", Password: "admin-password", Role: storage.RoleAdmin, FHIRUser: "Practitioner/1"}} {
		if _, err := CreateUser(ctx, st, u, fastPW, now); err != nil {
			t.Fatal(err)
		}
	}
	pub, _, err := CreateClient(ctx, st, clientreg.Metadata{ClientName: "Wired app", RedirectURIs: []string{redirectURI},
		Scope: "openid fhirUser launch/patient offline_access patient/*.rs", TokenEndpointAuthMethod: "none",
		GrantTypes: []string{"authorization_code", "refresh_token"}}, now)
	if err != nil {
		t.Fatal(err)
	}
	provider, err := oidc.NewProvider(ctx, srv.app.Issuer())
	if err != nil {
		t.Fatal(err)
	}
	fx := &fixture{srv: srv, provider: provider, public: pub}
	return &gatewayFixture{fixture: fx, oc: fx.oauthConfig(pub, "", "launch/patient", "openid", "fhirUser", "offline_access", "patient/*.rs")}
}

// signIn runs a launch for amy in browser b and returns the tokens.
func (g *gatewayFixture) signIn(t *testing.T, b *browser) *oauth2.Token {
	t.Helper()
	verifier := oauth2.GenerateVerifier()
	authURL := g.oc.AuthCodeURL("state-wired-1", oauth2.S256ChallengeOption(verifier),
		oauth2.SetAuthURLParam("aud", g.srv.app.FHIRBase()), oidc.Nonce("nonce-wired-1"))
	fl := runBrowserFlow(t, b, authURL, "amy", "amy-password", "")
	tok, err := g.oc.Exchange(context.Background(), fl.code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	return tok
}

// gatewayGet reads path through the gateway with the access token.
func (g *gatewayFixture) gatewayGet(t *testing.T, access, path string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, g.srv.app.FHIRBase()+path, nil)
	req.Header.Set("Authorization", "Bearer "+access)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// adminBrowser signs ada in on the account pages and enrols her second
// factor, as the console requires.
func (g *gatewayFixture) adminBrowser(t *testing.T) *browser {
	t.Helper()
	b := newBrowser(t, g.srv.app.URL(), redirectURI)
	base := g.srv.app.URL()
	p := b.get(base + "/account/login?next=/console")
	p = b.submit(onlyForm(t, p, "/account/login"), url.Values{"username": {"ada"}, "password": {"admin-password"}})
	m := totpKeyRe.FindStringSubmatch(p.body)
	if m == nil {
		p = b.get(base + mfa.PathEnrol + "?next=/console")
		if m = totpKeyRe.FindStringSubmatch(p.body); m == nil {
			t.Fatalf("no enrol page (status %d):\n%s", p.status, p.body)
		}
	}
	key, _ := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(strings.ReplaceAll(m[1], " ", ""))
	p = b.submit(onlyForm(t, p, mfa.PathEnrol), url.Values{"code": {mfa.Code(key, mfa.Step(time.Now()))}})
	if p.status != http.StatusOK {
		t.Fatalf("enrol: %d\n%s", p.status, p.body)
	}
	return b
}

// TestPeoplePagesUseTheAuditTrailAndAnomalies: in the running server the
// patient's access report lists the app's gateway reads, connected apps
// shows when the app last used its access, and the console lists an
// anomaly the detector raised (a replayed authorization code).
func TestPeoplePagesUseTheAuditTrailAndAnomalies(t *testing.T) {
	g := newGatewayFixture(t, nil)
	b := newBrowser(t, g.srv.app.URL(), redirectURI)
	tok := g.signIn(t, b)
	if code := g.gatewayGet(t, tok.AccessToken, "/Patient/pt-001"); code != http.StatusOK {
		t.Fatalf("gateway read: %d", code)
	}
	p := b.get(g.srv.app.URL() + "/account/access")
	if p.status != http.StatusOK || !strings.Contains(p.body, `id="access-report"`) {
		t.Fatalf("access report (status %d) has no table:\n%s", p.status, p.body)
	}
	if !strings.Contains(p.body, "Wired app") || !strings.Contains(p.body, "Patient/pt-001") {
		t.Fatalf("access report does not list the app's read:\n%s", p.body)
	}
	p = b.get(g.srv.app.URL() + "/account/apps")
	if p.status != http.StatusOK || !strings.Contains(p.body, "Wired app") || strings.Contains(p.body, "not available") {
		t.Fatalf("connected apps (status %d):\n%s", p.status, p.body)
	}

	// A replayed authorization code raises a replay anomaly.
	verifier := oauth2.GenerateVerifier()
	fl := runBrowserFlow(t, newBrowser(t, g.srv.app.URL(), redirectURI), g.oc.AuthCodeURL("state-wired-2",
		oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("aud", g.srv.app.FHIRBase())), "amy", "amy-password", "")
	if _, err := g.oc.Exchange(context.Background(), fl.code, oauth2.VerifierOption(verifier)); err != nil {
		t.Fatal(err)
	}
	if _, err := g.oc.Exchange(context.Background(), fl.code, oauth2.VerifierOption(verifier)); err == nil {
		t.Fatal("replayed code accepted")
	}
	ada := g.adminBrowser(t)
	p = ada.get(g.srv.app.URL() + "/console/anomalies")
	if p.status != http.StatusOK || !strings.Contains(p.body, `id="anomalies"`) || !strings.Contains(p.body, "replay") {
		t.Fatalf("console anomalies (status %d):\n%s", p.status, p.body)
	}
	p = ada.get(g.srv.app.URL() + "/console/audit?client=" + url.QueryEscape(g.public.ID))
	if p.status != http.StatusOK || !strings.Contains(p.body, "fhir.request") {
		t.Fatalf("console audit search (status %d):\n%s", p.status, p.body)
	}
}

// consoleCSRF reads the CSRF token of a console page.
func consoleCSRF(t *testing.T, b *browser, u string) string {
	t.Helper()
	p := b.get(u)
	m := csrfValueRe.FindStringSubmatch(p.body)
	if m == nil {
		t.Fatalf("no csrf token on %s (status %d)", u, p.status)
	}
	return m[1]
}

var csrfValueRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// TestConsoleLockAndDisableInTheRunningServer: locking a user in the console
// ends their session (the next app launch asks them to sign in, no SSO) and
// revokes their tokens (the gateway refuses them within the revocation bound);
// disabling a client revokes its families, so the gateway refuses its
// access token within the revocation bound and its refresh token fails.
func TestConsoleLockAndDisableInTheRunningServer(t *testing.T) {
	ctx := context.Background()
	g := newGatewayFixture(t, map[string]string{"revocation.poll_interval": "200ms", "revocation.max_staleness": "2s"})
	a := g.srv.app
	b := newBrowser(t, a.URL(), redirectURI)
	tok := g.signIn(t, b)
	authURL := g.oc.AuthCodeURL("state-lock-1", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()),
		oauth2.SetAuthURLParam("aud", a.FHIRBase()))
	if p := b.get(authURL); strings.Contains(p.body, `action="/authorize/login"`) {
		t.Fatal("no SSO before the lock")
	}
	amy, err := a.Store().GetUserByUsername(ctx, "amy")
	if err != nil {
		t.Fatal(err)
	}
	ada := g.adminBrowser(t)
	csrf := consoleCSRF(t, ada, a.URL()+"/console/users")
	if p := ada.submit(form{action: "/console/users/" + amy.ID + "/lock"}, url.Values{"csrf": {csrf}}); p.status >= 400 {
		t.Fatalf("lock: %d", p.status)
	}
	if u, _ := a.Store().GetUser(ctx, amy.ID); !time.Now().Before(u.LockedUntil) {
		t.Fatal("not locked")
	}
	p := b.get(authURL)
	if p.location != nil || !strings.Contains(p.body, `action="/authorize/login"`) {
		t.Fatalf("locked user's session still signs in apps: %d %v", p.status, p.location)
	}

	// The lock also revoked amy's app access: the gateway refuses her token
	// within the revocation bound.
	deadline := time.Now().Add(5 * time.Second)
	for g.gatewayGet(t, tok.AccessToken, "/Patient/pt-001") != http.StatusUnauthorized {
		if time.Now().After(deadline) {
			t.Fatal("the gateway still accepts a locked user's access token")
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Unlock amy and launch again, then disable the client.
	csrf = consoleCSRF(t, ada, a.URL()+"/console/users")
	if p := ada.submit(form{action: "/console/users/" + amy.ID + "/unlock"}, url.Values{"csrf": {csrf}}); p.status >= 400 {
		t.Fatalf("unlock: %d", p.status)
	}
	tok = g.signIn(t, newBrowser(t, a.URL(), redirectURI))
	if code := g.gatewayGet(t, tok.AccessToken, "/Patient/pt-001"); code != http.StatusOK {
		t.Fatalf("gateway before disabling: %d", code)
	}
	csrf = consoleCSRF(t, ada, a.URL()+"/console/clients")
	if p := ada.submit(form{action: "/console/clients/" + g.public.ID + "/disable"}, url.Values{"csrf": {csrf}}); p.status >= 400 {
		t.Fatalf("disable: %d", p.status)
	}
	deadline = time.Now().Add(5 * time.Second)
	for g.gatewayGet(t, tok.AccessToken, "/Patient/pt-001") != http.StatusUnauthorized {
		if time.Now().After(deadline) {
			t.Fatal("the gateway still accepts a disabled client's access token")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := g.oc.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token(); err == nil {
		t.Fatal("a disabled client's refresh token still works")
	}
}

// admin.public_console: false leaves no admin page on the public listener;
// by default the console is there (and asks an anonymous visitor to sign in).
func TestPublicConsoleSwitch(t *testing.T) {
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tc := range []struct{ set string }{{"true"}, {"false"}} {
		srv := startServer(t, map[string]string{"admin.public_console": tc.set})
		for _, path := range []string{"/console", "/console/clients"} {
			resp, err := noRedirect.Get(srv.app.URL() + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if tc.set == "false" && resp.StatusCode != http.StatusNotFound {
				t.Errorf("public_console false: GET %s = %d, want 404", path, resp.StatusCode)
			}
			if tc.set == "true" && (resp.StatusCode < 300 || resp.StatusCode > 399) {
				t.Errorf("public_console true: GET %s = %d, want a redirect to sign in", path, resp.StatusCode)
			}
		}
		resp, err := noRedirect.PostForm(srv.app.URL()+"/console/clients", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if tc.set == "false" && resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("public_console false: POST /console/clients = %d", resp.StatusCode)
		}
	}
}
