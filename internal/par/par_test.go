package par_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/fhirgate/fhirgate/internal/audit/audittest"
	"github.com/fhirgate/fhirgate/internal/authorize"
	"github.com/fhirgate/fhirgate/internal/clientauth"
	"github.com/fhirgate/fhirgate/internal/par"
	"github.com/fhirgate/fhirgate/internal/replay"
	"github.com/fhirgate/fhirgate/internal/session"
	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/storage/sqlite"
)

const redirect = "https://app.example/cb"

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type env struct {
	t     *testing.T
	srv   *httptest.Server
	clock *clock
	store *sqlite.Store
	audit *audittest.Recorder
	base  string
}

func newEnv(t *testing.T, requireAll bool) *env {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{t: t, clock: &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}, store: st, audit: &audittest.Recorder{}}
	mux := http.NewServeMux()
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	e.base = e.srv.URL + "/fhir"
	sm, err := session.New(session.Options{Store: st, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	az, err := authorize.New(authorize.Options{Issuer: e.srv.URL, FHIRBases: []string{e.base}, Clients: st, AuthRequests: st,
		AuthCodes: st, Launches: st, Consents: st, Users: st, Patients: st, Sessions: sm, Auditor: e.audit,
		Now: e.clock.Now, RequirePAR: requireAll})
	if err != nil {
		t.Fatal(err)
	}
	az.Register(mux)
	ph, err := par.New(par.Options{ClientAuth: &clientauth.Authenticator{Clients: st, Now: e.clock.Now}, Requests: st,
		Validator: az, Auditor: e.audit, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	ph.Register(mux)
	for _, c := range []storage.Client{
		{ID: "pub", AuthMethod: "none"},
		{ID: "conf", AuthMethod: "client_secret_basic", SecretHash: storage.HashSecret("s3cret")},
		{ID: "paronly", AuthMethod: "none", RequirePAR: true},
	} {
		c.Name, c.RedirectURIs, c.Scope = c.ID, []string{redirect}, "openid fhirUser launch/patient patient/*.rs"
		c.GrantTypes = []string{"authorization_code"}
		if err := st.CreateClient(ctx, &c); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func (e *env) params(client string, kv ...string) url.Values {
	sum := sha256.Sum256([]byte("verifier-verifier-verifier-verifier-verifier"))
	q := url.Values{"response_type": {"code"}, "client_id": {client}, "redirect_uri": {redirect},
		"scope": {"openid launch/patient patient/*.rs"}, "state": {"st"}, "aud": {e.base},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			q.Del(kv[i])
		} else {
			q.Set(kv[i], kv[i+1])
		}
	}
	return q
}

type reply struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (e *env) push(form url.Values, basic ...string) reply {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/par", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if len(basic) == 2 {
		req.SetBasicAuth(basic[0], basic[1])
	}
	return e.send(req)
}

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func (e *env) send(req *http.Request) reply {
	e.t.Helper()
	resp, err := noRedirect.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	r := reply{status: resp.StatusCode, header: resp.Header, raw: b.String()}
	_ = json.Unmarshal([]byte(r.raw), &r.body)
	return r
}

func (e *env) authorize(q url.Values) reply {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/authorize?"+q.Encode(), nil)
	return e.send(req)
}

// requestURI pushes a valid request for client and returns its request_uri.
func (e *env) requestURI(client string, basic ...string) string {
	e.t.Helper()
	r := e.push(e.params(client), basic...)
	if r.status != http.StatusCreated {
		e.t.Fatalf("push: %d %s", r.status, r.raw)
	}
	uri, _ := r.body["request_uri"].(string)
	if !strings.HasPrefix(uri, par.RequestURIPrefix) || len(uri) < len(par.RequestURIPrefix)+32 || r.body["expires_in"] != float64(60) {
		e.t.Fatalf("push body %s", r.raw)
	}
	if r.header.Get("Cache-Control") != "no-store" {
		e.t.Fatal("no Cache-Control: no-store")
	}
	return uri
}

// wantLogin checks that /authorize accepted the request (sent to sign in).
func wantLogin(t *testing.T, r reply, pushedID string) {
	t.Helper()
	loc := r.header.Get("Location")
	if r.status != http.StatusSeeOther || !strings.HasPrefix(loc, authorize.PathLogin+"?req=") {
		t.Fatalf("status %d location %q body %.300s", r.status, loc, r.raw)
	}
	if pushedID != "" && strings.Contains(loc, pushedID) {
		t.Fatal("the flow continues under the request_uri's id")
	}
}

func wantPage(t *testing.T, r reply) {
	t.Helper()
	if r.status != http.StatusBadRequest || !strings.Contains(r.header.Get("Content-Type"), "text/html") || r.header.Get("Location") != "" {
		t.Fatalf("status %d type %q location %q", r.status, r.header.Get("Content-Type"), r.header.Get("Location"))
	}
}

func TestPushAndPickup(t *testing.T) {
	e := newEnv(t, false)
	uri := e.requestURI("pub")
	id := strings.TrimPrefix(uri, par.RequestURIPrefix)
	// Only client_id and request_uri count; other parameters are ignored.
	wantLogin(t, e.authorize(url.Values{"client_id": {"pub"}, "request_uri": {uri}, "scope": {"patient/*.cruds"},
		"redirect_uri": {"https://evil.example/cb"}}), id)
	// Single use.
	wantPage(t, e.authorize(url.Values{"client_id": {"pub"}, "request_uri": {uri}}))
	// A confidential client authenticates at /par.
	uri = e.requestURI("conf", "conf", "s3cret")
	wantLogin(t, e.authorize(url.Values{"client_id": {"conf"}, "request_uri": {uri}}), "")
}

func TestPickupRefusals(t *testing.T) {
	e := newEnv(t, false)
	// Expired.
	uri := e.requestURI("pub")
	e.clock.Advance(61 * time.Second)
	wantPage(t, e.authorize(url.Values{"client_id": {"pub"}, "request_uri": {uri}}))
	// Another client's request_uri; the attempt does not use it up.
	uri = e.requestURI("pub")
	wantPage(t, e.authorize(url.Values{"client_id": {"paronly"}, "request_uri": {uri}}))
	wantPage(t, e.authorize(url.Values{"request_uri": {uri}}))
	wantLogin(t, e.authorize(url.Values{"client_id": {"pub"}, "request_uri": {uri}}), "")
	// Unknown, malformed, or an ordinary (not pushed) request's id.
	wantPage(t, e.authorize(url.Values{"client_id": {"pub"}, "request_uri": {par.RequestURIPrefix + "nope"}}))
	wantPage(t, e.authorize(url.Values{"client_id": {"pub"}, "request_uri": {"https://evil.example/req"}}))
	r := e.authorize(e.params("pub"))
	req := strings.TrimPrefix(r.header.Get("Location"), authorize.PathLogin+"?req=")
	if req == "" {
		t.Fatalf("plain authorize: %d %s", r.status, r.header.Get("Location"))
	}
	wantPage(t, e.authorize(url.Values{"client_id": {"pub"}, "request_uri": {par.RequestURIPrefix + req}}))
}

func TestConcurrentPickupOneWinner(t *testing.T) {
	e := newEnv(t, false)
	uri := e.requestURI("pub")
	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/authorize?"+url.Values{"client_id": {"pub"}, "request_uri": {uri}}.Encode(), nil)
			resp, err := noRedirect.Do(req)
			if err != nil {
				return
			}
			resp.Body.Close()
			if resp.StatusCode == http.StatusSeeOther {
				wins.Add(1)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d pickups succeeded", wins.Load())
	}
}

func TestPushRefusals(t *testing.T) {
	e := newEnv(t, false)
	cases := []struct {
		name   string
		form   url.Values
		basic  []string
		status int
		code   string
	}{
		{"wrong secret", e.params("conf"), []string{"conf", "nope"}, 401, "invalid_client"},
		{"confidential without secret", e.params("conf"), nil, 401, "invalid_client"},
		{"unknown client", e.params("ghost"), nil, 401, "invalid_client"},
		{"no client", e.params("pub", "client_id", ""), nil, 401, "invalid_client"},
		{"request_uri pushed", e.params("pub", "request_uri", par.RequestURIPrefix+"x"), nil, 400, "invalid_request"},
		{"no PKCE", e.params("pub", "code_challenge", ""), nil, 400, "invalid_request"},
		{"unregistered redirect", e.params("pub", "redirect_uri", "https://evil.example/cb"), nil, 400, "invalid_request"},
		{"no redirect_uri", e.params("pub", "redirect_uri", ""), nil, 400, "invalid_request"},
		{"bad scope", e.params("pub", "scope", "patient/Observation.zz"), nil, 400, "invalid_scope"},
		{"implicit", e.params("pub", "response_type", "token"), nil, 400, "unsupported_response_type"},
		{"client_id differs from basic", e.params("pub"), []string{"conf", "s3cret"}, 400, "invalid_request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.push(tc.form, tc.basic...)
			if r.status != tc.status || r.body["error"] != tc.code {
				t.Fatalf("got %d %s, want %d %s", r.status, r.raw, tc.status, tc.code)
			}
			if _, ok := r.body["request_uri"]; ok {
				t.Fatal("request_uri issued")
			}
		})
	}
	// Query parameters and wrong content type.
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/par?"+e.params("pub").Encode(), strings.NewReader(""))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if r := e.send(req); r.status != 400 {
		t.Fatalf("query parameters: %d", r.status)
	}
	req, _ = http.NewRequest(http.MethodPost, e.srv.URL+"/par", strings.NewReader(`{}`))
	req.Header.Set("Content-Type", "application/json")
	if r := e.send(req); r.status != 400 {
		t.Fatalf("json: %d", r.status)
	}
	req, _ = http.NewRequest(http.MethodGet, e.srv.URL+"/par", nil)
	if r := e.send(req); r.status != http.StatusMethodNotAllowed {
		t.Fatalf("GET: %d", r.status)
	}
	refused := 0
	for _, ev := range e.audit.Events() {
		if strings.HasPrefix(ev.Reason, "par: ") && ev.Outcome == "failure" {
			refused++
		}
	}
	if refused < len(cases)+2 {
		t.Fatalf("%d refusals audited", refused)
	}
}

func TestRequirePAR(t *testing.T) {
	e := newEnv(t, false)
	r := e.authorize(e.params("paronly"))
	loc, _ := url.Parse(r.header.Get("Location"))
	if r.status != http.StatusSeeOther || loc == nil || !strings.HasPrefix(loc.String(), redirect) || loc.Query().Get("error") != "invalid_request" {
		t.Fatalf("plain authorize for a PAR client: %d %s", r.status, r.header.Get("Location"))
	}
	wantLogin(t, e.authorize(url.Values{"client_id": {"paronly"}, "request_uri": {e.requestURI("paronly")}}), "")
	// Other clients are unaffected unless PAR is required globally.
	wantLogin(t, e.authorize(e.params("pub")), "")
	g := newEnv(t, true)
	r = g.authorize(g.params("pub"))
	loc, _ = url.Parse(r.header.Get("Location"))
	if loc == nil || loc.Query().Get("error") != "invalid_request" {
		t.Fatalf("global PAR: %d %s", r.status, r.header.Get("Location"))
	}
	wantLogin(t, g.authorize(url.Values{"client_id": {"pub"}, "request_uri": {g.requestURI("pub")}}), "")
}

func TestPushWithPrivateKeyJWT(t *testing.T) {
	e := newEnv(t, false)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	set, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k", Algorithm: "ES256"}}})
	c := storage.Client{ID: "jwt", Name: "jwt", AuthMethod: "private_key_jwt", JWKS: set, RedirectURIs: []string{redirect},
		Scope: "openid patient/*.rs launch/patient", GrantTypes: []string{"authorization_code"}}
	if err := e.store.CreateClient(context.Background(), &c); err != nil {
		t.Fatal(err)
	}
	// A handler whose authenticator accepts assertions for the PAR endpoint.
	mux := http.NewServeMux()
	ph, err := par.New(par.Options{ClientAuth: &clientauth.Authenticator{Clients: e.store, Now: e.clock.Now,
		Audiences: []string{"https://as.example/par"}, Replay: replay.NewMemory(e.clock.Now, 100)},
		Requests: e.store, Validator: parValidator(t, e), Auditor: e.audit, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	ph.Register(mux)
	assertion := func(aud string) string {
		s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: "k"}}, nil)
		b, _ := json.Marshal(map[string]any{"iss": "jwt", "sub": "jwt", "aud": aud, "jti": aud + e.clock.Now().String(),
			"exp": e.clock.Now().Add(time.Minute).Unix()})
		o, _ := s.Sign(b)
		raw, _ := o.CompactSerialize()
		return raw
	}
	do := func(aud string) *httptest.ResponseRecorder {
		form := e.params("jwt", "client_id", "")
		form.Set("client_assertion_type", clientauth.AssertionTypeJWTBearer)
		form.Set("client_assertion", assertion(aud))
		r := httptest.NewRequest(http.MethodPost, "/par", strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		return w
	}
	if w := do("https://as.example/par"); w.Code != http.StatusCreated {
		t.Fatalf("push: %d %s", w.Code, w.Body)
	}
	if w := do("https://other.example/par"); w.Code != http.StatusUnauthorized {
		t.Fatalf("wrong aud: %d %s", w.Code, w.Body)
	}
}

// parValidator builds an authorize handler on e's store for a second PAR handler.
func parValidator(t *testing.T, e *env) par.Validator {
	t.Helper()
	sm, err := session.New(session.Options{Store: e.store, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	az, err := authorize.New(authorize.Options{Issuer: e.srv.URL, FHIRBases: []string{e.base}, Clients: e.store,
		AuthRequests: e.store, AuthCodes: e.store, Launches: e.store, Consents: e.store, Users: e.store,
		Patients: e.store, Sessions: sm, Auditor: e.audit, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return az
}
