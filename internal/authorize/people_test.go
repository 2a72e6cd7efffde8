package authorize

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/internal/mfa"
	"github.com/fhirgate/fhirgate/internal/storage"
)

// TestPickerBirthDateOnly: a birth date alone finds a patient whose name
// sorts after the first page of names.
func TestPickerBirthDateOnly(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for i := range 80 {
		if err := e.store.PutPatient(ctx, &storage.Patient{ID: fmt.Sprintf("a%d", i), Name: fmt.Sprintf("Aaron %02d", i), BirthDate: "1990-01-01"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.store.PutPatient(ctx, &storage.Patient{ID: "z1", Name: "Zed Zane", BirthDate: "1944-04-04"}); err != nil {
		t.Fatal(err)
	}
	b := e.browser()
	p := b.login(b.authorize(e.params("scope", "openid launch/patient patient/Observation.rs")), "drbob", pw)
	req := formValues(t, p.body, PathPatient).Get("req")
	p = b.follow(http.MethodGet, e.srv.URL+PathPatient+"?req="+req+"&name=&birthdate=1944-04-04", nil)
	if !strings.Contains(p.body, `value="Patient/z1"`) || strings.Contains(p.body, "Aaron") {
		t.Fatalf("birth-date search:\n%s", p.body)
	}
	p = b.follow(http.MethodGet, e.srv.URL+PathPatient+"?req="+req+"&name=aaron&birthdate=1990-01-01", nil)
	if n := strings.Count(p.body, `name="patient"`); n != pickerResultLimit {
		t.Fatalf("%d results, want the page limit %d", n, pickerResultLimit)
	}
}

// TestSecondFactorGatesEveryStep: with MFA required for clinicians, a
// password-only session reaches no picker, consent or code: sign-in sends
// the browser to enrol, the pages redirect there too, and prompt=none
// answers login_required.
func TestSecondFactorGatesEveryStep(t *testing.T) {
	e := newEnv(t)
	svc, err := mfa.New(mfa.Options{Store: e.store, KEK: []byte("0123456789abcdef0123456789abcdef"), Auditor: e.audit, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	e.h.opts.MFA, e.h.opts.RequireMFAFor = svc, []storage.Role{storage.RoleClinician}
	b := e.browser()
	p := b.login(b.authorize(e.params("scope", "openid launch/patient patient/Observation.rs")), "drbob", pw)
	u, _ := url.Parse(p.url)
	if u.Path != "/mfa/enrol" || !strings.HasPrefix(u.Query().Get("next"), PathContinue+"?req=") {
		t.Fatalf("clinician after password: %s (%d)", p.url, p.status)
	}
	req := strings.TrimPrefix(u.Query().Get("next"), PathContinue+"?req=")
	for _, path := range []string{PathPatient, PathConsent, PathContinue} {
		p := b.do(http.MethodGet, e.srv.URL+path+"?req="+req, nil)
		if p.status != http.StatusSeeOther || !strings.HasPrefix(p.header.Get("Location"), "/mfa/enrol?next=") {
			t.Fatalf("%s with a password-only session: %d %q", path, p.status, p.header.Get("Location"))
		}
	}
	p = b.do(http.MethodPost, e.srv.URL+PathConsent, url.Values{"req": {req}, "decision": {"approve"}, "scope": {"openid"}})
	if p.status != http.StatusSeeOther || !strings.HasPrefix(p.header.Get("Location"), "/mfa/enrol") {
		t.Fatalf("consent POST with a password-only session: %d %q", p.status, p.header.Get("Location"))
	}
	p = b.follow(http.MethodGet, e.srv.URL+PathAuthorize+"?"+e.params("scope", "openid launch/patient patient/Observation.rs", "prompt", "none").Encode(), nil)
	if q := e.redirectParams(p); q.Get("error") != "login_required" {
		t.Fatalf("prompt=none without the second factor: %v", q)
	}
	// A patient (not in the list, not enrolled) goes on without one.
	pb := e.browser()
	p = pb.login(pb.authorize(e.params("scope", "openid launch/patient patient/Observation.rs")), "amy", pw)
	if p.status != http.StatusOK || !strings.Contains(p.body, `action="/authorize/consent"`) {
		t.Fatalf("patient: %d %s", p.status, p.url)
	}
}

func TestTypeLabel(t *testing.T) {
	for in, want := range map[string]string{
		"Observation": "Observations (such as lab results and vital signs)",
		"Condition":   "Conditions and diagnoses",
		"*":           "All health data",
		"ChargeItem":  "Charge item records",
	} {
		if got := typeLabel(in); got != want {
			t.Errorf("typeLabel(%q) = %q, want %q", in, got, want)
		}
	}
}
