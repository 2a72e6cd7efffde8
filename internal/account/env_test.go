package account

import (
	"context"
	"encoding/base32"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit/audittest"
	"github.com/fhirgate/fhirgate/internal/mfa"
	"github.com/fhirgate/fhirgate/internal/password"
	"github.com/fhirgate/fhirgate/internal/session"
	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/storage/sqlite"
)

const pw = "correct horse battery"

var cheap = password.Params{Time: 1, Memory: 1024, Threads: 1, KeyLen: 32}

// env is the account and second-factor pages on real SQLite behind an
// httptest server.
type env struct {
	t     testing.TB
	store *sqlite.Store
	rec   *audittest.Recorder
	audit *audittest.MemorySink
	mfa   *mfa.Service
	srv   *httptest.Server
	mux   *http.ServeMux
	now   func() time.Time
	skew  atomic.Int64 // added to the session manager's clock (timeouts)
}

func newEnv(t testing.TB, mfaMods ...func(*mfa.Options)) *env {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "db.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{t: t, store: st, rec: &audittest.Recorder{}, audit: audittest.NewMemorySink(), now: time.Now}
	hash, _ := password.Hash(pw, cheap)
	for _, u := range []storage.User{
		{ID: "u-amy", Username: "amy", Role: storage.RolePatient, FHIRUser: "Patient/pt-001"},
		{ID: "u-bob", Username: "bob", Role: storage.RoleClinician, FHIRUser: "Practitioner/pr-1"},
		{ID: "u-ada", Username: "ada", Role: storage.RoleAdmin, FHIRUser: "Practitioner/pr-2"},
	} {
		u.PasswordHash = hash
		if err := st.CreateUser(ctx, &u); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.CreateClient(ctx, &storage.Client{ID: "app", Name: "Health Diary", AuthMethod: "none",
		RedirectURIs: []string{"https://app.example/cb"}, Scope: "openid patient/*.rs offline_access", LogoURI: "https://app.example/logo.png"}); err != nil {
		t.Fatal(err)
	}
	sessions, err := session.New(session.Options{Store: st, Now: func() time.Time { return time.Now().Add(time.Duration(e.skew.Load())) }})
	if err != nil {
		t.Fatal(err)
	}
	dummy, _ := password.Hash("dummy", cheap)
	authn, err := session.NewAuthenticator(session.AuthenticatorOptions{Users: st, DummyHash: dummy, Auditor: e.rec})
	if err != nil {
		t.Fatal(err)
	}
	mo := mfa.Options{Store: st, KEK: []byte("0123456789abcdef0123456789abcdef"), Auditor: e.rec}
	for _, m := range mfaMods {
		m(&mo)
	}
	e.mfa, err = mfa.New(mo)
	if err != nil {
		t.Fatal(err)
	}
	require := []storage.Role{storage.RoleClinician, storage.RoleAdmin}
	mh, err := mfa.NewHandler(mfa.HandlerOptions{Service: e.mfa, Sessions: sessions, Users: st, RequireFor: require, Auditor: e.rec})
	if err != nil {
		t.Fatal(err)
	}
	ah, err := New(Options{Sessions: sessions, Authenticator: authn, Users: st, Clients: st, Apps: st, Consents: st,
		MFA: e.mfa, RequireMFAFor: require, Audit: e.audit, Auditor: e.rec})
	if err != nil {
		t.Fatal(err)
	}
	e.mux = http.NewServeMux()
	mh.Register(e.mux)
	ah.Register(e.mux)
	e.srv = httptest.NewServer(e.mux)
	t.Cleanup(e.srv.Close)
	return e
}

// browser is a cookie-keeping client that does not follow redirects.
type browser struct {
	t testing.TB
	e *env
	c *http.Client
}

func (e *env) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: e.t, e: e, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

type page struct {
	status   int
	location string
	body     string
	header   http.Header
}

func (b *browser) do(req *http.Request) page {
	b.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return page{status: resp.StatusCode, location: resp.Header.Get("Location"), body: string(body), header: resp.Header}
}

func (b *browser) get(path string) page {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, b.e.srv.URL+path, nil)
	return b.do(req)
}

func (b *browser) post(path string, form url.Values) page {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, b.e.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

var csrfRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t testing.TB, body string) string {
	t.Helper()
	m := csrfRe.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF token in page:\n%s", body)
	}
	return m[1]
}

// signIn posts the password form and returns the redirect.
func (b *browser) signIn(user, next string) page {
	b.t.Helper()
	p := b.get(PathLogin + "?next=" + url.QueryEscape(next))
	return b.post(PathLogin, url.Values{"csrf": {csrfOf(b.t, p.body)}, "next": {next}, "username": {user}, "password": {pw}})
}

var keyRe = regexp.MustCompile(`id="totp-key">([A-Z2-7 ]+)<`)

// keyOf reads the TOTP key shown on the enrol page.
func keyOf(t testing.TB, body string) []byte {
	t.Helper()
	m := keyRe.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no key on the enrol page:\n%s", body)
	}
	k, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(strings.ReplaceAll(m[1], " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// enrol takes a signed-in browser through enrolment and returns the key
// and the recovery codes.
func (b *browser) enrol(next string) ([]byte, []string) {
	b.t.Helper()
	p := b.get(mfa.EnrolURL(next))
	if p.status != http.StatusOK {
		b.t.Fatalf("enrol page: %d %s", p.status, p.location)
	}
	key := keyOf(b.t, p.body)
	p = b.post(mfa.PathEnrol, url.Values{"csrf": {csrfOf(b.t, p.body)}, "next": {next}, "code": {mfa.Code(key, mfa.Step(time.Now()))}})
	if p.status != http.StatusOK || !strings.Contains(p.body, "recovery-codes") {
		b.t.Fatalf("enrol submit: %d\n%s", p.status, p.body)
	}
	codes := regexp.MustCompile(`<li><code>([a-z0-9-]+)</code></li>`).FindAllStringSubmatch(p.body, -1)
	var out []string
	for _, c := range codes {
		out = append(out, c[1])
	}
	return key, out
}
