package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/fhirgate/fhirgate/internal/app"
	"github.com/fhirgate/fhirgate/internal/demoehr"
	"github.com/fhirgate/fhirgate/internal/storage"
)

// alertText waits for the page's role=alert message and returns it.
func (b *browser) alertText(what string) string {
	b.t.Helper()
	return waitJS[string](b, what, `document.readyState === "complete" && document.querySelector('[role="alert"]') && document.querySelector('[role="alert"]').innerText`, pageWait)
}

// TestLoginLockoutAndLogout: wrong passwords lock the account (the right
// password is then refused with the lockout message); another person signs
// in, signs out from the consent page, and the next request asks for a
// sign-in again.
func TestLoginLockoutAndLogout(t *testing.T) {
	s := startServer(t, map[string]string{"login.max_failures": "3"})
	b := newBrowser(t)
	if _, err := app.CreateUser(context.Background(), s.store, app.NewUser{Username: "ben", Password: "ben-password-1",
		Role: storage.RolePatient, FHIRUser: "Patient/" + demoehr.PatientID(2)}, fastPW, time.Now()); err != nil {
		t.Fatal(err)
	}
	rp := newGoRP(t, s, "lockout e2e app", "openid fhirUser launch/patient patient/*.rs")

	b.do("start an authorization request", chromedp.Navigate(rp.authURL()))
	b.waitLogin(s)
	for i := 1; i <= 3; i++ {
		b.login(patientUser, fmt.Sprintf("wrong-password-%d", i))
		msg := b.alertText("the wrong-password message")
		if strings.Contains(msg, patientPassword) || msg == "" {
			t.Fatalf("attempt %d: message %q", i, msg)
		}
		b.do("clear the alert", chromedp.Evaluate[chromedp.Void](`document.querySelector('[role="alert"]').remove()`))
	}
	b.shot("wrong-password")
	b.login(patientUser, patientPassword)
	if msg := b.alertText("the lockout message"); !strings.Contains(strings.ToLower(msg), "too many failed") {
		b.fail("lockout", fmt.Errorf("right password after 3 failures: %q", msg))
	}
	b.shot("locked")
	if _, err := eval[bool](b, `document.querySelector('button[name="decision"]') === null`); err != nil {
		t.Fatal(err)
	}

	// Another account is not affected; it signs in and then out.
	b.do("clear the alert", chromedp.Evaluate[chromedp.Void](`document.querySelector('[role="alert"]').remove()`))
	b.login("ben", "ben-password-1")
	b.do("consent page", chromedp.WaitVisible(chromedp.CSS(`button[name="decision"][value="approve"]`)))
	if !strings.Contains(b.text(), "ben") {
		b.fail("consent page", fmt.Errorf("signed-in user not shown: %q", b.text()))
	}
	b.shot("consent-before-logout")
	b.do("sign out", chromedp.Click(chromedp.CSS(`form[action$="/logout"] button[type="submit"]`)))
	b.waitLogin(s)
	b.shot("signed-out")
	// The session is gone: a new request asks for a sign-in again.
	b.do("start another authorization request", chromedp.Navigate(rp.authURL()))
	b.waitLogin(s)
}
