package app

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"

	"github.com/fhirgate/fhirgate/internal/clientauth"
	"github.com/fhirgate/fhirgate/internal/clientreg"
	"github.com/fhirgate/fhirgate/internal/demoehr"
	"github.com/fhirgate/fhirgate/internal/devcerts"
	"github.com/fhirgate/fhirgate/internal/mtls"
	"github.com/fhirgate/fhirgate/internal/storage"
)

// testPKI issues client certificates for the mTLS tests.
type testPKI struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// issue makes a certificate for subject signed by ca (self-signed when ca
// is nil); isCA makes it a CA.
func issue(t *testing.T, subject pkix.Name, ca *testPKI, isCA bool) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: subject, BasicConstraintsValid: true, IsCA: isCA,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	if isCA {
		tmpl.KeyUsage = x509.KeyUsageCertSign
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	parent, signer := tmpl, key
	if ca != nil {
		parent, signer = ca.cert, ca.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testPKI{cert: c, key: key}
}

func (p *testPKI) tlsCert() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{p.cert.Raw}, PrivateKey: p.key, Leaf: p.cert}
}

// mtlsServer is an App with TLS, an mTLS listener, a client CA and the
// demo EHR behind the gateway.
type mtlsServer struct {
	*testServer
	roots  *x509.CertPool // trusts the server certificate
	ca     *testPKI       // the client CA (client_auth.ca_file)
	mtlsAt string         // the mTLS listener's URL
}

