package console_test

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
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/account"
	"github.com/fhirgate/fhirgate/internal/anomaly"
	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/audit/audittest"
	"github.com/fhirgate/fhirgate/internal/audit/chain"
	"github.com/fhirgate/fhirgate/internal/console"
	"github.com/fhirgate/fhirgate/internal/keys"
	"github.com/fhirgate/fhirgate/internal/mfa"
	"github.com/fhirgate/fhirgate/internal/password"
	"github.com/fhirgate/fhirgate/internal/session"
	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/storage/sqlite"
)

const pw = "correct horse battery"

var cheap = password.Params{Time: 1, Memory: 1024, Threads: 1, KeyLen: 32}

type env struct {
	t     testing.TB
	store *sqlite.Store
	rec   *audittest.Recorder
	anom  *anomaly.Memory
	km    *keys.Manager
	srv   *httptest.Server
}

func newEnv(t testing.TB) *env {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "db.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{t: t, store: st, rec: &audittest.Recorder{}, anom: anomaly.NewMemory(100)}
	hash, _ := password.Hash(pw, cheap)
	for _, u := range []storage.User{
		{ID: "u-amy", Username: "amy", Role: storage.RolePatient, FHIRUser: "Patient/pt-001"},
		{ID: "u-ada", Username: "ada", Role: storage.RoleAdmin},
	} {
		u.PasswordHash = hash
		if err := st.CreateUser(ctx, &u); err != nil {
			t.Fatal(err)
		}
	}
	sessions, _ := session.New(session.Options{Store: st})
	dummy, _ := password.Hash("dummy", cheap)
	authn, _ := session.NewAuthenticator(session.AuthenticatorOptions{Users: st, DummyHash: dummy, Auditor: e.rec})
	svc, err := mfa.New(mfa.Options{Store: st, KEK: []byte("0123456789abcdef0123456789abcdef"), Auditor: e.rec})
	if err != nil {
		t.Fatal(err)
	}
	mh, _ := mfa.NewHandler(mfa.HandlerOptions{Service: svc, Sessions: sessions, Users: st, Auditor: e.rec})
	ah, err := account.New(account.Options{Sessions: sessions, Authenticator: authn, Users: st, Clients: st, Apps: st, Consents: st, MFA: svc, Auditor: e.rec})
	if err != nil {
		t.Fatal(err)
	}
	e.km, err = keys.New(ctx, keys.Options{Store: st, KEK: keys.DevKEK()})
	if err != nil {
		t.Fatal(err)
	}
	trail := audittest.NewMemorySink()
	if err := trail.Append(ctx, []chain.Entry{chain.Link("n", nil, audit.Event{Time: time.Now(), Action: audit.ActionLogin, Outcome: audit.Failure,
		UserID: "u-amy", SourceIP: "203.0.113.9", Reason: "wrong password"})}); err != nil {
		t.Fatal(err)
	}
	ch, err := console.New(console.Options{Sessions: sessions, Users: st, Clients: st, MFA: svc, UserSessions: st, Families: st, Audit: trail, Anomalies: e.anom,
		Keys: e.km, PasswordParams: cheap, Auditor: e.rec})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mh.Register(mux)
	ah.Register(mux)
	ch.Register(mux)
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	return e
}

type browser struct {
	t testing.TB
	e *env
	c *http.Client
}

type page struct {
	status   int
	location string
	body     string
}

func (e *env) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: e.t, e: e, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *browser) do(method, path string, form url.Values) page {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, b.e.srv.URL+path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return page{status: resp.StatusCode, location: resp.Header.Get("Location"), body: string(raw)}
}

func (b *browser) get(path string) page                { return b.do(http.MethodGet, path, nil) }
func (b *browser) post(path string, f url.Values) page { return b.do(http.MethodPost, path, f) }

var csrfRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t testing.TB, body string) string {
	t.Helper()
	m := csrfRe.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF token:\n%s", body)
	}
	return m[1]
}

