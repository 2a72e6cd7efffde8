package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"golang.org/x/oauth2"

	"github.com/fhirgate/fhirgate/internal/demoehr"
)

// needPages skips (fails under FHIRGATE_E2E_REQUIRED), naming what is
// missing, when the composition root does not mount the people's pages.
func needPages(t *testing.T, s *server, paths ...string) {
	t.Helper()
	var missing []string
	for _, p := range paths {
		if !routeMounted(t, s, p) {
			missing = append(missing, p)
		}
	}
	need(t, len(missing) == 0, "pages not mounted by internal/app (404): %s", strings.Join(missing, ", "))
}

// accountSignIn opens the sign-in page outside any authorization request
// and signs in; next is where it goes afterwards.
func (b *browser) accountSignIn(s *server, next, username, pw string) {
	b.t.Helper()
	b.do("open the sign-in page", chromedp.Navigate(s.issuer+"/account/login?next="+url.QueryEscape(next)))
	b.waitLogin(s)
	b.login(username, pw)
}

// enrolTOTP completes the enrol page: reads the manual-entry key, answers
// with the current code, and continues past the recovery codes. It returns
// the key and the step used.
func (b *browser) enrolTOTP() (string, int64) {
	b.t.Helper()
	key := waitJS[string](b, "the TOTP enrol page", `document.readyState === "complete" && document.querySelector("#totp-key") && document.querySelector("#totp-key").innerText`, pageWait)
	if ok, _ := eval[bool](b, `(() => { const i = document.querySelector('img[src*="qr"]'); return !!i && i.complete && i.naturalWidth > 0; })()`); !ok {
		b.fail("enrol page", fmt.Errorf("the QR code image did not load"))
	}
	b.shot("mfa-enrol")
	step := totpStep(time.Now())
	b.do("enter the first code",
		chromedp.SendKeys(chromedp.CSS(`input[name="code"]`), totp(b.t.(*testing.T), key, step)),
		chromedp.Click(chromedp.CSS(`form[action="/mfa/enrol"] button[type="submit"]`)),
	)
	codes := waitJS[string](b, "the recovery codes", `document.readyState === "complete" && document.querySelector("#recovery-codes") && document.querySelector("#recovery-codes").innerText`, pageWait)
	if len(strings.Fields(codes)) < 5 {
		b.fail("recovery codes", fmt.Errorf("%q", codes))
	}
	b.shot("mfa-recovery-codes")
	b.do("continue", chromedp.Click(chromedp.CSS(`#continue`)))
	waitJS[bool](b, "the page after the recovery codes", `document.readyState === "complete" && !document.querySelector("#recovery-codes")`, pageWait)
	return key, step
}

// signOut uses the sign-out button of the account pages' navigation.
func (b *browser) signOut(s *server) {
	b.t.Helper()
	b.do("open connected apps", chromedp.Navigate(s.issuer+"/account/apps"))
	b.do("sign out", chromedp.WaitVisible(chromedp.CSS(`#signout`)), chromedp.Click(chromedp.CSS(`#signout`)))
	waitJS[bool](b, "signed out", `document.readyState === "complete" && !document.querySelector("#signout")`, pageWait)
}