func startMTLSServer(t *testing.T, extra map[string]string) *mtlsServer {
	t.Helper()
	dir := t.TempDir()
	files, err := devcerts.Generate(dir, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(files.CA)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	ca := issue(t, pkix.Name{CommonName: "fhirgate test client CA"}, nil, true)
	caFile := filepath.Join(dir, "client-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	ehr, err := demoehr.New(demoehr.Options{Username: "gw", Password: "ehr-secret"})
	if err != nil {
		t.Fatal(err)
	}
	ehrSrv := httptest.NewServer(ehr)
	t.Cleanup(ehrSrv.Close)
	ov := map[string]string{"tls.cert_file": files.Cert, "tls.key_file": files.Key, "mtls.addr": "127.0.0.1:0",
		"client_auth.ca_file": caFile, "gateway.upstream": ehrSrv.URL, "gateway.upstream_auth": "basic:gw:ehr-secret"}
	for k, v := range extra {
		ov[k] = v
	}
	ts := startServer(t, ov)
	if ts.app.MTLSURL() == "" {
		t.Fatal("no mTLS listener")
	}
	return &mtlsServer{testServer: ts, roots: roots, ca: ca, mtlsAt: ts.app.MTLSURL()}
}

// client returns an HTTPS client presenting cert (none when nil).
func (s *mtlsServer) client(cert *testPKI) *http.Client {
	cfg := &tls.Config{RootCAs: s.roots}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{cert.tlsCert()}
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}

// post sends a form and decodes the JSON answer.
func (s *mtlsServer) post(t *testing.T, cert *testPKI, u string, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := s.client(cert).PostForm(u, form)
	if err != nil {
		t.Fatalf("POST %s: %v", u, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var body map[string]any
	_ = json.Unmarshal(raw, &body)
	return resp.StatusCode, body
}

// get calls u with a Bearer token.
func (s *mtlsServer) get(t *testing.T, cert *testPKI, u, token string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := s.client(cert).Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestMTLSListenerClientAuth: tls_client_auth (PKI: chain to the client CA
// and the registered subject DN) and self_signed_tls_client_auth (the
// registered key) at the mTLS alias of /token; the tokens are bound to the
// certificate (cnf x5t#S256), which the gateway then demands.
func TestMTLSListenerClientAuth(t *testing.T) {
	s := startMTLSServer(t, nil)
	ctx := context.Background()
	now := time.Now()
	subject := pkix.Name{CommonName: "backend-1", Organization: []string{"Example Labs"}}
	good := issue(t, subject, s.ca, false)
	wrongDN := issue(t, pkix.Name{CommonName: "backend-2", Organization: []string{"Example Labs"}}, s.ca, false)
	otherCA := issue(t, pkix.Name{CommonName: "rogue CA"}, nil, true)
	untrusted := issue(t, subject, otherCA, false) // right DN, wrong CA
	pkiClient, _, err := CreateClient(ctx, s.app.Store(), clientreg.Metadata{ClientName: "pki backend", Scope: "system/Patient.rs",
		TokenEndpointAuthMethod: "tls_client_auth", TLSClientAuthSubjectDN: "CN=backend-1,O=Example Labs",
		GrantTypes: []string{"client_credentials"}}, now)
	if err != nil {
		t.Fatal(err)
	}
	self := issue(t, pkix.Name{CommonName: "self-signed backend"}, nil, false)
	stranger := issue(t, pkix.Name{CommonName: "self-signed backend"}, nil, false) // same name, other key
	set, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &self.key.PublicKey, KeyID: "s1", Use: "sig"}}})
	selfClient, _, err := CreateClient(ctx, s.app.Store(), clientreg.Metadata{ClientName: "self-signed backend", Scope: "system/Patient.rs",
		TokenEndpointAuthMethod: "self_signed_tls_client_auth", JWKS: set, GrantTypes: []string{"client_credentials"}}, now)
	if err != nil {
		t.Fatal(err)
	}
	tokenAt := s.mtlsAt + "/token"
	form := func(id string) url.Values {
		return url.Values{"grant_type": {"client_credentials"}, "scope": {"system/Patient.rs"}, "client_id": {id}}
	}
	tokens := map[string]string{}
	for _, c := range []struct {
		name   string
		client string
		cert   *testPKI
		url    string
		want   int
	}{
		{"tls_client_auth, right DN and CA", pkiClient.ID, good, tokenAt, 200},
		{"tls_client_auth, wrong subject DN", pkiClient.ID, wrongDN, tokenAt, 401},
		{"tls_client_auth, untrusted CA", pkiClient.ID, untrusted, tokenAt, 401},
		{"tls_client_auth, self-signed certificate", pkiClient.ID, self, tokenAt, 401},
		{"tls_client_auth, no certificate", pkiClient.ID, nil, tokenAt, 401},
		{"tls_client_auth on the main listener (no certificate requested)", pkiClient.ID, good, s.app.Issuer() + "/token", 401},
		{"self_signed, registered key", selfClient.ID, self, tokenAt, 200},
		{"self_signed, another key", selfClient.ID, stranger, tokenAt, 401},
		{"self_signed, CA-issued certificate", selfClient.ID, good, tokenAt, 401},
		{"self_signed, no certificate", selfClient.ID, nil, tokenAt, 401},
	} {
		status, body := s.post(t, c.cert, c.url, form(c.client))
		if status != c.want {
			t.Errorf("%s: %d %v, want %d", c.name, status, body, c.want)
			continue
		}
		if status != 200 {
			if body["error"] != "invalid_client" {
				t.Errorf("%s: error %v", c.name, body["error"])
			}
			continue
		}
		at, _ := body["access_token"].(string)
		claims, err := s.app.tokens.ParseAccessToken(at, s.app.FHIRBase())
		if err != nil || claims.Cnf[mtls.CnfKey] != mtls.Thumbprint(c.cert.cert) || body["token_type"] != "Bearer" {
			t.Fatalf("%s: token not bound to the certificate: %+v %v %v", c.name, claims, err, body)
		}
		tokens[c.client] = at
	}

	// The gateway, on the mTLS listener's FHIR base, wants the same certificate.
	fhirAt := s.mtlsAt + "/fhir/Patient/pt-001"
	for _, c := range []struct {
		name string
		tok  string
		cert *testPKI
		url  string
		want int
	}{
		{"PKI token, same certificate", tokens[pkiClient.ID], good, fhirAt, 200},
		{"PKI token, no certificate", tokens[pkiClient.ID], nil, fhirAt, 401},
		{"PKI token, another certificate of the same CA", tokens[pkiClient.ID], wrongDN, fhirAt, 401},
		{"PKI token on the main listener", tokens[pkiClient.ID], nil, s.app.FHIRBase() + "/Patient/pt-001", 401},
		{"self-signed token, same certificate", tokens[selfClient.ID], self, fhirAt, 200},
		{"self-signed token, another certificate", tokens[selfClient.ID], stranger, fhirAt, 401},
	} {
		if got := s.get(t, c.cert, c.url, c.tok); got != c.want {
			t.Errorf("gateway, %s: %d, want %d", c.name, got, c.want)
		}
	}

	// Introspection and revocation at their aliases, authenticated by certificate.
	status, body := s.post(t, good, s.mtlsAt+"/introspect", url.Values{"client_id": {pkiClient.ID}, "token": {tokens[selfClient.ID]}})
	cnf, _ := body["cnf"].(map[string]any)
	if status != 200 || body["active"] != true || cnf[mtls.CnfKey] != mtls.Thumbprint(self.cert) {
		t.Fatalf("introspect at the alias: %d %v", status, body)
	}
	if status, body = s.post(t, wrongDN, s.mtlsAt+"/introspect", url.Values{"client_id": {pkiClient.ID}, "token": {tokens[selfClient.ID]}}); status != 401 {
		t.Fatalf("introspect with a wrong certificate: %d %v", status, body)
	}
	if status, body = s.post(t, self, s.mtlsAt+"/revoke", url.Values{"client_id": {selfClient.ID}, "token": {tokens[selfClient.ID]}}); status != 200 {
		t.Fatalf("revoke at the alias: %d %v", status, body)
	}
	if status, body = s.post(t, good, s.mtlsAt+"/introspect", url.Values{"client_id": {pkiClient.ID}, "token": {tokens[selfClient.ID]}}); status != 200 || body["active"] != false {
		t.Fatalf("revoked token: %d %v", status, body)
	}

	// Pages and metadata are not served on the mTLS listener.
	for _, p := range []string{"/authorize", "/.well-known/openid-configuration", "/jwks"} {
		if got := s.get(t, nil, s.mtlsAt+p, ""); got != http.StatusNotFound {
			t.Errorf("%s on the mTLS listener: %d", p, got)
		}
	}
}

// TestDPoPAtMTLSAliases: a DPoP client of the mTLS listener (no client
// certificate) names the listener's URLs as htu, the URLs it called (RFC
// 8705 §5 aliases): its token exchange, /userinfo and gateway reads work
// there; a proof naming a URL of neither listener is refused.
func TestDPoPAtMTLSAliases(t *testing.T) {
	s := startMTLSServer(t, nil)
	ctx := context.Background()
	now := time.Now()
	if _, err := CreateUser(ctx, s.app.Store(), NewUser{Username: "amy", Password: "amy-password", Role: storage.RolePatient, FHIRUser: "Patient/pt-001"}, fastPW, now); err != nil {
		t.Fatal(err)
	}
	pub, _, err := CreateClient(ctx, s.app.Store(), clientreg.Metadata{ClientName: "DPoP app", RedirectURIs: []string{redirectURI},
		Scope: "openid fhirUser launch/patient patient/*.rs", TokenEndpointAuthMethod: "none"}, now)
	if err != nil {
		t.Fatal(err)
	}
	oc := &oauth2.Config{ClientID: pub.ID, RedirectURL: redirectURI,
		Scopes:   []string{"openid", "fhirUser", "launch/patient", "patient/*.rs"},
		Endpoint: oauth2.Endpoint{AuthURL: s.app.Issuer() + "/authorize", TokenURL: s.mtlsAt + "/token", AuthStyle: oauth2.AuthStyleInParams}}
	verifier := oauth2.GenerateVerifier()
	b := newBrowser(t, s.app.URL(), redirectURI)
	b.client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.roots}}
	fl := runBrowserFlow(t, b, oc.AuthCodeURL("state-1234567890", oauth2.S256ChallengeOption(verifier),
		oauth2.SetAuthURLParam("aud", s.app.FHIRBase())), "amy", "amy-password", "")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	dpopClient := &http.Client{Transport: &dpopTransport{key: key, next: s.client(nil).Transport}}
	tok, err := oc.Exchange(context.WithValue(ctx, oauth2.HTTPClient, dpopClient), fl.code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("DPoP exchange at the mTLS alias: %v", err)
	}
	if tok.TokenType != "DPoP" {
		t.Fatalf("token_type %q", tok.TokenType)
	}
	elsewhere := &http.Client{Transport: &dpopTransport{key: key, next: s.client(nil).Transport,
		htu: "https://127.0.0.1:1/fhir/Patient/pt-001"}}
	for _, u := range []string{s.mtlsAt + "/userinfo", s.mtlsAt + "/fhir/Patient/pt-001"} {
		for _, c := range []struct {
			name   string
			client *http.Client
			want   int
		}{{"proof for this URL", dpopClient, 200}, {"proof for another URL", elsewhere, 401}} {
			req, _ := http.NewRequest(http.MethodGet, u, nil)
			req.Header.Set("Authorization", "Bearer "+tok.AccessToken) // the transport makes it DPoP
			resp, err := c.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.want {
				t.Errorf("%s, %s: %d, want %d", u, c.name, resp.StatusCode, c.want)
			}
		}
	}
}

