package account

import (
	"context"
	"encoding/base32"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/audit/chain"
	"github.com/fhirgate/fhirgate/internal/mfa"
	"github.com/fhirgate/fhirgate/internal/storage"
)

func TestPagesNeedASession(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	for _, path := range []string{PathApps, PathAccess, mfa.PathVerify, mfa.PathEnrol, mfa.PathQR} {
		p := b.get(path)
		if p.status != http.StatusSeeOther || !strings.HasPrefix(p.location, PathLogin+"?next=") {
			t.Errorf("%s without a session: %d %q", path, p.status, p.location)
		}
	}
	p := b.post(PathRevoke, url.Values{"client_id": {"app"}})
	if p.status != http.StatusSeeOther || !strings.HasPrefix(p.location, PathLogin) {
		t.Errorf("revoke without a session: %d %q", p.status, p.location)
	}
}

func TestSignInPageRules(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	p := b.get(PathLogin + "?next=" + url.QueryEscape("https://evil.example/"))
	if p.status != http.StatusOK || strings.Contains(p.body, "evil.example") {
		t.Fatalf("open redirect kept in the form: %d", p.status)
	}
	for _, h := range []string{"Content-Security-Policy", "Referrer-Policy", "X-Frame-Options"} {
		if p.header.Get(h) == "" {
			t.Errorf("missing %s", h)
		}
	}
	if strings.Contains(p.body, "<script") || strings.Contains(p.body, "style=") {
		t.Error("inline script or style")
	}
	// Missing CSRF token -> 403.
	if p := b.post(PathLogin, url.Values{"username": {"amy"}, "password": {pw}}); p.status != http.StatusForbidden {
		t.Fatalf("login without CSRF: %d", p.status)
	}
	// Wrong password: same page with a message, no session.
	p = b.get(PathLogin)
	p = b.post(PathLogin, url.Values{"csrf": {csrfOf(t, p.body)}, "username": {"amy"}, "password": {"wrong"}})
	if p.status != http.StatusOK || !strings.Contains(p.body, "Invalid username or password") {
		t.Fatalf("wrong password: %d", p.status)
	}
	p = b.signIn("amy", "https://evil.example/")
	if p.status != http.StatusSeeOther || p.location != mfa.DefaultNext {
		t.Fatalf("sign-in redirect: %d %q", p.status, p.location)
	}
	for _, c := range b.c.Jar.Cookies(mustURL(e.srv.URL)) {
		if c.Name == "fhirgate" && c.Value == "" {
			t.Fatal("empty session cookie")
		}
	}
}

func mustURL(s string) *url.URL { u, _ := url.Parse(s); return u }

