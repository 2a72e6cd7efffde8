package app

import (
	"context"
	"encoding/json"
	"errors"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/fhirgate/fhirgate/internal/clientreg"
	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/password"
	"github.com/fhirgate/fhirgate/internal/storage"
)

var fastPW = password.Params{Time: 1, Memory: 1024, Threads: 1, KeyLen: 32}

// testServer is a real fhirgate listening on 127.0.0.1:0 with a temp data dir.
type testServer struct {
	app *App
	cfg *config.Config
}

func startServer(t testing.TB, overrides map[string]string) *testServer {
	t.Helper()
	ov := map[string]string{"addr": "127.0.0.1:0", "data_dir": t.TempDir()}
	for k, v := range overrides {
		ov[k] = v
	}
	cfg, err := config.Load(config.LoadOptions{LookupEnv: func(string) (string, bool) { return "", false }, Overrides: ov})
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(context.Background(), cfg, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	a.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := a.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	})
	return &testServer{app: a, cfg: cfg}
}

// form is an HTML form found on a page.
type form struct {
	action string
	fields url.Values // hidden and text inputs, checked checkboxes
	boxes  []string   // values of every scope checkbox
	radios []string   // values of every radio input
}

var (
	formRe  = regexp.MustCompile(`(?s)<form[^>]*method="post"[^>]*action="([^"]*)"[^>]*>(.*?)</form>`)
	inputRe = regexp.MustCompile(`<input[^>]*>`)
	attrRe  = regexp.MustCompile(`(\w+)(?:="([^"]*)")?`)
)

// postForms extracts the POST forms of an HTML page.
func postForms(page string) []form {
	var out []form
	for _, m := range formRe.FindAllStringSubmatch(page, -1) {
		f := form{action: html.UnescapeString(m[1]), fields: url.Values{}}
		for _, in := range inputRe.FindAllString(m[2], -1) {
			attrs := map[string]string{}
			for _, a := range attrRe.FindAllStringSubmatch(strings.TrimPrefix(in, "<input"), -1) {
				attrs[a[1]] = html.UnescapeString(a[2])
			}
			_, checked := attrs["checked"]
			switch attrs["type"] {
			case "checkbox":
				f.boxes = append(f.boxes, attrs["value"])
				if checked {
					f.fields.Add(attrs["name"], attrs["value"])
				}
			case "radio":
				f.radios = append(f.radios, attrs["value"])
			default:
				if attrs["name"] != "" {
					f.fields.Set(attrs["name"], attrs["value"])
				}
			}
		}
		out = append(out, f)
	}
	return out
}

// browser follows the pages like a user agent with cookies, stopping at the
// redirect to the app's redirect URI.
type browser struct {
	t        *testing.T
	client   *http.Client
	base     string
	redirect string
}

func newBrowser(t *testing.T, base, redirectURI string) *browser {
	jar, _ := cookiejar.New(nil)
	b := &browser{t: t, base: base, redirect: redirectURI}
	b.client = &http.Client{Jar: jar, Timeout: 20 * time.Second, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), b.redirect) {
			return http.ErrUseLastResponse // capture the code; never call the app
		}
		if len(via) > 10 {
			return errors.New("too many redirects")
		}
		return nil
	}}
	return b
}

// page is a response: either an HTML page or the final redirect to the app.
type page struct {
	status   int
	body     string
	location *url.URL // set when the flow ended at the app's redirect URI
}

func (b *browser) do(req *http.Request) page {
	b.t.Helper()
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	p := page{status: resp.StatusCode, body: string(body)}
	if loc := resp.Header.Get("Location"); loc != "" && strings.HasPrefix(loc, b.redirect) {
		if resp.StatusCode != http.StatusSeeOther && resp.StatusCode != http.StatusFound {
			b.t.Fatalf("redirect to app with %d", resp.StatusCode)
		}
		if resp.StatusCode == http.StatusTemporaryRedirect {
			b.t.Fatal("307 after a form POST")
		}
		p.location, _ = url.Parse(loc)
	}
	return p
}

func (b *browser) get(u string) page {
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	return b.do(req)
}

