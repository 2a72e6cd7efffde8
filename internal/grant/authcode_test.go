package grant_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/grant"
	"github.com/fhirgate/fhirgate/internal/oauth"
	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/token"
)

func TestCodeExchangePublicFull(t *testing.T) {
	f := newFixture(t)
	c, _ := f.client(oauth.AuthNone)
	lc := storage.LaunchContext{Patient: "123", Encounter: "9", NeedPatientBanner: true,
		FHIRContext: []byte(`[{"reference":"DiagnosticReport/7","role":"https://example.org/role"}]`)}
	code, verifier := f.code(c, codeOpts{nonce: "n-0S6_WzA2Mj", context: lc})
	w := f.exchange(code, verifier, public(c))
	b := wantOK(t, w)

	if b.str("token_type") != "Bearer" {
		t.Errorf("token_type %v", b["token_type"])
	}
	if n, ok := b["expires_in"].(float64); !ok || n != 900 {
		t.Errorf("expires_in %#v, want the number 900", b["expires_in"])
	}
	if b.str("scope") != fullScope {
		t.Errorf("scope %q", b.str("scope"))
	}
	if b.str("patient") != "123" || b.str("encounter") != "9" {
		t.Errorf("context %v %v", b["patient"], b["encounter"])
	}
	if v, ok := b["need_patient_banner"].(bool); !ok || !v {
		t.Errorf("need_patient_banner %#v", b["need_patient_banner"])
	}
	if b.str("smart_style_url") != issuerURL+"/smart-style.json" {
		t.Errorf("smart_style_url %v", b["smart_style_url"])
	}
	fc, ok := b["fhirContext"].([]any)
	if !ok || len(fc) != 1 {
		t.Fatalf("fhirContext %#v", b["fhirContext"])
	}
	if m, _ := fc[0].(map[string]any); m["reference"] != "DiagnosticReport/7" {
		t.Errorf("fhirContext %#v", fc)
	}
	if b.str("refresh_token") == "" {
		t.Error("no refresh_token despite offline_access")
	}

	at := b.str("access_token")
	claims, err := f.issuer.ParseAccessToken(at, fhirBase)
	if err != nil {
		t.Fatal(err)
	}
	if claims.Subject != f.user.ID || claims.ClientID != c.ID || claims.Scope != fullScope ||
		claims.Patient != "123" || claims.Encounter != "9" || claims.FHIRUser != fhirBase+"/Patient/123" || claims.FamilyID == "" {
		t.Errorf("access claims %+v", claims)
	}
	if _, err := f.issuer.ParseAccessToken(at, "https://other.example.org/fhir"); !errors.Is(err, token.ErrInvalid) {
		t.Errorf("token accepted for another audience: %v", err)
	}

	idt, err := f.idVerifier(c.ID).Verify(f.ctx, b.str("id_token"))
	if err != nil {
		t.Fatalf("id_token: %v", err)
	}
	if idt.Nonce != "n-0S6_WzA2Mj" || idt.Subject != f.user.ID {
		t.Errorf("nonce %q sub %q", idt.Nonce, idt.Subject)
	}
	if err := idt.VerifyAccessToken(at); err != nil {
		t.Errorf("at_hash: %v", err)
	}
	if err := idt.VerifyAccessToken(at + "x"); err == nil {
		t.Error("at_hash matched another token")
	}
	var extra struct {
		FHIRUser          string `json:"fhirUser"`
		AuthTime          int64  `json:"auth_time"`
		Name              string `json:"name"`
		PreferredUsername string `json:"preferred_username"`
	}
	if err := idt.Claims(&extra); err != nil {
		t.Fatal(err)
	}
	if extra.FHIRUser != fhirBase+"/Patient/123" || extra.AuthTime == 0 || extra.Name != "amy" || extra.PreferredUsername != "amy" {
		t.Errorf("id_token claims %+v", extra)
	}

	evs := f.audit.Events()
	if len(evs) != 1 || evs[0].Action != audit.ActionTokenIssued || evs[0].Outcome != audit.Success ||
		evs[0].TokenID != claims.JTI || evs[0].ClientID != c.ID || evs[0].UserID != f.user.ID || evs[0].Patient != "123" {
		t.Errorf("audit %+v", evs)
	}
	// No token or secret reaches the audit trail.
	raw, _ := json.Marshal(evs)
	for _, s := range []string{at, b.str("refresh_token"), code, verifier} {
		if strings.Contains(string(raw), s) {
			t.Error("audit event holds a token or code")
		}
	}

	// userinfo accepts the token.
	uw := f.userinfo(at)
	if uw.Code != http.StatusOK || !strings.Contains(uw.Body.String(), `"fhirUser":"`+fhirBase+`/Patient/123"`) {
		t.Errorf("userinfo %d %s", uw.Code, uw.Body.String())
	}
}

