package authorize

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/session"
)

// noRedirect checks the response is an error page that does not redirect.
func noRedirect(t *testing.T, p page, want string) {
	t.Helper()
	if p.status != http.StatusBadRequest || p.header.Get("Location") != "" || !strings.Contains(p.body, want) {
		t.Fatalf("want 400 page with %q and no Location, got %d %q\n%s", want, p.status, p.header.Get("Location"), p.body)
	}
	if !strings.Contains(p.header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
		t.Error("error page without CSP")
	}
}

func TestNoRedirectForUntrustedRequests(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	for name, q := range map[string]url.Values{
		"unknown client":                    e.params("client_id", "nope"),
		"missing client":                    e.params("client_id", ""),
		"disabled client":                   e.params("client_id", "off"),
		"mismatched redirect":               e.params("redirect_uri", "https://app.example/cb?x=2"),
		"unregistered redirect":             e.params("redirect_uri", "https://evil.example/cb"),
		"redirect with fragment":            e.params("redirect_uri", appRedirect+"#f"),
		"redirect prefix":                   e.params("redirect_uri", appRedirect+"&y=1"),
		"missing redirect (two registered)": e.params("redirect_uri", ""),
		"loopback lookalike":                e.params("redirect_uri", "http://127.0.0.1.evil.example/native"),
		"localhost instead of IP":           e.params("redirect_uri", "http://localhost/native"),
	} {
		t.Run(name, func(t *testing.T) {
			noRedirect(t, b.authorize(q), "")
		})
	}
	q := e.params()
	q.Add("client_id", "app")
	noRedirect(t, b.authorize(q), "repeats")
	if !e.audit.Has(audit.ActionAuthorize, audit.Failure) {
		t.Error("refusals not audited")
	}
}

func TestLoopbackRedirectAnyPort(t *testing.T) {
	e := newEnv(t)
	p := e.browser().authorize(e.params("redirect_uri", "http://127.0.0.1:51234/native"))
	if p.status != 200 || !strings.Contains(p.body, `type="password"`) {
		t.Fatalf("loopback port: %d %s", p.status, p.body)
	}
	if !strings.Contains(p.header.Get("Content-Security-Policy"), "form-action 'self' http://127.0.0.1:51234") {
		t.Errorf("CSP %q", p.header.Get("Content-Security-Policy"))
	}
}

func TestRedirectedErrors(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	long := strings.Repeat("a", 44)
	cases := []struct {
		name string
		q    url.Values
		want string
	}{
		{"implicit token", e.params("response_type", "token"), "unsupported_response_type"},
		{"implicit id_token", e.params("response_type", "id_token"), "unsupported_response_type"},
		{"hybrid", e.params("response_type", "code id_token"), "unsupported_response_type"},
		{"hybrid token", e.params("response_type", "code token"), "unsupported_response_type"},
		{"missing response_type", e.params("response_type", ""), "invalid_request"},
		{"plain", e.params("code_challenge_method", "plain"), "invalid_request"},
		{"missing method", e.params("code_challenge_method", ""), "invalid_request"},
		{"missing challenge", e.params("code_challenge", ""), "invalid_request"},
		{"short challenge", e.params("code_challenge", "abc"), "invalid_request"},
		{"long challenge", e.params("code_challenge", long), "invalid_request"},
		{"bad challenge chars", e.params("code_challenge", strings.Repeat("+", 43)), "invalid_request"},
		{"missing aud", e.params("aud", ""), "invalid_request"},
		{"wrong aud", e.params("aud", "https://inferno.healthit.gov/invalid_aud"), "invalid_request"},
		{"aud prefix", e.params("aud", e.base+"x"), "invalid_request"},
		{"aud and resource differ", e.params("resource", "https://other.example/fhir"), "invalid_request"},
		{"malformed scope", e.params("scope", "openid patient/Observation.xyz"), "invalid_scope"},
		{"malformed scope chars", e.params("scope", "openid pat\"ient"), "invalid_scope"},
		{"missing scope", e.params("scope", ""), "invalid_scope"},
		{"only system scope", e.params("scope", "system/*.rs"), "invalid_scope"},
		{"request object", e.params("request", "eyJ.x.y"), "request_not_supported"},
		{"form_post", e.params("response_mode", "form_post"), "invalid_request"},
		{"bad prompt", e.params("prompt", "none login"), "invalid_request"},
		{"long state", e.params("state", strings.Repeat("s", 5000)), "invalid_request"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := b.authorize(c.q)
			q := e.redirectParams(p)
			if q.Get("error") != c.want || q.Get("code") != "" || q.Get("iss") != e.srv.URL || q.Get("error_description") == "" {
				t.Fatalf("want %s, got %v", c.want, q)
			}
			if c.name != "long state" && q.Get("state") != "st-ä 1" {
				t.Fatalf("state not echoed: %v", q)
			}
		})
	}
	q := e.params()
	q.Add("scope", "openid")
	if r := e.redirectParams(b.authorize(q)); r.Get("error") != "invalid_request" {
		t.Fatalf("repeated scope: %v", r)
	}
}

