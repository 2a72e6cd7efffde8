package authorize

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/launch"
	"github.com/fhirgate/fhirgate/internal/storage"
)

func TestStandalonePatientUser(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	p := b.authorize(e.params())
	if p.status != 200 || !strings.Contains(p.body, `type="password"`) {
		t.Fatalf("want login page, got %d\n%s", p.status, p.body)
	}
	checkPageHeaders(t, p, "https://app.example")
	p = b.login(p, "amy", pw)
	if p.status != 200 || !strings.Contains(p.body, "Allow access?") {
		t.Fatalf("want consent page, got %d\n%s", p.status, p.body)
	}
	checkPageHeaders(t, p, "https://app.example")
	for _, want := range []string{`value="patient/*.rs"`, `value="launch/patient"`, `value="offline_access"`,
		`src="https://app.example/logo.png"`, "Demo App", "keep access after you sign out"} {
		if !strings.Contains(p.body, want) {
			t.Errorf("consent page lacks %s", want)
		}
	}
	start := e.clock.Now()
	q := e.redirectParams(b.approve(p))
	if q.Get("state") != "st-ä 1" || q.Get("iss") != e.srv.URL || q.Get("x") != "1" || q.Get("error") != "" {
		t.Fatalf("redirect params %v", q)
	}
	ac := e.code(q)
	if ac.Context.Patient != "p1" || !ac.Context.NeedPatientBanner || ac.Context.Encounter != "" {
		t.Errorf("context %+v", ac.Context)
	}
	if ac.Scope != "openid fhirUser launch/patient offline_access patient/*.rs" {
		t.Errorf("scope %q", ac.Scope)
	}
	if ac.ClientID != "app" || ac.RedirectURI != appRedirect || ac.CodeChallenge != challengeOf(verifier) ||
		ac.UserID != "u-pat" || ac.Nonce != "n-1" || ac.FamilyID == "" || !ac.ExpiresAt.Equal(start.Add(60*time.Second)) ||
		ac.AuthTime.IsZero() {
		t.Errorf("code record %+v", ac)
	}
	for _, a := range []audit.Action{audit.ActionLogin, audit.ActionConsentGranted, audit.ActionCodeIssued} {
		if !e.audit.Has(a, audit.Success) {
			t.Errorf("no %s audit event", a)
		}
	}
	for _, ev := range e.audit.Events() {
		if strings.Contains(ev.Reason+ev.Scope+ev.TokenID, q.Get("code")) {
			t.Fatal("audit event holds the code")
		}
	}

	// Remembered consent: the next authorization goes straight back to the app.
	q = e.redirectParams(b.authorize(e.params("state", "again")))
	if q.Get("state") != "again" || e.code(q).Context.Patient != "p1" {
		t.Fatalf("second authorization %v", q)
	}
	// A broader request is not covered: the consent page comes back.
	p = b.authorize(e.params("scope", "openid patient/*.rs profile"))
	if p.status != 200 || !strings.Contains(p.body, `value="profile"`) {
		t.Fatalf("want consent page for broader request, got %d %s", p.status, p.url)
	}
}

func checkPageHeaders(t *testing.T, p page, formOrigin string) {
	t.Helper()
	csp := p.header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "form-action 'self' "+formOrigin) ||
		strings.Contains(csp, "unsafe-inline") {
		t.Errorf("CSP %q", csp)
	}
	if p.header.Get("Referrer-Policy") != "no-referrer" || p.header.Get("X-Frame-Options") != "DENY" {
		t.Errorf("headers %v", p.header)
	}
	if strings.Contains(strings.ToLower(p.body), "<script") {
		t.Error("page has a script")
	}
}