func TestCodeExchangeMinimal(t *testing.T) {
	// Without openid, offline_access or a patient: no id_token, no refresh
	// token, no banner, no style URL.
	f := newFixture(t)
	c, _ := f.client(oauth.AuthNone)
	code, verifier := f.code(c, codeOpts{scope: "user/Observation.rs"})
	b := wantOK(t, f.exchange(code, verifier, public(c)))
	for _, k := range []string{"id_token", "refresh_token", "patient", "encounter", "need_patient_banner", "smart_style_url", "fhirContext"} {
		if _, ok := b[k]; ok {
			t.Errorf("unexpected %s in %v", k, b)
		}
	}
	if b.str("scope") != "user/Observation.rs" {
		t.Errorf("scope %q", b.str("scope"))
	}
	claims, err := f.issuer.ParseAccessToken(b.str("access_token"), fhirBase)
	if err != nil || claims.FHIRUser != "" {
		t.Errorf("claims %+v err %v: fhirUser without the fhirUser scope", claims, err)
	}
}

func TestCodeExchangeES256IDToken(t *testing.T) {
	f := newFixture(t)
	c, _ := f.client(oauth.AuthNone, func(c *storage.Client) { c.IDTokenSignedResponseAlg = "ES256" })
	code, verifier := f.code(c, codeOpts{scope: "openid fhirUser", nonce: "abc"})
	b := wantOK(t, f.exchange(code, verifier, public(c)))
	if _, err := f.idVerifier(c.ID, "ES256").Verify(f.ctx, b.str("id_token")); err != nil {
		t.Fatalf("ES256 id_token: %v", err)
	}
	if _, err := f.idVerifier(c.ID, "RS256").Verify(f.ctx, b.str("id_token")); err == nil {
		t.Fatal("ES256 id_token accepted as RS256")
	}
}

func TestConfidentialClientsExchange(t *testing.T) {
	f := newFixture(t)
	// An id with characters that must be form-urlencoded in the Basic header.
	cb, sb := f.client(oauth.AuthClientSecretBasic, func(c *storage.Client) { c.ID = "app:1 +é" })
	cp, sp := f.client(oauth.AuthClientSecretPost)
	for _, tc := range []struct {
		c *storage.Client
		a auth
	}{{cb, basic(cb, sb)}, {cp, post(cp, sp)}} {
		code, verifier := f.code(tc.c, codeOpts{})
		wantOK(t, f.exchange(code, verifier, tc.a))
	}
	// Inferno's Basic header is not form-encoded: plain URL-safe values work too.
	cb2, sb2 := f.client(oauth.AuthClientSecretBasic)
	code, verifier := f.code(cb2, codeOpts{})
	r := tokenRequest(exchangeForm(code, verifier), auth{})
	r.SetBasicAuth(cb2.ID, sb2)
	wantOK(t, f.do(r))
}

