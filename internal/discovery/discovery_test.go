package discovery_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"

	"github.com/fhirgate/fhirgate/internal/discovery"
	"github.com/fhirgate/fhirgate/internal/keys"
	"github.com/fhirgate/fhirgate/internal/session"
	"github.com/fhirgate/fhirgate/internal/storage/sqlite"
	"github.com/fhirgate/fhirgate/internal/token"
)

func newKeys(t *testing.T) *keys.Manager {
	t.Helper()
	ctx := context.Background()
	store, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "fhirgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	km, err := keys.New(ctx, keys.Options{Store: store, KEK: make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	return km
}

// server starts an httptest server whose URL (plus path) is the issuer.
func server(t *testing.T, km *keys.Manager, issuerPath string, bases func(issuer string) []string) (*httptest.Server, string) {
	t.Helper()
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	issuer := srv.URL + issuerPath
	var b []string
	if bases != nil {
		b = bases(issuer)
	}
	h, err := discovery.New(discovery.Options{Issuer: issuer, FHIRBases: b, Keys: km})
	if err != nil {
		t.Fatal(err)
	}
	h.Register(mux)
	return srv, issuer
}

func get(t *testing.T, u string, hdr map[string]string) (*http.Response, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var doc map[string]any
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, &doc); err != nil {
			t.Fatalf("GET %s: not JSON: %v: %s", u, err, body)
		}
	}
	return resp, doc
}

func strs(t *testing.T, doc map[string]any, key string) []string {
	t.Helper()
	raw, ok := doc[key].([]any)
	if !ok || len(raw) == 0 {
		t.Fatalf("%s: not a non-empty array: %v", key, doc[key])
	}
	var out []string
	for _, v := range raw {
		s, ok := v.(string)
		if !ok {
			t.Fatalf("%s: element %v is not a string", key, v)
		}
		out = append(out, s)
	}
	return out
}

func checkAbsoluteURLs(t *testing.T, doc map[string]any, issuer string) {
	t.Helper()
	for k, v := range doc {
		if !strings.HasSuffix(k, "_endpoint") && !strings.HasSuffix(k, "_uri") {
			continue
		}
		s, _ := v.(string)
		u, err := url.Parse(s)
		if err != nil || !u.IsAbs() || u.Host == "" || !strings.HasPrefix(s, issuer+"/") {
			t.Errorf("%s = %q is not an absolute URL under the issuer", k, s)
		}
	}
}

func TestSMARTConfiguration(t *testing.T) {
	srv, issuer := server(t, newKeys(t), "", nil)
	resp, doc := get(t, srv.URL+"/.well-known/smart-configuration", map[string]string{"Accept": "application/json"})
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for k, want := range map[string]string{
		"issuer":                 issuer,
		"jwks_uri":               issuer + "/jwks",
		"authorization_endpoint": issuer + "/authorize",
		"token_endpoint":         issuer + "/token",
		"registration_endpoint":  issuer + "/register",
		"userinfo_endpoint":      issuer + "/userinfo",
	} {
		if doc[k] != want {
			t.Errorf("%s = %v, want %s", k, doc[k], want)
		}
	}
	checkAbsoluteURLs(t, doc, issuer)
	eq := func(key string, want ...string) {
		t.Helper()
		if got := strs(t, doc, key); !slices.Equal(got, want) {
			t.Errorf("%s = %v, want %v", key, got, want)
		}
	}
	eq("grant_types_supported", "authorization_code", "refresh_token")
	eq("token_endpoint_auth_methods_supported", "none", "client_secret_basic", "client_secret_post")
	eq("response_types_supported", "code")
	eq("code_challenge_methods_supported", "S256")
	eq("capabilities",
		"launch-ehr", "launch-standalone", "authorize-post", "client-public", "client-confidential-symmetric",
		"sso-openid-connect", "context-banner", "context-style", "context-ehr-patient", "context-ehr-encounter",
		"context-standalone-patient", "permission-offline", "permission-patient", "permission-user",
		"permission-v1", "permission-v2")
	caps := strs(t, doc, "capabilities")
	for _, not := range []string{"client-confidential-asymmetric", "permission-online", "context-standalone-encounter", "smart-app-state"} {
		if slices.Contains(caps, not) {
			t.Errorf("capability %s advertised but not delivered", not)
		}
	}
	scopes := strs(t, doc, "scopes_supported")
	for _, s := range []string{"openid", "fhirUser", "launch", "launch/patient", "offline_access", "patient/*.rs"} {
		if !slices.Contains(scopes, s) {
			t.Errorf("scopes_supported lacks %s", s)
		}
	}
	for _, s := range scopes {
		if s == "online_access" || strings.HasPrefix(s, "system/") {
			t.Errorf("scopes_supported lists unsupported %s", s)
		}
	}
	for _, absent := range []string{"introspection_endpoint", "revocation_endpoint", "smart_style_url", "management_endpoint"} {
		if _, ok := doc[absent]; ok {
			t.Errorf("%s advertised before it exists", absent)
		}
	}
	if doc["authorization_response_iss_parameter_supported"] != true {
		t.Error("iss parameter support not advertised")
	}
}

