package gateway

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/token"
)

func TestValidTokenReadsOwnData(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	tok, _ := f.token(patientAll, patientA)
	r := f.do("GET", "/Patient/"+patientA, bearer(tok), "")
	if r.status != http.StatusOK || r.json(t)["id"] != patientA {
		t.Fatalf("own Patient: %d %s", r.status, r.body)
	}
	if !f.audit.Has(ActionFHIRRequest, audit.Success) {
		t.Fatal("allowed request not audited")
	}
}

func TestTokenRefusals(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	good, _ := f.token(patientAll, patientA)

	expired, _ := f.token(patientAll, patientA)
	evil, err := token.NewIssuer(token.Options{Signer: f.keys, Verifier: f.keys, Issuer: "https://evil.example.org", Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	wrongIss, _, err := evil.AccessToken(token.AccessClaims{Subject: "u1", Audience: baseURL, ClientID: "app", Scope: patientAll, Patient: patientA})
	if err != nil {
		t.Fatal(err)
	}
	wrongAud, _ := f.token(patientAll, patientA, func(c *token.AccessClaims) { c.Audience = "https://other.example.org/fhir" })
	// alg "none": our claims, no signature.
	_, claims := f.token(patientAll, patientA)
	kid, _ := f.keys.ActiveKID("ES256")
	hdr, _ := json.Marshal(map[string]string{"alg": "none", "typ": "at+jwt", "kid": kid})
	payload, _ := json.Marshal(claims)
	algNone := base64.RawURLEncoding.EncodeToString(hdr) + "." + base64.RawURLEncoding.EncodeToString(payload) + "."
	// A signature tampered with.
	tampered := good[:len(good)-4] + "AAAA"
	if tampered == good {
		tampered = good[:len(good)-4] + "BBBB"
	}

	f.clock.Add(token.DefaultAccessTokenTTL + token.Skew + time.Second)
	// Re-issue the ones that should be valid apart from their defect.
	wrongIss, _, _ = evil.AccessToken(token.AccessClaims{Subject: "u1", Audience: baseURL, ClientID: "app", Scope: patientAll, Patient: patientA})
	wrongAud, _ = f.token(patientAll, patientA, func(c *token.AccessClaims) { c.Audience = "https://other.example.org/fhir" })

	for name, auth := range map[string]string{
		"expired":   bearer(expired),
		"wrong iss": bearer(wrongIss),
		"wrong aud": bearer(wrongAud),
		"alg none":  bearer(algNone),
		"tampered":  bearer(tampered),
		"garbage":   bearer("not-a-jwt"),
		"basic":     "Basic Z2F0ZXdheTplaHItc2VjcmV0",
		"no scheme": good,
	} {
		before := f.spy.count()
		r := f.do("GET", "/Patient/"+patientA, auth, "")
		if r.status != http.StatusUnauthorized {
			t.Errorf("%s: status %d", name, r.status)
		}
		ch := strings.Join(r.header.Values("WWW-Authenticate"), " | ")
		if !strings.Contains(ch, "Bearer") && !strings.Contains(ch, "DPoP") {
			t.Errorf("%s: no challenge: %q", name, ch)
		}
		if r.header.Get("Content-Type") != fhirJSON || !strings.HasPrefix(outcomeText(r), "login") {
			t.Errorf("%s: body %s", name, r.body)
		}
		if f.spy.count() != before {
			t.Errorf("%s: request reached the upstream", name)
		}
	}
	r := f.do("GET", "/Patient/"+patientA, bearer(wrongAud), "")
	if !strings.Contains(r.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("challenge %q", r.header.Get("WWW-Authenticate"))
	}
	r = f.do("GET", "/Patient/"+patientA, "", "")
	if r.status != http.StatusUnauthorized || strings.Contains(strings.Join(r.header.Values("WWW-Authenticate"), ","), "error=") {
		t.Errorf("no token: %d %v", r.status, r.header.Values("WWW-Authenticate"))
	}
	if !f.audit.Has(ActionFHIRRequest, audit.Failure) {
		t.Error("refusals not audited")
	}
}

func TestRevokedFamily(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	tok, c := f.token(patientAll, patientA)
	if r := f.do("GET", "/Patient/"+patientA, bearer(tok), ""); r.status != 200 {
		t.Fatalf("before revocation: %d", r.status)
	}
	if err := f.store.RevokeFamily(f.ctx, c.FamilyID, f.clock.Now(), "test"); err != nil {
		t.Fatal(err)
	}
	f.clock.Add(DefaultRevocationTTL + time.Millisecond) // the cached "not revoked" answer runs out
	r := f.do("GET", "/Patient/"+patientA, bearer(tok), "")
	if r.status != http.StatusUnauthorized || !strings.Contains(r.header.Get("WWW-Authenticate"), "invalid_token") {
		t.Fatalf("revoked token: %d %v", r.status, r.header)
	}
	// The verified-token cache never outlives revocation.
	if f.parser.n.Load() < 1 {
		t.Fatal("parser not called")
	}
}

func TestUnknownFamilyRefused(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	raw, _, err := f.issuer.AccessToken(token.AccessClaims{Subject: "u1", Audience: baseURL, ClientID: "app", Scope: patientAll, Patient: patientA, FamilyID: "no-such-family"})
	if err != nil {
		t.Fatal(err)
	}
	if r := f.do("GET", "/Patient/"+patientA, bearer(raw), ""); r.status != http.StatusUnauthorized {
		t.Fatalf("unknown family: %d", r.status)
	}
}

func TestVerifiedTokenCache(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	tok, c := f.token(patientAll, patientA)
	for i := 0; i < 5; i++ {
		if r := f.do("GET", "/Patient/"+patientA, bearer(tok), ""); r.status != 200 {
			t.Fatalf("request %d: %d", i, r.status)
		}
	}
	if n := f.parser.n.Load(); n != 1 {
		t.Fatalf("token verified %d times, want 1 (cached)", n)
	}
	// Never past exp: the cache entry expires with the token.
	f.clock.Add(time.Unix(c.ExpiresAt, 0).Sub(f.clock.Now()) + token.Skew + time.Second)
	if r := f.do("GET", "/Patient/"+patientA, bearer(tok), ""); r.status != http.StatusUnauthorized {
		t.Fatalf("expired cached token accepted: %d", r.status)
	}
	// Bounded.
	cache := newTokenCache(32)
	now := time.Now()
	for i := 0; i < 1000; i++ {
		cache.put(tokenKey(strings.Repeat("x", i)), &verified{expires: now.Add(time.Minute)}, now)
	}
	if n := cache.len(); n > 32 {
		t.Fatalf("cache holds %d entries, bound 32", n)
	}
}

func TestTokenInQueryIsLeakedAndRevoked(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	tok, c := f.token(patientAll, patientA)
	before := f.spy.count()
	r := f.do("GET", "/Observation?access_token="+url.QueryEscape(tok), "", "")
	if r.status != http.StatusBadRequest || !strings.Contains(r.header.Get("WWW-Authenticate"), "invalid_request") {
		t.Fatalf("token in query: %d %v %s", r.status, r.header, r.body)
	}
	if f.spy.count() != before {
		t.Fatal("leaked request reached the upstream")
	}
	if !f.audit.Has(ActionTokenLeaked, audit.Failure) {
		t.Fatal("leak not audited")
	}
	fam, err := f.store.GetFamily(f.ctx, c.FamilyID)
	if err != nil || fam.RevokedAt.IsZero() {
		t.Fatalf("leaked token's family not revoked: %v %+v", err, fam)
	}
	// The same token in the header no longer works, at once.
	if r := f.do("GET", "/Patient/"+patientA, bearer(tok), ""); r.status != http.StatusUnauthorized {
		t.Fatalf("leaked token still accepted: %d", r.status)
	}
	// Even with a valid header token, a query token is refused.
	tok2, c2 := f.token(patientAll, patientA)
	if r := f.do("GET", "/Patient/"+patientA+"?access_token="+tok2, bearer(tok2), ""); r.status != http.StatusBadRequest {
		t.Fatalf("query token alongside header: %d", r.status)
	}
	if fam, _ := f.store.GetFamily(f.ctx, c2.FamilyID); fam.RevokedAt.IsZero() {
		t.Fatal("second leaked token not revoked")
	}
}

func TestTokenInFormBodyIsLeaked(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	tok, c := f.token(patientAll, patientA)
	r := f.do("POST", "/Observation/_search", "", "access_token="+url.QueryEscape(tok)+"&code=8867-4",
		"Content-Type", "application/x-www-form-urlencoded")
	if r.status != http.StatusBadRequest {
		t.Fatalf("token in form: %d %s", r.status, r.body)
	}
	if fam, _ := f.store.GetFamily(f.ctx, c.FamilyID); fam.RevokedAt.IsZero() {
		t.Fatal("form-leaked token not revoked")
	}
	// A forged token in the query revokes nothing and is still refused.
	if r := f.do("GET", "/Observation?access_token=forged", "", ""); r.status != http.StatusBadRequest {
		t.Fatalf("forged query token: %d", r.status)
	}
}

// fakeDPoP accepts proofs "valid-proof" bound to the expected jkt.
type fakeDPoP struct {
	nonce string
	seen  map[string]bool
	urls  []string
}

type nonceErr struct{ n string }

func (e nonceErr) Error() string     { return "nonce required" }
func (e nonceErr) DPoPNonce() string { return e.n }

func (d *fakeDPoP) AllowedAlgs() []string { return []string{"ES256", "EdDSA"} }

func (d *fakeDPoP) Verify(r *http.Request, at, jkt string) error {
	d.urls = append(d.urls, r.URL.String())
	p := r.Header.Get("DPoP")
	if d.nonce != "" && !strings.HasSuffix(p, d.nonce) {
		return nonceErr{d.nonce}
	}
	if !strings.HasPrefix(p, "proof-for-"+jkt) {
		return errors.New("bad proof")
	}
	if d.seen[p] {
		return errors.New("replayed proof")
	}
	d.seen[p] = true
	return nil
}

func TestDPoPBinding(t *testing.T) {
	dp := &fakeDPoP{seen: map[string]bool{}}
	f := newFixture(t, fixtureOpts{dpop: dp})
	bound := func(c *token.AccessClaims) { c.Cnf = map[string]string{"jkt": "thumb-1"} }
	tok, _ := f.token(patientAll, patientA, bound)

	r := f.do("GET", "/Patient/"+patientA, bearer(tok), "")
	if r.status != http.StatusUnauthorized || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "DPoP ") {
		t.Fatalf("DPoP-bound as Bearer: %d %v", r.status, r.header.Values("WWW-Authenticate"))
	}
	r = f.do("GET", "/Patient/"+patientA, "DPoP "+tok, "", "DPoP", "proof-for-thumb-1-a")
	if r.status != http.StatusOK {
		t.Fatalf("valid DPoP: %d %s", r.status, r.body)
	}
	if got := dp.urls[len(dp.urls)-1]; got != baseURL+"/Patient/"+patientA {
		t.Fatalf("verifier saw htu %q", got)
	}
	r = f.do("GET", "/Patient/"+patientA, "DPoP "+tok, "", "DPoP", "proof-for-thumb-1-a")
	if r.status != http.StatusUnauthorized || !strings.Contains(r.header.Get("WWW-Authenticate"), "invalid_dpop_proof") {
		t.Fatalf("replayed proof: %d %v", r.status, r.header)
	}
	r = f.do("GET", "/Patient/"+patientA, "DPoP "+tok, "", "DPoP", "proof-for-thumb-2-a")
	if r.status != http.StatusUnauthorized {
		t.Fatalf("proof of another key: %d", r.status)
	}
	dp.nonce = "n0nce"
	r = f.do("GET", "/Patient/"+patientA, "DPoP "+tok, "", "DPoP", "proof-for-thumb-1-b")
	if r.status != http.StatusUnauthorized || r.header.Get("DPoP-Nonce") != "n0nce" || !strings.Contains(r.header.Get("WWW-Authenticate"), "use_dpop_nonce") {
		t.Fatalf("nonce challenge: %d %v", r.status, r.header)
	}
	// An unbound token may not use the DPoP scheme.
	plain, _ := f.token(patientAll, patientA)
	if r := f.do("GET", "/Patient/"+patientA, "DPoP "+plain, "", "DPoP", "proof-for-x"); r.status != http.StatusUnauthorized {
		t.Fatalf("unbound token with DPoP scheme: %d", r.status)
	}
}

func TestDPoPWithoutVerifierFailsClosed(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	tok, _ := f.token(patientAll, patientA, func(c *token.AccessClaims) { c.Cnf = map[string]string{"jkt": "thumb-1"} })
	if r := f.do("GET", "/Patient/"+patientA, "DPoP "+tok, "", "DPoP", "proof-for-thumb-1"); r.status != http.StatusUnauthorized {
		t.Fatalf("DPoP-bound token accepted without a verifier: %d", r.status)
	}
}

func TestCertificateBoundToken(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	cert := &x509.Certificate{Raw: []byte("client certificate DER")}
	sum := sha256.Sum256(cert.Raw)
	tok, _ := f.token(patientAll, patientA, func(c *token.AccessClaims) {
		c.Cnf = map[string]string{"x5t#S256": base64.RawURLEncoding.EncodeToString(sum[:])}
	})
	call := func(peer *x509.Certificate) int {
		req := httptest.NewRequest("GET", "/fhir/Patient/"+patientA, nil)
		req.Header.Set("Authorization", bearer(tok))
		if peer != nil {
			req.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{peer}}
		}
		rec := httptest.NewRecorder()
		f.h.ServeHTTP(rec, req)
		return rec.Code
	}
	if c := call(cert); c != http.StatusOK {
		t.Fatalf("matching certificate: %d", c)
	}
	if c := call(nil); c != http.StatusUnauthorized {
		t.Fatalf("no certificate: %d", c)
	}
	if c := call(&x509.Certificate{Raw: []byte("another")}); c != http.StatusUnauthorized {
		t.Fatalf("other certificate: %d", c)
	}
}

func TestAuthorizationHeaderFormats(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	tok, _ := f.token(patientAll, patientA)
	if r := f.do("GET", "/Patient/"+patientA, "bearer "+tok, ""); r.status != 200 {
		t.Fatalf("lower-case scheme: %d", r.status)
	}
	req, _ := http.NewRequest("GET", f.srv.URL+"/fhir/Patient/"+patientA, nil)
	req.Header.Add("Authorization", bearer(tok))
	req.Header.Add("Authorization", bearer(tok))
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("two Authorization headers: %d", resp.StatusCode)
	}
}