func TestAudienceVariants(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	for _, q := range []url.Values{e.params("aud", e.base+"/"), e.params("aud", "", "resource", e.base)} {
		if p := b.authorize(q); p.status != 200 || !strings.Contains(p.body, `type="password"`) {
			t.Fatalf("aud %v: %d %s", q, p.status, p.url)
		}
	}
}

func TestMissingCSRF(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	p := b.authorize(e.params())
	f := formValues(t, p.body, PathLogin)
	f.Del("csrf")
	f.Set("username", "amy")
	f.Set("password", pw)
	if r := b.do(http.MethodPost, e.srv.URL+PathLogin, f); r.status != 403 {
		t.Fatalf("login without CSRF: %d", r.status)
	}
	f.Set("csrf", strings.Repeat("A", 43))
	if r := b.do(http.MethodPost, e.srv.URL+PathLogin, f); r.status != 403 {
		t.Fatalf("login with wrong CSRF: %d", r.status)
	}
	// Another browser's login token does not work with this browser's cookie.
	other := e.browser()
	op := other.authorize(e.params())
	f.Set("csrf", formValues(t, op.body, PathLogin).Get("csrf"))
	if r := b.do(http.MethodPost, e.srv.URL+PathLogin, f); r.status != 403 {
		t.Fatalf("login with foreign CSRF: %d", r.status)
	}
	p = b.login(p, "amy", pw)
	cf := formValues(t, p.body, PathConsent)
	cf.Set("decision", "approve")
	cf.Del("csrf")
	if r := b.do(http.MethodPost, e.srv.URL+PathConsent, cf); r.status != 403 || r.header.Get("Location") != "" {
		t.Fatalf("consent without CSRF: %d", r.status)
	}
	cf.Set("csrf", formValues(t, op.body, PathLogin).Get("csrf"))
	if r := b.do(http.MethodPost, e.srv.URL+PathConsent, cf); r.status != 403 {
		t.Fatalf("consent with wrong CSRF: %d", r.status)
	}
	if r := b.do(http.MethodPost, e.srv.URL+PathLogout, url.Values{}); r.status != 403 {
		t.Fatalf("logout without CSRF: %d", r.status)
	}
}

func TestWrongPasswordAndLockout(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	start := b.authorize(e.params())
	p := b.login(start, "amy", "wrong password")
	if p.status != 200 || !strings.Contains(p.body, session.MsgInvalidCredentials) || strings.Contains(p.body, "Allow access") {
		t.Fatalf("wrong password: %d\n%s", p.status, p.body)
	}
	unknown := b.login(start, "nobody", "wrong password")
	if !strings.Contains(unknown.body, session.MsgInvalidCredentials) {
		t.Fatal("unknown user message differs")
	}
	var known, unk page
	for range 4 {
		known = b.login(start, "amy", "wrong password")
		unk = b.login(start, "nobody", "wrong password")
	}
	for _, p := range []page{known, unk} {
		if !strings.Contains(p.body, session.MsgLocked) {
			t.Fatalf("want lockout message after 5 failures:\n%s", p.body)
		}
	}
	norm := func(s, name string) string { return strings.ReplaceAll(s, `value="`+name+`"`, `value=""`) }
	if norm(known.body, "amy") != norm(unk.body, "nobody") || known.status != unk.status {
		t.Fatal("lockout page differs between existing and unknown user")
	}
	// Even the right password is refused while locked.
	if p := b.login(start, "amy", pw); !strings.Contains(p.body, session.MsgLocked) {
		t.Fatal("locked account signed in")
	}
	if !e.audit.Has(audit.ActionLockout, audit.Failure) || !e.audit.Has(audit.ActionLogin, audit.Failure) {
		t.Error("failures not audited")
	}
	e.clock.Advance(16 * time.Minute)
	if p := b.login(b.authorize(e.params()), "amy", pw); !strings.Contains(p.body, "Allow access?") {
		t.Fatalf("after the lock: %d\n%s", p.status, p.body)
	}
}