func TestJSONWhateverTheAccept(t *testing.T) {
	srv, _ := server(t, newKeys(t), "", nil)
	paths := []string{
		"/.well-known/smart-configuration", "/.well-known/openid-configuration",
		"/.well-known/oauth-authorization-server", "/jwks", "/smart-style.json",
	}
	for _, p := range paths {
		for _, accept := range []string{"", "*/*", "text/html", "application/fhir+json", "application/xml", "application/json"} {
			resp, doc := get(t, srv.URL+p, map[string]string{"Accept": accept})
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || doc == nil {
				t.Errorf("%s Accept %q: %d %q", p, accept, resp.StatusCode, resp.Header.Get("Content-Type"))
			}
		}
	}
}

func TestSMARTConfigurationUnderFHIRBase(t *testing.T) {
	srv, issuer := server(t, newKeys(t), "", func(iss string) []string {
		return []string{iss + "/fhir/r4/", iss + "/fhir", "https://other.example/fhir"}
	})
	_, root := get(t, srv.URL+"/.well-known/smart-configuration", nil)
	for _, p := range []string{"/fhir/r4/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration"} {
		resp, doc := get(t, srv.URL+p, map[string]string{"Accept": "application/fhir+json"})
		if resp.StatusCode != 200 || doc["issuer"] != issuer || doc["token_endpoint"] != root["token_endpoint"] {
			t.Errorf("%s: %d %v", p, resp.StatusCode, doc)
		}
	}
	// A base on another origin is not served here; nor are made-up paths.
	for _, p := range []string{"/other/.well-known/smart-configuration", "/fhir/r5/.well-known/smart-configuration"} {
		if resp, _ := get(t, srv.URL+p, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", p, resp.StatusCode)
		}
	}
}

func TestOpenIDConfigurationWithGoOIDC(t *testing.T) {
	km := newKeys(t)
	srv, issuer := server(t, km, "", nil)
	_, doc := get(t, srv.URL+"/.well-known/openid-configuration", nil)
	checkAbsoluteURLs(t, doc, issuer)
	for _, k := range []string{"issuer", "authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri", "registration_endpoint"} {
		if s, _ := doc[k].(string); s == "" {
			t.Errorf("%s missing", k)
		}
	}
	for k, want := range map[string][]string{
		"response_types_supported":              {"code"},
		"subject_types_supported":               {"public"},
		"id_token_signing_alg_values_supported": {"RS256", "ES256"},
		"code_challenge_methods_supported":      {"S256"},
		"grant_types_supported":                 {"authorization_code", "refresh_token"},
	} {
		if got := strs(t, doc, k); !slices.Equal(got, want) {
			t.Errorf("%s = %v, want %v", k, got, want)
		}
	}
	claims := strs(t, doc, "claims_supported")
	for _, c := range []string{"sub", "fhirUser", "nonce", "at_hash", "amr", "acr"} {
		if !slices.Contains(claims, c) {
			t.Errorf("claims_supported lacks %s", c)
		}
	}
	if got := strs(t, doc, "acr_values_supported"); !slices.Equal(got, []string{session.ACRPassword, session.ACRMultiFactor}) {
		t.Errorf("acr_values_supported = %v", got)
	}
	for k, want := range map[string]bool{
		"request_parameter_supported":                    false,
		"request_uri_parameter_supported":                false,
		"claims_parameter_supported":                     false,
		"authorization_response_iss_parameter_supported": true,
	} {
		if v, ok := doc[k].(bool); !ok || v != want {
			t.Errorf("%s = %v, want %v", k, doc[k], want)
		}
	}

	// A real OIDC client discovers the provider and verifies an id_token
	// against the published JWKS.
	ctx := context.Background()
	p, err := oidc.NewProvider(ctx, issuer)
	if err != nil {
		t.Fatalf("go-oidc discovery: %v", err)
	}
	if p.Endpoint().TokenURL != issuer+"/token" || p.Endpoint().AuthURL != issuer+"/authorize" || p.UserInfoEndpoint() != issuer+"/userinfo" {
		t.Errorf("endpoints %+v", p.Endpoint())
	}
	iss, err := token.NewIssuer(token.Options{Signer: km, Verifier: km, Issuer: issuer})
	if err != nil {
		t.Fatal(err)
	}
	for _, alg := range []string{"RS256", "ES256"} {
		raw, err := iss.IDToken(token.IDTokenInput{Subject: "u1", ClientID: "app", Nonce: "n", Alg: alg})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Verifier(&oidc.Config{ClientID: "app"}).Verify(ctx, raw); err != nil {
			t.Errorf("%s id_token via discovered JWKS: %v", alg, err)
		}
	}
}

