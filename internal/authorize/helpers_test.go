package authorize

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit/audittest"
	"github.com/fhirgate/fhirgate/internal/password"
	"github.com/fhirgate/fhirgate/internal/session"
	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/storage/sqlite"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

var cheap = password.Params{Time: 1, Memory: 1024, Threads: 1, KeyLen: 32}

const (
	appRedirect = "https://app.example/cb?x=1"
	verifier    = "0123456789abcdef0123456789abcdef0123456789abcdef"
	pw          = "correct horse battery"
)

func challengeOf(v string) string {
	s := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(s[:])
}

type env struct {
	t     *testing.T
	store *sqlite.Store
	srv   *httptest.Server
	clock *clock
	audit *audittest.Recorder
	h     *Handler
	base  string // FHIR base
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	store, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "db.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	e := &env{t: t, store: store, clock: &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}, audit: &audittest.Recorder{}}
	mux := http.NewServeMux()
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	e.base = e.srv.URL + "/fhir"
	sm, err := session.New(session.Options{Store: store, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	dummy, _ := password.Hash("dummy-password", cheap)
	authn, err := session.NewAuthenticator(session.AuthenticatorOptions{Users: store, DummyHash: dummy, Auditor: e.audit, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	e.h, err = New(Options{Issuer: e.srv.URL, FHIRBases: []string{e.base + "/"}, Clients: store, AuthRequests: store,
		AuthCodes: store, Launches: store, Consents: store, Users: store, Patients: store, Sessions: sm,
		Authenticator: authn, Auditor: e.audit, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	e.h.Register(mux)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(store.CreateClient(ctx, &storage.Client{ID: "app", Name: "Demo App", AuthMethod: "none",
		RedirectURIs: []string{appRedirect, "http://127.0.0.1/native"}, LogoURI: "https://app.example/logo.png",
		Scope:      "openid fhirUser profile launch launch/patient launch/encounter offline_access patient/*.rs user/*.rs system/*.rs",
		GrantTypes: []string{"authorization_code", "refresh_token"}}))
	must(store.CreateClient(ctx, &storage.Client{ID: "off", Name: "Disabled", AuthMethod: "none",
		RedirectURIs: []string{appRedirect}, Scope: "openid", Disabled: true}))
	for _, u := range []struct {
		id, name string
		role     storage.Role
		fhirUser string
	}{
		{"u-pat", "amy", storage.RolePatient, "Patient/p1"},
		{"u-doc", "drbob", storage.RoleClinician, "Practitioner/d1"},
		{"u-adm", "root", storage.RoleAdmin, "Practitioner/a1"},
	} {
		hash, err := password.Hash(pw, cheap)
		must(err)
		must(store.CreateUser(ctx, &storage.User{ID: u.id, Username: u.name, PasswordHash: hash, Role: u.role, FHIRUser: u.fhirUser, CreatedAt: e.clock.Now()}))
	}
	must(store.PutPatient(ctx, &storage.Patient{ID: "p1", Name: "Amy Shaw", BirthDate: "1987-02-20"}))
	must(store.PutPatient(ctx, &storage.Patient{ID: "p2", Name: "Bert Shaw", BirthDate: "1950-01-01"}))
	must(store.PutPatient(ctx, &storage.Patient{ID: "p3", Name: "Carla Jones", BirthDate: "2001-07-04"}))
	return e
}

// params returns a valid authorization request, changed by kv pairs ("" deletes).
func (e *env) params(kv ...string) url.Values {
	q := url.Values{
		"response_type":         {"code"},
		"client_id":             {"app"},
		"redirect_uri":          {appRedirect},
		"scope":                 {"openid fhirUser launch/patient offline_access patient/*.rs"},
		"state":                 {"st-ä 1"},
		"nonce":                 {"n-1"},
		"aud":                   {e.base},
		"code_challenge":        {challengeOf(verifier)},
		"code_challenge_method": {"S256"},
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			q.Del(kv[i])
		} else {
			q.Set(kv[i], kv[i+1])
		}
	}
	return q
}

// browser is a cookie-keeping client that never follows redirects itself.
type browser struct {
	t *testing.T
	c *http.Client
	e *env
}

func (e *env) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: e.t, e: e, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

type page struct {
	status int
	header http.Header
	body   string
	url    string
}

func (b *browser) do(method, target string, form url.Values) page {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, target, body)
	if err != nil {
		b.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return page{status: resp.StatusCode, header: resp.Header, body: string(data), url: target}
}

// follow requests target and follows redirects on the server, checking each
// is a 303 when it answers a POST. It stops at a page or at a redirect off
// the server, which it returns (status 303, header Location).
func (b *browser) follow(method, target string, form url.Values) page {
	b.t.Helper()
	for range 10 {
		p := b.do(method, target, form)
		if p.status < 300 || p.status >= 400 {
			return p
		}
		if method == http.MethodPost && p.status != http.StatusSeeOther {
			b.t.Fatalf("POST %s redirected with %d, want 303", target, p.status)
		}
		loc, err := url.Parse(p.header.Get("Location"))
		if err != nil {
			b.t.Fatal(err)
		}
		next := mustURL(b.t, target).ResolveReference(loc)
		if !strings.HasPrefix(next.String(), b.e.srv.URL+"/") {
			p.url = next.String()
			return p
		}
		method, target, form = http.MethodGet, next.String(), nil
	}
	b.t.Fatal("too many redirects")
	return page{}
}

func mustURL(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func (b *browser) authorize(q url.Values) page {
	return b.follow(http.MethodGet, b.e.srv.URL+"/authorize?"+q.Encode(), nil)
}

var inputRE = regexp.MustCompile(`<input ([^>]*)>`)
var attrRE = regexp.MustCompile(`(\w+)(?:="([^"]*)")?`)

type input struct {
	typ, name, value string
	checked          bool
}

func inputs(body string) []input {
	var out []input
	for _, m := range inputRE.FindAllStringSubmatch(body, -1) {
		var in input
		for _, a := range attrRE.FindAllStringSubmatch(m[1], -1) {
			v := html.UnescapeString(a[2])
			switch a[1] {
			case "type":
				in.typ = v
			case "name":
				in.name = v
			case "value":
				in.value = v
			case "checked":
				in.checked = true
			}
		}
		out = append(out, in)
	}
	return out
}

// formValues returns the hidden and checked inputs of the form that posts to action.
func formValues(t *testing.T, body, action string) url.Values {
	t.Helper()
	i := strings.Index(body, `method="post" action="`+action+`"`)
	if i < 0 {
		t.Fatalf("no form posting to %s in:\n%s", action, body)
	}
	rest := body[i:]
	rest = rest[:strings.Index(rest, "</form>")]
	v := url.Values{}
	for _, in := range inputs(rest) {
		switch in.typ {
		case "hidden":
			v.Add(in.name, in.value)
		case "checkbox":
			if in.checked {
				v.Add(in.name, in.value)
			}
		}
	}
	return v
}

func (b *browser) login(p page, user, pass string) page {
	b.t.Helper()
	f := formValues(b.t, p.body, PathLogin)
	f.Set("username", user)
	f.Set("password", pass)
	return b.follow(http.MethodPost, b.e.srv.URL+PathLogin, f)
}

func (b *browser) approve(p page, drop ...string) page {
	b.t.Helper()
	f := formValues(b.t, p.body, PathConsent)
	for _, d := range drop {
		vals := f["scope"]
		f.Del("scope")
		for _, s := range vals {
			if s != d {
				f.Add("scope", s)
			}
		}
	}
	f.Set("decision", "approve")
	return b.follow(http.MethodPost, b.e.srv.URL+PathConsent, f)
}

// redirectParams checks p is a 303 to the app and returns its query.
func (e *env) redirectParams(p page) url.Values {
	e.t.Helper()
	if p.status != http.StatusSeeOther || !strings.HasPrefix(p.url, "https://app.example/cb?x=1&") {
		e.t.Fatalf("want 303 to app, got %d %s\n%s", p.status, p.url, p.body)
	}
	return mustURL(e.t, p.url).Query()
}

// code redeems the code in q straight from the store.
func (e *env) code(q url.Values) *storage.AuthCode {
	e.t.Helper()
	if q.Get("code") == "" {
		e.t.Fatalf("no code in %v", q)
	}
	ac, err := e.store.ConsumeAuthCode(context.Background(), storage.HashSecret(q.Get("code")), e.clock.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	return ac
}
