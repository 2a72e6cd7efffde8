package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit/audittest"
	"github.com/fhirgate/fhirgate/internal/cors"
	"github.com/fhirgate/fhirgate/internal/demoehr"
	"github.com/fhirgate/fhirgate/internal/keys"
	"github.com/fhirgate/fhirgate/internal/mtls"
	"github.com/fhirgate/fhirgate/internal/secret"
	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/storage/sqlite"
	"github.com/fhirgate/fhirgate/internal/token"
	"github.com/fhirgate/fhirgate/internal/upstream"
)

const (
	issuerURL  = "https://auth.example.org"
	baseURL    = "https://fhir.example.org/fhir"
	appOrigin  = "https://app.example.com"
	ehrUser    = "gateway"
	ehrPass    = "ehr-secret"
	patientA   = "pt-001"
	patientB   = "pt-002"
	patientAll = "patient/*.rs"
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

// spy records what reached the upstream.
type spy struct {
	mu   sync.Mutex
	reqs []*http.Request
	next http.Handler
}

func (s *spy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.reqs = append(s.reqs, r.Clone(context.Background()))
	s.mu.Unlock()
	s.next.ServeHTTP(w, r)
}

func (s *spy) last() *http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.reqs) == 0 {
		return nil
	}
	return s.reqs[len(s.reqs)-1]
}

func (s *spy) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.reqs)
}

// countingParser counts full verifications.
type countingParser struct {
	TokenParser
	n atomic.Int64
}

func (c *countingParser) ParseAccessToken(raw, aud string) (*token.AccessClaims, error) {
	c.n.Add(1)
	return c.TokenParser.ParseAccessToken(raw, aud)
}

type fixture struct {
	t      testing.TB
	ctx    context.Context
	store  *sqlite.Store
	clock  *clock
	keys   *keys.Manager
	issuer *token.Issuer
	parser *countingParser
	audit  *audittest.Recorder
	ehr    *demoehr.Handler
	spy    *spy
	ehrSrv *httptest.Server
	h      *Handler
	srv    *httptest.Server
	revs   *FamilyRevocations
}

type fixtureOpts struct {
	dpop        ProofVerifier
	transport   http.RoundTripper // replaces the network transport to the EHR
	timeout     time.Duration
	maxResp     int64
	upstream    http.Handler // replaces the demo EHR
	identity    bool         // sign an identity header upstream
	skipOutcome bool         // SkipOutcomeAudit
	proxies     mtls.TrustedProxies
}

