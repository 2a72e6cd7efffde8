package registration

import (
	"net/http"
	"testing"
)

func backendMetadata() map[string]any {
	return map[string]any{
		"client_name":                "Bulk export",
		"grant_types":                []string{"client_credentials"},
		"token_endpoint_auth_method": "private_key_jwt",
		"jwks_uri":                   "https://backend.example.com/jwks.json",
		"scope":                      "system/Patient.rs",
	}
}

func TestBackendClientsNotRegisteredByDefault(t *testing.T) {
	e := setup(t)
	e.do(t, http.MethodPost, "/register", e.initial, backendMetadata()).expectError(t, http.StatusBadRequest, "invalid_client_metadata")
	// Nor by turning an existing registration into one.
	r := e.do(t, http.MethodPost, "/register", e.initial, goodMetadata())
	if r.status != http.StatusCreated {
		t.Fatalf("register: %d %s", r.status, r.raw)
	}
	m := backendMetadata()
	m["client_id"] = r.str("client_id")
	e.do(t, http.MethodPut, "/register/"+r.str("client_id"), r.str("registration_access_token"), m).
		expectError(t, http.StatusBadRequest, "invalid_client_metadata")
}

func TestNewMetadataRoundTrips(t *testing.T) {
	e := setup(t)
	m := goodMetadata()
	m["token_endpoint_auth_method"] = "tls_client_auth"
	m["tls_client_auth_subject_dn"] = "CN=app,O=Example"
	m["dpop_bound_access_tokens"] = true
	m["require_pushed_authorization_requests"] = true
	r := e.do(t, http.MethodPost, "/register", e.initial, m)
	if r.status != http.StatusCreated {
		t.Fatalf("register: %d %s", r.status, r.raw)
	}
	if r.str("tls_client_auth_subject_dn") != "CN=app,O=Example" || r.body["dpop_bound_access_tokens"] != true ||
		r.body["require_pushed_authorization_requests"] != true || r.str("client_secret") != "" {
		t.Fatalf("response %s", r.raw)
	}
}
