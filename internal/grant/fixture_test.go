package grant_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/fhirgate/fhirgate/internal/audit/audittest"
	"github.com/fhirgate/fhirgate/internal/grant"
	"github.com/fhirgate/fhirgate/internal/keys"
	"github.com/fhirgate/fhirgate/internal/oauth"
	"github.com/fhirgate/fhirgate/internal/secret"
	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/storage/storagetest/backends"
	"github.com/fhirgate/fhirgate/internal/token"
	"github.com/fhirgate/fhirgate/internal/userinfo"
)

const (
	issuerURL   = "https://auth.example.org"
	fhirBase    = "https://auth.example.org/fhir"
	redirectURI = "https://app.example.com/callback"
	fullScope   = "launch/patient openid fhirUser profile offline_access patient/*.rs"
)

// clock is an adjustable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

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
	keys   *keys.Manager
	issuer *token.Issuer
	audit  *audittest.Recorder
	h      *grant.Handler
	ui     *userinfo.Handler
	mux    *http.ServeMux
	user   *storage.User
	logs   *syncBuffer
}

// syncBuffer collects log output from concurrent handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newFixture(t testing.TB, mods ...func(*grant.Options)) *fixture {
	t.Helper()
	return newFixtureOn(t, backends.OpenSQLite(t), mods...)
}

// newFixtureOn builds the fixture on st; mods adjust the grant options.
func newFixtureOn(t testing.TB, st storage.Store, mods ...func(*grant.Options)) *fixture {
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
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts := grant.Options{
		Clients: st, Codes: st, Tokens: st, Issuer: iss, Sessions: st,
		IssuerURL: issuerURL, FHIRBase: fhirBase, Auditor: rec, Now: clk.Now, Logger: logger,
	}
	for _, m := range mods {
		m(&opts)
	}
	h, err := grant.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ui, err := userinfo.New(userinfo.Options{Issuer: iss, Tokens: st, Users: st, FHIRBase: fhirBase, Auditor: rec, Now: clk.Now, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Register(mux)
	ui.Register(mux)
	user := &storage.User{ID: "u-" + secret.ID(), Username: "amy", PasswordHash: "x", Role: storage.RolePatient,
		FHIRUser: "Patient/123", CreatedAt: clk.Now()}
	if err := st.CreateUser(ctx, user); err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, ctx: ctx, store: st, clock: clk, keys: km, issuer: iss, audit: rec, h: h, ui: ui, mux: mux, user: user, logs: logs}
}

// client registers a client with method and returns it with its secret.
func (f *fixture) client(method oauth.AuthMethod, mods ...func(*storage.Client)) (*storage.Client, string) {
	f.t.Helper()
	c := &storage.Client{
		ID: "c-" + secret.ID(), Name: "app", AuthMethod: string(method),
		RedirectURIs: []string{redirectURI}, Scope: fullScope, CreatedAt: f.clock.Now(),
	}
	sec := ""
	if method.UsesSecret() {
		sec = secret.Token()
		c.SecretHash = storage.HashSecret(sec)
	}
	for _, m := range mods {
		m(c)
	}
	if err := f.store.CreateClient(f.ctx, c); err != nil {
		f.t.Fatal(err)
	}
	return c, sec
}

type codeOpts struct {
	scope   string
	context storage.LaunchContext
	nonce   string
	expires time.Duration
	userID  string
	session []byte // the approving login session's hash (online_access)
}

// code stores an authorization code for client and returns the code and
// its PKCE verifier.
func (f *fixture) code(c *storage.Client, o codeOpts) (code, verifier string) {
	f.t.Helper()
	if o.scope == "" {
		o.scope = fullScope
	}
	if o.userID == "" {
		o.userID = f.user.ID
	}
	if o.expires == 0 {
		o.expires = time.Minute
	}
	code = secret.Token()
	verifier = secret.Token() + "-._~"
	now := f.clock.Now()
	if err := f.store.CreateAuthCode(f.ctx, &storage.AuthCode{
		Hash: storage.HashSecret(code), ClientID: c.ID, RedirectURI: redirectURI,
		CodeChallenge: challenge(verifier), Scope: o.scope, UserID: o.userID, Nonce: o.nonce,
		AuthTime: now.Add(-10 * time.Second), Context: o.context, FamilyID: secret.ID(), SessionHash: o.session,
		CreatedAt: now, ExpiresAt: now.Add(o.expires),
	}); err != nil {
		f.t.Fatal(err)
	}
	return code, verifier
}

func challenge(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// auth describes how a test request authenticates its client.
type auth struct {
	basicID, basicSecret string // Basic header when basicID != ""
	rawBasic             string // verbatim Authorization value when set
	formID, formSecret   string
	sendFormSecret       bool
}

func public(c *storage.Client) auth { return auth{formID: c.ID} }
func basic(c *storage.Client, s string) auth {
	return auth{basicID: c.ID, basicSecret: s}
}
func post(c *storage.Client, s string) auth {
	return auth{formID: c.ID, formSecret: s, sendFormSecret: true}
}

// request builds a token request.
func tokenRequest(form url.Values, a auth) *http.Request {
	if a.formID != "" {
		form.Set("client_id", a.formID)
	}
	if a.sendFormSecret {
		form.Set("client_secret", a.formSecret)
	}
	r := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	switch {
	case a.rawBasic != "":
		r.Header.Set("Authorization", a.rawBasic)
	case a.basicID != "":
		r.SetBasicAuth(url.QueryEscape(a.basicID), url.QueryEscape(a.basicSecret))
	}
	return r
}

// newServer serves the fixture's mux over real HTTP.
func newServer(t testing.TB, f *fixture) *httptest.Server {
	srv := httptest.NewServer(f.mux)
	t.Cleanup(srv.Close)
	return srv
}

func (f *fixture) do(r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	f.mux.ServeHTTP(w, r)
	return w
}

func exchangeForm(code, verifier string) url.Values {
	return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirectURI}, "code_verifier": {verifier}}
}