// TestMTLSBoundUserToken: a public app exchanges its code at the mTLS alias
// of /token with a certificate; the access token is bound to it at
// /userinfo and the gateway, and its refresh token needs the same
// certificate.
func TestMTLSBoundUserToken(t *testing.T) {
	s := startMTLSServer(t, nil)
	ctx := context.Background()
	now := time.Now()
	if _, err := CreateUser(ctx, s.app.Store(), NewUser{Username: "amy", Password: "amy-password", Role: storage.RolePatient, FHIRUser: "Patient/pt-001"}, fastPW, now); err != nil {
		t.Fatal(err)
	}
	pub, _, err := CreateClient(ctx, s.app.Store(), clientreg.Metadata{ClientName: "Certificate app", RedirectURIs: []string{redirectURI},
		Scope: "openid fhirUser launch/patient offline_access patient/*.rs", TokenEndpointAuthMethod: "none"}, now)
	if err != nil {
		t.Fatal(err)
	}
	appCert := issue(t, pkix.Name{CommonName: "app instance"}, nil, false)
	other := issue(t, pkix.Name{CommonName: "another app instance"}, nil, false)

	oc := &oauth2.Config{ClientID: pub.ID, RedirectURL: redirectURI,
		Scopes:   []string{"openid", "fhirUser", "launch/patient", "offline_access", "patient/*.rs"},
		Endpoint: oauth2.Endpoint{AuthURL: s.app.Issuer() + "/authorize", TokenURL: s.mtlsAt + "/token", AuthStyle: oauth2.AuthStyleInParams}}
	verifier := oauth2.GenerateVerifier()
	b := newBrowser(t, s.app.URL(), redirectURI)
	b.client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.roots}}
	fl := runBrowserFlow(t, b, oc.AuthCodeURL("state-1234567890", oauth2.S256ChallengeOption(verifier),
		oauth2.SetAuthURLParam("aud", s.app.FHIRBase()), oidc.Nonce("nonce-1234567890")), "amy", "amy-password", "")
	xctx := context.WithValue(ctx, oauth2.HTTPClient, s.client(appCert))
	tok, err := oc.Exchange(xctx, fl.code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange at the mTLS alias: %v", err)
	}
	claims, err := s.app.tokens.ParseAccessToken(tok.AccessToken, s.app.FHIRBase())
	if err != nil || claims.Cnf[mtls.CnfKey] != mtls.Thumbprint(appCert.cert) {
		t.Fatalf("access token not certificate-bound: %+v %v", claims, err)
	}
	for _, c := range []struct {
		name string
		cert *testPKI
		url  string
		want int
	}{
		{"userinfo, same certificate", appCert, s.mtlsAt + "/userinfo", 200},
		{"userinfo, no certificate", nil, s.mtlsAt + "/userinfo", 401},
		{"userinfo, another certificate", other, s.mtlsAt + "/userinfo", 401},
		{"userinfo on the main listener", nil, s.app.Issuer() + "/userinfo", 401},
		{"gateway, same certificate", appCert, s.mtlsAt + "/fhir/Patient/pt-001", 200},
		{"gateway, no certificate", nil, s.mtlsAt + "/fhir/Patient/pt-001", 401},
		{"gateway, another certificate", other, s.mtlsAt + "/fhir/Patient/pt-001", 401},
	} {
		if got := s.get(t, c.cert, c.url, tok.AccessToken); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
	// The public client's refresh token is bound to the certificate too.
	refresh := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}, "client_id": {pub.ID}}
	if status, body := s.post(t, other, s.mtlsAt+"/token", refresh); status != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("refresh with another certificate: %d %v", status, body)
	}
	if status, body := s.post(t, appCert, s.mtlsAt+"/token", refresh); status != 200 {
		t.Fatalf("refresh with the same certificate: %d %v", status, body)
	}
	// PAR at its alias works for the public client.
	q := url.Values{"response_type": {"code"}, "client_id": {pub.ID}, "redirect_uri": {redirectURI}, "scope": {"openid patient/*.rs"},
		"state": {"s"}, "aud": {s.app.FHIRBase()}, "code_challenge": {strings.Repeat("a", 43)}, "code_challenge_method": {"S256"}}
	if status, body := s.post(t, appCert, s.mtlsAt+"/par", q); status != 201 {
		t.Fatalf("PAR at the alias: %d %v", status, body)
	}
}