func TestPKCERefusals(t *testing.T) {
	f := newFixture(t)
	c, _ := f.client(oauth.AuthNone)
	cases := []struct {
		name     string
		verifier func(v string) string
		status   int
		code     oauth.ErrorCode
	}{
		{"wrong verifier", func(string) string { return strings.Repeat("A", 43) }, 400, oauth.InvalidGrant},
		{"verifier equals challenge (plain downgrade)", func(v string) string { return challenge(v) }, 400, oauth.InvalidGrant},
		{"missing", nil, 400, oauth.InvalidRequest},
		{"empty", func(string) string { return "" }, 400, oauth.InvalidRequest},
		{"too short", func(v string) string { return v[:42] }, 400, oauth.InvalidRequest},
		{"too long", func(v string) string { return strings.Repeat("a", 129) }, 400, oauth.InvalidRequest},
		{"bad characters", func(v string) string { return v[:43] + "+/=" }, 400, oauth.InvalidRequest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, verifier := f.code(c, codeOpts{})
			form := exchangeForm(code, verifier)
			if tc.verifier == nil {
				form.Del("code_verifier")
			} else {
				form.Set("code_verifier", tc.verifier(verifier))
			}
			wantError(t, f.do(tokenRequest(form, public(c))), tc.status, tc.code)
			if tc.code == oauth.InvalidGrant {
				// A failed PKCE check burns the code.
				wantError(t, f.exchange(code, verifier, public(c)), 400, oauth.InvalidGrant)
			}
		})
	}
}

func TestCodeBindings(t *testing.T) {
	f := newFixture(t)
	c, _ := f.client(oauth.AuthNone)
	other, otherSecret := f.client(oauth.AuthClientSecretBasic)

	t.Run("invalid code is exactly 400", func(t *testing.T) {
		_, verifier := f.code(c, codeOpts{})
		wantError(t, f.exchange("BAD_CODE", verifier, public(c)), 400, oauth.InvalidGrant)
	})
	t.Run("code of another client", func(t *testing.T) {
		code, verifier := f.code(c, codeOpts{})
		wantError(t, f.exchange(code, verifier, basic(other, otherSecret)), 400, oauth.InvalidGrant)
		// and the attempt burned it
		wantError(t, f.exchange(code, verifier, public(c)), 400, oauth.InvalidGrant)
	})
	t.Run("wrong redirect_uri", func(t *testing.T) {
		code, verifier := f.code(c, codeOpts{})
		form := exchangeForm(code, verifier)
		form.Set("redirect_uri", redirectURI+"/")
		wantError(t, f.do(tokenRequest(form, public(c))), 400, oauth.InvalidGrant)
	})
	t.Run("missing redirect_uri", func(t *testing.T) {
		code, verifier := f.code(c, codeOpts{})
		form := exchangeForm(code, verifier)
		form.Del("redirect_uri")
		wantError(t, f.do(tokenRequest(form, public(c))), 400, oauth.InvalidRequest)
	})
	t.Run("missing code", func(t *testing.T) {
		form := exchangeForm("", strings.Repeat("a", 43))
		wantError(t, f.do(tokenRequest(form, public(c))), 400, oauth.InvalidRequest)
	})
	t.Run("expired code", func(t *testing.T) {
		code, verifier := f.code(c, codeOpts{expires: 60 * time.Second})
		f.clock.Add(61 * time.Second)
		wantError(t, f.exchange(code, verifier, public(c)), 400, oauth.InvalidGrant)
	})
	t.Run("user deleted", func(t *testing.T) {
		u := &storage.User{ID: "gone", Username: "gone", PasswordHash: "x", Role: storage.RolePatient}
		if err := f.store.CreateUser(f.ctx, u); err != nil {
			t.Fatal(err)
		}
		code, verifier := f.code(c, codeOpts{userID: u.ID})
		if err := f.store.DeleteUser(f.ctx, u.ID); err != nil {
			t.Fatal(err)
		}
		b := wantError(t, f.exchange(code, verifier, public(c)), 400, oauth.InvalidGrant)
		if d := b.str("error_description"); !strings.Contains(d, "no longer exists") {
			t.Errorf("error_description %q", d)
		}
		wantBurntWithoutFamily(t, f, code)
	})
	if !f.audit.Has(audit.ActionTokenRefused, audit.Failure) {
		t.Error("refusals not audited")
	}
}

