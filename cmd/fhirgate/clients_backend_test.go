package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

func TestClientsCreateBackendAndCertificateClients(t *testing.T) {
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	set, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "ES384"}}})
	jwksPath := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(jwksPath, set, 0o600); err != nil {
		t.Fatal(err)
	}
	c := decode[clientJSON](t, mustCLI(t, "clients", "create", "--data-dir", dir, "--name", "Bulk export",
		"--auth-method", "private_key_jwt", "--jwks", jwksPath, "--grant-type", "client_credentials",
		"--scope", "system/Patient.rs system/Observation.rs", "--json"))
	if c.ClientSecret != "" || c.TokenEndpointAuthMethod != "private_key_jwt" || len(c.GrantTypes) != 1 || c.GrantTypes[0] != "client_credentials" {
		t.Fatalf("backend client %+v", c)
	}
	c = decode[clientJSON](t, mustCLI(t, "clients", "create", "--data-dir", dir, "--name", "Uri backend",
		"--auth-method", "private_key_jwt", "--jwks-uri", "https://backend.example.org/jwks.json", "--grant-type", "client_credentials",
		"--scope", "system/*.rs", "--json"))
	if c.JWKSURI != "https://backend.example.org/jwks.json" {
		t.Fatalf("jwks_uri client %+v", c)
	}
	c = decode[clientJSON](t, mustCLI(t, "clients", "create", "--data-dir", dir, "--name", "mTLS app",
		"--auth-method", "tls_client_auth", "--tls-subject-dn", "CN=app,O=Example", "--redirect-uri", "https://app.example.org/cb",
		"--scope", "openid patient/*.rs", "--dpop-bound", "--require-par", "--json"))
	if c.TLSClientAuthSubjectDN != "CN=app,O=Example" || !c.DPoPBoundAccessTokens || !c.RequirePAR || c.ClientSecret != "" {
		t.Fatalf("tls client %+v", c)
	}
	for _, tc := range []struct {
		args   []string
		expect string
	}{
		{[]string{"--auth-method", "private_key_jwt", "--grant-type", "client_credentials", "--scope", "system/*.rs"}, "jwks"},
		{[]string{"--public", "--grant-type", "client_credentials", "--scope", "system/*.rs"}, "confidential"},
		{[]string{"--auth-method", "private_key_jwt", "--jwks", jwksPath, "--grant-type", "client_credentials", "--scope", "patient/*.rs"}, "system/"},
		{[]string{"--auth-method", "tls_client_auth", "--redirect-uri", "https://a.example.org/cb", "--scope", "openid"}, "tls_client_auth_subject_dn"},
		{[]string{"--auth-method", "private_key_jwt", "--jwks-uri", "http://backend.example.org/jwks", "--grant-type", "client_credentials", "--scope", "system/*.rs"}, "jwks_uri"},
	} {
		r := cli(t, nil, "", append([]string{"clients", "create", "--data-dir", dir}, tc.args...)...)
		if r.code != 1 || !strings.Contains(r.stderr, tc.expect) {
			t.Errorf("%v: exit %d stderr %q, want %q", tc.args, r.code, r.stderr, tc.expect)
		}
	}
}
