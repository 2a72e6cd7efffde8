package introspect_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit/audittest"
	"github.com/fhirgate/fhirgate/internal/introspect"
	"github.com/fhirgate/fhirgate/internal/keys"
	"github.com/fhirgate/fhirgate/internal/oauth"
	"github.com/fhirgate/fhirgate/internal/secret"
	"github.com/fhirgate/fhirgate/internal/storage"
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
	t      testing.TB
	ctx    context.Context
	store  storage.Store
	clock  *clock
	issuer *token.Issuer
	audit  *audittest.Recorder
	h      *introspect.Handler
	mux    *http.ServeMux
}

type storeOverride struct {
	introspect.Store
}

func newFixture(t testing.TB, st storage.Store, mods ...func(*introspect.Options)) *fixture {
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
	rec := &audittest.Recorder{}
	opts := introspect.Options{Clients: st, Tokens: iss, Store: st, Sessions: st, IssuerURL: issuerURL,
		Auditor: rec, Now: clk.Now}
	for _, m := range mods {
		m(&opts)
	}
	h, err := introspect.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Register(mux)
	return &fixture{t: t, ctx: ctx, store: st, clock: clk, issuer: iss, audit: rec, h: h, mux: mux}
}

// client registers a client and returns it with its secret ("" for public).
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

// family creates a token family of client for user u1.
func (f *fixture) family(clientID string, mod ...func(*storage.TokenFamily)) *storage.TokenFamily {
	f.t.Helper()
	now := f.clock.Now()
	fam := &storage.TokenFamily{ID: secret.ID(), ClientID: clientID, UserID: "u1", Scope: "openid offline_access patient/*.rs",
		Context: storage.LaunchContext{Patient: "123", Encounter: "e9"}, CreatedAt: now, ExpiresAt: now.Add(90 * 24 * time.Hour)}
	for _, m := range mod {
		m(fam)
	}
	if err := f.store.CreateFamily(f.ctx, fam); err != nil {
		f.t.Fatal(err)
	}
	return fam
}

// accessToken mints an access token of client in family fam.
func (f *fixture) accessToken(clientID, fam string, mod ...func(*token.AccessClaims)) (string, token.AccessClaims) {
	f.t.Helper()
	c := token.AccessClaims{Subject: "u1", Audience: fhirBase, ClientID: clientID, Scope: "openid patient/*.rs",
		Patient: "123", Encounter: "e9", FHIRUser: fhirBase + "/Patient/123", FamilyID: fam}
	for _, m := range mod {
		m(&c)
	}
	raw, signed, err := f.issuer.AccessToken(c)
	if err != nil {
		f.t.Fatal(err)
	}
	return raw, signed
}

// refreshToken stores a refresh token of fam and returns its value.
func (f *fixture) refreshToken(fam *storage.TokenFamily) string {
	f.t.Helper()
	raw := secret.Token()
	now := f.clock.Now()
	if err := f.store.CreateRefreshToken(f.ctx, &storage.RefreshToken{Hash: storage.HashSecret(raw), FamilyID: fam.ID,
		ClientID: fam.ClientID, UserID: fam.UserID, Scope: fam.Scope, CreatedAt: now, ExpiresAt: now.Add(30 * 24 * time.Hour)}); err != nil {
		f.t.Fatal(err)
	}
	return raw
}

// introspect posts form to /introspect with Basic authentication (id, secret)
// when id is not empty.
func (f *fixture) introspect(form url.Values, id, sec string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, "/introspect", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if id != "" {
		r.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(sec))
	}
	w := httptest.NewRecorder()
	f.mux.ServeHTTP(w, r)
	return w
}

func decode(t testing.TB, w *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
		t.Fatalf("body %q: %v", w.Body.String(), err)
	}
	return m
}

// wantInactive fails unless w is 200 with exactly {"active":false}.
func wantInactive(t testing.TB, what string, w *httptest.ResponseRecorder) {
	t.Helper()
	if w.Code != http.StatusOK {
		t.Fatalf("%s: status %d, body %s", what, w.Code, w.Body.String())
	}
	if got := strings.TrimSpace(w.Body.String()); got != `{"active":false}` {
		t.Fatalf("%s: body %s, want exactly {\"active\":false}", what, got)
	}
	if w.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("%s: no Cache-Control: no-store", what)
	}
}

func wantActive(t testing.TB, what string, w *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	if w.Code != http.StatusOK {
		t.Fatalf("%s: status %d, body %s", what, w.Code, w.Body.String())
	}
	m := decode(t, w)
	if m["active"] != true {
		t.Fatalf("%s: not active: %s", what, w.Body.String())
	}
	return m
}

func wantError(t testing.TB, what string, w *httptest.ResponseRecorder, status int, code oauth.ErrorCode) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("%s: status %d, want %d; body %s", what, w.Code, status, w.Body.String())
	}
	if m := decode(t, w); m["error"] != string(code) {
		t.Fatalf("%s: error %v, want %s", what, m["error"], code)
	}
}

func tokenForm(tok string, hint ...string) url.Values {
	v := url.Values{"token": {tok}}
	if len(hint) > 0 {
		v.Set("token_type_hint", hint[0])
	}
	return v
}