func TestClinicianPicksPatient(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	p := b.login(b.authorize(e.params("scope", "openid launch/patient patient/Observation.rs")), "drbob", pw)
	if p.status != 200 || !strings.Contains(p.body, "Choose a patient") {
		t.Fatalf("want picker, got %d\n%s", p.status, p.body)
	}
	checkPageHeaders(t, p, "https://app.example")
	req := formValues(t, p.body, PathPatient).Get("req")
	p = b.follow(http.MethodGet, e.srv.URL+PathPatient+"?req="+req+"&name=shaw&birthdate=1950-01-01", nil)
	radios := []string{}
	for _, in := range inputs(p.body) {
		if in.typ == "radio" && in.name == "patient" {
			radios = append(radios, in.value)
		}
	}
	if len(radios) != 1 || radios[0] != "Patient/p2" {
		t.Fatalf("radios %v\n%s", radios, p.body)
	}
	// A patient that is not in the directory is refused (picker again).
	f := formValues(t, p.body, PathPatient)
	f.Set("patient", "Patient/nope")
	if again := b.follow(http.MethodPost, e.srv.URL+PathPatient, f); !strings.Contains(again.body, "Choose a patient") {
		t.Fatalf("unknown patient accepted: %d %s", again.status, again.url)
	}
	f.Set("patient", "Patient/p2")
	p = b.follow(http.MethodPost, e.srv.URL+PathPatient, f)
	if !strings.Contains(p.body, "Bert Shaw") {
		t.Fatalf("consent page should name the patient:\n%s", p.body)
	}
	ac := e.code(e.redirectParams(b.approve(p)))
	if ac.Context.Patient != "p2" || ac.Scope != "openid launch/patient patient/Observation.rs" || ac.UserID != "u-doc" {
		t.Fatalf("code %+v", ac)
	}
}

func TestEHRLaunch(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	lv, err := launch.Create(ctx, e.store, storage.LaunchContext{Patient: "Patient/p3", Encounter: "Encounter/9",
		FHIRContext: []byte(`[{"reference":"Encounter/9"}]`)}, e.clock.Now(), 0)
	if err != nil {
		t.Fatal(err)
	}
	b := e.browser()
	q := e.params("scope", "launch openid fhirUser user/*.rs patient/*.rs", "launch", lv)
	p := b.login(b.authorize(q), "drbob", pw)
	if !strings.Contains(p.body, "Allow access?") || !strings.Contains(p.body, "Carla Jones") {
		t.Fatalf("want consent for Carla, got %d\n%s", p.status, p.body)
	}
	ac := e.code(e.redirectParams(b.approve(p)))
	if ac.Context.Patient != "p3" || ac.Context.Encounter != "9" || string(ac.Context.FHIRContext) != `[{"reference":"Encounter/9"}]` {
		t.Fatalf("context %+v", ac.Context)
	}
	if ac.Scope != "launch openid fhirUser user/*.rs patient/*.rs" {
		t.Fatalf("scope %q", ac.Scope)
	}
	// The launch value is single use.
	rq := e.redirectParams(b.authorize(q))
	if rq.Get("error") != "invalid_request" || rq.Get("code") != "" {
		t.Fatalf("reused launch: %v", rq)
	}
	// An expired one too.
	lv2, _ := launch.Create(ctx, e.store, storage.LaunchContext{Patient: "p3"}, e.clock.Now(), 0)
	e.clock.Advance(5*time.Minute + time.Second)
	rq = e.redirectParams(b.authorize(e.params("scope", "launch openid", "launch", lv2)))
	if rq.Get("error") != "invalid_request" {
		t.Fatalf("expired launch: %v", rq)
	}
	rq = e.redirectParams(b.authorize(e.params("scope", "launch openid", "launch", "made-up")))
	if rq.Get("error") != "invalid_request" {
		t.Fatalf("unknown launch: %v", rq)
	}
}

func TestPatientUserCannotTakeOthersLaunch(t *testing.T) {
	e := newEnv(t)
	lv, _ := launch.Create(context.Background(), e.store, storage.LaunchContext{Patient: "p3"}, e.clock.Now(), 0)
	b := e.browser()
	p := b.login(b.authorize(e.params("scope", "launch openid patient/*.rs", "launch", lv)), "amy", pw)
	if q := e.redirectParams(p); q.Get("error") != "access_denied" {
		t.Fatalf("want access_denied, got %v", q)
	}
}

func TestLaunchScopeWithoutLaunchIsStandalone(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	p := b.login(b.authorize(e.params("scope", "launch openid patient/*.rs")), "amy", pw)
	if strings.Contains(p.body, `value="launch"`) {
		t.Fatal("launch offered without an EHR launch")
	}
	ac := e.code(e.redirectParams(b.approve(p)))
	if ac.Scope != "openid patient/*.rs" || ac.Context.Patient != "p1" {
		t.Fatalf("code %+v", ac)
	}
}