func (b *browser) submit(f form, extra url.Values) page {
	vals := url.Values{}
	for k, v := range f.fields {
		vals[k] = slices.Clone(v)
	}
	for k, v := range extra {
		vals[k] = v
	}
	action, err := url.Parse(f.action)
	if err != nil {
		b.t.Fatal(err)
	}
	base, _ := url.Parse(b.base)
	req, _ := http.NewRequest(http.MethodPost, base.ResolveReference(action).String(), strings.NewReader(vals.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

// onlyForm returns the form posting to action.
func onlyForm(t *testing.T, p page, action string) form {
	t.Helper()
	for _, f := range postForms(p.body) {
		if strings.HasPrefix(f.action, action) {
			return f
		}
	}
	t.Fatalf("no form to %s on page (status %d):\n%s", action, p.status, p.body)
	return form{}
}

// flow is one launch's outcome at the redirect URI.
type flow struct {
	code, state, iss string
	consentBoxes     []string
}

// runBrowserFlow signs in, picks a patient when asked, approves consent
// (unchecking the scopes in uncheck) and returns the authorization response.
func runBrowserFlow(t *testing.T, b *browser, authURL, username, pw, pickPatient string, uncheck ...string) flow {
	t.Helper()
	p := b.get(authURL)
	if p.location != nil {
		t.Fatalf("redirected without sign-in: %s", p.location)
	}
	login := onlyForm(t, p, "/authorize/login")
	p = b.submit(login, url.Values{"username": {username}, "password": {pw}})
	var fl flow
	for i := 0; p.location == nil && i < 5; i++ {
		switch {
		case strings.Contains(p.body, `action="/authorize/patient"`) && pickPatient != "":
			f := onlyForm(t, p, "/authorize/patient")
			if !slices.Contains(f.radios, pickPatient) {
				t.Fatalf("picker lacks %s: %v", pickPatient, f.radios)
			}
			p = b.submit(f, url.Values{"patient": {pickPatient}})
		case strings.Contains(p.body, `action="/authorize/consent"`):
			f := onlyForm(t, p, "/authorize/consent")
			fl.consentBoxes = f.boxes
			var keep []string
			for _, s := range f.fields["scope"] {
				if !slices.Contains(uncheck, s) {
					keep = append(keep, s)
				}
			}
			f.fields["scope"] = keep
			p = b.submit(f, url.Values{"decision": {"approve"}})
		default:
			t.Fatalf("unexpected page (status %d):\n%s", p.status, p.body)
		}
	}
	if p.location == nil {
		t.Fatal("flow did not end at the redirect URI")
	}
	q := p.location.Query()
	if e := q.Get("error"); e != "" {
		t.Fatalf("authorization error %s: %s", e, q.Get("error_description"))
	}
	fl.code, fl.state, fl.iss = q.Get("code"), q.Get("state"), q.Get("iss")
	return fl
}

type fixture struct {
	srv      *testServer
	provider *oidc.Provider
	public   *storage.Client
	conf     *storage.Client
	secret   string
}

const redirectURI = "http://127.0.0.1:9/callback"

func setup(t *testing.T) *fixture { t.Helper(); return setupWith(t, nil) }

// setupWith is setup on a server started with config overrides.
func setupWith(t *testing.T, overrides map[string]string) *fixture {
	t.Helper()
	ctx := context.Background()
	srv := startServer(t, overrides)
	st := srv.app.Store()
	now := time.Now()
	if _, err := CreateUser(ctx, st, NewUser{Username: "amy", Password: "amy-password", Role: storage.RolePatient, FHIRUser: "Patient/123"}, fastPW, now); err != nil {
		t.Fatal(err)
	}
	if _, err := CreateUser(ctx, st, NewUser{Username: "drwho", Password: "doctor-password", Role: storage.RoleClinician, FHIRUser: "Practitioner/9"}, fastPW, now); err != nil {
		t.Fatal(err)
	}
	for _, p := range []storage.Patient{{ID: "123", Name: "Amy Shaw", BirthDate: "1987-02-20"}, {ID: "456", Name: "Bob Jones"}} {
		if err := AddPatient(ctx, st, p); err != nil {
			t.Fatal(err)
		}
	}
	scopes := "openid fhirUser profile launch launch/patient launch/encounter offline_access patient/*.rs user/*.rs"
	pub, _, err := CreateClient(ctx, st, clientreg.Metadata{ClientName: "Public app", RedirectURIs: []string{redirectURI},
		Scope: scopes, TokenEndpointAuthMethod: "none", GrantTypes: []string{"authorization_code", "refresh_token"}}, now)
	if err != nil {
		t.Fatal(err)
	}
	conf, secret, err := CreateClient(ctx, st, clientreg.Metadata{ClientName: "Confidential app", RedirectURIs: []string{redirectURI},
		Scope: scopes, TokenEndpointAuthMethod: "client_secret_basic", GrantTypes: []string{"authorization_code", "refresh_token"}}, now)
	if err != nil {
		t.Fatal(err)
	}
	provider, err := oidc.NewProvider(ctx, srv.app.Issuer())
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{srv: srv, provider: provider, public: pub, conf: conf, secret: secret}
}

func (fx *fixture) oauthConfig(c *storage.Client, secret string, scopes ...string) *oauth2.Config {
	ep := fx.provider.Endpoint()
	ep.AuthStyle = oauth2.AuthStyleInParams
	if secret != "" {
		ep.AuthStyle = oauth2.AuthStyleInHeader
	}
	return &oauth2.Config{ClientID: c.ID, ClientSecret: secret, Endpoint: ep, RedirectURL: redirectURI, Scopes: scopes}
}

// launchResult is what a completed launch yields.
type launchResult struct {
	tok      *oauth2.Token
	idToken  *oidc.IDToken
	claims   map[string]any
	code     string
	verifier string
}

func (fx *fixture) launch(t *testing.T, oc *oauth2.Config, username, pw, pick string, extra ...oauth2.AuthCodeOption) launchResult {
	t.Helper()
	ctx := context.Background()
	verifier := oauth2.GenerateVerifier()
	state, nonce := oauth2.GenerateVerifier()[:20], oauth2.GenerateVerifier()[:20]
	opts := append([]oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier),
		oauth2.SetAuthURLParam("aud", fx.srv.app.FHIRBase()), oidc.Nonce(nonce)}, extra...)
	b := newBrowser(t, fx.srv.app.URL(), redirectURI)
	fl := runBrowserFlow(t, b, oc.AuthCodeURL(state, opts...), username, pw, pick)
	if fl.state != state {
		t.Fatalf("state %q, want %q", fl.state, state)
	}
	if fl.iss != fx.srv.app.Issuer() {
		t.Fatalf("iss %q, want %q (RFC 9207)", fl.iss, fx.srv.app.Issuer())
	}
	tok, err := oc.Exchange(ctx, fl.code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	if tok.TokenType != "Bearer" || tok.AccessToken == "" {
		t.Fatalf("token %+v", tok)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := fx.provider.Verifier(&oidc.Config{ClientID: oc.ClientID}).Verify(ctx, raw)
	if err != nil {
		t.Fatalf("id_token: %v", err)
	}
	if idt.Nonce != nonce {
		t.Fatalf("nonce %q, want %q", idt.Nonce, nonce)
	}
	claims := map[string]any{}
	if err := idt.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	ui, err := fx.provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
	if err != nil {
		t.Fatalf("userinfo: %v", err)
	}
	if ui.Subject != idt.Subject {
		t.Fatalf("userinfo sub %q, id_token sub %q", ui.Subject, idt.Subject)
	}
	return launchResult{tok: tok, idToken: idt, claims: claims, code: fl.code, verifier: verifier}
}

// replayCode presents the code a second time: invalid_grant, and every token
// issued from the code is revoked (userinfo then refuses the access token).
func (fx *fixture) replayCode(t *testing.T, oc *oauth2.Config, r launchResult) {
	t.Helper()
	ctx := context.Background()
	if _, err := oc.Exchange(ctx, r.code, oauth2.VerifierOption(r.verifier)); err == nil || !strings.Contains(err.Error(), "invalid_grant") {
		t.Fatalf("second exchange: %v", err)
	}
	if _, err := fx.provider.UserInfo(ctx, oauth2.StaticTokenSource(r.tok)); err == nil {
		t.Fatal("access token still accepted after the code was replayed")
	}
}

func grantedScopes(tok *oauth2.Token) []string {
	s, _ := tok.Extra("scope").(string)
	return strings.Fields(s)
}

func TestEndToEndStandalonePatientLaunch(t *testing.T) {
	fx := setup(t)
	for _, tc := range []struct {
		name   string
		client *storage.Client
		secret string
	}{{"public", fx.public, ""}, {"confidential", fx.conf, fx.secret}} {
		t.Run(tc.name, func(t *testing.T) {
			oc := fx.oauthConfig(tc.client, tc.secret, "launch/patient", "openid", "fhirUser", "offline_access", "patient/*.rs")
			r := fx.launch(t, oc, "amy", "amy-password", "")
			if got := r.tok.Extra("patient"); got != "123" {
				t.Fatalf("patient %v", got)
			}
			if r.tok.RefreshToken == "" {
				t.Fatal("offline_access granted but no refresh token")
			}
			want := fx.srv.app.FHIRBase() + "/Patient/123"
			if r.claims["fhirUser"] != want {
				t.Fatalf("fhirUser %v, want %s", r.claims["fhirUser"], want)
			}
			for _, s := range []string{"launch/patient", "openid", "fhirUser", "offline_access", "patient/*.rs"} {
				if !slices.Contains(grantedScopes(r.tok), s) {
					t.Errorf("scope %s not granted: %v", s, grantedScopes(r.tok))
				}
			}
			// The refresh token works.
			ts := oc.TokenSource(context.Background(), &oauth2.Token{RefreshToken: r.tok.RefreshToken})
			nt, err := ts.Token()
			if err != nil || nt.AccessToken == "" || nt.AccessToken == r.tok.AccessToken {
				t.Fatalf("refresh: %v", err)
			}
			fx.replayCode(t, oc, r)
		})
	}
}

func TestEndToEndClinicianPicksPatient(t *testing.T) {
	fx := setup(t)
	oc := fx.oauthConfig(fx.conf, fx.secret, "launch/patient", "openid", "fhirUser", "patient/*.rs", "patient/*.cruds")
	r := fx.launch(t, oc, "drwho", "doctor-password", "Patient/456")
	if got := r.tok.Extra("patient"); got != "456" {
		t.Fatalf("patient %v", got)
	}
	if r.claims["fhirUser"] != fx.srv.app.FHIRBase()+"/Practitioner/9" {
		t.Fatalf("fhirUser %v", r.claims["fhirUser"])
	}
	if r.tok.RefreshToken != "" {
		t.Fatal("refresh token without offline_access")
	}
	fx.replayCode(t, oc, r)
}

func TestEndToEndEHRLaunch(t *testing.T) {
	fx := setup(t)
	lv, err := CreateLaunch(context.Background(), fx.srv.app.Store(), "Patient/123", "Encounter/9", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	oc := fx.oauthConfig(fx.conf, fx.secret, "launch", "openid", "fhirUser", "patient/*.rs")
	r := fx.launch(t, oc, "drwho", "doctor-password", "", oauth2.SetAuthURLParam("launch", lv))
	if r.tok.Extra("patient") != "123" || r.tok.Extra("encounter") != "9" {
		t.Fatalf("context patient=%v encounter=%v", r.tok.Extra("patient"), r.tok.Extra("encounter"))
	}
	if !slices.Contains(grantedScopes(r.tok), "launch") {
		t.Fatalf("launch not granted: %v", grantedScopes(r.tok))
	}
	// The launch value is single use.
	b := newBrowser(t, fx.srv.app.URL(), redirectURI)
	u := oc.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()),
		oauth2.SetAuthURLParam("aud", fx.srv.app.FHIRBase()), oauth2.SetAuthURLParam("launch", lv))
	p := b.get(u)
	if p.location == nil || p.location.Query().Get("error") == "" {
		if p.status < 400 {
			t.Fatalf("reused launch value accepted (status %d)", p.status)
		}
	}
}

func TestEndToEndUncheckedScopeNotGranted(t *testing.T) {
	fx := setup(t)
	ctx := context.Background()
	oc := fx.oauthConfig(fx.public, "", "launch/patient", "openid", "fhirUser", "patient/Observation.rs", "patient/Condition.rs")
	verifier := oauth2.GenerateVerifier()
	b := newBrowser(t, fx.srv.app.URL(), redirectURI)
	fl := runBrowserFlow(t, b, oc.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier),
		oauth2.SetAuthURLParam("aud", fx.srv.app.FHIRBase())), "amy", "amy-password", "", "patient/Condition.rs")
	if !slices.Contains(fl.consentBoxes, "patient/Condition.rs") {
		t.Fatalf("consent boxes %v", fl.consentBoxes)
	}
	tok, err := oc.Exchange(ctx, fl.code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	got := grantedScopes(tok)
	if slices.Contains(got, "patient/Condition.rs") || !slices.Contains(got, "patient/Observation.rs") {
		t.Fatalf("granted %v", got)
	}
}

func TestEndToEndRefusals(t *testing.T) {
	fx := setup(t)
	ctx := context.Background()
	oc := fx.oauthConfig(fx.public, "", "launch/patient", "openid", "patient/*.rs")
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(u string) *http.Response {
		resp, err := noRedirect.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	aud := oauth2.SetAuthURLParam("aud", fx.srv.app.FHIRBase())
	challenge := oauth2.S256ChallengeOption(oauth2.GenerateVerifier())

	// Wrong aud: refused (redirect with an error, never a code).
	resp := get(oc.AuthCodeURL("s", challenge, oauth2.SetAuthURLParam("aud", "https://evil.example.org/fhir")))
	if loc, _ := url.Parse(resp.Header.Get("Location")); resp.StatusCode < 400 && (loc == nil || loc.Query().Get("error") == "" || loc.Query().Get("code") != "") {
		t.Fatalf("wrong aud: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	// Missing PKCE challenge and the plain method: invalid_request.
	for _, opts := range [][]oauth2.AuthCodeOption{{aud}, {aud, oauth2.SetAuthURLParam("code_challenge", "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqr"), oauth2.SetAuthURLParam("code_challenge_method", "plain")}} {
		resp := get(oc.AuthCodeURL("s", opts...))
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if loc == nil || loc.Query().Get("error") != "invalid_request" {
			t.Fatalf("PKCE: %d %s", resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	// Implicit flow: unsupported_response_type.
	u := strings.Replace(oc.AuthCodeURL("s", challenge, aud), "response_type=code", "response_type=token", 1)
	resp = get(u)
	if loc, _ := url.Parse(resp.Header.Get("Location")); loc == nil || !strings.Contains(loc.RawQuery+loc.Fragment, "unsupported_response_type") {
		t.Fatalf("implicit: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	// Unregistered redirect URI and unknown client: an error page, never a redirect.
	bad := *oc
	bad.RedirectURL = "http://127.0.0.1:9/evil"
	if resp := get(bad.AuthCodeURL("s", challenge, aud)); resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
		t.Fatalf("bad redirect: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	unknown := *oc
	unknown.ClientID = "no-such-client"
	if resp := get(unknown.AuthCodeURL("s", challenge, aud)); resp.StatusCode < 400 || resp.Header.Get("Location") != "" {
		t.Fatalf("unknown client: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}

	// The sign-in page forbids framing and inline script.
	resp = get(oc.AuthCodeURL("s", challenge, aud))
	if resp.StatusCode == http.StatusSeeOther || resp.StatusCode == http.StatusFound {
		resp = get(fx.srv.app.URL() + resp.Header.Get("Location"))
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || strings.Contains(csp, "unsafe-inline") {
		t.Fatalf("login page CSP %q (status %d)", csp, resp.StatusCode)
	}

	// Wrong PKCE verifier at /token: invalid_grant.
	verifier := oauth2.GenerateVerifier()
	b := newBrowser(t, fx.srv.app.URL(), redirectURI)
	fl := runBrowserFlow(t, b, oc.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier), aud), "amy", "amy-password", "")
	if _, err := oc.Exchange(ctx, fl.code, oauth2.VerifierOption(oauth2.GenerateVerifier())); err == nil || !strings.Contains(err.Error(), "invalid_grant") {
		t.Fatalf("wrong verifier: %v", err)
	}

	// CORS: /token answers a registered origin, never *; /authorize never.
	req, _ := http.NewRequest(http.MethodOptions, fx.srv.app.URL()+"/token", nil)
	req.Header.Set("Origin", "http://127.0.0.1:9")
	req.Header.Set("Access-Control-Request-Method", "POST")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "http://127.0.0.1:9" {
		t.Fatalf("token preflight ACAO %q", got)
	}
	req, _ = http.NewRequest(http.MethodGet, oc.AuthCodeURL("s", challenge, aud), nil)
	req.Header.Set("Origin", "http://127.0.0.1:9")
	resp, err = noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Fatalf("/authorize answered CORS %q", got)
	}
}

func TestDiscoveryDocumentsAndStyle(t *testing.T) {
	srv := startServer(t, nil)
	get := func(path string) map[string]any {
		resp, err := http.Get(srv.app.URL() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
		var m map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	smart := get("/.well-known/smart-configuration")
	if smart["issuer"] != srv.app.Issuer() {
		t.Fatalf("issuer %v", smart["issuer"])
	}
	if m := get("/fhir/.well-known/smart-configuration"); m["token_endpoint"] != srv.app.Issuer()+"/token" {
		t.Fatalf("fhir base smart-configuration %v", m["token_endpoint"])
	}
	get("/.well-known/openid-configuration")
	get("/.well-known/oauth-authorization-server")
	if jwks := get("/jwks"); len(jwks["keys"].([]any)) < 2 {
		t.Fatalf("jwks %v", jwks)
	}
	get("/smart-style.json")
}

func TestListenerRules(t *testing.T) {
	cfg, err := config.Load(config.LoadOptions{LookupEnv: func(string) (string, bool) { return "", false },
		Overrides: map[string]string{"addr": "0.0.0.0:0", "issuer": "https://auth.example.org", "insecure_http_behind_proxy": "true",
			"keys.kek": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", "data_dir": t.TempDir()}})
	if err != nil {
		t.Fatal(err)
	}
	// A config built in code without the switch is refused by New itself.
	cfg.InsecureHTTPBehindProxy = false
	if _, err := New(context.Background(), cfg, Options{}); !errors.Is(err, ErrInsecureListener) {
		t.Fatalf("err = %v, want ErrInsecureListener", err)
	}
}