func TestOAuthServerMetadata(t *testing.T) {
	// Issuer with a path: RFC 8414 §3 inserts the well-known segment before
	// the path; OIDC appends it.
	srv, issuer := server(t, newKeys(t), "/auth", nil)
	for _, p := range []string{"/.well-known/oauth-authorization-server/auth", "/auth/.well-known/oauth-authorization-server"} {
		resp, doc := get(t, srv.URL+p, nil)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d", p, resp.StatusCode)
		}
		if doc["issuer"] != issuer || doc["token_endpoint"] != issuer+"/token" || doc["authorization_response_iss_parameter_supported"] != true {
			t.Errorf("%s: %v", p, doc)
		}
		checkAbsoluteURLs(t, doc, issuer)
		if got := strs(t, doc, "code_challenge_methods_supported"); !slices.Equal(got, []string{"S256"}) {
			t.Errorf("pkce %v", got)
		}
		if got := strs(t, doc, "response_types_supported"); !slices.Equal(got, []string{"code"}) {
			t.Errorf("response types %v", got)
		}
	}
	if resp, doc := get(t, srv.URL+"/auth/.well-known/openid-configuration", nil); resp.StatusCode != 200 || doc["issuer"] != issuer {
		t.Errorf("OIDC config under issuer path: %d", resp.StatusCode)
	}
	if resp, _ := get(t, srv.URL+"/auth/.well-known/smart-configuration", nil); resp.StatusCode != 200 {
		t.Errorf("SMART config under issuer path: %d", resp.StatusCode)
	}
}

func TestJWKS(t *testing.T) {
	km := newKeys(t)
	srv, _ := server(t, km, "", nil)
	resp, err := http.Get(srv.URL + "/jwks")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("Cache-Control") != "public, max-age=300" {
		t.Errorf("headers %v", resp.Header)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		t.Fatal(err)
	}
	kty := map[string]bool{}
	for _, k := range set.Keys {
		if !k.IsPublic() || k.KeyID == "" || k.Use != "sig" {
			t.Errorf("bad key %+v", k)
		}
		kty[k.Algorithm] = true
	}
	if !kty["RS256"] || !kty["ES256"] || strings.Contains(string(body), `"d":`) {
		t.Errorf("JWKS %s", body)
	}
	// A rotation shows without restarting the handler.
	if _, err := km.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	resp2, _ := http.Get(srv.URL + "/jwks")
	var set2 jose.JSONWebKeySet
	_ = json.NewDecoder(resp2.Body).Decode(&set2)
	resp2.Body.Close()
	if len(set2.Keys) != 4 {
		t.Errorf("after rotation %d keys, want 4", len(set2.Keys))
	}
}

func TestSmartStyle(t *testing.T) {
	srv, _ := server(t, newKeys(t), "", nil)
	resp, doc := get(t, srv.URL+"/smart-style.json", nil)
	if resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode)
	}
	for _, k := range []string{"color_background", "color_error", "color_highlight", "color_modal_backdrop", "color_success",
		"color_text", "dim_border_radius", "dim_font_size", "dim_spacing_size", "font_family_body", "font_family_heading"} {
		if s, _ := doc[k].(string); s == "" {
			t.Errorf("%s missing", k)
		}
	}
}

