package app

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/fhirgate/fhirgate/internal/clientreg"
	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/demoehr"
	"github.com/fhirgate/fhirgate/internal/storage"
)

type offsetClock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *offsetClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return time.Now().Add(c.off) }
func (c *offsetClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.off += d
}

// TestGatewayApartFromAuthorizationServer: one App is the authorization
// server only, another the gateway only (gateway.issuer), sharing the store
// as nodes share PostgreSQL. The gateway verifies tokens with the issuer's
// JWKS, fetched once, and picks up a key rotation through the unknown kid.
func TestGatewayApartFromAuthorizationServer(t *testing.T) {
	ctx := context.Background()
	const fhirBase = "https://fhir.example.org/fhir" // the public URL both agree on
	ehr, err := demoehr.New(demoehr.Options{Username: "gw", Password: "ehr-secret"})
	if err != nil {
		t.Fatal(err)
	}
	ehrSrv := httptest.NewServer(ehr)
	defer ehrSrv.Close()
	as := startServer(t, map[string]string{"fhir_base": fhirBase})
	var jwksHits atomic.Int32
	// Count JWKS fetches by wrapping the AS in a proxy the gateway talks to.
	asProxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/jwks" {
			jwksHits.Add(1)
		}
		as.app.Handler().ServeHTTP(w, r)
	}))
	defer asProxy.Close()

	clk := &offsetClock{}
	cfg, err := config.Load(config.LoadOptions{LookupEnv: func(string) (string, bool) { return "", false }, Overrides: map[string]string{
		"addr": "127.0.0.1:0", "data_dir": t.TempDir(), "fhir_base": fhirBase,
		"gateway.upstream": ehrSrv.URL, "gateway.upstream_auth": "basic:gw:ehr-secret",
		"gateway.issuer": as.app.Issuer(), "gateway.jwks_uri": asProxy.URL + "/jwks",
	}})
	if err != nil {
		t.Fatal(err)
	}
	gwApp, err := New(ctx, cfg, Options{Logger: slog.New(slog.DiscardHandler), Store: as.app.Store(), Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	gwApp.Start()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = gwApp.Shutdown(sctx)
	}()
	gwBase := gwApp.URL() + "/fhir"

	st := as.app.Store()
	now := time.Now()
	if _, err := CreateUser(ctx, st, NewUser{Username: "amy", Password: "amy-password", Role: storage.RolePatient, FHIRUser: "Patient/pt-001"}, fastPW, now); err != nil {
		t.Fatal(err)
	}
	pub, _, err := CreateClient(ctx, st, clientreg.Metadata{ClientName: "Public app", RedirectURIs: []string{redirectURI},
		Scope: "openid fhirUser launch/patient patient/*.rs", TokenEndpointAuthMethod: "none"}, now)
	if err != nil {
		t.Fatal(err)
	}
	provider, err := oidc.NewProvider(ctx, as.app.Issuer())
	if err != nil {
		t.Fatal(err)
	}
	fx := &fixture{srv: as, provider: provider, public: pub}
	oc := fx.oauthConfig(pub, "", "launch/patient", "openid", "fhirUser", "patient/*.rs")
	tok := fx.launch(t, oc, "amy", "amy-password", "").tok

	get := func(tok *oauth2.Token, path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, gwBase+path, nil)
		if tok != nil {
			req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(tok, "/Patient/pt-001"); code != http.StatusOK || !strings.Contains(body, `"pt-001"`) {
		t.Fatalf("own patient through the gateway-only node: %d %s", code, body)
	}
	if code, _ := get(tok, "/Patient/pt-002"); code != http.StatusNotFound {
		t.Fatalf("another patient: %d", code)
	}
	if code, _ := get(tok, "/Observation?category=vital-signs"); code != http.StatusOK {
		t.Fatalf("search: %d", code)
	}
	bad := *tok
	bad.AccessToken = tok.AccessToken[:len(tok.AccessToken)-4] + "AAAA"
	if code, _ := get(&bad, "/Patient/pt-001"); code != http.StatusUnauthorized {
		t.Fatalf("forged signature: %d", code)
	}
	// Metadata and the SMART configuration name the remote issuer.
	code, body := get(nil, "/.well-known/smart-configuration")
	var sc struct {
		Issuer string `json:"issuer"`
	}
	_ = json.Unmarshal([]byte(body), &sc)
	if code != http.StatusOK || sc.Issuer != as.app.Issuer() {
		t.Fatalf("smart-configuration %d %s", code, body)
	}
	if code, body := get(nil, "/metadata"); code != http.StatusOK || !strings.Contains(body, as.app.Issuer()+"/token") {
		t.Fatalf("metadata %d %s", code, body)
	}
	// No authorization-server endpoint on the gateway node.
	for _, p := range []string{"/authorize", "/token", "/.well-known/openid-configuration", "/jwks"} {
		resp, err := http.Get(gwApp.URL() + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s on the gateway node: %d", p, resp.StatusCode)
		}
	}
	hits := func() int { return int(jwksHits.Load()) }
	if hits() != 1 {
		t.Fatalf("JWKS fetched %d times, want 1", hits())
	}

	// The authorization server rotates its keys; a token signed by the new
	// key makes the gateway fetch the JWKS again (after the minimum interval).
	if _, err := as.app.Keys().Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	clk.add(31 * time.Second)
	tok2 := fx.launch(t, oc, "amy", "amy-password", "").tok
	if code, body := get(tok2, "/Patient/pt-001"); code != http.StatusOK {
		t.Fatalf("token of the rotated key: %d %s", code, body)
	}
	if code, _ := get(tok, "/Patient/pt-001"); code != http.StatusOK {
		t.Fatalf("token of the previous key: %d", code)
	}
	if hits() != 2 {
		t.Fatalf("JWKS fetched %d times, want 2", hits())
	}
}