func (f *fixture) exchange(code, verifier string, a auth) *httptest.ResponseRecorder {
	return f.do(tokenRequest(exchangeForm(code, verifier), a))
}

func (f *fixture) refresh(rt, scope string, a auth) *httptest.ResponseRecorder {
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
	if scope != "" {
		form.Set("scope", scope)
	}
	return f.do(tokenRequest(form, a))
}

func (f *fixture) userinfo(accessToken string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, "/userinfo", nil)
	r.Header.Set("Authorization", "Bearer "+accessToken)
	return f.do(r)
}

// tokenBody is the decoded token response, typed loosely to check JSON types.
type tokenBody map[string]any

func decode(t testing.TB, w *httptest.ResponseRecorder) tokenBody {
	t.Helper()
	var b tokenBody
	if err := json.Unmarshal(w.Body.Bytes(), &b); err != nil {
		t.Fatalf("body %q: %v", w.Body.String(), err)
	}
	return b
}

func (b tokenBody) str(k string) string { s, _ := b[k].(string); return s }

// wantOK fails unless w is a 200 token response and returns its body.
func wantOK(t testing.TB, w *httptest.ResponseRecorder) tokenBody {
	t.Helper()
	if w.Code != http.StatusOK {
		t.Fatalf("status %d, body %s", w.Code, w.Body.String())
	}
	checkNoStore(t, w)
	return decode(t, w)
}

// wantError fails unless w is an OAuth error with status and code.
func wantError(t testing.TB, w *httptest.ResponseRecorder, status int, code oauth.ErrorCode) tokenBody {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status %d, want %d; body %s", w.Code, status, w.Body.String())
	}
	checkNoStore(t, w)
	b := decode(t, w)
	if b.str("error") != string(code) {
		t.Fatalf("error %q, want %q; body %s", b.str("error"), code, w.Body.String())
	}
	return b
}

func checkNoStore(t testing.TB, w *httptest.ResponseRecorder) {
	t.Helper()
	if w.Header().Get("Cache-Control") != "no-store" || w.Header().Get("Pragma") != "no-cache" {
		t.Errorf("missing no-store headers: %v", w.Header())
	}
}

// idVerifier checks id_tokens with go-oidc against the manager's public keys.
func (f *fixture) idVerifier(clientID string, algs ...string) *oidc.IDTokenVerifier {
	var pubs []crypto.PublicKey
	for _, k := range f.keys.JWKS().Keys {
		pubs = append(pubs, k.Key)
	}
	if len(algs) == 0 {
		algs = []string{oidc.RS256}
	}
	return oidc.NewVerifier(issuerURL, &oidc.StaticKeySet{PublicKeys: pubs},
		&oidc.Config{ClientID: clientID, SupportedSigningAlgs: algs, Now: f.clock.Now})
}

// grantRefreshIdle is the default idle lifetime the fixture runs with.
const grantRefreshIdle = 30 * 24 * time.Hour

func (f *fixture) patientContext() storage.LaunchContext {
	return storage.LaunchContext{Patient: "123", NeedPatientBanner: true}
}