// sharedMetadataKeys are the members every discovery document must state
// identically (client libraries read only one of them).
var sharedMetadataKeys = []string{
	"issuer", "authorization_endpoint", "token_endpoint", "jwks_uri", "registration_endpoint",
	"grant_types_supported", "response_types_supported", "code_challenge_methods_supported",
	"token_endpoint_auth_methods_supported", "token_endpoint_auth_signing_alg_values_supported",
	"pushed_authorization_request_endpoint", "require_pushed_authorization_requests",
	"dpop_signing_alg_values_supported", "mtls_endpoint_aliases", "tls_client_certificate_bound_access_tokens",
	"revocation_endpoint", "revocation_endpoint_auth_methods_supported",
	"introspection_endpoint", "introspection_endpoint_auth_methods_supported",
	"authorization_response_iss_parameter_supported", "scopes_supported",
}

// TestDiscoveryDocumentsAgree: openid-configuration,
// oauth-authorization-server and smart-configuration advertise the same PAR,
// DPoP algorithms, mTLS aliases, auth methods and signing algorithms, and
// the aliases point at the real mTLS listener.
func TestDiscoveryDocumentsAgree(t *testing.T) {
	s := startMTLSServer(t, map[string]string{"dpop.algs": "ES256 EdDSA"})
	docs := map[string]map[string]json.RawMessage{}
	for _, p := range []string{"/.well-known/openid-configuration", "/.well-known/oauth-authorization-server", "/.well-known/smart-configuration"} {
		resp, err := s.client(nil).Get(s.app.Issuer() + p)
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]json.RawMessage
		err = json.NewDecoder(resp.Body).Decode(&doc)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %d %v", p, resp.StatusCode, err)
		}
		docs[p] = doc
	}
	ref := docs["/.well-known/openid-configuration"]
	for _, k := range sharedMetadataKeys {
		if _, ok := ref[k]; !ok {
			t.Errorf("openid-configuration lacks %s", k)
			continue
		}
		for p, doc := range docs {
			if !bytes.Equal(doc[k], ref[k]) {
				t.Errorf("%s: %s = %s, openid-configuration says %s", p, k, doc[k], ref[k])
			}
		}
	}
	var aliases map[string]string
	_ = json.Unmarshal(ref["mtls_endpoint_aliases"], &aliases)
	for name, path := range map[string]string{"token_endpoint": "/token", "pushed_authorization_request_endpoint": "/par",
		"revocation_endpoint": "/revoke", "introspection_endpoint": "/introspect", "userinfo_endpoint": "/userinfo"} {
		if aliases[name] != s.mtlsAt+path {
			t.Errorf("mtls_endpoint_aliases[%s] = %q, want %q", name, aliases[name], s.mtlsAt+path)
		}
	}
	var methods, dpopAlgs, assertionAlgs []string
	_ = json.Unmarshal(ref["token_endpoint_auth_methods_supported"], &methods)
	_ = json.Unmarshal(ref["dpop_signing_alg_values_supported"], &dpopAlgs)
	_ = json.Unmarshal(ref["token_endpoint_auth_signing_alg_values_supported"], &assertionAlgs)
	for _, m := range []string{"private_key_jwt", "tls_client_auth", "self_signed_tls_client_auth", "client_secret_basic", "none"} {
		if !strings.Contains(strings.Join(methods, " "), m) {
			t.Errorf("auth methods %v lack %s", methods, m)
		}
	}
	if strings.Join(dpopAlgs, " ") != "ES256 EdDSA" {
		t.Errorf("dpop algs %v, want the configured ES256 EdDSA", dpopAlgs)
	}
	var verified []string
	for _, a := range clientauth.AssertionAlgs {
		verified = append(verified, string(a))
	}
	if a := strings.Join(assertionAlgs, " "); a != strings.Join(verified, " ") || !strings.Contains(a, "RS384") || !strings.Contains(a, "ES384") {
		t.Errorf("assertion algs advertised %v, verified %v", assertionAlgs, verified)
	}
	if string(ref["tls_client_certificate_bound_access_tokens"]) != "true" {
		t.Error("tls_client_certificate_bound_access_tokens not advertised")
	}
}