// TestTOTPLogin: a clinician enrols an authenticator (QR code and key,
// recovery codes), signs out, then an app's sign-in asks for the code; the
// clinician picks a patient, and the id_token's amr and acr say that two
// factors were used.
func TestTOTPLogin(t *testing.T) {
	s := startServer(t, nil)
	needPages(t, s, "/mfa/enrol", "/account/login", "/account/apps")
	b := newBrowser(t)
	b.accountSignIn(s, "/mfa/enrol", clinicianUser, clinicianPass)
	key, step := b.enrolTOTP()
	b.signOut(s)

	rp := newGoRP(t, s, "TOTP e2e app", "openid fhirUser launch/patient patient/*.rs")
	b.do("start an authorization request", chromedp.Navigate(rp.authURL()))
	b.waitLogin(s)
	b.login(clinicianUser, clinicianPass)
	waitJS[bool](b, "the code page", `document.readyState === "complete" && !!document.querySelector('form[action="/mfa"] input[name="code"]')`, pageWait)
	// A wrong code is refused with a message.
	wrong := fmt.Sprintf("%06d", (atoi(totp(t, key, step+1))+1)%1_000_000)
	b.do("enter a wrong code", chromedp.SendKeys(chromedp.CSS(`input[name="code"]`), wrong),
		chromedp.Click(chromedp.CSS(`form[action="/mfa"] button[type="submit"]`)))
	b.alertText("the wrong-code message")
	b.shot("mfa-code")
	// The enrolment used step; the next step is within the accepted window
	// and was never used.
	b.do("enter the code", chromedp.SendKeys(chromedp.CSS(`input[name="code"]`), totp(t, key, step+1)),
		chromedp.Click(chromedp.CSS(`form[action="/mfa"] button[type="submit"]`)))

	// Patient picker: search by name, choose, continue.
	b.do("search a patient",
		chromedp.WaitVisible(chromedp.CSS(`form[action="/authorize/patient"] input[name="name"]`)),
		chromedp.SendKeys(chromedp.CSS(`form[action="/authorize/patient"] input[name="name"]`), "Tanaka"),
		chromedp.Click(chromedp.CSS(`form[method="get"][action="/authorize/patient"] button[type="submit"]`)),
	)
	pt := demoehr.PatientID(demoPatientN)
	radioSel := fmt.Sprintf(`input[name="patient"][value$=%q]`, pt)
	// The search reloads the page: wait for the results page itself, or the
	// radio found may be the unfiltered page's, gone before the click.
	waitJS[bool](b, "the search results", fmt.Sprintf(`document.readyState === "complete" &&
		new URLSearchParams(location.search).get("name") === "Tanaka" && !!document.querySelector(%q)`, radioSel), pageWait)
	radio := chromedp.CSS(radioSel)
	b.do("choose the patient", chromedp.WaitVisible(radio), chromedp.Click(radio))
	b.shot("picker")
	b.do("continue", chromedp.Click(chromedp.CSS(`form[method="post"][action="/authorize/patient"] button[type="submit"]`)))
	b.consent()
	tok := rp.exchange(t, b)
	if tok.Extra("patient") != pt {
		t.Fatalf("patient %v, want %s", tok.Extra("patient"), pt)
	}
	c := idClaims(t, tok)
	amr := fmt.Sprint(c["amr"])
	if !strings.Contains(amr, "pwd") || !strings.Contains(amr, "otp") || c["acr"] != "urn:fhirgate:acr:2fa" {
		t.Fatalf("amr %v acr %v, want pwd+otp and 2fa", c["amr"], c["acr"])
	}
}

func atoi(s string) int {
	n := 0
	for _, r := range s {
		n = n*10 + int(r-'0')
	}
	return n
}

