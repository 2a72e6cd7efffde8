package grant_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/oauth"
	"github.com/fhirgate/fhirgate/internal/secret"
	"github.com/fhirgate/fhirgate/internal/storage"
)

func TestRefreshRotation(t *testing.T) {
	f := newFixture(t)
	c, s := f.client(oauth.AuthClientSecretBasic)
	code, verifier := f.code(c, codeOpts{context: f.patientContext()})
	first := wantOK(t, f.exchange(code, verifier, basic(c, s)))
	rt1 := first.str("refresh_token")

	// No scope: the whole grant again, with its context.
	second := wantOK(t, f.refresh(rt1, "", basic(c, s)))
	rt2 := second.str("refresh_token")
	if rt2 == "" || rt2 == rt1 {
		t.Fatal("refresh token not rotated")
	}
	if second.str("scope") != fullScope || second.str("patient") != "123" || second.str("token_type") != "Bearer" {
		t.Errorf("refresh response %v", second)
	}
	if _, ok := second["expires_in"].(float64); !ok {
		t.Errorf("expires_in %#v", second["expires_in"])
	}
	if !f.audit.Has(audit.ActionTokenRefreshed, audit.Success) {
		t.Error("refresh not audited")
	}

	// Same scope string (as Inferno sends it): fine.
	third := wantOK(t, f.refresh(rt2, fullScope, basic(c, s)))
	rt3 := third.str("refresh_token")

	// Subset: granted as asked, in the access token too.
	fourth := wantOK(t, f.refresh(rt3, "openid patient/Observation.rs", basic(c, s)))
	if fourth.str("scope") != "openid patient/Observation.rs" {
		t.Errorf("narrowed scope %q", fourth.str("scope"))
	}
	claims, err := f.issuer.ParseAccessToken(fourth.str("access_token"), fhirBase)
	if err != nil || claims.Scope != "openid patient/Observation.rs" || claims.FamilyID == "" {
		t.Errorf("claims %+v %v", claims, err)
	}
	rt4 := fourth.str("refresh_token")

	// The narrowing was for that access token only: the family keeps its grant.
	fifth := wantOK(t, f.refresh(rt4, "", basic(c, s)))
	if fifth.str("scope") != fullScope {
		t.Errorf("scope after narrowed refresh %q", fifth.str("scope"))
	}
	rt5 := fifth.str("refresh_token")

	for _, sc := range []string{"patient/*.cruds", "user/*.rs", fullScope + " launch", "openid profile __unknown"} {
		wantError(t, f.refresh(rt5, sc, basic(c, s)), 400, oauth.InvalidScope)
	}
	wantError(t, f.refresh(rt5, "patient/Observation.xyz", basic(c, s)), 400, oauth.InvalidScope)
	// Refused scope requests did not burn the token.
	sixth := wantOK(t, f.refresh(rt5, "", basic(c, s)))

	// Reusing an old token revokes the family: the newest refresh token and
	// the access tokens stop working.
	wantError(t, f.refresh(rt2, "", basic(c, s)), 400, oauth.InvalidGrant)
	if !f.audit.Has(audit.ActionRefreshReuse, audit.Failure) {
		t.Error("refresh reuse not audited")
	}
	wantError(t, f.refresh(sixth.str("refresh_token"), "", basic(c, s)), 400, oauth.InvalidGrant)
	if w := f.userinfo(sixth.str("access_token")); w.Code != http.StatusUnauthorized {
		t.Errorf("userinfo after family revocation: %d", w.Code)
	}
}

func TestRefreshRefusals(t *testing.T) {
	f := newFixture(t)
	c, s := f.client(oauth.AuthClientSecretBasic)
	other, otherSecret := f.client(oauth.AuthClientSecretBasic)
	code, verifier := f.code(c, codeOpts{})
	rt := wantOK(t, f.exchange(code, verifier, basic(c, s))).str("refresh_token")

	// Another client's refresh token is refused, and not burned.
	wantError(t, f.refresh(rt, "", basic(other, otherSecret)), 400, oauth.InvalidGrant)
	rt = wantOK(t, f.refresh(rt, "", basic(c, s))).str("refresh_token")

	wantError(t, f.refresh("7f2c8e0e-9b0e-4a4f-9d0e-3f1b2c3d4e5f", "", basic(c, s)), 400, oauth.InvalidGrant)
	wantError(t, f.refresh("", "", basic(c, s)), 400, oauth.InvalidRequest)
	wantError(t, f.refresh(rt, "", basic(c, s+"x")), 401, oauth.InvalidClient)

	// Idle expiry.
	f.clock.Add(grantRefreshIdle + time.Second)
	b := wantError(t, f.refresh(rt, "", basic(c, s)), 400, oauth.InvalidGrant)
	if !strings.Contains(b.str("error_description"), "expired") {
		t.Errorf("description %q", b.str("error_description"))
	}
}

