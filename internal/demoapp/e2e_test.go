package demoapp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"html"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/app"
	"github.com/fhirgate/fhirgate/internal/clientreg"
	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/demoapp"
	"github.com/fhirgate/fhirgate/internal/demoehr"
	"github.com/fhirgate/fhirgate/internal/password"
	"github.com/fhirgate/fhirgate/internal/storage"
)

var fastPW = password.Params{Time: 1, Memory: 1024, Threads: 1, KeyLen: 32}

// recorder keeps every token the authorization server hands the app, so the
// test can check that none of them ever reaches the browser.
type recorder struct {
	mu     sync.Mutex
	tokens []string
}

func (rc *recorder) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err != nil || !strings.HasSuffix(r.URL.Path, "/token") {
		return resp, err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(b))
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, k := range []string{"access_token", "refresh_token", "id_token"} {
		if s, _ := m[k].(string); s != "" {
			rc.tokens = append(rc.tokens, s)
		}
	}
	return resp, nil
}

func (rc *recorder) all() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]string(nil), rc.tokens...)
}

// stack is the demo: EHR, authorization server + gateway, and the app.
type stack struct {
	app   *app.App
	url   string // the demo app
	rec   *recorder
	store storage.Store
}

func newStack(t *testing.T) *stack {
	t.Helper()
	ctx := context.Background()
	ehr, err := demoehr.New(demoehr.Options{Username: "gw", Password: "ehr-secret"})
	if err != nil {
		t.Fatal(err)
	}
	ehrSrv := httptest.NewServer(ehr)
	t.Cleanup(ehrSrv.Close)
	cfg, err := config.Load(config.LoadOptions{LookupEnv: func(string) (string, bool) { return "", false }, Overrides: map[string]string{
		"addr": "127.0.0.1:0", "data_dir": t.TempDir(),
		"gateway.upstream": ehrSrv.URL, "gateway.upstream_auth": "basic:gw:ehr-secret",
	}})
	if err != nil {
		t.Fatal(err)
	}
	a, err := app.New(ctx, cfg, app.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	a.Start()
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = a.Shutdown(sctx)
	})
	st := a.Store()
	now := time.Now()
	for _, p := range ehr.Store().Patients() {
		if err := app.AddPatient(ctx, st, storage.Patient{ID: p.ID, Name: p.Name, BirthDate: p.BirthDate}); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range []app.NewUser{
		{Username: "patient", Password: "patient-password", Role: storage.RolePatient, FHIRUser: "Patient/" + demoehr.PatientID(1)},
		{Username: "clinician", Password: "clinician-password", Role: storage.RoleClinician, FHIRUser: "Practitioner/pr-01"},
	} {
		if _, err := app.CreateUser(ctx, st, u, fastPW, now); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	appURL := "http://" + ln.Addr().String()
	c, sec, err := app.CreateClient(ctx, st, clientreg.Metadata{
		ClientName: "demo app", RedirectURIs: []string{appURL + "/callback"},
		Scope: strings.Join(demoapp.DefaultScopes, " "), TokenEndpointAuthMethod: "client_secret_basic",
		GrantTypes: []string{"authorization_code", "refresh_token"},
	}, now)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	h, err := demoapp.New(demoapp.Options{URL: appURL, FHIRBase: a.FHIRBase(), Issuer: a.Issuer(),
		ClientID: c.ID, ClientSecret: sec, HTTPClient: &http.Client{Transport: rec, Timeout: 20 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	if h.RedirectURL() != appURL+"/callback" {
		t.Fatalf("redirect %s", h.RedirectURL())
	}
	mux := http.NewServeMux()
	h.Register(mux)
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return &stack{app: a, url: appURL, rec: rec, store: st}
}

// seen is everything the browser was shown: page bodies, URLs (including
// every redirect Location) and response headers.
type seen struct {
	mu   sync.Mutex
	text []string
}

func (s *seen) add(v ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.text = append(s.text, v...)
}

// browser is an http.Client with a cookie jar that records what it sees.
type browser struct {
	t      *testing.T
	client *http.Client
	seen   *seen
}

func newBrowser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	b := &browser{t: t, seen: &seen{}}
	b.client = &http.Client{Jar: jar, Timeout: 30 * time.Second, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		b.seen.add(req.URL.String())
		if len(via) > 15 {
			return errors.New("too many redirects")
		}
		return nil
	}}
	return b
}

type page struct {
	status int
	url    *url.URL
	body   string
	header http.Header
}

func (b *browser) do(req *http.Request) page {
	b.t.Helper()
	b.seen.add(req.URL.String())
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	b.seen.add(string(body), resp.Request.URL.String())
	for k, v := range resp.Header {
		b.seen.add(k + ": " + strings.Join(v, ", "))
	}
	return page{status: resp.StatusCode, url: resp.Request.URL, body: string(body), header: resp.Header}
}

func (b *browser) get(u string) page {
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	return b.do(req)
}

var (
	formRe  = regexp.MustCompile(`(?s)<form[^>]*method="post"[^>]*action="([^"]*)"[^>]*>(.*?)</form>`)
	inputRe = regexp.MustCompile(`<input[^>]*>`)
	attrRe  = regexp.MustCompile(`(\w+)(?:="([^"]*)")?`)
)

// submit posts the page's form whose action starts with action, with its
// hidden fields, checked boxes and extra values.
func (b *browser) submit(p page, action string, extra url.Values) page {
	b.t.Helper()
	for _, m := range formRe.FindAllStringSubmatch(p.body, -1) {
		act := html.UnescapeString(m[1])
		if !strings.HasPrefix(act, action) {
			continue
		}
		vals := url.Values{}
		for _, in := range inputRe.FindAllString(m[2], -1) {
			attrs := map[string]string{}
			for _, a := range attrRe.FindAllStringSubmatch(strings.TrimPrefix(in, "<input"), -1) {
				attrs[a[1]] = html.UnescapeString(a[2])
			}
			_, checked := attrs["checked"]
			switch attrs["type"] {
			case "checkbox", "radio":
				if checked {
					vals.Add(attrs["name"], attrs["value"])
				}
			default:
				if attrs["name"] != "" {
					vals.Set(attrs["name"], attrs["value"])
				}
			}
		}
		for k, v := range extra {
			vals[k] = v
		}
		target := p.url.ResolveReference(&url.URL{Path: strings.SplitN(act, "?", 2)[0]})
		if i := strings.Index(act, "?"); i >= 0 {
			target.RawQuery = act[i+1:]
		}
		req, _ := http.NewRequest(http.MethodPost, target.String(), strings.NewReader(vals.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return b.do(req)
	}
	b.t.Fatalf("no form to %s on %s (status %d):\n%s", action, p.url, p.status, p.body)
	return page{}
}

// signIn runs the whole launch from the app's start page to its record page.
func (b *browser) signIn(s *stack, user, pw, pick string) page {
	b.t.Helper()
	p := b.get(s.url + "/")
	if p.status != 200 || !strings.Contains(p.body, "Sign in with fhirgate") {
		b.t.Fatalf("start page %d:\n%s", p.status, p.body)
	}
	p = b.submit(p, "/login", nil)
	p = b.submit(p, "/authorize/login", url.Values{"username": {user}, "password": {pw}})
	for i := 0; i < 4 && strings.HasPrefix(p.url.String(), s.app.Issuer()); i++ {
		switch {
		case strings.Contains(p.body, `action="/authorize/patient`):
			p = b.submit(p, "/authorize/patient", url.Values{"patient": {pick}})
		case strings.Contains(p.body, `action="/authorize/consent`):
			p = b.submit(p, "/authorize/consent", url.Values{"decision": {"approve"}})
		default:
			b.t.Fatalf("unexpected page %s (%d):\n%s", p.url, p.status, p.body)
		}
	}
	return p
}

func TestDemoAppPatientLaunch(t *testing.T) {
	s := newStack(t)
	b := newBrowser(t)
	p := b.signIn(s, "patient", "patient-password", "")
	if p.status != 200 || p.url.String() != s.url+"/" {
		t.Fatalf("after sign-in %s %d:\n%s", p.url, p.status, p.body)
	}
	// The patient's own data, read through the gateway.
	pid := demoehr.PatientID(1)
	for _, want := range []string{pid, "Conditions", "Observations", "Medications", "Allergies", "Immunizations",
		"Sign out", "Body weight"} {
		if !strings.Contains(p.body, want) {
			t.Errorf("record page lacks %q", want)
		}
	}
	if strings.Contains(p.body, "Not shared") || strings.Contains(p.body, "Could not be read") {
		t.Errorf("a section failed:\n%s", p.body)
	}
	if strings.Contains(p.body, demoehr.PatientID(2)) {
		t.Error("another patient's id on the page")
	}
	// The page has no script at all and a strict CSP.
	if strings.Contains(strings.ToLower(p.body), "<script") {
		t.Error("script on the page")
	}
	csp := p.header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "script-src") {
		t.Errorf("CSP %q", csp)
	}
	// The browser holds only the HTTP-only session cookie.
	u, _ := url.Parse(s.url)
	cookies := b.client.Jar.Cookies(u)
	var found bool
	for _, c := range cookies {
		if c.Name == demoapp.CookieName {
			found = true
		}
	}
	if !found {
		t.Fatal("no session cookie")
	}
	tokens := s.rec.all()
	if len(tokens) < 2 {
		t.Fatalf("recorded %d tokens", len(tokens))
	}
	b.seen.mu.Lock()
	for _, tok := range tokens {
		for _, txt := range b.seen.text {
			if strings.Contains(txt, tok) {
				t.Errorf("a token reached the browser in %.80q", txt)
			}
		}
		for _, c := range cookies {
			if strings.Contains(c.Value, tok) {
				t.Error("a token in a cookie")
			}
		}
	}
	b.seen.mu.Unlock()

	// A second browser without the cookie sees only the start page.
	other := newBrowser(t).get(s.url + "/")
	if strings.Contains(other.body, pid) || !strings.Contains(other.body, "Sign in with fhirgate") {
		t.Fatal("record visible without the session cookie")
	}
	// Sign out: the session is gone.
	p = b.submit(p, "/logout", nil)
	if strings.Contains(p.body, pid) || !strings.Contains(p.body, "Sign in with fhirgate") {
		t.Fatalf("after sign-out:\n%s", p.body)
	}
}

func TestDemoAppClinicianPicksPatient(t *testing.T) {
	s := newStack(t)
	b := newBrowser(t)
	pid := demoehr.PatientID(7)
	p := b.signIn(s, "clinician", "clinician-password", pid)
	if p.status != 200 || !strings.Contains(p.body, pid) || strings.Contains(p.body, demoehr.PatientID(1)+"<") {
		t.Fatalf("record page %d:\n%s", p.status, p.body)
	}
}

// The authorization response is bound to the browser that started it.
func TestDemoAppCallbackRefusals(t *testing.T) {
	s := newStack(t)
	b := newBrowser(t)
	// No session at all.
	if p := b.get(s.url + "/callback?code=x&state=y"); p.status != http.StatusBadRequest {
		t.Fatalf("callback without a session: %d", p.status)
	}
	// A login POST without the CSRF token.
	b.get(s.url + "/")
	req, _ := http.NewRequest(http.MethodPost, s.url+"/login", strings.NewReader("csrf=wrong"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if p := b.do(req); p.status != http.StatusForbidden {
		t.Fatalf("login without CSRF: %d", p.status)
	}
	// Start a sign-in, then present a response with the wrong state.
	start := b.get(s.url + "/")
	b.client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	p := b.submit(start, "/login", nil)
	if p.status != http.StatusSeeOther {
		t.Fatalf("login: %d", p.status)
	}
	if p := b.get(s.url + "/callback?code=x&state=wrong&iss=" + url.QueryEscape(s.app.Issuer())); p.status != http.StatusBadRequest ||
		!strings.Contains(p.body, "does not belong") {
		t.Fatalf("wrong state: %d %s", p.status, p.body)
	}
	// The pending sign-in was consumed by the failed attempt.
	loc, _ := url.Parse(p.header.Get("Location"))
	state := loc.Query().Get("state")
	if state == "" || loc.Query().Get("code_challenge_method") != "S256" || loc.Query().Get("aud") != s.app.FHIRBase() {
		t.Fatalf("authorization URL %s", loc)
	}
	if p := b.get(s.url + "/callback?code=x&state=" + state + "&iss=" + url.QueryEscape(s.app.Issuer())); p.status != http.StatusBadRequest ||
		!strings.Contains(p.body, "no sign-in is in progress") {
		t.Fatalf("replayed state: %d %s", p.status, p.body)
	}
	// A response naming another issuer (mix-up, RFC 9207).
	p = b.submit(b.get(s.url+"/"), "/login", nil)
	loc, _ = url.Parse(p.header.Get("Location"))
	if p := b.get(s.url + "/callback?code=x&state=" + loc.Query().Get("state") + "&iss=https%3A%2F%2Fevil.example"); p.status != http.StatusBadRequest ||
		!strings.Contains(p.body, "unexpected server") {
		t.Fatalf("wrong iss: %d %s", p.status, p.body)
	}
	// Missing iss, while the server advertises it.
	p = b.submit(b.get(s.url+"/"), "/login", nil)
	loc, _ = url.Parse(p.header.Get("Location"))
	if p := b.get(s.url + "/callback?code=x&state=" + loc.Query().Get("state")); p.status != http.StatusBadRequest {
		t.Fatalf("no iss: %d %s", p.status, p.body)
	}
	// A correct state with a forged code: the exchange fails.
	p = b.submit(b.get(s.url+"/"), "/login", nil)
	loc, _ = url.Parse(p.header.Get("Location"))
	if p := b.get(s.url + "/callback?code=forged&state=" + loc.Query().Get("state") + "&iss=" + url.QueryEscape(s.app.Issuer())); p.status != http.StatusBadRequest ||
		!strings.Contains(p.body, "refused the sign-in") {
		t.Fatalf("forged code: %d %s", p.status, p.body)
	}
}

// A session cookie planted before sign-in (fixation) is worthless after it.
func TestDemoAppSessionRotates(t *testing.T) {
	s := newStack(t)
	b := newBrowser(t)
	first := b.get(s.url + "/")
	var before string
	for _, c := range b.client.Jar.Cookies(first.url) {
		if c.Name == demoapp.CookieName {
			before = c.Value
		}
	}
	p := b.signIn(s, "patient", "patient-password", "")
	if !strings.Contains(p.body, demoehr.PatientID(1)) {
		t.Fatal("sign-in failed")
	}
	req, _ := http.NewRequest(http.MethodGet, s.url+"/", nil)
	req.AddCookie(&http.Cookie{Name: demoapp.CookieName, Value: before})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(body), demoehr.PatientID(1)) {
		t.Fatal("the pre-sign-in cookie shows the record")
	}
	if sc := resp.Header.Get("Set-Cookie"); !strings.Contains(sc, "HttpOnly") || !strings.Contains(sc, "SameSite=Lax") {
		t.Fatalf("cookie flags %q", sc)
	}
}

func TestNewOptions(t *testing.T) {
	good := demoapp.Options{URL: "http://127.0.0.1:1", FHIRBase: "http://127.0.0.1:2/fhir", Issuer: "http://127.0.0.1:2", ClientID: "c"}
	if _, err := demoapp.New(good); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*demoapp.Options){
		"no url":    func(o *demoapp.Options) { o.URL = "" },
		"path":      func(o *demoapp.Options) { o.URL = "http://127.0.0.1:1/app" },
		"ftp":       func(o *demoapp.Options) { o.URL = "ftp://x" },
		"no base":   func(o *demoapp.Options) { o.FHIRBase = "" },
		"no issuer": func(o *demoapp.Options) { o.Issuer = "" },
		"no client": func(o *demoapp.Options) { o.ClientID = "" },
	} {
		o := good
		mut(&o)
		if _, err := demoapp.New(o); !errors.Is(err, demoapp.ErrOptions) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
