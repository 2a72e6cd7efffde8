package grant_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fhirgate/fhirgate/internal/dpop"
	"github.com/fhirgate/fhirgate/internal/grant"
	"github.com/fhirgate/fhirgate/internal/mtls"
	"github.com/fhirgate/fhirgate/internal/oauth"
	"github.com/fhirgate/fhirgate/internal/replay"
	"github.com/fhirgate/fhirgate/internal/secret"
	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/userinfo"
)

const (
	tokenEndpoint    = issuerURL + "/token"
	userinfoEndpoint = issuerURL + "/userinfo"
)

// dpopFixture is the grant fixture with a DPoP verifier at /token and
// /userinfo.
type dpopFixture struct {
	*fixture
	verifier *dpop.Verifier
}

func newDPoPFixture(t *testing.T, mods ...func(*grant.Options)) *dpopFixture {
	t.Helper()
	f := newFixture(t)
	v := &dpop.Verifier{Replay: replay.NewMemory(f.clock.Now, 1000), Now: f.clock.Now}
	opts := grant.Options{
		Clients: f.store, Codes: f.store, Tokens: f.store, Issuer: f.issuer,
		IssuerURL: issuerURL, FHIRBase: fhirBase, Auditor: f.audit, Now: f.clock.Now, DPoP: v,
	}
	for _, m := range mods {
		m(&opts)
	}
	h, err := grant.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ui, err := userinfo.New(userinfo.Options{Issuer: f.issuer, Tokens: f.store, Users: f.store, FHIRBase: fhirBase,
		Auditor: f.audit, Now: f.clock.Now, DPoP: v, URL: userinfoEndpoint, TrustedProxies: opts.TrustedProxies})
	if err != nil {
		t.Fatal(err)
	}
	f.h, f.ui = h, ui
	f.mux = http.NewServeMux()
	h.Register(f.mux)
	ui.Register(f.mux)
	return &dpopFixture{fixture: f, verifier: v}
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func jktOf(t testing.TB, k *ecdsa.PrivateKey) string {
	t.Helper()
	j, err := dpop.JKT(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// dpopProof builds a proof with go-jose; extra claims override the defaults.
func (f *dpopFixture) proof(t testing.TB, k crypto.Signer, method, htu string, extra map[string]any) string {
	t.Helper()
	c := map[string]any{"jti": secret.ID(), "htm": method, "htu": htu, "iat": f.clock.Now().Unix()}
	for key, v := range extra {
		c[key] = v
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k},
		(&jose.SignerOptions{EmbedJWK: true}).WithType("dpop+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(c)
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := jws.CompactSerialize()
	return out
}

// withDPoP sets the proof header on r.
func withDPoP(r *http.Request, proofs ...string) *http.Request {
	for _, p := range proofs {
		r.Header.Add("DPoP", p)
	}
	return r
}

func (f *dpopFixture) exchangeDPoP(code, verifier string, a auth, proofs ...string) *httptestResponse {
	return f.do(withDPoP(tokenRequest(exchangeForm(code, verifier), a), proofs...))
}

func (f *dpopFixture) refreshDPoP(rt string, a auth, proofs ...string) *httptestResponse {
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
	return f.do(withDPoP(tokenRequest(form, a), proofs...))
}

// userinfoDPoP calls /userinfo with scheme and optional proof.
func (f *dpopFixture) userinfoWith(scheme, at string, proofs ...string) *httptestResponse {
	r := withDPoP(newRequest(http.MethodGet, "/userinfo"), proofs...)
	r.Header.Set("Authorization", scheme+" "+at)
	return f.do(r)
}

func TestDPoPTokenForPublicClient(t *testing.T) {
	f := newDPoPFixture(t)
	c, _ := f.client(oauth.AuthNone)
	k, other := newKey(t), newKey(t)
	code, verifier := f.code(c, codeOpts{})

	body := wantOK(t, f.exchangeDPoP(code, verifier, public(c), f.proof(t, k, "POST", tokenEndpoint, nil)))
	if body.str("token_type") != "DPoP" {
		t.Fatalf("token_type %q", body.str("token_type"))
	}
	at := body.str("access_token")
	claims, err := f.issuer.ParseAccessToken(at, fhirBase)
	if err != nil || claims.Cnf["jkt"] != jktOf(t, k) {
		t.Fatalf("cnf %v %v", claims, err)
	}
	fam, err := f.store.GetFamily(f.ctx, claims.FamilyID)
	if err != nil || fam.DPoPJKT != jktOf(t, k) {
		t.Fatalf("family binding %+v %v", fam, err)
	}

	// /userinfo: DPoP scheme with a proof for this token.
	w := f.userinfoWith("DPoP", at, f.proof(t, k, "GET", userinfoEndpoint, map[string]any{"ath": dpop.ATH(at)}))
	if w.Code != http.StatusOK {
		t.Fatalf("userinfo with DPoP: %d %s", w.Code, w.Body.String())
	}
	// The bound token sent as a bearer token: 401 with a DPoP challenge.
	w = f.userinfoWith("Bearer", at)
	if w.Code != http.StatusUnauthorized || !hasPrefixChallenge(w, `DPoP realm="fhirgate", error="invalid_token"`) {
		t.Fatalf("bound token as Bearer: %d %v", w.Code, w.Header())
	}
	// A proof by another key, a proof for another token, a replayed proof, no proof.
	for name, proof := range map[string]string{
		"other key":   f.proof(t, other, "GET", userinfoEndpoint, map[string]any{"ath": dpop.ATH(at)}),
		"other token": f.proof(t, k, "GET", userinfoEndpoint, map[string]any{"ath": dpop.ATH("x")}),
		"wrong htu":   f.proof(t, k, "GET", tokenEndpoint, map[string]any{"ath": dpop.ATH(at)}),
		"wrong htm":   f.proof(t, k, "POST", userinfoEndpoint, map[string]any{"ath": dpop.ATH(at)}),
		"none":        "",
	} {
		var w *httptestResponse
		if proof == "" {
			w = f.userinfoWith("DPoP", at)
		} else {
			w = f.userinfoWith("DPoP", at, proof)
		}
		if w.Code != http.StatusUnauthorized || !hasPrefixChallenge(w, `DPoP realm="fhirgate", error="invalid_dpop_proof"`) {
			t.Errorf("%s: %d %v %s", name, w.Code, w.Header(), w.Body.String())
		}
	}
	replayed := f.proof(t, k, "GET", userinfoEndpoint, map[string]any{"ath": dpop.ATH(at)})
	if w := f.userinfoWith("DPoP", at, replayed); w.Code != http.StatusOK {
		t.Fatalf("first use: %d", w.Code)
	}
	if w := f.userinfoWith("DPoP", at, replayed); w.Code != http.StatusUnauthorized {
		t.Fatalf("replayed proof at /userinfo: %d", w.Code)
	}

	// Refresh needs a proof by the same key; failures do not burn the token.
	rt := body.str("refresh_token")
	wantError(t, f.refreshDPoP(rt, public(c)), 400, oauth.InvalidDPoPProof)
	wantError(t, f.refreshDPoP(rt, public(c), f.proof(t, other, "POST", tokenEndpoint, nil)), 400, oauth.InvalidGrant)
	next := wantOK(t, f.refreshDPoP(rt, public(c), f.proof(t, k, "POST", tokenEndpoint, nil)))
	claims, err = f.issuer.ParseAccessToken(next.str("access_token"), fhirBase)
	if err != nil || next.str("token_type") != "DPoP" || claims.Cnf["jkt"] != jktOf(t, k) {
		t.Fatalf("refreshed: %v %v", next, err)
	}
}

func hasPrefixChallenge(w *httptestResponse, prefix string) bool {
	for _, v := range w.Header().Values("WWW-Authenticate") {
		if len(v) >= len(prefix) && v[:len(prefix)] == prefix {
			return true
		}
	}
	return false
}

func TestDPoPTokenRequestRefusals(t *testing.T) {
	f := newDPoPFixture(t)
	c, _ := f.client(oauth.AuthNone)
	k := newKey(t)
	code, verifier := f.code(c, codeOpts{})
	for name, proofs := range map[string][]string{
		"wrong htu":   {f.proof(t, k, "POST", issuerURL+"/authorize", nil)},
		"wrong host":  {f.proof(t, k, "POST", "https://evil.example.org/token", nil)},
		"wrong htm":   {f.proof(t, k, "GET", tokenEndpoint, nil)},
		"stale iat":   {f.proof(t, k, "POST", tokenEndpoint, map[string]any{"iat": f.clock.Now().Add(-5 * time.Minute).Unix()})},
		"future iat":  {f.proof(t, k, "POST", tokenEndpoint, map[string]any{"iat": f.clock.Now().Add(5 * time.Minute).Unix()})},
		"two proofs":  {f.proof(t, k, "POST", tokenEndpoint, nil), f.proof(t, k, "POST", tokenEndpoint, nil)},
		"not a proof": {"abc"},
	} {
		t.Run(name, func(t *testing.T) {
			wantError(t, f.exchangeDPoP(code, verifier, public(c), proofs...), 400, oauth.InvalidDPoPProof)
		})
	}
	// None of the refusals consumed the code; a replayed proof is refused.
	p := f.proof(t, k, "POST", tokenEndpoint, nil)
	wantOK(t, f.exchangeDPoP(code, verifier, public(c), p))
	code2, verifier2 := f.code(c, codeOpts{})
	wantError(t, f.exchangeDPoP(code2, verifier2, public(c), p), 400, oauth.InvalidDPoPProof)

	// Without a proof: a Bearer token without cnf.
	body := wantOK(t, f.exchange(code2, verifier2, public(c)))
	claims, err := f.issuer.ParseAccessToken(body.str("access_token"), fhirBase)
	if err != nil || body.str("token_type") != "Bearer" || claims.Cnf != nil {
		t.Fatalf("unbound: %v %+v %v", body, claims, err)
	}
	// An unbound token with the DPoP scheme at /userinfo is refused.
	if w := f.userinfoWith("DPoP", body.str("access_token"), f.proof(t, k, "GET", userinfoEndpoint, map[string]any{"ath": dpop.ATH(body.str("access_token"))})); w.Code != http.StatusUnauthorized {
		t.Fatalf("unbound token with DPoP scheme: %d", w.Code)
	}
	if w := f.userinfoWith("Bearer", body.str("access_token")); w.Code != http.StatusOK {
		t.Fatalf("unbound token as Bearer: %d %s", w.Code, w.Body.String())
	}
}

func TestDPoPBoundClientGetsNoBearerToken(t *testing.T) {
	f := newDPoPFixture(t)
	c, _ := f.client(oauth.AuthNone, func(c *storage.Client) { c.DPoPBoundAccessTokens = true })
	code, verifier := f.code(c, codeOpts{})
	wantError(t, f.exchange(code, verifier, public(c)), 400, oauth.InvalidDPoPProof)
	// The refusal came before the code was consumed.
	wantOK(t, f.exchangeDPoP(code, verifier, public(c), f.proof(t, newKey(t), "POST", tokenEndpoint, nil)))
}

func TestDPoPServerWithoutVerifierRefusesProofs(t *testing.T) {
	f := newFixture(t)
	c, _ := f.client(oauth.AuthNone)
	code, verifier := f.code(c, codeOpts{})
	df := &dpopFixture{fixture: f}
	wantError(t, f.do(withDPoP(tokenRequest(exchangeForm(code, verifier), public(c)), df.proof(t, newKey(t), "POST", tokenEndpoint, nil))), 400, oauth.InvalidDPoPProof)
}

func TestDPoPCodeBinding(t *testing.T) {
	f := newDPoPFixture(t)
	c, _ := f.client(oauth.AuthNone)
	k, other := newKey(t), newKey(t)
	bound := func() (string, string) {
		code, verifier := f.code(c, codeOpts{})
		// Rebind the stored code to k (as /authorize does with dpop_jkt).
		return f.rebindCode(t, code, jktOf(t, k)), verifier
	}
	code, verifier := bound()
	wantError(t, f.exchange(code, verifier, public(c)), 400, oauth.InvalidDPoPProof)
	code, verifier = bound()
	wantError(t, f.exchangeDPoP(code, verifier, public(c), f.proof(t, other, "POST", tokenEndpoint, nil)), 400, oauth.InvalidGrant)
	code, verifier = bound()
	body := wantOK(t, f.exchangeDPoP(code, verifier, public(c), f.proof(t, k, "POST", tokenEndpoint, nil)))
	if body.str("token_type") != "DPoP" {
		t.Fatalf("token_type %q", body.str("token_type"))
	}
}

// rebindCode replaces the code with one bound to jkt and returns it.
func (f *dpopFixture) rebindCode(t *testing.T, code, jkt string) string {
	t.Helper()
	now := f.clock.Now()
	fresh := secret.Token()
	// Consume the original (unused from here on) to read its fields.
	ac, err := f.store.ConsumeAuthCode(f.ctx, storage.HashSecret(code), now)
	if err != nil {
		t.Fatal(err)
	}
	ac.Hash, ac.UsedAt, ac.DPoPJKT, ac.FamilyID = storage.HashSecret(fresh), time.Time{}, jkt, secret.ID()
	if err := f.store.CreateAuthCode(f.ctx, ac); err != nil {
		t.Fatal(err)
	}
	return fresh
}

func TestDPoPConfidentialRefreshNotKeyBound(t *testing.T) {
	f := newDPoPFixture(t)
	c, s := f.client(oauth.AuthClientSecretBasic)
	code, verifier := f.code(c, codeOpts{})
	body := wantOK(t, f.exchangeDPoP(code, verifier, basic(c, s), f.proof(t, newKey(t), "POST", tokenEndpoint, nil)))
	if body.str("token_type") != "DPoP" {
		t.Fatal("not DPoP")
	}
	// A confidential client authenticates when refreshing; the refresh token
	// is not bound to the key (RFC 9449 §5). Without a proof: Bearer.
	next := wantOK(t, f.refreshDPoP(body.str("refresh_token"), basic(c, s)))
	if next.str("token_type") != "Bearer" {
		t.Fatalf("token_type %q", next.str("token_type"))
	}
}

func TestDPoPNonceAtTokenEndpoint(t *testing.T) {
	var nonces *dpop.Nonces
	f := newDPoPFixture(t)
	nonces, err := dpop.NewNonces(nil, time.Minute, f.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	f.verifier.Nonces = nonces
	c, _ := f.client(oauth.AuthNone)
	k := newKey(t)
	code, verifier := f.code(c, codeOpts{})
	w := f.exchangeDPoP(code, verifier, public(c), f.proof(t, k, "POST", tokenEndpoint, nil))
	wantError(t, w, 400, oauth.UseDPoPNonce)
	n := w.Header().Get("DPoP-Nonce")
	if !nonces.Valid(n) {
		t.Fatalf("DPoP-Nonce %q", n)
	}
	// The challenge did not consume the code.
	wantOK(t, f.exchangeDPoP(code, verifier, public(c), f.proof(t, k, "POST", tokenEndpoint, map[string]any{"nonce": n})))
}

// testCert makes a self-signed client certificate.
func testCert(t *testing.T, cn string) *x509.Certificate {
	t.Helper()
	k := newKey(t)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func withCert(r *http.Request, cert *x509.Certificate) *http.Request {
	if cert != nil {
		r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}
	}
	return r
}

func TestMTLSBoundTokens(t *testing.T) {
	f := newDPoPFixture(t)
	c, _ := f.client(oauth.AuthNone)
	cert, other := testCert(t, "app"), testCert(t, "other")
	code, verifier := f.code(c, codeOpts{})
	body := wantOK(t, f.do(withCert(tokenRequest(exchangeForm(code, verifier), public(c)), cert)))
	at := body.str("access_token")
	claims, err := f.issuer.ParseAccessToken(at, fhirBase)
	if err != nil || body.str("token_type") != "Bearer" || claims.Cnf["x5t#S256"] != mtls.Thumbprint(cert) {
		t.Fatalf("cnf %+v %v", claims, err)
	}
	ui := func(c *x509.Certificate) int {
		r := newRequest(http.MethodGet, "/userinfo")
		r.Header.Set("Authorization", "Bearer "+at)
		return f.do(withCert(r, c)).Code
	}
	if ui(cert) != http.StatusOK || ui(nil) != http.StatusUnauthorized || ui(other) != http.StatusUnauthorized {
		t.Fatalf("userinfo: with %d without %d other %d", ui(cert), ui(nil), ui(other))
	}
	// Refresh of a public client's family needs the same certificate.
	rt := body.str("refresh_token")
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
	wantError(t, f.do(tokenRequest(form, public(c))), 400, oauth.InvalidGrant)
	form = url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
	wantError(t, f.do(withCert(tokenRequest(form, public(c)), other)), 400, oauth.InvalidGrant)
	form = url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
	wantOK(t, f.do(withCert(tokenRequest(form, public(c)), cert)))
}

func TestMTLSCertificateHeaderFromProxies(t *testing.T) {
	tp, err := mtls.ParseTrustedProxies("X-Client-Cert", []string{"10.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	f := newDPoPFixture(t, func(o *grant.Options) { o.TrustedProxies = tp })
	c, _ := f.client(oauth.AuthNone)
	cert, proxyCert := testCert(t, "app"), testCert(t, "proxy")

	// A spoofed header from an untrusted address is refused.
	code, verifier := f.code(c, codeOpts{})
	r := tokenRequest(exchangeForm(code, verifier), public(c))
	r.RemoteAddr = "203.0.113.5:4444"
	r.Header.Set("X-Client-Cert", mtls.EscapeCert(cert))
	wantError(t, f.do(r), 400, oauth.InvalidRequest)

	// From the trusted proxy (connected with its own certificate), the
	// header's certificate is bound, never the proxy's.
	r = withCert(tokenRequest(exchangeForm(code, verifier), public(c)), proxyCert)
	r.RemoteAddr = "10.0.0.1:4444"
	r.Header.Set("X-Client-Cert", mtls.EscapeCert(cert))
	body := wantOK(t, f.do(r))
	claims, err := f.issuer.ParseAccessToken(body.str("access_token"), fhirBase)
	if err != nil || claims.Cnf["x5t#S256"] != mtls.Thumbprint(cert) {
		t.Fatalf("cnf %+v %v", claims, err)
	}
	// The proxy without the header: no certificate, an unbound token.
	code, verifier = f.code(c, codeOpts{})
	r = withCert(tokenRequest(exchangeForm(code, verifier), public(c)), proxyCert)
	r.RemoteAddr = "10.0.0.1:4444"
	body = wantOK(t, f.do(r))
	if claims, _ := f.issuer.ParseAccessToken(body.str("access_token"), fhirBase); claims.Cnf != nil {
		t.Fatalf("proxy certificate bound: %v", claims.Cnf)
	}
}

func TestRequireBoundConfidential(t *testing.T) {
	f := newDPoPFixture(t, func(o *grant.Options) { o.RequireBoundConfidential = true })
	c, s := f.client(oauth.AuthClientSecretBasic)
	code, verifier := f.code(c, codeOpts{})
	wantError(t, f.exchange(code, verifier, basic(c, s)), 400, oauth.InvalidRequest)
	wantOK(t, f.exchangeDPoP(code, verifier, basic(c, s), f.proof(t, newKey(t), "POST", tokenEndpoint, nil)))
	// Public clients are not concerned.
	pc, _ := f.client(oauth.AuthNone)
	code, verifier = f.code(pc, codeOpts{})
	wantOK(t, f.exchange(code, verifier, public(pc)))
}

// httptestResponse is the recorder the fixture returns.
type httptestResponse = httptest.ResponseRecorder

func newRequest(method, target string) *http.Request { return httptest.NewRequest(method, target, nil) }

func TestClientCredentialsBinding(t *testing.T) {
	f := newDPoPFixture(t, func(o *grant.Options) { o.RequireBoundSystem = true })
	c, s := f.client(oauth.AuthClientSecretBasic, func(c *storage.Client) {
		c.GrantTypes = []string{string(oauth.GrantClientCredentials)}
		c.Scope = "system/Observation.rs"
	})
	form := func() url.Values {
		return url.Values{"grant_type": {"client_credentials"}, "scope": {"system/Observation.rs"}}
	}
	// Unbound: refused by policy.
	wantError(t, f.do(tokenRequest(form(), basic(c, s))), 400, oauth.InvalidRequest)
	// DPoP: a DPoP token bound to the key.
	k := newKey(t)
	body := wantOK(t, f.do(withDPoP(tokenRequest(form(), basic(c, s)), f.proof(t, k, "POST", tokenEndpoint, nil))))
	claims, err := f.issuer.ParseAccessToken(body.str("access_token"), fhirBase)
	if err != nil || body.str("token_type") != "DPoP" || claims.Cnf["jkt"] != jktOf(t, k) {
		t.Fatalf("DPoP backend token: %v %+v %v", body, claims, err)
	}
	// mTLS: a certificate-bound Bearer token.
	cert := testCert(t, "backend")
	body = wantOK(t, f.do(withCert(tokenRequest(form(), basic(c, s)), cert)))
	claims, err = f.issuer.ParseAccessToken(body.str("access_token"), fhirBase)
	if err != nil || body.str("token_type") != "Bearer" || claims.Cnf["x5t#S256"] != mtls.Thumbprint(cert) {
		t.Fatalf("mTLS backend token: %v %+v %v", body, claims, err)
	}
}

// TestDPoPAliasURLs: with an mTLS listener (the verifier's Aliases), a
// proof may name the /token and /userinfo aliases (RFC 8705 §5) as htu as
// well as the main URLs; any other URL is still refused, and without an
// alias the alias URL is refused.
func TestDPoPAliasURLs(t *testing.T) {
	const mtlsBase = "https://mtls.fhirgate.example:9443"
	f := newDPoPFixture(t)
	f.verifier.Aliases = map[string]string{issuerURL: mtlsBase}
	c, _ := f.client(oauth.AuthNone)
	k := newKey(t)
	var at string
	for _, htu := range []string{mtlsBase + "/token", tokenEndpoint} {
		code, verifier := f.code(c, codeOpts{})
		body := wantOK(t, f.exchangeDPoP(code, verifier, public(c), f.proof(t, k, "POST", htu, nil)))
		if body.str("token_type") != "DPoP" {
			t.Fatalf("htu %s: %v", htu, body)
		}
		at = body.str("access_token")
	}
	code, verifier := f.code(c, codeOpts{})
	wantError(t, f.exchangeDPoP(code, verifier, public(c), f.proof(t, k, "POST", mtlsBase+"/par", nil)), 400, oauth.InvalidDPoPProof)
	for htu, want := range map[string]int{
		mtlsBase + "/userinfo":                   http.StatusOK,
		userinfoEndpoint:                         http.StatusOK,
		mtlsBase + "/token":                      http.StatusUnauthorized,
		"https://other.example:9443/userinfo":    http.StatusUnauthorized,
		"https://mtls.fhirgate.example/userinfo": http.StatusUnauthorized,
	} {
		if w := f.userinfoWith("DPoP", at, f.proof(t, k, "GET", htu, map[string]any{"ath": dpop.ATH(at)})); w.Code != want {
			t.Errorf("userinfo with htu %s: %d, want %d: %s", htu, w.Code, want, w.Body.String())
		}
	}

	g := newDPoPFixture(t)
	c2, _ := g.client(oauth.AuthNone)
	code, verifier = g.code(c2, codeOpts{})
	wantError(t, g.exchangeDPoP(code, verifier, public(c2), g.proof(t, k, "POST", mtlsBase+"/token", nil)), 400, oauth.InvalidDPoPProof)
}