func TestUncheckedScopeNotGranted(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	p := b.login(b.authorize(e.params()), "amy", pw)
	ac := e.code(e.redirectParams(b.approve(p, "offline_access")))
	if strings.Contains(ac.Scope, "offline_access") || ac.Scope != "openid fhirUser launch/patient patient/*.rs" {
		t.Fatalf("scope %q", ac.Scope)
	}
	// Consent remembered only what was approved: asking for offline_access again shows the page.
	if p := b.authorize(e.params()); p.status != 200 || !strings.Contains(p.body, "Allow access?") {
		t.Fatalf("want consent page, got %d %s", p.status, p.url)
	}
}

func TestTamperedConsentCannotWiden(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	p := b.login(b.authorize(e.params("scope", "openid patient/Observation.rs")), "amy", pw)
	f := formValues(t, p.body, PathConsent)
	f.Add("scope", "patient/*.cruds")
	f.Add("scope", "system/*.rs")
	f.Set("decision", "approve")
	ac := e.code(e.redirectParams(b.follow(http.MethodPost, e.srv.URL+PathConsent, f)))
	if ac.Scope != "openid patient/Observation.rs" {
		t.Fatalf("scope %q", ac.Scope)
	}
}

func TestOverBroadScopeNarrowed(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	p := b.login(b.authorize(e.params("scope", "openid patient/*.cruds user/*.cruds system/*.rs made/up")), "amy", pw)
	for _, bad := range []string{"cruds", "user/", "system/", "made/up"} {
		if strings.Contains(p.body, bad) {
			t.Errorf("consent page offers %s", bad)
		}
	}
	ac := e.code(e.redirectParams(b.approve(p)))
	if ac.Scope != "openid patient/*.rs" {
		t.Fatalf("scope %q", ac.Scope)
	}
}

func TestDeny(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	p := b.login(b.authorize(e.params()), "amy", pw)
	f := formValues(t, p.body, PathConsent)
	f.Set("decision", "deny")
	q := e.redirectParams(b.follow(http.MethodPost, e.srv.URL+PathConsent, f))
	if q.Get("error") != "access_denied" || q.Get("code") != "" || q.Get("state") != "st-ä 1" || q.Get("iss") != e.srv.URL {
		t.Fatalf("deny: %v", q)
	}
	if !e.audit.Has(audit.ActionConsentDenied, audit.Failure) {
		t.Error("deny not audited")
	}
	// The request is used up: posting approve afterwards is refused.
	f.Set("decision", "approve")
	if r := b.follow(http.MethodPost, e.srv.URL+PathConsent, f); r.status != 400 || r.header.Get("Location") != "" {
		t.Fatalf("replayed consent: %d %s", r.status, r.url)
	}
}

func TestConsentCannotBeIssuedTwice(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	p := b.login(b.authorize(e.params()), "amy", pw)
	e.redirectParams(b.approve(p))
	if r := b.approve(p); r.status != 400 || r.header.Get("Location") != "" {
		t.Fatalf("second submit: %d %s", r.status, r.url)
	}
}

func TestPOSTAuthorize(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	p := b.follow(http.MethodPost, e.srv.URL+"/authorize", e.params())
	if p.status != 200 || !strings.Contains(p.body, `type="password"`) {
		t.Fatalf("POST /authorize: %d %s", p.status, p.body)
	}
	p = b.follow(http.MethodPost, e.srv.URL+"/authorize", e.params("response_type", "token"))
	if q := e.redirectParams(p); q.Get("error") != "unsupported_response_type" {
		t.Fatalf("%v", q)
	}
}

func TestPromptNone(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	q := e.redirectParams(b.authorize(e.params("prompt", "none")))
	if q.Get("error") != "login_required" {
		t.Fatalf("%v", q)
	}
	b.login(b.authorize(e.params("scope", "openid")), "amy", pw) // signed in, consent page not answered
	if q := e.redirectParams(b.authorize(e.params("scope", "openid", "prompt", "none"))); q.Get("error") != "consent_required" {
		t.Fatalf("%v", q)
	}
}