func (b *browser) signIn(user string) page {
	b.t.Helper()
	p := b.get(account.PathLogin)
	return b.post(account.PathLogin, url.Values{"csrf": {csrfOf(b.t, p.body)}, "next": {console.Path}, "username": {user}, "password": {pw}})
}

var keyRe = regexp.MustCompile(`id="totp-key">([A-Z2-7 ]+)<`)

// adminWithMFA signs ada in and enrols her second factor.
func (e *env) adminWithMFA() *browser {
	b := e.browser()
	p := b.signIn("ada")
	for i := 0; i < 4 && p.status == http.StatusSeeOther; i++ {
		p = b.get(p.location)
	}
	m := keyRe.FindStringSubmatch(p.body)
	if m == nil {
		e.t.Fatalf("no enrol page: %d\n%s", p.status, p.body)
	}
	key, _ := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(strings.ReplaceAll(m[1], " ", ""))
	p = b.post(mfa.PathEnrol, url.Values{"csrf": {csrfOf(e.t, p.body)}, "next": {console.Path}, "code": {mfa.Code(key, mfa.Step(time.Now()))}})
	if p.status != http.StatusOK {
		e.t.Fatalf("enrol: %d", p.status)
	}
	return b
}

func TestConsoleGuards(t *testing.T) {
	e := newEnv(t)
	anon := e.browser()
	if p := anon.get(console.Path + "/clients"); p.status != http.StatusSeeOther || !strings.HasPrefix(p.location, account.PathLogin) {
		t.Fatalf("no session: %d %q", p.status, p.location)
	}
	if p := anon.post(console.Path+"/clients", url.Values{"name": {"x"}}); p.status != http.StatusSeeOther || !strings.HasPrefix(p.location, account.PathLogin) {
		t.Fatalf("no session POST: %d %q", p.status, p.location)
	}
	amy := e.browser()
	amy.signIn("amy")
	for _, path := range []string{"/clients", "/users", "/audit", "/anomalies", "/keys"} {
		if p := amy.get(console.Path + path); p.status != http.StatusForbidden {
			t.Fatalf("patient on %s: %d", path, p.status)
		}
	}
	if p := amy.post(console.Path+"/keys/rotate", url.Values{}); p.status != http.StatusForbidden {
		t.Fatalf("patient POST: %d", p.status)
	}
	// An administrator with only a password is sent to the second factor.
	ada := e.browser()
	ada.signIn("ada")
	if p := ada.get(console.Path + "/users"); p.status != http.StatusSeeOther || !strings.HasPrefix(p.location, mfa.PathEnrol) {
		t.Fatalf("admin without MFA: %d %q", p.status, p.location)
	}
	ada = e.adminWithMFA()
	p := ada.get(console.Path + "/users")
	if p.status != http.StatusOK || !strings.Contains(p.body, "amy") {
		t.Fatalf("admin with MFA: %d", p.status)
	}
	// Every change needs the CSRF token.
	if p := ada.post(console.Path+"/keys/rotate", url.Values{}); p.status != http.StatusForbidden {
		t.Fatalf("POST without CSRF: %d", p.status)
	}
	if p := ada.post(console.Path+"/users/u-amy/lock", url.Values{"csrf": {"forged"}}); p.status != http.StatusForbidden {
		t.Fatalf("POST with a forged CSRF: %d", p.status)
	}
	if u, _ := e.store.GetUser(context.Background(), "u-amy"); time.Now().Before(u.LockedUntil) {
		t.Fatal("locked without a valid CSRF token")
	}
}