func TestIPThrottle(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	start := b.authorize(e.params())
	for i := range 20 {
		b.login(start, "user"+string(rune('a'+i)), "x")
	}
	if p := b.login(start, "drbob", pw); !strings.Contains(p.body, session.MsgLocked) {
		t.Fatalf("IP not throttled:\n%s", p.body)
	}
}

func TestExpiredAuthRequest(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	p := b.authorize(e.params())
	e.clock.Advance(10*time.Minute + time.Second)
	r := b.login(p, "amy", pw)
	noRedirect(t, r, "expired")
	if r := b.follow(http.MethodGet, e.srv.URL+PathLogin+"?req=unknown", nil); r.status != 400 {
		t.Fatalf("unknown request: %d", r.status)
	}
}

func TestSessionBoundToRequest(t *testing.T) {
	e := newEnv(t)
	victim, attacker := e.browser(), e.browser()
	p := victim.login(victim.authorize(e.params()), "amy", pw)
	req := formValues(t, p.body, PathConsent).Get("req")
	// Another signed-in user cannot open or answer amy's consent page.
	attacker.login(attacker.authorize(e.params("scope", "openid")), "drbob", pw)
	r := attacker.follow(http.MethodGet, e.srv.URL+PathConsent+"?req="+req, nil)
	if !strings.Contains(r.body, `type="password"`) {
		t.Fatalf("foreign session reached consent: %d\n%s", r.status, r.body)
	}
}

func TestLogout(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	p := b.login(b.authorize(e.params("scope", "openid")), "amy", pw)
	e.redirectParams(b.approve(p))
	// Signed in with consent: straight through. Sign out, then the login page is back.
	e.redirectParams(b.authorize(e.params("scope", "openid")))
	p = b.authorize(e.params())
	f := formValues(t, p.body, PathLogout)
	r := b.follow(http.MethodPost, e.srv.URL+PathLogout, f)
	if !strings.Contains(r.body, `type="password"`) {
		t.Fatalf("after logout: %d\n%s", r.status, r.body)
	}
	if !e.audit.Has(audit.ActionLogout, audit.Success) {
		t.Error("logout not audited")
	}
	if p := b.authorize(e.params("scope", "openid")); !strings.Contains(p.body, `type="password"`) {
		t.Fatal("session survived logout")
	}
}

func TestRedirectsAfterPostAre303(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	p := b.authorize(e.params())
	f := formValues(t, p.body, PathLogin)
	f.Set("username", "amy")
	f.Set("password", pw)
	if r := b.do(http.MethodPost, e.srv.URL+PathLogin, f); r.status != http.StatusSeeOther {
		t.Fatalf("login POST answered %d", r.status)
	}
	if r := b.do(http.MethodPost, e.srv.URL+"/authorize", e.params()); r.status != http.StatusSeeOther {
		t.Fatalf("authorize POST answered %d", r.status)
	}
}

func TestCookieFlags(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	p := b.authorize(e.params())
	f := formValues(t, p.body, PathLogin)
	f.Set("username", "amy")
	f.Set("password", pw)
	r := b.do(http.MethodPost, e.srv.URL+PathLogin, f)
	sc := strings.Join(r.header.Values("Set-Cookie"), "\n")
	if !strings.Contains(sc, "fhirgate=") || !strings.Contains(sc, "HttpOnly") || !strings.Contains(sc, "SameSite=Lax") {
		t.Fatalf("Set-Cookie %q", sc)
	}
}

func TestAuditFailureWithholdsCode(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	p := b.login(b.authorize(e.params()), "amy", pw)
	e.audit.Fail = errors.New("audit store down")
	r := b.approve(p)
	if r.status != http.StatusInternalServerError || r.header.Get("Location") != "" || strings.Contains(r.body, "code=") {
		t.Fatalf("code handed out without audit: %d %s", r.status, r.url)
	}
}
