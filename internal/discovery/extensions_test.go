package discovery_test

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/fhirgate/fhirgate/internal/discovery"
)

func TestExtensionsInEveryDocument(t *testing.T) {
	km := newKeys(t)
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	issuer := srv.URL
	h, err := discovery.New(discovery.Options{
		Issuer: issuer, Keys: km,
		PrivateKeyJWT: true, ClientCredentials: true, PAR: true, RequirePAR: true,
		MTLSIssuer: "https://mtls.example.org:8443", TLSClientAuth: true, DPoPAlgs: []string{"ES256", "RS256"},
		Revocation: true, Introspection: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	h.Register(mux)
	for _, path := range []string{"/.well-known/smart-configuration", "/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"} {
		t.Run(path, func(t *testing.T) {
			_, doc := get(t, srv.URL+path, nil)
			checkAbsoluteURLs(t, doc, issuer)
			has := func(key string, want ...string) {
				t.Helper()
				got := strs(t, doc, key)
				for _, w := range want {
					if !slices.Contains(got, w) {
						t.Errorf("%s = %v lacks %s", key, got, w)
					}
				}
			}
			has("token_endpoint_auth_methods_supported", "private_key_jwt", "tls_client_auth", "self_signed_tls_client_auth", "client_secret_basic", "none")
			has("token_endpoint_auth_signing_alg_values_supported", "RS384", "ES384")
			has("grant_types_supported", "client_credentials", "authorization_code")
			has("dpop_signing_alg_values_supported", "ES256", "RS256")
			for _, a := range strs(t, doc, "token_endpoint_auth_signing_alg_values_supported") {
				if a == "none" || a[:2] == "HS" {
					t.Errorf("advertises %s", a)
				}
			}
			if doc["pushed_authorization_request_endpoint"] != issuer+"/par" || doc["require_pushed_authorization_requests"] != true {
				t.Errorf("PAR metadata %v %v", doc["pushed_authorization_request_endpoint"], doc["require_pushed_authorization_requests"])
			}
			if doc["revocation_endpoint"] != issuer+"/revoke" || doc["introspection_endpoint"] != issuer+"/introspect" {
				t.Errorf("revocation/introspection %v %v", doc["revocation_endpoint"], doc["introspection_endpoint"])
			}
			if doc["tls_client_certificate_bound_access_tokens"] != true {
				t.Error("tls_client_certificate_bound_access_tokens missing")
			}
			aliases, _ := doc["mtls_endpoint_aliases"].(map[string]any)
			if aliases["token_endpoint"] != "https://mtls.example.org:8443/token" ||
				aliases["pushed_authorization_request_endpoint"] != "https://mtls.example.org:8443/par" {
				t.Errorf("mtls_endpoint_aliases %v", aliases)
			}
			if path == "/.well-known/smart-configuration" {
				has("capabilities", "client-confidential-asymmetric", "client-confidential-symmetric")
				has("scopes_supported", "system/*.rs")
			}
		})
	}
}

func TestExtensionsOffByDefault(t *testing.T) {
	srv, _ := server(t, newKeys(t), "", nil)
	for _, path := range []string{"/.well-known/smart-configuration", "/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"} {
		_, doc := get(t, srv.URL+path, nil)
		for _, k := range []string{"pushed_authorization_request_endpoint", "mtls_endpoint_aliases", "dpop_signing_alg_values_supported",
			"revocation_endpoint", "introspection_endpoint", "token_endpoint_auth_signing_alg_values_supported",
			"tls_client_certificate_bound_access_tokens"} {
			if _, ok := doc[k]; ok {
				t.Errorf("%s: %s advertised while off", path, k)
			}
		}
		if slices.Contains(strs(t, doc, "grant_types_supported"), "client_credentials") {
			t.Errorf("%s: client_credentials advertised while off", path)
		}
	}
}

func TestExtensionsValidation(t *testing.T) {
	km := newKeys(t)
	for name, o := range map[string]discovery.Options{
		"require without par": {RequirePAR: true},
		"hs assertion alg":    {PrivateKeyJWT: true, AssertionAlgs: []string{"HS256"}},
		"none assertion alg":  {PrivateKeyJWT: true, AssertionAlgs: []string{"none"}},
		"bad mtls issuer":     {MTLSIssuer: "ftp://x"},
	} {
		o.Issuer, o.Keys = "https://as.example.org", km
		if _, err := discovery.New(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestCertificateMethodsWithoutListener(t *testing.T) {
	km := newKeys(t)
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	h, err := discovery.New(discovery.Options{Issuer: srv.URL, Keys: km, SelfSignedTLSClientAuth: true, CertificateBoundTokens: true})
	if err != nil {
		t.Fatal(err)
	}
	h.Register(mux)
	_, doc := get(t, srv.URL+"/.well-known/oauth-authorization-server", nil)
	methods := strs(t, doc, "token_endpoint_auth_methods_supported")
	if !slices.Contains(methods, "self_signed_tls_client_auth") || slices.Contains(methods, "tls_client_auth") {
		t.Fatalf("methods %v", methods)
	}
	if doc["tls_client_certificate_bound_access_tokens"] != true || doc["mtls_endpoint_aliases"] != nil {
		t.Fatalf("doc %v", doc)
	}
}

// TestMTLSWithoutClientCA: an mTLS listener without a client CA offers
// self_signed_tls_client_auth but not tls_client_auth, in every document.
func TestMTLSWithoutClientCA(t *testing.T) {
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	h, err := discovery.New(discovery.Options{Issuer: srv.URL, Keys: newKeys(t), MTLSIssuer: "https://as.example.org:9443"})
	if err != nil {
		t.Fatal(err)
	}
	h.Register(mux)
	for _, path := range []string{"/.well-known/smart-configuration", "/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"} {
		_, doc := get(t, srv.URL+path, nil)
		methods := strs(t, doc, "token_endpoint_auth_methods_supported")
		if slices.Contains(methods, "tls_client_auth") || !slices.Contains(methods, "self_signed_tls_client_auth") || doc["tls_client_certificate_bound_access_tokens"] != true {
			t.Errorf("%s: %v", path, methods)
		}
	}
}