func TestConsoleClients(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	b := e.adminWithMFA()
	p := b.get(console.Path + "/clients")
	csrf := csrfOf(t, p.body)
	form := url.Values{"csrf": {csrf}, "name": {"Growth Charts"}, "type": {"public"}, "redirect_uris": {"https://charts.example/cb\nhttp://127.0.0.1/cb"},
		"scope": {"openid launch/patient patient/Observation.rs"}, "logo_uri": {"https://charts.example/logo.png"}}
	for field, bad := range map[string]string{"redirect_uris": "http://charts.example/cb", "scope": "patient/Observation.zz", "logo_uri": "http://x/logo.png", "name": ""} {
		f := url.Values{}
		for k, v := range form {
			f[k] = v
		}
		f.Set(field, bad)
		if p := b.post(console.Path+"/clients", f); p.status != http.StatusBadRequest || !strings.Contains(p.body, `id="error"`) {
			t.Fatalf("bad %s accepted: %d", field, p.status)
		}
	}
	p = b.post(console.Path+"/clients", form)
	if p.status != http.StatusOK || !strings.Contains(p.body, "Growth Charts") || strings.Contains(p.body, `id="client-secret"`) {
		t.Fatalf("create public: %d", p.status)
	}
	form.Set("type", "confidential")
	form.Set("name", "Billing Service")
	p = b.post(console.Path+"/clients", form)
	m := regexp.MustCompile(`id="client-secret">([^<]+)<`).FindStringSubmatch(p.body)
	if m == nil {
		t.Fatalf("no secret shown:\n%s", p.body)
	}
	list, _ := e.store.ListClients(ctx)
	var pub, conf storage.Client
	for _, c := range list {
		switch c.Name {
		case "Growth Charts":
			pub = c
		case "Billing Service":
			conf = c
		}
	}
	if pub.AuthMethod != "none" || len(pub.RedirectURIs) != 2 || conf.AuthMethod != "client_secret_basic" ||
		string(conf.SecretHash) != string(storage.HashSecret(m[1])) || strings.Contains(string(conf.SecretHash), m[1]) {
		t.Fatalf("stored: %+v %+v", pub, conf)
	}
	if !e.rec.Has(audit.ActionClientRegistered, audit.Success) {
		t.Fatal("creation not audited")
	}
	// Edit, disable, enable, rotate.
	p = b.get(console.Path + "/clients/" + pub.ID)
	if p.status != http.StatusOK || !strings.Contains(p.body, "https://charts.example/cb") {
		t.Fatalf("edit page: %d", p.status)
	}
	form.Set("name", "Growth Charts 2")
	if p := b.post(console.Path+"/clients/"+pub.ID, form); p.status != http.StatusSeeOther {
		t.Fatalf("edit: %d", p.status)
	}
	if c, _ := e.store.GetClient(ctx, pub.ID); c.Name != "Growth Charts 2" || c.AuthMethod != "none" {
		t.Fatalf("edited: %+v", c)
	}
	// Disabling revokes every user's token families of the client.
	for _, f := range []storage.TokenFamily{{ID: "fam-1", ClientID: pub.ID, UserID: "u-amy"}, {ID: "fam-2", ClientID: pub.ID, UserID: "u-ada"},
		{ID: "fam-other", ClientID: conf.ID, UserID: "u-amy"}} {
		f.Scope, f.CreatedAt, f.ExpiresAt = "patient/*.rs", time.Now(), time.Now().Add(time.Hour)
		if err := e.store.CreateFamily(ctx, &f); err != nil {
			t.Fatal(err)
		}
	}
	b.post(console.Path+"/clients/"+pub.ID+"/disable", url.Values{"csrf": {csrf}})
	if c, _ := e.store.GetClient(ctx, pub.ID); !c.Disabled {
		t.Fatal("not disabled")
	}
	for id, want := range map[string]bool{"fam-1": true, "fam-2": true, "fam-other": false} {
		if f, err := e.store.GetFamily(ctx, id); err != nil || f.RevokedAt.IsZero() == want {
			t.Fatalf("family %s after disabling: %+v %v (want revoked %v)", id, f, err, want)
		}
	}
	b.post(console.Path+"/clients/"+pub.ID+"/enable", url.Values{"csrf": {csrf}})
	if c, _ := e.store.GetClient(ctx, pub.ID); c.Disabled {
		t.Fatal("not enabled")
	}
	if p := b.post(console.Path+"/clients/"+pub.ID+"/rotate-secret", url.Values{"csrf": {csrf}}); p.status != http.StatusBadRequest {
		t.Fatalf("rotating a public client's secret: %d", p.status)
	}
	p = b.post(console.Path+"/clients/"+conf.ID+"/rotate-secret", url.Values{"csrf": {csrf}})
	m2 := regexp.MustCompile(`id="client-secret">([^<]+)<`).FindStringSubmatch(p.body)
	if m2 == nil || m2[1] == m[1] {
		t.Fatal("no new secret")
	}
	if c, _ := e.store.GetClient(ctx, conf.ID); string(c.SecretHash) != string(storage.HashSecret(m2[1])) {
		t.Fatal("secret not rotated")
	}
	if p := b.post(console.Path+"/clients/nope/disable", url.Values{"csrf": {csrf}}); p.status != http.StatusNotFound {
		t.Fatalf("unknown client: %d", p.status)
	}
}

