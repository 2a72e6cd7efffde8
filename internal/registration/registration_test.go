package registration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/audit/audittest"
	"github.com/fhirgate/fhirgate/internal/clientreg"
	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/storage/sqlite"
)

// clock is a settable test clock.
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
	srv     *httptest.Server
	store   *sqlite.Store
	rec     *audittest.Recorder
	clock   *clock
	initial string // a valid initial access token
	logs    *bytes.Buffer
}

func setup(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "fhirgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	clk := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	rec := &audittest.Recorder{}
	logs := &bytes.Buffer{}
	h, err := New(Options{
		Issuer:             "https://as.example.org/",
		Clients:            st,
		RegistrationTokens: st,
		Auditor:            rec,
		Logger:             slog.New(slog.NewTextHandler(&lockedWriter{w: logs}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:                clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	tok, err := clientreg.NewRegistrationToken(ctx, st, time.Hour, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	return &env{srv: srv, store: st, rec: rec, clock: clk, initial: tok, logs: logs}
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

type result struct {
	status int
	header http.Header
	body   map[string]any
	raw    []byte
}

func (e *env) do(t *testing.T, method, path, token string, body any) result {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return send(t, req)
}

func send(t *testing.T, req *http.Request) result {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := result{status: resp.StatusCode, header: resp.Header, raw: raw}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &r.body); err != nil {
			t.Fatalf("body %q is not JSON: %v", raw, err)
		}
	}
	return r
}

func (r result) str(k string) string {
	s, _ := r.body[k].(string)
	return s
}

func (r result) expectError(t *testing.T, status int, code string) {
	t.Helper()
	if r.status != status || r.str("error") != code {
		t.Fatalf("got %d %s, want %d %s", r.status, r.raw, status, code)
	}
	if r.header.Get("Cache-Control") != "no-store" {
		t.Fatal("error without Cache-Control: no-store")
	}
}

func goodMetadata() map[string]any {
	return map[string]any{
		"client_name":   "Growth Chart",
		"redirect_uris": []string{"https://app.example.com/cb", "http://127.0.0.1:51004/cb"},
		"scope":         "openid fhirUser launch/patient offline_access patient/*.rs",
		"grant_types":   []string{"authorization_code", "refresh_token"},
		"launch_uri":    "https://app.example.com/launch",
		"unknown_field": "ignored per RFC 7591 §2",
	}
}

func TestInitialAccessTokenRequired(t *testing.T) {
	e := setup(t)
	expiredTok, err := clientreg.NewRegistrationToken(context.Background(), e.store, time.Minute, e.clock.Now().Add(-2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name      string
		auth      string
		challenge string
	}{
		{"missing", "", `Bearer realm="fhirgate"`},
		{"unknown token", "Bearer " + strings.Repeat("A", 43), `Bearer realm="fhirgate", error="invalid_token"`},
		{"expired token", "Bearer " + expiredTok, `Bearer realm="fhirgate", error="invalid_token"`},
		{"basic scheme", "Basic " + e.initial, `Bearer realm="fhirgate", error="invalid_token"`},
		{"empty bearer", "Bearer ", `Bearer realm="fhirgate", error="invalid_token"`},
		{"token with space", "Bearer a b", `Bearer realm="fhirgate", error="invalid_token"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body, _ := json.Marshal(goodMetadata())
			req, _ := http.NewRequest("POST", e.srv.URL+"/register", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			r := send(t, req)
			r.expectError(t, 401, "invalid_token")
			if got := r.header.Get("WWW-Authenticate"); got != tc.challenge {
				t.Fatalf("WWW-Authenticate %q, want %q", got, tc.challenge)
			}
		})
	}
	list, _ := e.store.ListClients(context.Background())
	if len(list) != 0 {
		t.Fatal("a client was registered without a valid initial access token")
	}
	if !e.rec.Has(audit.ActionRegistrationRefused, audit.Failure) {
		t.Fatal("refusals not audited")
	}
	// A bad body without a token is still a 401, not a 400: nothing is
	// disclosed before the token is checked.
	e.do(t, "POST", "/register", "", "{not json").expectError(t, 401, "invalid_token")
}

func TestInitialTokenReusableUntilExpiry(t *testing.T) {
	e := setup(t)
	for range 2 {
		if r := e.do(t, "POST", "/register", e.initial, goodMetadata()); r.status != 201 {
			t.Fatalf("register: %d %s", r.status, r.raw)
		}
	}
	e.clock.Advance(time.Hour + time.Second)
	e.do(t, "POST", "/register", e.initial, goodMetadata()).expectError(t, 401, "invalid_token")
}

func TestBadMetadata(t *testing.T) {
	e := setup(t)
	with := func(k string, v any) map[string]any {
		m := goodMetadata()
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	cases := []struct {
		name string
		body any
		code string
	}{
		{"implicit response type", with("response_types", []string{"token"}), "invalid_client_metadata"},
		{"hybrid response type", with("response_types", []string{"code id_token"}), "invalid_client_metadata"},
		{"password grant", with("grant_types", []string{"password"}), "invalid_client_metadata"},
		{"client credentials", with("grant_types", []string{"client_credentials"}), "invalid_client_metadata"},
		{"private_key_jwt", with("token_endpoint_auth_method", "private_key_jwt"), "invalid_client_metadata"},
		{"malformed scope", with("scope", "patient/Observation.xyz"), "invalid_client_metadata"},
		{"system scope", with("scope", "system/*.rs"), "invalid_client_metadata"},
		{"http logo", with("logo_uri", "http://app.example.com/logo.png"), "invalid_client_metadata"},
		{"HS256 id token", with("id_token_signed_response_alg", "HS256"), "invalid_client_metadata"},
		{"http localhost", with("redirect_uris", []string{"http://localhost:3000/cb"}), "invalid_redirect_uri"},
		{"http remote", with("redirect_uris", []string{"http://app.example.com/cb"}), "invalid_redirect_uri"},
		{"fragment", with("redirect_uris", []string{"https://app.example.com/cb#x"}), "invalid_redirect_uri"},
		{"wildcard", with("redirect_uris", []string{"https://*.example.com/cb"}), "invalid_redirect_uri"},
		{"javascript", with("redirect_uris", []string{"javascript:alert(1)"}), "invalid_redirect_uri"},
		{"no redirect", with("redirect_uris", nil), "invalid_redirect_uri"},
		{"client chooses id", with("client_id", "my-own-id"), "invalid_client_metadata"},
		{"client chooses secret", with("client_secret", "hunter2"), "invalid_client_metadata"},
		{"software statement", with("software_statement", "eyJ..."), "invalid_client_metadata"},
		{"wrong type", with("redirect_uris", "https://app.example.com/cb"), "invalid_client_metadata"},
		{"not an object", "[1,2]", "invalid_client_metadata"},
		{"not JSON", "{", "invalid_client_metadata"},
		{"two objects", `{"scope":"openid"} {}`, "invalid_client_metadata"},
		{"too large", `{"client_name":"` + strings.Repeat("a", MaxBodyBytes) + `"}`, "invalid_client_metadata"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.do(t, "POST", "/register", e.initial, tc.body).expectError(t, 400, tc.code)
		})
	}
	// Wrong content type.
	body, _ := json.Marshal(goodMetadata())
	req, _ := http.NewRequest("POST", e.srv.URL+"/register", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+e.initial)
	send(t, req).expectError(t, 400, "invalid_client_metadata")

	list, _ := e.store.ListClients(context.Background())
	if len(list) != 0 {
		t.Fatalf("%d invalid clients were registered", len(list))
	}
	for _, ev := range e.rec.Events() {
		if ev.Action != audit.ActionRegistrationRefused || ev.Outcome != audit.Failure || ev.Reason == "" {
			t.Fatalf("unexpected event %+v", ev)
		}
	}
}

func TestLifecycle(t *testing.T) {
	e := setup(t)
	ctx := context.Background()

	// Create.
	r := e.do(t, "POST", "/register", e.initial, goodMetadata())
	if r.status != 201 {
		t.Fatalf("register: %d %s", r.status, r.raw)
	}
	id, sec, regTok := r.str("client_id"), r.str("client_secret"), r.str("registration_access_token")
	if id == "" || len(sec) < 43 || len(regTok) < 43 {
		t.Fatalf("response %s", r.raw)
	}
	if r.header.Get("Cache-Control") != "no-store" || r.header.Get("Pragma") != "no-cache" {
		t.Fatal("registration response is cacheable")
	}
	wantURI := "https://as.example.org/register/" + id
	if r.str("registration_client_uri") != wantURI || r.header.Get("Location") != wantURI {
		t.Fatalf("registration_client_uri %q Location %q", r.str("registration_client_uri"), r.header.Get("Location"))
	}
	if r.body["client_secret_expires_at"] != float64(0) {
		t.Fatalf("client_secret_expires_at %v", r.body["client_secret_expires_at"])
	}
	if r.body["client_id_issued_at"] != float64(e.clock.Now().Unix()) {
		t.Fatalf("client_id_issued_at %v", r.body["client_id_issued_at"])
	}
	if r.str("token_endpoint_auth_method") != "client_secret_basic" || r.str("id_token_signed_response_alg") != "RS256" ||
		r.str("launch_uri") != "https://app.example.com/launch" || r.str("client_name") != "Growth Chart" {
		t.Fatalf("metadata %s", r.raw)
	}
	if rt, _ := r.body["response_types"].([]any); len(rt) != 1 || rt[0] != "code" {
		t.Fatalf("response_types %v", r.body["response_types"])
	}
	stored, err := e.store.GetClient(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(stored.SecretHash, storage.HashSecret(sec)) || !bytes.Equal(stored.RegistrationTokenHash, storage.HashSecret(regTok)) {
		t.Fatal("stored hashes do not match the issued secrets")
	}
	if !e.rec.Has(audit.ActionClientRegistered, audit.Success) {
		t.Fatal("registration not audited")
	}

	// Read: rotates the registration access token; the secret is not shown again.
	r = e.do(t, "GET", "/register/"+id, regTok, nil)
	if r.status != 200 {
		t.Fatalf("read: %d %s", r.status, r.raw)
	}
	if r.str("client_id") != id || r.str("client_secret") != "" || r.str("registration_client_uri") != wantURI {
		t.Fatalf("read response %s", r.raw)
	}
	newTok := r.str("registration_access_token")
	if newTok == "" || newTok == regTok {
		t.Fatal("registration access token not rotated")
	}
	e.do(t, "GET", "/register/"+id, regTok, nil).expectError(t, 401, "invalid_token")
	regTok = newTok

	// Update with a bad body: refused, and the token is not used up.
	bad := goodMetadata()
	bad["client_id"] = id
	bad["response_types"] = []string{"token"}
	e.do(t, "PUT", "/register/"+id, regTok, bad).expectError(t, 400, "invalid_client_metadata")
	mismatch := goodMetadata()
	mismatch["client_id"] = "someone-else"
	e.do(t, "PUT", "/register/"+id, regTok, mismatch).expectError(t, 400, "invalid_client_metadata")
	wrongSecret := goodMetadata()
	wrongSecret["client_id"] = id
	wrongSecret["client_secret"] = "chosen-by-client"
	e.do(t, "PUT", "/register/"+id, regTok, wrongSecret).expectError(t, 400, "invalid_client_metadata")
	e.do(t, "PUT", "/register/"+id, regTok, "{").expectError(t, 400, "invalid_client_metadata")
	e.do(t, "PUT", "/register/"+id, regTok, goodMetadata()).expectError(t, 400, "invalid_client_metadata") // no client_id

	// Update: replaces metadata, keeps the secret (given back unchanged is fine).
	upd := goodMetadata()
	upd["client_id"] = id
	upd["client_secret"] = sec
	upd["client_name"] = "Growth Chart 2"
	upd["redirect_uris"] = []string{"https://app.example.com/cb2"}
	upd["token_endpoint_auth_method"] = "client_secret_post"
	e.clock.Advance(time.Minute)
	r = e.do(t, "PUT", "/register/"+id, regTok, upd)
	if r.status != 200 {
		t.Fatalf("update: %d %s", r.status, r.raw)
	}
	if r.str("client_name") != "Growth Chart 2" || r.str("client_secret") != "" || r.str("token_endpoint_auth_method") != "client_secret_post" {
		t.Fatalf("update response %s", r.raw)
	}
	regTok = r.str("registration_access_token")
	stored, _ = e.store.GetClient(ctx, id)
	if stored.Name != "Growth Chart 2" || len(stored.RedirectURIs) != 1 || !bytes.Equal(stored.SecretHash, storage.HashSecret(sec)) {
		t.Fatalf("stored after update %+v", stored)
	}
	if !stored.UpdatedAt.Equal(e.clock.Now()) || stored.CreatedAt.Equal(stored.UpdatedAt) {
		t.Fatal("timestamps not maintained")
	}
	if !e.rec.Has(audit.ActionClientChanged, audit.Success) {
		t.Fatal("update not audited")
	}

	// Switch to a public client: the secret is discarded.
	pub := goodMetadata()
	pub["client_id"] = id
	pub["token_endpoint_auth_method"] = "none"
	r = e.do(t, "PUT", "/register/"+id, regTok, pub)
	if r.status != 200 || r.str("client_secret") != "" || r.body["client_secret_expires_at"] != nil {
		t.Fatalf("to public: %d %s", r.status, r.raw)
	}
	regTok = r.str("registration_access_token")
	stored, _ = e.store.GetClient(ctx, id)
	if len(stored.SecretHash) != 0 {
		t.Fatal("public client kept a secret")
	}
	// And back: a new secret is issued once.
	conf := goodMetadata()
	conf["client_id"] = id
	r = e.do(t, "PUT", "/register/"+id, regTok, conf)
	newSec := r.str("client_secret")
	if r.status != 200 || len(newSec) < 43 || newSec == sec {
		t.Fatalf("to confidential: %d %s", r.status, r.raw)
	}
	regTok = r.str("registration_access_token")
	stored, _ = e.store.GetClient(ctx, id)
	if !bytes.Equal(stored.SecretHash, storage.HashSecret(newSec)) {
		t.Fatal("new secret not stored as its hash")
	}

	// Delete.
	r = e.do(t, "DELETE", "/register/"+id, regTok, nil)
	if r.status != 204 || len(r.raw) != 0 {
		t.Fatalf("delete: %d %s", r.status, r.raw)
	}
	if _, err := e.store.GetClient(ctx, id); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("client still there: %v", err)
	}
	if !e.rec.Has(audit.ActionClientDeleted, audit.Success) {
		t.Fatal("delete not audited")
	}
	e.do(t, "GET", "/register/"+id, regTok, nil).expectError(t, 401, "invalid_token")
	e.do(t, "DELETE", "/register/"+id, regTok, nil).expectError(t, 401, "invalid_token")

	// No token, secret or registration token ever reaches the logs.
	logs := e.logs.String()
	for _, s := range []string{sec, newSec, regTok, e.initial} {
		if strings.Contains(logs, s) {
			t.Fatal("a secret was logged")
		}
	}
}

func TestOtherClientsTokenRefused(t *testing.T) {
	e := setup(t)
	a := e.do(t, "POST", "/register", e.initial, goodMetadata())
	b := e.do(t, "POST", "/register", e.initial, goodMetadata())
	if a.status != 201 || b.status != 201 {
		t.Fatal("register failed")
	}
	aID, bTok := a.str("client_id"), b.str("registration_access_token")
	upd := goodMetadata()
	upd["client_id"] = aID
	upd["client_name"] = "hijacked"
	e.do(t, "GET", "/register/"+aID, bTok, nil).expectError(t, 401, "invalid_token")
	e.do(t, "PUT", "/register/"+aID, bTok, upd).expectError(t, 401, "invalid_token")
	e.do(t, "DELETE", "/register/"+aID, bTok, nil).expectError(t, 401, "invalid_token")
	// A bad body with a wrong token is a 401: nothing is disclosed.
	e.do(t, "PUT", "/register/"+aID, bTok, "{").expectError(t, 401, "invalid_token")
	// HEAD would rotate the token and lose the new one: refused.
	req, _ := http.NewRequest("HEAD", e.srv.URL+"/register/"+aID, nil)
	req.Header.Set("Authorization", "Bearer "+a.str("registration_access_token"))
	if hr := send(t, req); hr.status != http.StatusMethodNotAllowed {
		t.Fatalf("HEAD: %d", hr.status)
	}
	// Nor do the initial access token or the client secret work here.
	e.do(t, "GET", "/register/"+aID, e.initial, nil).expectError(t, 401, "invalid_token")
	e.do(t, "GET", "/register/"+aID, a.str("client_secret"), nil).expectError(t, 401, "invalid_token")
	// No token at all.
	r := e.do(t, "GET", "/register/"+aID, "", nil)
	r.expectError(t, 401, "invalid_token")
	if r.header.Get("WWW-Authenticate") != `Bearer realm="fhirgate"` {
		t.Fatalf("challenge %q", r.header.Get("WWW-Authenticate"))
	}
	// Unknown client: 401 as well, not 404.
	e.do(t, "GET", "/register/nope", bTok, nil).expectError(t, 401, "invalid_token")

	got, _ := e.store.GetClient(context.Background(), aID)
	if got.Name == "hijacked" {
		t.Fatal("client changed with another client's token")
	}
	// A refused attempt does not use up the owner's token.
	if r := e.do(t, "GET", "/register/"+aID, a.str("registration_access_token"), nil); r.status != 200 {
		t.Fatalf("owner read: %d %s", r.status, r.raw)
	}
}

func TestCLIClientNotManageable(t *testing.T) {
	e := setup(t)
	c, _, err := clientreg.Create(context.Background(), e.store, clientreg.Metadata{
		RedirectURIs: []string{"https://app.example.com/cb"}, Scope: "openid",
	}, e.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	e.do(t, "GET", "/register/"+c.ID, e.initial, nil).expectError(t, 401, "invalid_token")
	e.do(t, "DELETE", "/register/"+c.ID, strings.Repeat("A", 43), nil).expectError(t, 401, "invalid_token")
}

// TestConcurrentRotation: a registration access token rotates in one
// transaction, so of many concurrent reads with the same token exactly one wins.
func TestConcurrentRotation(t *testing.T) {
	e := setup(t)
	r := e.do(t, "POST", "/register", e.initial, goodMetadata())
	id, tok := r.str("client_id"), r.str("registration_access_token")
	const n = 12
	var wg sync.WaitGroup
	codes := make(chan int, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", e.srv.URL+"/register/"+id, nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				codes <- 0
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	wg.Wait()
	close(codes)
	ok := 0
	for c := range codes {
		switch c {
		case 200:
			ok++
		case 401:
		default:
			t.Errorf("status %d", c)
		}
	}
	if ok != 1 {
		t.Fatalf("%d concurrent reads succeeded with one token, want exactly 1", ok)
	}
}

func TestAuditFailureFailsClosed(t *testing.T) {
	e := setup(t)
	r := e.do(t, "POST", "/register", e.initial, goodMetadata())
	id, tok := r.str("client_id"), r.str("registration_access_token")
	e.rec.Fail = errors.New("audit sink down")

	e.do(t, "POST", "/register", e.initial, goodMetadata()).expectError(t, 503, "temporarily_unavailable")
	list, _ := e.store.ListClients(context.Background())
	if len(list) != 1 {
		t.Fatalf("%d clients, want 1: registration went ahead without an audit record", len(list))
	}
	upd := goodMetadata()
	upd["client_id"] = id
	upd["client_name"] = "changed"
	e.do(t, "PUT", "/register/"+id, tok, upd).expectError(t, 503, "temporarily_unavailable")
	e.do(t, "DELETE", "/register/"+id, tok, nil).expectError(t, 503, "temporarily_unavailable")
	got, err := e.store.GetClient(context.Background(), id)
	if err != nil || got.Name == "changed" {
		t.Fatalf("client changed or deleted without an audit record: %+v %v", got, err)
	}
	// The token survives the failed attempts.
	e.rec.Fail = nil
	if r := e.do(t, "GET", "/register/"+id, tok, nil); r.status != 200 {
		t.Fatalf("read after audit recovery: %d %s", r.status, r.raw)
	}
}

func TestMethodsAndOptions(t *testing.T) {
	e := setup(t)
	req, _ := http.NewRequest("GET", e.srv.URL+"/register", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET /register: %d", resp.StatusCode)
	}
	for _, o := range []Options{
		{Issuer: "", Clients: e.store, RegistrationTokens: e.store, Auditor: e.rec},
		{Issuer: "/relative", Clients: e.store, RegistrationTokens: e.store, Auditor: e.rec},
		{Issuer: "https://as.example.org", RegistrationTokens: e.store, Auditor: e.rec},
		{Issuer: "https://as.example.org", Clients: e.store, RegistrationTokens: e.store},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) accepted", o)
		}
	}
}