func TestCodeReuseRevokesFamily(t *testing.T) {
	f := newFixture(t)
	c, _ := f.client(oauth.AuthNone)
	code, verifier := f.code(c, codeOpts{})
	first := wantOK(t, f.exchange(code, verifier, public(c)))
	if w := f.userinfo(first.str("access_token")); w.Code != http.StatusOK {
		t.Fatalf("userinfo before reuse: %d %s", w.Code, w.Body.String())
	}

	b := wantError(t, f.exchange(code, verifier, public(c)), 400, oauth.InvalidGrant)
	if b.str("error_description") == "" {
		t.Error("no description")
	}
	if !f.audit.Has(audit.ActionCodeReuse, audit.Failure) {
		t.Error("code reuse not audited")
	}
	w := f.userinfo(first.str("access_token"))
	if w.Code != http.StatusUnauthorized || !strings.Contains(w.Header().Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("userinfo after reuse: %d %v", w.Code, w.Header())
	}
	wantError(t, f.refresh(first.str("refresh_token"), "", public(c)), 400, oauth.InvalidGrant)
}

func TestConcurrentExchangeOneWinner(t *testing.T) {
	f := newFixture(t)
	c, _ := f.client(oauth.AuthNone)
	code, verifier := f.code(c, codeOpts{})
	srv := newServer(t, f)
	const n = 32
	type outcome struct {
		status int
		body   tokenBody
	}
	results := make(chan outcome, n)
	start := make(chan struct{})
	for range n {
		go func() {
			<-start
			form := exchangeForm(code, verifier)
			form.Set("client_id", c.ID)
			resp, err := srv.Client().PostForm(srv.URL+"/token", form)
			if err != nil {
				results <- outcome{status: -1}
				return
			}
			defer resp.Body.Close()
			var b tokenBody
			_ = json.NewDecoder(resp.Body).Decode(&b)
			results <- outcome{resp.StatusCode, b}
		}()
	}
	close(start)
	ok, bad := 0, 0
	var winner tokenBody
	for range n {
		switch o := <-results; o.status {
		case 200:
			ok++
			winner = o.body
		case 400:
			if o.body.str("error") == string(oauth.InvalidGrant) {
				bad++
			}
		}
	}
	if ok != 1 || bad != n-1 {
		t.Fatalf("%d successes, %d invalid_grant; want 1 and %d", ok, bad, n-1)
	}
	// The reuses revoked what the winner got.
	if w := f.userinfo(winner.str("access_token")); w.Code != http.StatusUnauthorized {
		t.Errorf("winner's token still accepted after concurrent reuse: %d", w.Code)
	}
}

func TestUnsupportedGrantTypes(t *testing.T) {
	f := newFixture(t)
	c, s := f.client(oauth.AuthClientSecretBasic)
	for _, gt := range []string{"password", "implicit", "not_a_grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"} {
		form := url.Values{"grant_type": {gt}, "username": {"amy"}, "password": {"x"}}
		wantError(t, f.do(tokenRequest(form, basic(c, s))), 400, oauth.UnsupportedGrantType)
	}
	wantError(t, f.do(tokenRequest(url.Values{}, basic(c, s))), 400, oauth.InvalidRequest)
}

func TestClientGrantTypesRestrict(t *testing.T) {
	f := newFixture(t)
	c, _ := f.client(oauth.AuthNone, func(c *storage.Client) { c.GrantTypes = []string{"refresh_token"} })
	code, verifier := f.code(c, codeOpts{})
	wantError(t, f.exchange(code, verifier, public(c)), 400, oauth.UnauthorizedClient)
}

