package introspect_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/introspect"
	"github.com/fhirgate/fhirgate/internal/mtls"
	"github.com/fhirgate/fhirgate/internal/oauth"
	"github.com/fhirgate/fhirgate/internal/secret"
	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/storage/storagetest/backends"
	"github.com/fhirgate/fhirgate/internal/token"
)

func TestAccessToken(t *testing.T) {
	backends.Run(t, func(t *testing.T, open func(testing.TB) storage.Store) {
		f := newFixture(t, open(t))
		app, _ := f.client(oauth.AuthNone)
		rs, rsSecret := f.client(oauth.AuthClientSecretBasic)
		fam := f.family(app.ID)
		raw, claims := f.accessToken(app.ID, fam.ID)

		// A resource server (any confidential client) sees every field.
		m := wantActive(t, "access token", f.introspect(tokenForm(raw), rs.ID, rsSecret))
		want := map[string]any{
			"active": true, "scope": "openid patient/*.rs", "client_id": app.ID, "sub": "u1",
			"exp": float64(claims.ExpiresAt), "iat": float64(claims.IssuedAt), "iss": issuerURL, "aud": fhirBase,
			"token_type": "Bearer", "jti": claims.JTI, "patient": "123", "encounter": "e9",
			"fhirUser": fhirBase + "/Patient/123",
		}
		for k, v := range want {
			if m[k] != v {
				t.Errorf("%s = %#v, want %#v", k, m[k], v)
			}
		}
		if _, ok := m["cnf"]; ok {
			t.Error("cnf on an unbound token")
		}
		if len(m) != len(want) {
			t.Errorf("unexpected fields: %v", m)
		}
		// Either hint, or a wrong one, changes nothing.
		wantActive(t, "hint refresh_token", f.introspect(tokenForm(raw, "refresh_token"), rs.ID, rsSecret))
		wantActive(t, "hint access_token", f.introspect(tokenForm(raw, "access_token"), rs.ID, rsSecret))
		if !f.audit.Has(audit.ActionTokenIntrospected, audit.Success) {
			t.Error("introspection not audited")
		}

		// DPoP- and certificate-bound tokens report cnf and the DPoP type.
		bound, _ := f.accessToken(app.ID, fam.ID, func(c *token.AccessClaims) {
			c.Cnf = map[string]string{"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}
		})
		m = wantActive(t, "DPoP-bound", f.introspect(tokenForm(bound), rs.ID, rsSecret))
		if m["token_type"] != "DPoP" || m["cnf"].(map[string]any)["jkt"] != "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I" {
			t.Errorf("DPoP-bound token: %v", m)
		}
		mtls, _ := f.accessToken(app.ID, fam.ID, func(c *token.AccessClaims) {
			c.Cnf = map[string]string{"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}
		})
		m = wantActive(t, "certificate-bound", f.introspect(tokenForm(mtls), rs.ID, rsSecret))
		if m["token_type"] != "Bearer" || m["cnf"].(map[string]any)["x5t#S256"] != "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2" {
			t.Errorf("certificate-bound token: %v", m)
		}
	})
}

func TestInactive(t *testing.T) {
	backends.Run(t, func(t *testing.T, open func(testing.TB) storage.Store) {
		f := newFixture(t, open(t))
		app, _ := f.client(oauth.AuthNone)
		rs, rsSecret := f.client(oauth.AuthClientSecretPost)
		ask := func(tok string) *httptest.ResponseRecorder {
			return f.introspect(url.Values{"token": {tok}, "client_id": {rs.ID}, "client_secret": {rsSecret}}, "", "")
		}

		wantInactive(t, "unknown opaque token", ask(secret.Token()))
		wantInactive(t, "garbage JWT", ask("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."))
		wantInactive(t, "three dots of nothing", ask(".."))

		// Revoked by jti.
		fam := f.family(app.ID)
		raw, claims := f.accessToken(app.ID, fam.ID)
		wantActive(t, "before revocation", ask(raw))
		if err := f.store.RevokeAccessToken(f.ctx, claims.JTI, time.Unix(claims.ExpiresAt, 0), f.clock.Now()); err != nil {
			t.Fatal(err)
		}
		wantInactive(t, "revoked jti", ask(raw))

		// Revoked family: every access token of it.
		fam2 := f.family(app.ID)
		raw2, _ := f.accessToken(app.ID, fam2.ID)
		raw3, _ := f.accessToken(app.ID, fam2.ID)
		if err := f.store.RevokeFamily(f.ctx, fam2.ID, f.clock.Now(), "logout"); err != nil {
			t.Fatal(err)
		}
		wantInactive(t, "revoked family", ask(raw2))
		wantInactive(t, "revoked family, other token", ask(raw3))

		// A family the store does not know fails closed.
		raw4, _ := f.accessToken(app.ID, "no-such-family")
		wantInactive(t, "unknown family", ask(raw4))

		// Another issuer's token (different signing keys).
		other := newFixture(t, backends.OpenSQLite(t))
		foreign, _ := other.accessToken(app.ID, fam.ID)
		wantInactive(t, "token signed by another server", ask(foreign))

		// Expired: exactly at exp, although the signature check tolerates skew.
		fam5 := f.family(app.ID)
		raw5, c5 := f.accessToken(app.ID, fam5.ID)
		f.clock.Add(time.Unix(c5.ExpiresAt, 0).Sub(f.clock.Now()))
		wantInactive(t, "expired at exp", ask(raw5))
		f.clock.Add(time.Hour)
		wantInactive(t, "long expired", ask(raw5))
	})
}

func TestRefreshToken(t *testing.T) {
	backends.Run(t, func(t *testing.T, open func(testing.TB) storage.Store) {
		f := newFixture(t, open(t))
		app, appSecret := f.client(oauth.AuthClientSecretBasic)
		rs, rsSecret := f.client(oauth.AuthClientSecretBasic)
		fam := f.family(app.ID, func(fm *storage.TokenFamily) { fm.DPoPJKT = "jkt-1" })
		rt := f.refreshToken(fam)

		m := wantActive(t, "refresh token", f.introspect(tokenForm(rt, "refresh_token"), app.ID, appSecret))
		if m["token_type"] != "refresh_token" || m["client_id"] != app.ID || m["sub"] != "u1" ||
			m["scope"] != fam.Scope || m["iss"] != issuerURL || m["patient"] != "123" ||
			m["cnf"].(map[string]any)["jkt"] != "jkt-1" {
			t.Errorf("refresh token introspection: %v", m)
		}
		if _, ok := m["exp"].(float64); !ok {
			t.Errorf("exp %v", m["exp"])
		}
		// Only its own client learns about it.
		wantInactive(t, "another client's refresh token", f.introspect(tokenForm(rt), rs.ID, rsSecret))

		// Rotated (used) refresh tokens are inactive; the successor is active.
		// rt is a plain token, as issued before refresh tokens carried a
		// time-ordered prefix; its successor carries one, as the grant issues
		// them now: both are found.
		now := f.clock.Now()
		next := secret.TimedToken(now)
		if _, err := f.store.RotateRefreshToken(f.ctx, storage.RefreshTokenKey(rt), &storage.RefreshToken{
			Hash: storage.RefreshTokenKey(next), FamilyID: fam.ID, ClientID: app.ID, UserID: "u1", Scope: fam.Scope,
			CreatedAt: now, ExpiresAt: now.Add(time.Hour)}, now, 0); err != nil {
			t.Fatal(err)
		}
		wantInactive(t, "rotated refresh token", f.introspect(tokenForm(rt), app.ID, appSecret))
		wantActive(t, "successor", f.introspect(tokenForm(next), app.ID, appSecret))

		// Expired.
		f.clock.Add(time.Hour)
		wantInactive(t, "expired refresh token", f.introspect(tokenForm(next), app.ID, appSecret))

		// Revoked family.
		fam2 := f.family(app.ID)
		rt2 := f.refreshToken(fam2)
		wantActive(t, "before revocation", f.introspect(tokenForm(rt2), app.ID, appSecret))
		if err := f.store.RevokeFamily(f.ctx, fam2.ID, f.clock.Now(), "logout"); err != nil {
			t.Fatal(err)
		}
		wantInactive(t, "revoked family", f.introspect(tokenForm(rt2), app.ID, appSecret))

		// online_access: the family ends with its login session.
		sess := secret.Token()
		now = f.clock.Now()
		if err := f.store.CreateSession(f.ctx, &storage.Session{Hash: storage.HashSecret(sess), UserID: "u1", CSRFToken: "x",
			AuthTime: now, CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		fam3 := f.family(app.ID, func(fm *storage.TokenFamily) { fm.SessionHash = storage.HashSecret(sess) })
		rt3 := f.refreshToken(fam3)
		wantActive(t, "online_access with its session", f.introspect(tokenForm(rt3), app.ID, appSecret))
		if err := f.store.DeleteSession(f.ctx, storage.HashSecret(sess)); err != nil {
			t.Fatal(err)
		}
		wantInactive(t, "online_access after logout", f.introspect(tokenForm(rt3), app.ID, appSecret))
	})
}

func TestCallerAuthentication(t *testing.T) {
	f := newFixture(t, backends.OpenSQLite(t))
	app, _ := f.client(oauth.AuthNone)
	rs, rsSecret := f.client(oauth.AuthClientSecretBasic)
	fam := f.family(app.ID)
	raw, _ := f.accessToken(app.ID, fam.ID)

	wantError(t, "no authentication", f.introspect(tokenForm(raw), "", ""), 401, oauth.InvalidClient)
	wantError(t, "wrong secret", f.introspect(tokenForm(raw), rs.ID, rsSecret+"x"), 401, oauth.InvalidClient)
	wantError(t, "unknown client", f.introspect(tokenForm(raw), "nobody", "x"), 401, oauth.InvalidClient)
	// A public client cannot introspect, not even its own token.
	pub := url.Values{"token": {raw}, "client_id": {app.ID}}
	wantError(t, "public client", f.introspect(pub, "", ""), 401, oauth.InvalidClient)
	if !f.audit.Has(audit.ActionTokenIntrospected, audit.Failure) {
		t.Error("refusal not audited")
	}

	// Request shape.
	wantError(t, "no token", f.introspect(url.Values{}, rs.ID, rsSecret), 400, oauth.InvalidRequest)
	wantError(t, "repeated token", f.introspect(url.Values{"token": {raw, raw}}, rs.ID, rsSecret), 400, oauth.InvalidRequest)
	r := httptest.NewRequest(http.MethodPost, "/introspect?token="+raw, strings.NewReader("token="+raw))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.SetBasicAuth(rs.ID, rsSecret)
	w := httptest.NewRecorder()
	f.mux.ServeHTTP(w, r)
	wantError(t, "token in the query", w, 400, oauth.InvalidRequest)
	r = httptest.NewRequest(http.MethodPost, "/introspect", strings.NewReader(`{"token":"x"}`))
	r.Header.Set("Content-Type", "application/json")
	r.SetBasicAuth(rs.ID, rsSecret)
	w = httptest.NewRecorder()
	f.mux.ServeHTTP(w, r)
	wantError(t, "JSON body", w, 400, oauth.InvalidRequest)
	w = httptest.NewRecorder()
	f.mux.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/introspect?token="+raw, nil))
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", w.Code)
	}
}

// failingStore makes every read fail.
type failingStore struct{ storage.Store }

var errDown = errors.New("database down")

func (failingStore) IsRevoked(context.Context, string, string, time.Time) (bool, error) {
	return false, errDown
}
func (failingStore) GetRefreshToken(context.Context, []byte) (*storage.RefreshToken, error) {
	return nil, errDown
}

// failingAuditor refuses every event.
type failingAuditor struct{}

func (failingAuditor) Record(context.Context, audit.Event) error { return errDown }

func TestFailsClosed(t *testing.T) {
	st := backends.OpenSQLite(t)
	f := newFixture(t, st, func(o *introspect.Options) { o.Store = failingStore{st} })
	app, _ := f.client(oauth.AuthNone)
	rs, rsSecret := f.client(oauth.AuthClientSecretBasic)
	fam := f.family(app.ID)
	raw, _ := f.accessToken(app.ID, fam.ID)
	wantError(t, "revocation list down", f.introspect(tokenForm(raw), rs.ID, rsSecret), 503, oauth.TemporarilyUnavailable)
	wantError(t, "refresh tokens down", f.introspect(tokenForm(secret.Token()), rs.ID, rsSecret), 503, oauth.TemporarilyUnavailable)

	g := newFixture(t, st, func(o *introspect.Options) { o.Auditor = failingAuditor{} })
	wantError(t, "audit down", g.introspect(tokenForm(raw), rs.ID, rsSecret), 503, oauth.TemporarilyUnavailable)
}

func TestOptions(t *testing.T) {
	if _, err := introspect.New(introspect.Options{}); !errors.Is(err, introspect.ErrOptions) {
		t.Errorf("empty options: %v", err)
	}
}

func TestSpoofedClientCertificateHeader(t *testing.T) {
	proxies, err := mtls.ParseTrustedProxies("X-Client-Cert", []string{"10.9.9.9"})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, backends.OpenSQLite(t), func(o *introspect.Options) { o.TrustedProxies = proxies })
	rs, rsSecret := f.client(oauth.AuthClientSecretBasic)
	r := httptest.NewRequest(http.MethodPost, "/introspect", strings.NewReader("token=x"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("X-Client-Cert", "-----BEGIN%20CERTIFICATE-----")
	r.RemoteAddr = "192.0.2.7:5555" // not the trusted proxy
	r.SetBasicAuth(rs.ID, rsSecret)
	w := httptest.NewRecorder()
	f.mux.ServeHTTP(w, r)
	wantError(t, "certificate header from an untrusted peer", w, 400, oauth.InvalidRequest)
}