// TestConnectedAppsRevoke: a patient grants an app offline access, sees it
// on the connected-apps page and revokes it; the gateway then refuses the
// app's access token and the refresh token no longer works.
func TestConnectedAppsRevoke(t *testing.T) {
	s := startServer(t, nil)
	needPages(t, s, "/account/apps")
	b := newBrowser(t)
	rp := newGoRP(t, s, "Revocable e2e app", "openid fhirUser launch/patient offline_access patient/*.rs")
	b.do("start an authorization request", chromedp.Navigate(rp.authURL()))
	b.waitLogin(s)
	b.login(patientUser, patientPassword)
	b.consent()
	tok := rp.exchange(t, b)
	pt := demoehr.PatientID(demoPatientN)
	if code := gatewayGet(t, s, tok.AccessToken, "/Patient/"+pt); code != http.StatusOK {
		t.Fatalf("gateway read before revocation: %d", code)
	}

	// The access report lists the app's read from the audit trail.
	b.do("open the access report", chromedp.Navigate(s.issuer+"/account/access"))
	b.shot("access-report")
	if ok, _ := eval[bool](b, `!!document.querySelector("#access-report")`); !ok {
		b.fail("access report", fmt.Errorf("no access report table: %q", b.text()))
	}
	if txt := b.text(); !strings.Contains(txt, "Revocable e2e app") && !strings.Contains(txt, rp.cfg.ClientID) {
		b.fail("access report", fmt.Errorf("the app's access is not listed: %q", txt))
	}

	b.do("open connected apps", chromedp.Navigate(s.issuer+"/account/apps"))
	revoke := chromedp.CSS(fmt.Sprintf(`button[id="revoke-%s"]`, rp.cfg.ClientID))
	b.do("the app is listed", chromedp.WaitVisible(revoke))
	if !strings.Contains(b.text(), "Revocable e2e app") {
		b.fail("connected apps", fmt.Errorf("app name missing: %q", b.text()))
	}
	b.shot("connected-apps")
	b.do("revoke", chromedp.Click(revoke))
	waitJS[bool](b, "the app is gone", fmt.Sprintf(`document.readyState === "complete" && !document.querySelector('button[id="revoke-%s"]')`, rp.cfg.ClientID), pageWait)
	b.shot("revoked")

	// The gateway refuses the access token within the revocation bound.
	deadline := time.Now().Add(60 * time.Second)
	for {
		code := gatewayGet(t, s, tok.AccessToken, "/Patient/"+pt)
		if code == http.StatusUnauthorized {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway still answers %d a minute after the revocation", code)
		}
		time.Sleep(250 * time.Millisecond)
	}
	expired := &oauth2.Token{RefreshToken: tok.RefreshToken, Expiry: time.Now().Add(-time.Hour)}
	if _, err := rp.cfg.TokenSource(context.Background(), expired).Token(); err == nil || !strings.Contains(err.Error(), "invalid_grant") {
		t.Fatalf("refresh after revocation: %v", err)
	}
}

// TestAdminConsoleCreateClient: an administrator signs in, must set up
// two-step sign-in first, and creates a confidential client in the console;
// the secret shown once authenticates at the token endpoint.
func TestAdminConsoleCreateClient(t *testing.T) {
	s := startServer(t, nil)
	needPages(t, s, "/console", "/account/login", "/mfa/enrol")
	b := newBrowser(t)
	b.accountSignIn(s, "/console/clients", adminUser, adminPassword)
	b.enrolTOTP() // admin pages require a second factor
	b.do("open the clients console", chromedp.Navigate(s.issuer+"/console/clients"))
	b.do("fill the new-client form",
		chromedp.WaitVisible(chromedp.CSS(`#client-name`)),
		chromedp.SendKeys(chromedp.CSS(`#client-name`), "Console e2e client"),
		chromedp.SetValue(chromedp.CSS(`#client-type`), "confidential"),
		chromedp.SendKeys(chromedp.CSS(`#client-redirects`), "https://app.example.org/callback"),
		chromedp.SendKeys(chromedp.CSS(`#client-scope`), "openid fhirUser launch/patient patient/*.rs"),
	)
	b.shot("console-new-client")
	b.do("create", chromedp.Click(chromedp.CSS(`#create-client`)))
	secret := waitJS[string](b, "the new secret", `document.readyState === "complete" && document.querySelector("#client-secret") && document.querySelector("#client-secret").innerText`, pageWait)
	b.shot("console-client-created")

	var id string
	clients, err := s.store.ListClients(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range clients {
		if c.Name == "Console e2e client" {
			id = c.ID
		}
	}
	if id == "" {
		t.Fatal("the client is not in the store")
	}
	if !strings.Contains(b.text(), id) {
		b.fail("clients table", fmt.Errorf("new client %s not listed", id))
	}
	// The secret authenticates: a bogus code is invalid_grant, while a wrong
	// secret is invalid_client.
	tokenCall := func(sec string) string {
		form := url.Values{"grant_type": {"authorization_code"}, "code": {"not-a-code"},
			"redirect_uri": {"https://app.example.org/callback"}, "code_verifier": {strings.Repeat("v", 43)}}
		req, _ := http.NewRequest(http.MethodPost, s.issuer+"/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(sec))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%d %s", resp.StatusCode, readAll(t, resp.Body))
	}
	if got := tokenCall(secret); !strings.Contains(got, `"invalid_grant"`) {
		t.Fatalf("token endpoint with the console's secret: %s", got)
	}
	if got := tokenCall(secret + "x"); !strings.Contains(got, `"invalid_client"`) {
		t.Fatalf("token endpoint with a wrong secret: %s", got)
	}
}
