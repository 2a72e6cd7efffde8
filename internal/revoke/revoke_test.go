package revoke_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/audit/audittest"
	"github.com/fhirgate/fhirgate/internal/introspect"
	"github.com/fhirgate/fhirgate/internal/keys"
	"github.com/fhirgate/fhirgate/internal/oauth"
	"github.com/fhirgate/fhirgate/internal/revoke"
	"github.com/fhirgate/fhirgate/internal/secret"
	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/storage/storagetest/backends"
	"github.com/fhirgate/fhirgate/internal/token"
)

const (
	issuerURL = "https://auth.example.org"
	fhirBase  = "https://auth.example.org/fhir"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type fixture struct {
	t       testing.TB
	ctx     context.Context
	store   storage.Store
	clock   *clock
	issuer  *token.Issuer
	audit   *audittest.Recorder
	mux     *http.ServeMux
	revoked []storage.RevokedToken
}

func newFixture(t testing.TB, st storage.Store, mods ...func(*revoke.Options)) *fixture {
	t.Helper()
	ctx := context.Background()
	clk := &clock{t: time.Now().Truncate(time.Second)}
	km, err := keys.New(ctx, keys.Options{Store: st, KEK: keys.DevKEK(), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	iss, err := token.NewIssuer(token.Options{Signer: km, Verifier: km, Issuer: issuerURL, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, ctx: ctx, store: st, clock: clk, issuer: iss, audit: &audittest.Recorder{}, mux: http.NewServeMux()}
	opts := revoke.Options{Clients: st, Tokens: iss, Store: st, Auditor: f.audit, Now: clk.Now,
		Revoked: func(e storage.RevokedToken) { f.revoked = append(f.revoked, e) }}
	for _, m := range mods {
		m(&opts)
	}
	h, err := revoke.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	h.Register(f.mux)
	in, err := introspect.New(introspect.Options{Clients: st, Tokens: iss, Store: st, IssuerURL: issuerURL, Auditor: f.audit, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	in.Register(f.mux)
	return f
}

func (f *fixture) client(method oauth.AuthMethod) (*storage.Client, string) {
	f.t.Helper()
	c := &storage.Client{ID: "c-" + secret.ID(), Name: "app", AuthMethod: string(method),
		RedirectURIs: []string{"https://app.example.com/cb"}, Scope: "openid patient/*.rs", CreatedAt: f.clock.Now()}
	sec := ""
	if method.UsesSecret() {
		sec = secret.Token()
		c.SecretHash = storage.HashSecret(sec)
	}
	if err := f.store.CreateClient(f.ctx, c); err != nil {
		f.t.Fatal(err)
	}
	return c, sec
}

// grant creates a family of client with a refresh token and an access token.
func (f *fixture) grant(clientID string) (fam *storage.TokenFamily, rt, at string, claims token.AccessClaims) {
	f.t.Helper()
	now := f.clock.Now()
	fam = &storage.TokenFamily{ID: secret.ID(), ClientID: clientID, UserID: "u1", Scope: "openid offline_access patient/*.rs",
		CreatedAt: now, ExpiresAt: now.Add(90 * 24 * time.Hour)}
	if err := f.store.CreateFamily(f.ctx, fam); err != nil {
		f.t.Fatal(err)
	}
	rt = secret.TimedToken(now) // as the grant issues them
	if err := f.store.CreateRefreshToken(f.ctx, &storage.RefreshToken{Hash: storage.RefreshTokenKey(rt), FamilyID: fam.ID,
		ClientID: clientID, UserID: "u1", Scope: fam.Scope, CreatedAt: now, ExpiresAt: now.Add(30 * 24 * time.Hour)}); err != nil {
		f.t.Fatal(err)
	}
	at, claims, err := f.issuer.AccessToken(token.AccessClaims{Subject: "u1", Audience: fhirBase, ClientID: clientID,
		Scope: "openid patient/*.rs", FamilyID: fam.ID})
	if err != nil {
		f.t.Fatal(err)
	}
	return fam, rt, at, claims
}

type creds struct{ id, secret string } // secret "" for a public client (client_id in the form)

func (f *fixture) post(path string, form url.Values, c creds) *httptest.ResponseRecorder {
	if c.secret == "" && c.id != "" {
		form.Set("client_id", c.id)
	}
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if c.secret != "" {
		r.SetBasicAuth(url.QueryEscape(c.id), url.QueryEscape(c.secret))
	}
	w := httptest.NewRecorder()
	f.mux.ServeHTTP(w, r)
	return w
}

func (f *fixture) revoke(tok, hint string, c creds) *httptest.ResponseRecorder {
	form := url.Values{"token": {tok}}
	if hint != "" {
		form.Set("token_type_hint", hint)
	}
	return f.post("/revoke", form, c)
}

func (f *fixture) active(tok string, c creds) bool {
	f.t.Helper()
	w := f.post("/introspect", url.Values{"token": {tok}}, c)
	if w.Code != http.StatusOK {
		f.t.Fatalf("introspect: %d %s", w.Code, w.Body.String())
	}
	var m map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
		f.t.Fatal(err)
	}
	return m["active"] == true
}

func wantOK(t testing.TB, what string, w *httptest.ResponseRecorder) {
	t.Helper()
	if w.Code != http.StatusOK || w.Body.Len() != 0 {
		t.Fatalf("%s: status %d, body %q; want an empty 200", what, w.Code, w.Body.String())
	}
	if w.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("%s: no Cache-Control: no-store", what)
	}
}

func wantError(t testing.TB, what string, w *httptest.ResponseRecorder, status int, code oauth.ErrorCode) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("%s: status %d, want %d; body %s", what, w.Code, status, w.Body.String())
	}
	var m map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil || m["error"] != string(code) {
		t.Fatalf("%s: body %s, want error %s", what, w.Body.String(), code)
	}
}

func revokedFamily(t testing.TB, f *fixture, id string) bool {
	t.Helper()
	fam, err := f.store.GetFamily(f.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return !fam.RevokedAt.IsZero()
}

func TestRevokeRefreshTokenRevokesFamily(t *testing.T) {
	backends.Run(t, func(t *testing.T, open func(testing.TB) storage.Store) {
		f := newFixture(t, open(t))
		app, appSecret := f.client(oauth.AuthClientSecretBasic)
		rs, rsSecret := f.client(oauth.AuthClientSecretBasic)
		me := creds{app.ID, appSecret}
		fam, rt, at, claims := f.grant(app.ID)
		if !f.active(at, creds{rs.ID, rsSecret}) || !f.active(rt, me) {
			t.Fatal("tokens not active before revocation")
		}
		wantOK(t, "revoke refresh token", f.revoke(rt, "refresh_token", me))
		if !revokedFamily(t, f, fam.ID) {
			t.Fatal("family not revoked")
		}
		if f.active(rt, me) || f.active(at, creds{rs.ID, rsSecret}) {
			t.Fatal("a token of the revoked family is still active")
		}
		revoked, err := f.store.IsRevoked(f.ctx, claims.JTI, claims.FamilyID, f.clock.Now())
		if err != nil || !revoked {
			t.Fatalf("IsRevoked of the family's access token: %v %v", revoked, err)
		}
		if len(f.revoked) != 1 || f.revoked[0].Kind != storage.RevokedFamily || f.revoked[0].ID != fam.ID {
			t.Errorf("Revoked hook: %+v", f.revoked)
		}
		if !f.audit.Has(audit.ActionTokenRevoked, audit.Success) {
			t.Error("revocation not audited")
		}
		// Idempotent, and a wrong hint does not matter.
		wantOK(t, "revoke again", f.revoke(rt, "access_token", me))
	})
}

// A refresh token issued before refresh tokens carried a time-ordered
// prefix (a plain secret stored under its hash) is still found and revoked.
func TestRevokePlainRefreshToken(t *testing.T) {
	backends.Run(t, func(t *testing.T, open func(testing.TB) storage.Store) {
		f := newFixture(t, open(t))
		app, appSecret := f.client(oauth.AuthClientSecretBasic)
		me := creds{app.ID, appSecret}
		fam, _, _, _ := f.grant(app.ID)
		now := f.clock.Now()
		plain := secret.Token()
		if err := f.store.CreateRefreshToken(f.ctx, &storage.RefreshToken{Hash: storage.HashSecret(plain), FamilyID: fam.ID,
			ClientID: app.ID, UserID: "u1", Scope: fam.Scope, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		if !f.active(plain, me) {
			t.Fatal("plain refresh token not active before revocation")
		}
		wantOK(t, "revoke plain refresh token", f.revoke(plain, "refresh_token", me))
		if !revokedFamily(t, f, fam.ID) || f.active(plain, me) {
			t.Fatal("revoking a plain refresh token did not revoke its family")
		}
	})
}

func TestRevokeAccessToken(t *testing.T) {
	backends.Run(t, func(t *testing.T, open func(testing.TB) storage.Store) {
		f := newFixture(t, open(t))
		app, _ := f.client(oauth.AuthNone) // public clients revoke their own tokens too
		rs, rsSecret := f.client(oauth.AuthClientSecretBasic)
		me := creds{id: app.ID}
		fam, rt, at, claims := f.grant(app.ID)
		wantOK(t, "revoke access token", f.revoke(at, "", me))
		if f.active(at, creds{rs.ID, rsSecret}) {
			t.Fatal("revoked access token still active")
		}
		revoked, err := f.store.IsRevoked(f.ctx, claims.JTI, "", f.clock.Now())
		if err != nil || !revoked {
			t.Fatalf("IsRevoked(jti): %v %v", revoked, err)
		}
		list, err := f.store.RevokedSince(f.ctx, time.Time{}, f.clock.Now())
		if err != nil || len(list) != 1 || list[0].ID != claims.JTI ||
			!list[0].ExpiresAt.Equal(time.Unix(claims.ExpiresAt, 0).Add(token.Skew)) {
			t.Fatalf("revocation list %+v %v", list, err)
		}
		// Only that token: the family and its refresh token live on.
		if revokedFamily(t, f, fam.ID) {
			t.Fatal("revoking an access token revoked the family")
		}
		_, _, at2, _ := f.grant(app.ID)
		if !f.active(at2, creds{rs.ID, rsSecret}) {
			t.Fatal("another access token was revoked")
		}
		_ = rt
	})
}

func TestRevokeRefusals(t *testing.T) {
	backends.Run(t, func(t *testing.T, open func(testing.TB) storage.Store) {
		f := newFixture(t, open(t))
		app, appSecret := f.client(oauth.AuthClientSecretBasic)
		other, otherSecret := f.client(oauth.AuthClientSecretBasic)
		fam, rt, at, _ := f.grant(app.ID)

		// Another client may not revoke them; nothing changes.
		wantError(t, "other client's refresh token", f.revoke(rt, "", creds{other.ID, otherSecret}), 400, oauth.UnauthorizedClient)
		wantError(t, "other client's access token", f.revoke(at, "", creds{other.ID, otherSecret}), 400, oauth.UnauthorizedClient)
		if revokedFamily(t, f, fam.ID) {
			t.Fatal("another client revoked the family")
		}
		if ok, _ := f.store.IsRevoked(f.ctx, "", fam.ID, f.clock.Now()); ok {
			t.Fatal("family on the revocation list")
		}
		if !f.audit.Has(audit.ActionTokenRevoked, audit.Failure) {
			t.Error("refusal not audited")
		}

		// Client authentication is required and checked.
		wantError(t, "no client", f.revoke(rt, "", creds{}), 401, oauth.InvalidClient)
		wantError(t, "wrong secret", f.revoke(rt, "", creds{app.ID, appSecret + "x"}), 401, oauth.InvalidClient)
		wantError(t, "public form for a confidential client", f.revoke(rt, "", creds{id: app.ID}), 401, oauth.InvalidClient)
		if revokedFamily(t, f, fam.ID) {
			t.Fatal("an unauthenticated request revoked the family")
		}

		// Unknown, malformed and expired tokens: 200, nothing done.
		me := creds{app.ID, appSecret}
		wantOK(t, "unknown token", f.revoke(secret.Token(), "", me))
		wantOK(t, "malformed JWT", f.revoke("a.b.c", "access_token", me))
		f.clock.Add(2 * time.Hour)
		wantOK(t, "expired access token", f.revoke(at, "", me))
		if ok, _ := f.store.IsRevoked(f.ctx, "", fam.ID, f.clock.Now()); ok {
			t.Fatal("expired token revoked its family")
		}

		wantError(t, "no token", f.revoke("", "", me), 400, oauth.InvalidRequest)
		w := f.post("/revoke", url.Values{"token": {rt, rt}}, me)
		wantError(t, "repeated token", w, 400, oauth.InvalidRequest)
		r := httptest.NewRequest(http.MethodGet, "/revoke?token="+rt, nil)
		rec := httptest.NewRecorder()
		f.mux.ServeHTTP(rec, r)
		if rec.Code != http.StatusMethodNotAllowed {
			t.Errorf("GET: %d", rec.Code)
		}
		if revokedFamily(t, f, fam.ID) {
			t.Fatal("a refused request revoked the family")
		}
	})
}

type failingAuditor struct{}

func (failingAuditor) Record(context.Context, audit.Event) error { return errors.New("audit down") }

type failingStore struct{ storage.Store }

func (failingStore) RevokeFamily(context.Context, string, time.Time, string) error {
	return errors.New("database down")
}

func TestRevokeFailures(t *testing.T) {
	st := backends.OpenSQLite(t)
	f := newFixture(t, st, func(o *revoke.Options) { o.Store = failingStore{st} })
	app, appSecret := f.client(oauth.AuthClientSecretBasic)
	_, rt, _, _ := f.grant(app.ID)
	wantError(t, "store down", f.revoke(rt, "", creds{app.ID, appSecret}), 503, oauth.TemporarilyUnavailable)

	g := newFixture(t, st, func(o *revoke.Options) { o.Auditor = failingAuditor{} })
	wantError(t, "audit down", g.revoke(rt, "", creds{app.ID, appSecret}), 503, oauth.TemporarilyUnavailable)

	if _, err := revoke.New(revoke.Options{}); !errors.Is(err, revoke.ErrOptions) {
		t.Errorf("empty options: %v", err)
	}
}

func TestRevokeConsent(t *testing.T) {
	backends.Run(t, func(t *testing.T, open func(testing.TB) storage.Store) {
		f := newFixture(t, open(t))
		app, _ := f.client(oauth.AuthNone)
		other, _ := f.client(oauth.AuthNone)
		now := f.clock.Now()
		if err := f.store.PutConsent(f.ctx, &storage.Consent{UserID: "u1", ClientID: app.ID, Scope: "openid", CreatedAt: now, UpdatedAt: now}); err != nil {
			t.Fatal(err)
		}
		fam, _, _, _ := f.grant(app.ID)
		otherFam, _, _, _ := f.grant(other.ID)
		rec := &audittest.Recorder{}
		c := revoke.Consents{Store: f.store, Auditor: rec, Now: f.clock.Now}
		if err := c.Revoke(f.ctx, "u1", app.ID, "cli"); err != nil {
			t.Fatal(err)
		}
		if _, err := f.store.GetConsent(f.ctx, "u1", app.ID); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("consent kept: %v", err)
		}
		if !revokedFamily(t, f, fam.ID) || revokedFamily(t, f, otherFam.ID) {
			t.Fatal("wrong families revoked")
		}
		evs := rec.Events()
		if len(evs) != 1 || evs[0].Action != audit.ActionConsentRevoked || evs[0].Outcome != audit.Success ||
			evs[0].UserID != "u1" || evs[0].ClientID != app.ID {
			t.Fatalf("audit %+v", evs)
		}
		// Nothing left: ErrNotFound, audited as a failure.
		if err := c.Revoke(f.ctx, "u1", app.ID, "cli"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("second revoke: %v", err)
		}
		if !rec.Has(audit.ActionConsentRevoked, audit.Failure) {
			t.Error("empty revocation not audited")
		}
		if err := (revoke.Consents{Store: f.store, Auditor: failingAuditor{}}).Revoke(f.ctx, "u1", other.ID, "cli"); err == nil {
			t.Fatal("audit failure not reported")
		}
	})
}