func newFixture(t testing.TB, o fixtureOpts) *fixture {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "fhirgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	clk := &clock{t: time.Now().Truncate(time.Second)}
	km, err := keys.New(ctx, keys.Options{Store: st, KEK: keys.DevKEK(), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	iss, err := token.NewIssuer(token.Options{Signer: km, Verifier: km, Issuer: issuerURL, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	ehr, err := demoehr.New(demoehr.Options{Username: ehrUser, Password: ehrPass, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	sp := &spy{next: ehr}
	var next http.Handler = sp
	if o.upstream != nil {
		sp.next = o.upstream
	}
	ehrSrv := httptest.NewServer(next)
	t.Cleanup(ehrSrv.Close)
	up, err := upstream.Build(upstream.Config{URL: ehrSrv.URL, Auth: upstream.AuthConfig{Type: upstream.AuthBasic, Username: ehrUser, Password: ehrPass}},
		upstream.Options{Now: clk.Now, BaseTransport: o.transport})
	if err != nil {
		t.Fatal(err)
	}
	if o.identity {
		if up.Identity, err = upstream.NewIdentity(upstream.IdentityOptions{Signer: km, Issuer: baseURL, Audience: ehrSrv.URL, Now: clk.Now}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.CreateClient(ctx, &storage.Client{ID: "app", Name: "app", AuthMethod: "none",
		RedirectURIs: []string{appOrigin + "/callback"}, Scope: patientAll, CreatedAt: clk.Now()}); err != nil {
		t.Fatal(err)
	}
	origins, err := cors.New(cors.Options{Clients: st, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	revs, err := NewFamilyRevocations(st, 0, 0, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	rec := &audittest.Recorder{}
	parser := &countingParser{TokenParser: iss}
	h, err := New(Options{
		BaseURL: baseURL, Upstreams: []*upstream.Upstream{up}, Tokens: parser, Revocations: revs, Leaked: revs,
		DPoP: o.dpop, CORS: origins, TrustedProxies: o.proxies,
		OAuth:              OAuthURIs{Authorize: issuerURL + "/authorize", Token: issuerURL + "/token", Register: issuerURL + "/register"},
		SMARTConfiguration: func() ([]byte, error) { return []byte(`{"issuer":"` + issuerURL + `"}`), nil },
		UpstreamTimeout:    o.timeout, MaxResponseBytes: o.maxResp, SkipOutcomeAudit: o.skipOutcome,
		Auditor: rec, Logger: slog.New(slog.DiscardHandler), Now: clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &fixture{t: t, ctx: ctx, store: st, clock: clk, keys: km, issuer: iss, parser: parser, audit: rec,
		ehr: ehr, spy: sp, ehrSrv: ehrSrv, h: h, srv: srv, revs: revs}
}

// token issues an access token in a new family.
func (f *fixture) token(scopes, patient string, mods ...func(*token.AccessClaims)) (string, token.AccessClaims) {
	f.t.Helper()
	fam := secret.ID()
	now := f.clock.Now()
	if err := f.store.CreateFamily(f.ctx, &storage.TokenFamily{ID: fam, ClientID: "app", UserID: "u1", Scope: scopes,
		CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		f.t.Fatal(err)
	}
	c := token.AccessClaims{Subject: "u1", Audience: baseURL, ClientID: "app", Scope: scopes, Patient: patient, FamilyID: fam}
	for _, m := range mods {
		m(&c)
	}
	raw, signed, err := f.issuer.AccessToken(c)
	if err != nil {
		f.t.Fatal(err)
	}
	return raw, signed
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body is not JSON: %v: %s", err, r.body)
	}
	return m
}

// do sends a request to the gateway. auth is a full Authorization value.
func (f *fixture) do(method, path, auth string, body string, hdr ...string) response {
	f.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, f.srv.URL+"/fhir"+path, rd)
	if err != nil {
		f.t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func bearer(tok string) string { return "Bearer " + tok }

// entries returns "Type/id" of every Bundle entry.
func entries(t testing.TB, r response) []string {
	t.Helper()
	var b struct {
		ResourceType string `json:"resourceType"`
		Entry        []struct {
			Resource struct {
				ResourceType string `json:"resourceType"`
				ID           string `json:"id"`
			} `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(r.body, &b); err != nil || b.ResourceType != "Bundle" {
		t.Fatalf("not a Bundle (%d): %s", r.status, r.body)
	}
	var out []string
	for _, e := range b.Entry {
		out = append(out, e.Resource.ResourceType+"/"+e.Resource.ID)
	}
	return out
}

// subjectOf reads Observation.subject.reference from the EHR store.
func (f *fixture) subjectOf(typ, id string) string {
	raw, err := f.ehr.Store().Read(typ, id)
	if err != nil {
		return ""
	}
	var m struct {
		Subject struct{ Reference string } `json:"subject"`
		Patient struct{ Reference string } `json:"patient"`
	}
	_ = json.Unmarshal(raw, &m)
	if m.Subject.Reference != "" {
		return m.Subject.Reference
	}
	return m.Patient.Reference
}

func outcomeText(r response) string {
	var o struct {
		ResourceType string
		Issue        []struct {
			Code        string
			Diagnostics string
			Expression  []string
		}
	}
	_ = json.Unmarshal(r.body, &o)
	if o.ResourceType != "OperationOutcome" || len(o.Issue) == 0 {
		return ""
	}
	return o.Issue[0].Code + ": " + o.Issue[0].Diagnostics + " " + strings.Join(o.Issue[0].Expression, ",")
}

var _ = bytes.Equal
var _ = url.Values{}
