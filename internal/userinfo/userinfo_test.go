package userinfo_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/audit/audittest"
	"github.com/fhirgate/fhirgate/internal/keys"
	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/storage/sqlite"
	"github.com/fhirgate/fhirgate/internal/token"
	"github.com/fhirgate/fhirgate/internal/userinfo"
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
	t      *testing.T
	ctx    context.Context
	st     *sqlite.Store
	clock  *clock
	issuer *token.Issuer
	rec    *audittest.Recorder
	h      *userinfo.Handler
	mux    *http.ServeMux
}

func newIssuer(t *testing.T, clk *clock) (*sqlite.Store, *token.Issuer) {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	km, err := keys.New(ctx, keys.Options{Store: st, KEK: keys.DevKEK(), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	iss, err := token.NewIssuer(token.Options{Signer: km, Verifier: km, Issuer: issuerURL, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return st, iss
}

func newFixture(t *testing.T) *fixture {
	clk := &clock{t: time.Now().Truncate(time.Second)}
	st, iss := newIssuer(t, clk)
	rec := &audittest.Recorder{}
	h, err := userinfo.New(userinfo.Options{Issuer: iss, Tokens: st, Users: st, FHIRBase: fhirBase + "/", Auditor: rec, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Register(mux)
	f := &fixture{t: t, ctx: context.Background(), st: st, clock: clk, issuer: iss, rec: rec, h: h, mux: mux}
	if err := st.CreateUser(f.ctx, &storage.User{ID: "u1", Username: "amy", PasswordHash: "x", Role: storage.RolePatient, FHIRUser: "Patient/123"}); err != nil {
		t.Fatal(err)
	}
	return f
}

// token mints an access token for u1 in a new family.
func (f *fixture) token(scope string, mod ...func(*token.AccessClaims)) (raw, famID string) {
	f.t.Helper()
	famID = "fam-" + strings.ReplaceAll(scope, " ", "-") + time.Now().Format("150405.000000000")
	if err := f.st.CreateFamily(f.ctx, &storage.TokenFamily{ID: famID, ClientID: "c1", UserID: "u1", Scope: scope,
		CreatedAt: f.clock.Now(), ExpiresAt: f.clock.Now().Add(time.Hour)}); err != nil {
		f.t.Fatal(err)
	}
	c := token.AccessClaims{Subject: "u1", Audience: fhirBase, ClientID: "c1", Scope: scope, FamilyID: famID}
	for _, m := range mod {
		m(&c)
	}
	raw, _, err := f.issuer.AccessToken(c)
	if err != nil {
		f.t.Fatal(err)
	}
	return raw, famID
}

func (f *fixture) get(method, target string, authz ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, nil)
	for _, a := range authz {
		r.Header.Add("Authorization", a)
	}
	w := httptest.NewRecorder()
	f.mux.ServeHTTP(w, r)
	if w.Header().Get("Cache-Control") != "no-store" {
		f.t.Errorf("%s %s: no Cache-Control: no-store", method, target)
	}
	return w
}

func TestUserInfoHappyPath(t *testing.T) {
	f := newFixture(t)
	raw, _ := f.token("openid fhirUser profile patient/*.rs")
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		w := f.get(m, "/userinfo", "Bearer "+raw)
		if w.Code != http.StatusOK {
			t.Fatalf("%s: %d %s", m, w.Code, w.Body.String())
		}
		var got map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
			t.Fatal(err)
		}
		want := map[string]any{"sub": "u1", "fhirUser": fhirBase + "/Patient/123", "name": "amy", "preferred_username": "amy"}
		if len(got) != len(want) {
			t.Errorf("%s: %v", m, got)
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: %s = %v, want %v", m, k, got[k], v)
			}
		}
	}
	// The scheme is case-insensitive (RFC 7235).
	if w := f.get(http.MethodGet, "/userinfo", "bearer "+raw); w.Code != http.StatusOK {
		t.Errorf("lower-case scheme: %d", w.Code)
	}
	if !f.rec.Has(audit.ActionUserinfo, audit.Success) {
		t.Error("not audited")
	}
	// Without fhirUser and profile, only sub.
	raw, _ = f.token("openid")
	w := f.get(http.MethodGet, "/userinfo", "Bearer "+raw)
	if w.Code != http.StatusOK || strings.TrimSpace(w.Body.String()) != `{"sub":"u1"}` {
		t.Errorf("%d %s", w.Code, w.Body.String())
	}
}

func TestUserInfoRefusals(t *testing.T) {
	f := newFixture(t)
	good, _ := f.token("openid fhirUser")
	noOpenID, _ := f.token("fhirUser patient/*.rs")
	revoked, fam := f.token("openid")
	if err := f.st.RevokeFamily(f.ctx, fam, f.clock.Now(), "test"); err != nil {
		t.Fatal(err)
	}
	noFam, _ := f.token("openid", func(c *token.AccessClaims) { c.FamilyID = "" })
	unknownFam, _ := f.token("openid", func(c *token.AccessClaims) { c.FamilyID = "nope" })
	otherAud, _ := f.token("openid", func(c *token.AccessClaims) { c.Audience = "https://other.example/fhir" })
	ghost, _ := f.token("openid", func(c *token.AccessClaims) { c.Subject = "ghost" })
	// Signed by an unrelated key set with the same issuer name.
	_, foreignIssuer := newIssuer(t, f.clock)
	forged, _, err := foreignIssuer.AccessToken(token.AccessClaims{Subject: "u1", Audience: fhirBase, ClientID: "c1", Scope: "openid", FamilyID: "x"})
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name      string
		method    string
		target    string
		authz     []string
		status    int
		challenge string // substring of WWW-Authenticate
	}{
		{"no token", "GET", "/userinfo", nil, 401, `Bearer realm="fhirgate"`},
		{"basic scheme", "GET", "/userinfo", []string{"Basic dTpw"}, 401, `Bearer realm="fhirgate"`},
		{"token in query", "GET", "/userinfo?access_token=" + good, nil, 400, `error="invalid_request"`},
		{"two headers", "GET", "/userinfo", []string{"Bearer " + good, "Bearer " + good}, 400, `error="invalid_request"`},
		{"garbage", "GET", "/userinfo", []string{"Bearer abc.def.ghi"}, 401, `error="invalid_token"`},
		{"forged", "GET", "/userinfo", []string{"Bearer " + forged}, 401, `error="invalid_token"`},
		{"other audience", "GET", "/userinfo", []string{"Bearer " + otherAud}, 401, `error="invalid_token"`},
		{"no openid", "GET", "/userinfo", []string{"Bearer " + noOpenID}, 403, `error="insufficient_scope"`},
		{"revoked family", "POST", "/userinfo", []string{"Bearer " + revoked}, 401, `error="invalid_token", error_description="the access token has been revoked"`},
		{"no family claim", "GET", "/userinfo", []string{"Bearer " + noFam}, 401, `error="invalid_token"`},
		{"unknown family", "GET", "/userinfo", []string{"Bearer " + unknownFam}, 401, `error="invalid_token"`},
		{"unknown user", "GET", "/userinfo", []string{"Bearer " + ghost}, 401, `error="invalid_token"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := f.get(tc.method, tc.target, tc.authz...)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, w.Body.String())
			}
			if h := w.Header().Get("WWW-Authenticate"); !strings.Contains(h, tc.challenge) {
				t.Errorf("WWW-Authenticate %q, want %q", h, tc.challenge)
			}
			var body map[string]string
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body["error"] == "" {
				t.Errorf("body %s", w.Body.String())
			}
		})
	}
	if w := f.get(http.MethodPut, "/userinfo", "Bearer "+good); w.Code != http.StatusMethodNotAllowed {
		t.Errorf("PUT: %d", w.Code)
	}
	// Expiry.
	f.clock.Add(16 * time.Minute)
	if w := f.get(http.MethodGet, "/userinfo", "Bearer "+good); w.Code != http.StatusUnauthorized {
		t.Errorf("expired token: %d", w.Code)
	}
	n := 0
	for _, e := range f.rec.Events() {
		if e.Action == audit.ActionUserinfo && e.Outcome == audit.Failure {
			n++
		}
	}
	if n < len(cases) {
		t.Errorf("%d refusals audited, want at least %d", n, len(cases))
	}
}

func TestUserInfoAuditFailsClosed(t *testing.T) {
	f := newFixture(t)
	raw, _ := f.token("openid fhirUser")
	f.rec.Fail = errors.New("audit down")
	w := f.get(http.MethodGet, "/userinfo", "Bearer "+raw)
	if w.Code != http.StatusServiceUnavailable || strings.Contains(w.Body.String(), "Patient/123") {
		t.Fatalf("%d %s", w.Code, w.Body.String())
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := userinfo.New(userinfo.Options{}); !errors.Is(err, userinfo.ErrOptions) {
		t.Fatal(err)
	}
}