func TestAuditFailureFailsClosed(t *testing.T) {
	f := newFixture(t)
	c, _ := f.client(oauth.AuthNone)
	code, verifier := f.code(c, codeOpts{})
	f.audit.Fail = errors.New("disk full")
	w := f.exchange(code, verifier, public(c))
	b := wantError(t, w, http.StatusServiceUnavailable, oauth.TemporarilyUnavailable)
	if _, ok := b["access_token"]; ok {
		t.Fatal("token delivered without audit")
	}
	ac, err := f.store.ConsumeAuthCode(f.ctx, storage.HashSecret(code), f.clock.Now())
	if !errors.Is(err, storage.ErrAlreadyUsed) {
		t.Fatalf("code not consumed: %v", err)
	}
	fam, err := f.store.GetFamily(f.ctx, ac.FamilyID)
	if err != nil || fam.RevokedAt.IsZero() {
		t.Fatalf("family of the undelivered tokens not revoked: %+v %v", fam, err)
	}
}

func TestFailedExchangeBurnsCodeWithoutFamily(t *testing.T) {
	// A wrong verifier burns the code and writes no token family; presenting
	// the code again, even with the right verifier, is reuse: invalid_grant,
	// audited, and still no tokens.
	f := newFixture(t)
	c, _ := f.client(oauth.AuthNone)
	code, verifier := f.code(c, codeOpts{})
	wantError(t, f.exchange(code, verifier+"x", public(c)), 400, oauth.InvalidGrant)
	wantError(t, f.exchange(code, verifier, public(c)), 400, oauth.InvalidGrant)
	ac, err := f.store.ConsumeAuthCode(f.ctx, storage.HashSecret(code), f.clock.Now())
	if !errors.Is(err, storage.ErrAlreadyUsed) {
		t.Fatalf("code after failed exchange: %v, want ErrAlreadyUsed", err)
	}
	if _, err := f.store.GetFamily(f.ctx, ac.FamilyID); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a failed exchange wrote a token family: %v", err)
	}
}

// TestSuspendedUserCodeRefused: a code whose user the detector has suspended
// since the login is burnt, answered with invalid_grant, and leaves no token
// family behind.
func TestSuspendedUserCodeRefused(t *testing.T) {
	var suspendedUser atomic.Value
	suspendedUser.Store("")
	f := newFixture(t, func(o *grant.Options) {
		o.Suspended = func(clientID, userID string) bool { return userID != "" && userID == suspendedUser.Load() }
	})
	c, _ := f.client(oauth.AuthNone)
	code, verifier := f.code(c, codeOpts{})
	suspendedUser.Store(f.user.ID)
	b := wantError(t, f.exchange(code, verifier, public(c)), 400, oauth.InvalidGrant)
	if d := b.str("error_description"); !strings.Contains(d, "suspended") {
		t.Errorf("error_description %q", d)
	}
	wantBurntWithoutFamily(t, f, code)
	// Another user's code still works.
	suspendedUser.Store("someone-else")
	code, verifier = f.code(c, codeOpts{})
	wantOK(t, f.exchange(code, verifier, public(c)))
}

// wantBurntWithoutFamily checks that a refused code is used up and that no
// token family was ever written for it.
func wantBurntWithoutFamily(t *testing.T, f *fixture, code string) {
	t.Helper()
	ac, err := f.store.ConsumeAuthCode(f.ctx, storage.HashSecret(code), f.clock.Now())
	if !errors.Is(err, storage.ErrAlreadyUsed) || ac == nil {
		t.Fatalf("code after the refusal: %+v, %v", ac, err)
	}
	if _, err := f.store.GetFamily(f.ctx, ac.FamilyID); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("token family of a refused code: %v, want ErrNotFound", err)
	}
}