func TestConnectedAppsAndRevoke(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	now := time.Now()
	if err := e.store.PutConsent(ctx, &storage.Consent{UserID: "u-amy", ClientID: "app", Scope: "openid patient/Observation.rs offline_access", CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	if err := e.store.CreateFamily(ctx, &storage.TokenFamily{ID: "fam-1", ClientID: "app", UserID: "u-amy", Scope: "openid patient/Observation.rs offline_access", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	used := now.Add(10 * time.Minute)
	if err := e.audit.Append(ctx, []chain.Entry{chain.Link("n", nil, audit.Event{Time: used, Action: audit.ActionFHIRRequest, Outcome: audit.Success,
		UserID: "u-amy", ClientID: "app", Patient: "pt-001", Interaction: "read", ResourceType: "Observation", ResourceID: "o1"})}); err != nil {
		t.Fatal(err)
	}
	b := e.browser()
	if p := b.signIn("amy", PathApps); p.location != PathApps {
		t.Fatalf("sign in: %d %q", p.status, p.location)
	}
	p := b.get(PathApps)
	if p.status != http.StatusOK {
		t.Fatalf("apps page: %d", p.status)
	}
	for _, want := range []string{"Health Diary", "https://app.example/logo.png", "observations", "Keeps access after you sign out", `id="revoke-app"`, used.UTC().Format(time.RFC3339)} {
		if !strings.Contains(strings.ToLower(p.body), strings.ToLower(want)) {
			t.Errorf("apps page lacks %q:\n%s", want, p.body)
		}
	}
	csrf := csrfOf(t, p.body)
	// Missing or wrong CSRF: 403 and nothing revoked.
	for _, bad := range []string{"", csrf + "x"} {
		if p := b.post(PathRevoke, url.Values{"csrf": {bad}, "client_id": {"app"}}); p.status != http.StatusForbidden {
			t.Fatalf("revoke with CSRF %q: %d", bad, p.status)
		}
	}
	if f, _ := e.store.GetFamily(ctx, "fam-1"); !f.RevokedAt.IsZero() {
		t.Fatal("family revoked without a valid CSRF token")
	}
	// Another user's session cannot revoke amy's app (it revokes nothing of amy's).
	b2 := e.browser()
	b2.signIn("bob", PathApps) // bob needs MFA first: the revoke is refused before any change
	if p := b2.post(PathRevoke, url.Values{"csrf": {csrf}, "client_id": {"app"}}); p.status != http.StatusSeeOther || !strings.HasPrefix(p.location, mfa.PathEnrol) {
		t.Fatalf("clinician without MFA revoking: %d %q", p.status, p.location)
	}
	p = b.post(PathRevoke, url.Values{"csrf": {csrf}, "client_id": {"app"}})
	if p.status != http.StatusSeeOther || p.location != PathApps+"?done=revoked" {
		t.Fatalf("revoke: %d %q", p.status, p.location)
	}
	if f, _ := e.store.GetFamily(ctx, "fam-1"); f.RevokedAt.IsZero() {
		t.Fatal("family not revoked")
	}
	if _, err := e.store.GetConsent(ctx, "u-amy", "app"); err == nil {
		t.Fatal("consent kept")
	}
	if !e.rec.Has(audit.ActionConsentRevoked, audit.Success) {
		t.Fatal("revocation not audited")
	}
	p = b.get(PathApps + "?done=revoked")
	if !strings.Contains(p.body, "Access revoked") || !strings.Contains(p.body, `id="no-apps"`) {
		t.Fatalf("after revoke:\n%s", p.body)
	}
	if p := b.post(PathRevoke, url.Values{"csrf": {csrf}, "client_id": {"app"}}); p.location != PathApps+"?done=none" {
		t.Fatalf("second revoke: %q", p.location)
	}
}

func TestAccessReport(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	t0 := time.Date(2026, 2, 1, 10, 0, 0, 0, time.UTC)
	var es []chain.Entry
	var prev *chain.Entry
	for i, ev := range []audit.Event{
		{Action: audit.ActionFHIRRequest, Outcome: audit.Success, UserID: "u-bob", FHIRUser: "Practitioner/pr-1", ClientID: "app", Patient: "pt-001", Interaction: "read", ResourceType: "Patient", ResourceID: "pt-001"},
		{Action: audit.ActionFHIRRequest, Outcome: audit.Failure, UserID: "u-x", ClientID: "app", Patient: "pt-001", Interaction: "search-type", ResourceType: "Observation", Reason: "insufficient_scope"},
		{Action: audit.ActionFHIRRequest, Outcome: audit.Success, UserID: "u-z", ClientID: "app", Patient: "pt-999", Interaction: "read", ResourceType: "Patient", ResourceID: "pt-999"},
	} {
		ev.Time = t0.Add(time.Duration(i) * time.Minute)
		es = append(es, chain.Link("n", prev, ev))
		prev = &es[len(es)-1]
	}
	if err := e.audit.Append(ctx, es); err != nil {
		t.Fatal(err)
	}
	b := e.browser()
	b.signIn("amy", PathAccess)
	p := b.get(PathAccess)
	if p.status != http.StatusOK {
		t.Fatalf("report: %d", p.status)
	}
	for _, want := range []string{"Practitioner/pr-1", "Health Diary", "Opened", "Patient/pt-001", "Refused: insufficient_scope"} {
		if !strings.Contains(p.body, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(p.body, "pt-999") {
		t.Fatal("report shows another patient's accesses")
	}
	if !e.rec.Has(audit.ActionAuditQuery, audit.Success) {
		t.Fatal("report reading not audited")
	}
	if p := b.get(PathAccess + "?after=garbage"); p.status != http.StatusBadRequest {
		t.Fatalf("bad cursor: %d", p.status)
	}
	// A clinician has no access report of their own.
	c := e.browser()
	c.signIn("bob", PathAccess)
	c.enrol(PathAccess)
	if p := c.get(PathAccess); p.status != http.StatusForbidden {
		t.Fatalf("clinician report: %d", p.status)
	}
}

func TestMFAEnrolVerifyReplayRecovery(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	p := b.signIn("bob", PathApps)
	if p.status != http.StatusSeeOther || p.location != mfa.EnrolURL(PathApps) {
		t.Fatalf("clinician sign-in: %d %q", p.status, p.location)
	}
	// Pages refuse the password-only session.
	if p := b.get(PathApps); !strings.HasPrefix(p.location, mfa.PathEnrol) {
		t.Fatalf("apps before MFA: %d %q", p.status, p.location)
	}
	p = b.get(mfa.EnrolURL(PathApps))
	if !strings.Contains(p.body, `src="/mfa/qr.png"`) {
		t.Fatal("enrol page without QR image")
	}
	qr := b.get(mfa.PathQR)
	if qr.status != http.StatusOK || qr.header.Get("Content-Type") != "image/png" || qr.header.Get("Cache-Control") != "no-store" || !strings.HasPrefix(qr.body, "\x89PNG") {
		t.Fatalf("qr: %d %v", qr.status, qr.header)
	}
	key := keyOf(t, p.body)
	csrf := csrfOf(t, p.body)
	if p := b.post(mfa.PathEnrol, url.Values{"next": {PathApps}, "code": {mfa.Code(key, mfa.Step(time.Now()))}}); p.status != http.StatusForbidden {
		t.Fatalf("enrol without CSRF: %d", p.status)
	}
	if p := b.post(mfa.PathEnrol, url.Values{"csrf": {csrf}, "next": {PathApps}, "code": {"000000"}}); !strings.Contains(p.body, "not right") {
		t.Fatalf("wrong enrol code: %d", p.status)
	}
	p = b.post(mfa.PathEnrol, url.Values{"csrf": {csrf}, "next": {PathApps}, "code": {mfa.Code(key, mfa.Step(time.Now()))}})
	if p.status != http.StatusOK || !strings.Contains(p.body, "recovery-codes") || !strings.Contains(p.body, `href="/account/apps"`) {
		t.Fatalf("enrol: %d\n%s", p.status, p.body)
	}
	if p := b.get(PathApps); p.status != http.StatusOK {
		t.Fatalf("apps after enrolment: %d %q", p.status, p.location)
	}

	// Sign in again: password, then a code.
	b = e.browser()
	p = b.signIn("bob", PathApps)
	if p.location != mfa.VerifyURL(PathApps) {
		t.Fatalf("second sign-in: %q", p.location)
	}
	p = b.get(p.location)
	csrf = csrfOf(t, p.body)
	submit := func(code string) page {
		return b.post(mfa.PathVerify, url.Values{"csrf": {csrf}, "next": {PathApps}, "code": {code}})
	}
	// The enrolment code's step is spent: replay refused.
	if p := submit(mfa.Code(key, mfa.Step(time.Now()))); !strings.Contains(p.body, "already used") {
		t.Fatalf("replayed code: %d\n%s", p.status, p.body)
	}
	if p := submit("123456"); p.status != http.StatusOK || !strings.Contains(p.body, "not right") {
		if !strings.Contains(p.body, "already used") {
			t.Fatalf("wrong code: %d", p.status)
		}
	}
	next := mfa.Code(key, mfa.Step(time.Now())+1)
	if p := b.post(mfa.PathVerify, url.Values{"next": {PathApps}, "code": {next}}); p.status != http.StatusForbidden {
		t.Fatalf("verify without CSRF: %d", p.status)
	}
	if p := submit(next); p.status != http.StatusSeeOther || p.location != PathApps {
		t.Fatalf("right code: %d %q", p.status, p.location)
	}
	if p := b.get(PathApps); p.status != http.StatusOK {
		t.Fatalf("apps after verify: %d", p.status)
	}
	if !e.rec.Has(mfa.ActionVerified, audit.Success) || !e.rec.Has(mfa.ActionVerified, audit.Failure) {
		t.Fatal("verifications not audited")
	}
}

func TestRecoveryCodeSingleUseAndLockout(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.signIn("ada", PathApps)
	_, codes := b.enrol(PathApps)
	if len(codes) != mfa.RecoveryCodes {
		t.Fatalf("%d recovery codes", len(codes))
	}
	verify := func(b *browser, code string) page {
		p := b.get(mfa.VerifyURL(PathApps))
		return b.post(mfa.PathVerify, url.Values{"csrf": {csrfOf(t, p.body)}, "next": {PathApps}, "code": {code}})
	}
	b1 := e.browser()
	b1.signIn("ada", PathApps)
	if p := verify(b1, codes[0]); p.location != PathApps {
		t.Fatalf("recovery code: %d %q", p.status, p.location)
	}
	b2 := e.browser()
	b2.signIn("ada", PathApps)
	if p := verify(b2, codes[0]); !strings.Contains(p.body, "not right") {
		t.Fatalf("recovery code used twice: %d %q", p.status, p.location)
	}
	// Wrong codes count toward the account lockout.
	for i := 0; i < mfa.DefaultMaxFailures-2; i++ {
		if p := verify(b2, "000000"); p.status != http.StatusOK {
			t.Fatalf("wrong code %d: %d", i, p.status)
		}
	}
	if p := verify(b2, "000000"); p.status != http.StatusForbidden || !strings.Contains(p.body, "Too many") {
		t.Fatalf("lockout: %d", p.status)
	}
	if p := b2.get(PathApps); p.status != http.StatusSeeOther || !strings.HasPrefix(p.location, PathLogin) {
		t.Fatalf("locked-out session still alive: %d %q", p.status, p.location)
	}
}

// TestSessionTimeoutsBoundSSO: a remembered sign-in is reused while the
// session is active, and ends after the idle timeout or the absolute one.
func TestSessionTimeoutsBoundSSO(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.signIn("amy", PathApps)
	for range 4 { // active every 20 minutes: still signed in after 80 minutes
		e.skew.Add(int64(20 * time.Minute))
		if p := b.get(PathApps); p.status != http.StatusOK {
			t.Fatalf("active session ended: %d %q", p.status, p.location)
		}
	}
	e.skew.Add(int64(31 * time.Minute))
	if p := b.get(PathApps); p.status != http.StatusSeeOther || !strings.HasPrefix(p.location, PathLogin) {
		t.Fatalf("idle session still alive: %d", p.status)
	}
	b.signIn("amy", PathApps)
	for i := 0; i < 12*3+1; i++ {
		e.skew.Add(int64(20 * time.Minute))
		p := b.get(PathApps)
		if p.status != http.StatusOK {
			if i < 12*3-1 {
				t.Fatalf("session ended early after %d steps", i)
			}
			return
		}
	}
	t.Fatal("session outlived the absolute timeout")
}

// TestVoluntaryTwoStep: a patient (not required to) can turn on two-step
// sign-in from the account pages; from then on it is asked for.
func TestVoluntaryTwoStep(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.signIn("amy", PathApps)
	p := b.get(PathApps)
	if !strings.Contains(p.body, `id="setup-two-step"`) {
		t.Fatal("no set-up link")
	}
	b.enrol(PathApps)
	if p := b.get(PathApps); p.status != http.StatusOK || strings.Contains(p.body, `id="setup-two-step"`) {
		t.Fatalf("after enrolment: %d", p.status)
	}
	b2 := e.browser()
	if p := b2.signIn("amy", PathApps); p.location != mfa.VerifyURL(PathApps) {
		t.Fatalf("enrolled patient not asked for a code: %q", p.location)
	}
}

func TestLogout(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.signIn("amy", PathApps)
	p := b.get(PathApps)
	if p := b.post(PathLogout, url.Values{}); p.status != http.StatusForbidden {
		t.Fatalf("logout without CSRF: %d", p.status)
	}
	if p := b.post(PathLogout, url.Values{"csrf": {csrfOf(t, p.body)}}); p.status != http.StatusOK || !strings.Contains(p.body, "signed out") {
		t.Fatalf("logout: %d", p.status)
	}
	if p := b.get(PathApps); p.status != http.StatusSeeOther || !strings.HasPrefix(p.location, PathLogin) {
		t.Fatalf("after logout: %d", p.status)
	}
	if !e.rec.Has(audit.ActionLogout, audit.Success) {
		t.Fatal("logout not audited")
	}
}

// TestProvisionedMFAEnrolmentPages: with login.mfa_enrolment provisioned, a
// clinician who must use a second factor but has no provisioned key is
// refused (with an explanation and an audit event) instead of shown a new
// key, the QR image is not served, and once an administrator provisioned a
// key the page asks only for a code, never showing the key; the right code
// from that key turns the factor on.
func TestProvisionedMFAEnrolmentPages(t *testing.T) {
	e := newEnv(t, func(o *mfa.Options) { o.Enrolment = mfa.EnrolProvisioned })
	b := e.browser()
	p := b.signIn("bob", PathApps)
	if p.status != http.StatusSeeOther || p.location != mfa.EnrolURL(PathApps) {
		t.Fatalf("clinician sign-in: %d %q", p.status, p.location)
	}
	p = b.get(mfa.EnrolURL(PathApps))
	if p.status != http.StatusForbidden || !strings.Contains(p.body, "administrator") || strings.Contains(p.body, "totp-key") {
		t.Fatalf("enrol page without a provisioned key: %d\n%s", p.status, p.body)
	}
	if !e.rec.Has(mfa.ActionEnrolled, audit.Failure) {
		t.Fatal("refused enrolment not audited")
	}
	if qr := b.get(mfa.PathQR); qr.status != http.StatusNotFound {
		t.Fatalf("qr without a provisioned key: %d", qr.status)
	}

	uri, key, err := e.mfa.Provision(context.Background(), "u-bob", "bob", "test admin")
	if err != nil || uri == "" {
		t.Fatal(err)
	}
	raw, err := mfaKey(key)
	if err != nil {
		t.Fatal(err)
	}
	p = b.get(mfa.EnrolURL(PathApps))
	if p.status != http.StatusOK || strings.Contains(p.body, "totp-key") || strings.Contains(p.body, "qr.png") ||
		strings.Contains(strings.ReplaceAll(p.body, " ", ""), key) {
		t.Fatalf("enrol page with a provisioned key: %d\n%s", p.status, p.body)
	}
	if qr := b.get(mfa.PathQR); qr.status != http.StatusNotFound {
		t.Fatalf("qr of a provisioned key served: %d", qr.status)
	}
	csrf := csrfOf(t, p.body)
	p = b.post(mfa.PathEnrol, url.Values{"csrf": {csrf}, "next": {PathApps}, "code": {mfa.Code(raw, mfa.Step(time.Now()))}})
	if p.status != http.StatusOK || !strings.Contains(p.body, "recovery-codes") {
		t.Fatalf("confirm provisioned key: %d\n%s", p.status, p.body)
	}
	if p := b.get(PathApps); p.status != http.StatusOK {
		t.Fatalf("apps after enrolment: %d %q", p.status, p.location)
	}
}

// mfaKey decodes a base32 TOTP key as printed by Provision.
func mfaKey(key string) ([]byte, error) {
	return base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(key)
}