// TestSenderConstraintPolicy: sender_constraint.require_system and
// require_confidential refuse unbound tokens to such clients; a client
// certificate on the mTLS listener (or DPoP) satisfies them.
func TestSenderConstraintPolicy(t *testing.T) {
	for _, key := range []string{"sender_constraint.require_system", "sender_constraint.require_confidential"} {
		t.Run(key, func(t *testing.T) {
			s := startMTLSServer(t, map[string]string{key: "true"})
			c, secret, err := CreateClient(context.Background(), s.app.Store(), clientreg.Metadata{ClientName: "secret backend",
				Scope: "system/Patient.rs", TokenEndpointAuthMethod: "client_secret_post", GrantTypes: []string{"client_credentials"}}, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			form := url.Values{"grant_type": {"client_credentials"}, "scope": {"system/Patient.rs"}, "client_id": {c.ID}, "client_secret": {secret}}
			if status, body := s.post(t, nil, s.app.Issuer()+"/token", form); status != 400 || body["error"] != "invalid_request" {
				t.Fatalf("unbound token issued: %d %v", status, body)
			}
			if status, body := s.post(t, nil, s.mtlsAt+"/token", form); status != 400 {
				t.Fatalf("mTLS listener without a certificate: %d %v", status, body)
			}
			cert := issue(t, pkix.Name{CommonName: "backend instance"}, nil, false)
			status, body := s.post(t, cert, s.mtlsAt+"/token", form)
			at, _ := body["access_token"].(string)
			claims, err := s.app.tokens.ParseAccessToken(at, s.app.FHIRBase())
			if status != 200 || err != nil || claims.Cnf[mtls.CnfKey] != mtls.Thumbprint(cert.cert) {
				t.Fatalf("certificate-bound token: %d %v %v", status, body, err)
			}
		})
	}
}

// TestSpoofedClientCertificateHeader: with a trusted proxy configured, the
// client-certificate header sent by anyone else (here the test, from
// loopback) is refused with invalid_request at every endpoint that reads
// client certificates, before any client is authenticated.
func TestSpoofedClientCertificateHeader(t *testing.T) {
	ts := startServer(t, map[string]string{"mtls.client_cert_header": "X-Client-Cert", "mtls.trusted_proxies": "10.9.9.9"})
	cert := issue(t, pkix.Name{CommonName: "spoofed"}, nil, false)
	for _, ep := range []struct{ method, path, body string }{
		{"POST", "/token", "grant_type=client_credentials&client_id=x"},
		{"POST", "/par", "client_id=x&response_type=code"},
		{"POST", "/revoke", "client_id=x&token=t"},
		{"POST", "/introspect", "client_id=x&token=t"},
		{"GET", "/userinfo", ""},
	} {
		req, _ := http.NewRequest(ep.method, ts.app.Issuer()+ep.path, strings.NewReader(ep.body))
		if ep.body != "" {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		} else {
			req.Header.Set("Authorization", "Bearer some-token")
		}
		req.Header.Set("X-Client-Cert", mtls.EscapeCert(cert.cert))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || body["error"] != "invalid_request" {
			t.Errorf("%s %s with a spoofed header: %d %v", ep.method, ep.path, resp.StatusCode, body)
		}
	}
}