// TestRefreshOfDeletedUser: a refresh token whose user has been deleted is
// refused before it is rotated, so it is not burnt either.
func TestRefreshOfDeletedUser(t *testing.T) {
	f := newFixture(t)
	c, s := f.client(oauth.AuthClientSecretBasic)
	u := &storage.User{ID: "leaving", Username: "leaving", PasswordHash: "x", Role: storage.RolePatient}
	if err := f.store.CreateUser(f.ctx, u); err != nil {
		t.Fatal(err)
	}
	code, verifier := f.code(c, codeOpts{userID: u.ID})
	rt := wantOK(t, f.exchange(code, verifier, basic(c, s))).str("refresh_token")
	if err := f.store.DeleteUser(f.ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	b := wantError(t, f.refresh(rt, "", basic(c, s)), 400, oauth.InvalidGrant)
	if d := b.str("error_description"); !strings.Contains(d, "no longer exists") {
		t.Errorf("error_description %q", d)
	}
	got, err := f.store.GetRefreshToken(f.ctx, storage.RefreshTokenKey(rt))
	if err != nil || !got.UsedAt.IsZero() {
		t.Errorf("refresh token after the refusal: %+v, %v; want it unused", got, err)
	}
}

// Refresh tokens carry a time-ordered prefix (secret.TimedToken) so the
// store files them next to each other; one issued before they did (a plain
// secret stored under its hash) still rotates, into a prefixed one, and
// neither the prefix of a real token nor its secret part alone is a token.
func TestRefreshTokenFormats(t *testing.T) {
	f := newFixture(t)
	c, s := f.client(oauth.AuthClientSecretBasic)
	code, verifier := f.code(c, codeOpts{})
	first := wantOK(t, f.exchange(code, verifier, basic(c, s)))
	rt := first.str("refresh_token")
	if _, ok := secret.TimedPrefix(rt); !ok {
		t.Fatalf("refresh token %q has no time-ordered prefix", rt)
	}
	claims, err := f.issuer.ParseAccessToken(first.str("access_token"), fhirBase)
	if err != nil {
		t.Fatal(err)
	}

	// Forgeries built from the real token are refused, and do not burn it.
	wantError(t, f.refresh(rt[:22]+secret.Token(), "", basic(c, s)), 400, oauth.InvalidGrant)
	wantError(t, f.refresh(rt[22:], "", basic(c, s)), 400, oauth.InvalidGrant)
	wantOK(t, f.refresh(rt, "", basic(c, s)))

	// A plain token of the same grant, as stored before the prefix existed.
	plain := secret.Token()
	now := f.clock.Now()
	if err := f.store.CreateRefreshToken(f.ctx, &storage.RefreshToken{Hash: storage.HashSecret(plain), FamilyID: claims.FamilyID,
		ClientID: c.ID, UserID: f.user.ID, Scope: fullScope, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	next := wantOK(t, f.refresh(plain, "", basic(c, s))).str("refresh_token")
	if _, ok := secret.TimedPrefix(next); !ok {
		t.Fatalf("a plain token rotated into %q, without the prefix", next)
	}
	wantOK(t, f.refresh(next, "", basic(c, s)))
}

func TestNoRefreshTokenWithoutOfflineAccess(t *testing.T) {
	f := newFixture(t)
	c, _ := f.client(oauth.AuthNone)
	code, verifier := f.code(c, codeOpts{scope: "openid fhirUser patient/*.rs launch/patient", context: f.patientContext()})
	b := wantOK(t, f.exchange(code, verifier, public(c)))
	if _, ok := b["refresh_token"]; ok {
		t.Error("refresh_token without offline_access or online_access")
	}
	code, verifier = f.code(c, codeOpts{scope: "openid online_access", session: f.session()})
	if wantOK(t, f.exchange(code, verifier, public(c))).str("refresh_token") == "" {
		t.Error("no refresh_token with online_access")
	}
	// online_access without a login session to end with: fail closed.
	code, verifier = f.code(c, codeOpts{scope: "openid online_access"})
	if _, ok := wantOK(t, f.exchange(code, verifier, public(c)))["refresh_token"]; ok {
		t.Error("online_access refresh_token not tied to a login session")
	}
}