func TestCORSAndMethods(t *testing.T) {
	srv, _ := server(t, newKeys(t), "", nil)
	for _, p := range []string{"/.well-known/smart-configuration", "/jwks", "/smart-style.json", "/.well-known/openid-configuration"} {
		resp, _ := get(t, srv.URL+p, map[string]string{"Origin": "https://app.example"})
		if resp.Header.Get("Access-Control-Allow-Origin") != "*" || resp.Header.Get("Access-Control-Allow-Credentials") != "" {
			t.Errorf("%s CORS headers %v", p, resp.Header)
		}
		req, _ := http.NewRequest(http.MethodOptions, srv.URL+p, nil)
		req.Header.Set("Origin", "https://app.example")
		req.Header.Set("Access-Control-Request-Method", "GET")
		req.Header.Set("Access-Control-Request-Headers", "Accept, X-Requested-With")
		pre, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		pre.Body.Close()
		if pre.StatusCode != http.StatusNoContent || pre.Header.Get("Access-Control-Allow-Origin") != "*" ||
			!strings.Contains(pre.Header.Get("Access-Control-Allow-Methods"), "GET") ||
			pre.Header.Get("Access-Control-Allow-Headers") != "accept, x-requested-with" ||
			pre.Header.Get("Access-Control-Allow-Credentials") != "" {
			t.Errorf("%s preflight: %d %v", p, pre.StatusCode, pre.Header)
		}
		// Junk in the requested header list is not echoed.
		req.Header.Set("Access-Control-Request-Headers", "a b, <script>")
		pre, _ = http.DefaultClient.Do(req)
		pre.Body.Close()
		if pre.Header.Get("Access-Control-Allow-Headers") != "" {
			t.Errorf("echoed junk header names: %q", pre.Header.Get("Access-Control-Allow-Headers"))
		}
		// Writes are not allowed.
		post, _ := http.Post(srv.URL+p, "application/json", strings.NewReader("{}"))
		post.Body.Close()
		if post.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("POST %s: %d", p, post.StatusCode)
		}
		// HEAD works.
		head, _ := http.Head(srv.URL + p)
		head.Body.Close()
		if head.StatusCode != 200 || head.Header.Get("Content-Type") != "application/json" {
			t.Errorf("HEAD %s: %d", p, head.StatusCode)
		}
	}
}

func TestOptionsValidation(t *testing.T) {
	km := newKeys(t)
	good := discovery.Options{Issuer: "https://auth.example.org", Keys: km, FHIRBases: []string{"https://auth.example.org/fhir"}}
	if _, err := discovery.New(good); err != nil {
		t.Fatal(err)
	}
	bad := map[string]func(*discovery.Options){
		"no keys":               func(o *discovery.Options) { o.Keys = nil },
		"relative issuer":       func(o *discovery.Options) { o.Issuer = "/auth" },
		"issuer without scheme": func(o *discovery.Options) { o.Issuer = "auth.example.org" },
		"ftp issuer":            func(o *discovery.Options) { o.Issuer = "ftp://auth.example.org" },
		"issuer with query":     func(o *discovery.Options) { o.Issuer = "https://auth.example.org?a=b" },
		"issuer with fragment":  func(o *discovery.Options) { o.Issuer = "https://auth.example.org#x" },
		"issuer with userinfo":  func(o *discovery.Options) { o.Issuer = "https://u:p@auth.example.org" },
		"bad FHIR base":         func(o *discovery.Options) { o.FHIRBases = []string{"fhir"} },
		"pattern in base":       func(o *discovery.Options) { o.FHIRBases = []string{"https://auth.example.org/{x}"} },
		"dot-dot in base":       func(o *discovery.Options) { o.FHIRBases = []string{"https://auth.example.org/a/../b"} },
		"empty capabilities":    func(o *discovery.Options) { o.Capabilities = []string{} },
		"blank capability":      func(o *discovery.Options) { o.Capabilities = []string{"launch-ehr", "a b"} },
		"duplicate scope":       func(o *discovery.Options) { o.ScopesSupported = []string{"openid", "openid"} },
	}
	for name, mut := range bad {
		o := good
		mut(&o)
		if _, err := discovery.New(o); !errors.Is(err, discovery.ErrConfig) {
			t.Errorf("%s: %v, want ErrConfig", name, err)
		}
	}
}

func TestEndpointsAndPaths(t *testing.T) {
	h, err := discovery.New(discovery.Options{Issuer: "https://auth.example.org/", Keys: newKeys(t), Now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	ep := h.Endpoints()
	if ep.Issuer != "https://auth.example.org/" || ep.Token != "https://auth.example.org/token" || ep.Style != "https://auth.example.org/smart-style.json" {
		t.Errorf("endpoints %+v", ep)
	}
	if h.SMARTConfiguration().Issuer != ep.Issuer {
		t.Error("issuer not kept exactly as configured")
	}
	if len(h.Paths()) != 5 {
		t.Errorf("paths %v", h.Paths())
	}
}