func TestConsoleUsersAuditAnomaliesKeys(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	b := e.adminWithMFA()
	p := b.get(console.Path + "/users")
	csrf := csrfOf(t, p.body)
	if p := b.post(console.Path+"/users", url.Values{"csrf": {csrf}, "username": {"pat"}, "password": {"short"}, "role": {"patient"}, "fhir_user": {"Patient/9"}}); p.status != http.StatusBadRequest {
		t.Fatalf("short password: %d", p.status)
	}
	if p := b.post(console.Path+"/users", url.Values{"csrf": {csrf}, "username": {"pat"}, "password": {pw}, "role": {"patient"}}); p.status != http.StatusBadRequest {
		t.Fatalf("patient without Patient ref: %d", p.status)
	}
	if p := b.post(console.Path+"/users", url.Values{"csrf": {csrf}, "username": {"pat"}, "password": {pw}, "role": {"patient"}, "fhir_user": {"Patient/9"}}); p.status != http.StatusSeeOther {
		t.Fatalf("create user: %d", p.status)
	}
	u, err := e.store.GetUserByUsername(ctx, "pat")
	if err != nil || u.Role != storage.RolePatient || password.Verify(pw, u.PasswordHash) != nil {
		t.Fatalf("created: %+v %v", u, err)
	}
	b.post(console.Path+"/users/"+u.ID+"/lock", url.Values{"csrf": {csrf}})
	if u, _ := e.store.GetUser(ctx, u.ID); !time.Now().Before(u.LockedUntil) {
		t.Fatal("not locked")
	}
	// The locked user cannot sign in.
	pb := e.browser()
	if p := pb.signIn("pat"); p.status != http.StatusOK || !strings.Contains(p.body, "Too many") {
		t.Fatalf("locked user signed in: %d %q", p.status, p.location)
	}
	b.post(console.Path+"/users/"+u.ID+"/unlock", url.Values{"csrf": {csrf}})
	if p := pb.signIn("pat"); p.status != http.StatusSeeOther {
		t.Fatalf("unlocked user: %d", p.status)
	}
	if p := b.post(console.Path+"/users/u-ada/lock", url.Values{"csrf": {csrf}}); p.status != http.StatusBadRequest {
		t.Fatalf("self-lock: %d", p.status)
	}
	// Reset MFA: ada's own factor goes; her next sign-in enrols again.
	if p := b.post(console.Path+"/users/u-ada/reset-mfa", url.Values{"csrf": {csrf}}); p.location != console.Path+"/users?done=mfa-reset" {
		t.Fatalf("reset: %d %q", p.status, p.location)
	}
	if !e.rec.Has(mfa.ActionReset, audit.Success) {
		t.Fatal("reset not audited")
	}
	b = e.adminWithMFA()

	p = b.get(console.Path + "/audit?outcome=failure&user=u-amy")
	csrf = csrfOf(t, p.body) // a new session after the reset
	if p.status != http.StatusOK || !strings.Contains(p.body, "203.0.113.9") {
		t.Fatalf("audit search: %d", p.status)
	}
	if p := b.get(console.Path + "/audit?user=nobody"); strings.Contains(p.body, "203.0.113.9") {
		t.Fatal("filter ignored")
	}
	if !e.rec.Has(audit.ActionAuditQuery, audit.Success) {
		t.Fatal("audit search not audited")
	}

	if err := e.anom.Add(ctx, &anomaly.Anomaly{ID: "an-1", Rule: "scraping", Action: anomaly.ActionSuspend, Subject: anomaly.Subject{Kind: anomaly.SubjectClient, ID: "app"},
		Detail: "120 patients in 5 minutes", RaisedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	p = b.get(console.Path + "/anomalies")
	if !strings.Contains(p.body, "120 patients in 5 minutes") || !strings.Contains(p.body, `id="clear-an-1"`) {
		t.Fatalf("anomalies:\n%s", p.body)
	}
	if p := b.post(console.Path+"/anomalies/an-1/clear", url.Values{"csrf": {csrf}}); p.status != http.StatusSeeOther {
		t.Fatalf("clear: %d", p.status)
	}
	if active, _ := e.anom.Active(ctx, time.Now()); len(active) != 0 {
		t.Fatal("anomaly still active")
	}
	if p := b.post(console.Path+"/anomalies/nope/clear", url.Values{"csrf": {csrf}}); p.status != http.StatusNotFound {
		t.Fatalf("unknown anomaly: %d", p.status)
	}

	before := len(e.km.Keys())
	p = b.get(console.Path + "/keys")
	if !strings.Contains(p.body, "Signing") {
		t.Fatalf("keys:\n%s", p.body)
	}
	if p := b.post(console.Path+"/keys/rotate", url.Values{"csrf": {csrf}}); p.status != http.StatusSeeOther {
		t.Fatalf("rotate: %d", p.status)
	}
	if len(e.km.Keys()) <= before || !e.rec.Has(audit.ActionKeyRotated, audit.Success) {
		t.Fatal("keys not rotated or not audited")
	}
}

// TestLockEndsSessions: a user locked in the console loses their open
// session on the account pages.
func TestLockEndsSessions(t *testing.T) {
	e := newEnv(t)
	amy := e.browser()
	amy.signIn("amy")
	if p := amy.get(account.PathApps); p.status != http.StatusOK {
		t.Fatalf("before lock: %d", p.status)
	}
	ctx := context.Background()
	now := time.Now()
	fam := &storage.TokenFamily{ID: "fam-amy", ClientID: "c-any", UserID: "u-amy", Scope: "offline_access patient/*.rs",
		CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := e.store.CreateFamily(ctx, fam); err != nil {
		t.Fatal(err)
	}
	ada := e.adminWithMFA()
	p := ada.get(console.Path + "/users")
	ada.post(console.Path+"/users/u-amy/lock", url.Values{"csrf": {csrfOf(t, p.body)}})
	// The lock revoked amy's app access too.
	if got, err := e.store.GetFamily(ctx, fam.ID); err != nil || got.RevokedAt.IsZero() {
		t.Fatalf("family after lock: %+v %v, want revoked", got, err)
	}
	// The session was deleted, not only refused while locked: unlocking
	// (before amy's browser comes back) does not revive it.
	p = ada.get(console.Path + "/users")
	ada.post(console.Path+"/users/u-amy/unlock", url.Values{"csrf": {csrfOf(t, p.body)}})
	if u, _ := e.store.GetUser(context.Background(), "u-amy"); time.Now().Before(u.LockedUntil) {
		t.Fatal("not unlocked")
	}
	if p := amy.get(account.PathApps); p.status != http.StatusSeeOther || !strings.HasPrefix(p.location, account.PathLogin) {
		t.Fatalf("session survived the lock: %d %q", p.status, p.location)
	}
}
