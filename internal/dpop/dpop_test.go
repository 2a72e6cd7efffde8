package dpop_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fhirgate/fhirgate/internal/dpop"
	"github.com/fhirgate/fhirgate/internal/oauth"
)

const tokenURL = "https://as.example.org/token"

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestVerifyAcceptsEveryAllowedAlg(t *testing.T) {
	keys(t)
	cases := []struct {
		alg jose.SignatureAlgorithm
		key crypto.Signer
	}{
		{jose.ES256, ecKey}, {jose.ES384, ec384}, {jose.RS256, rsaKey}, {jose.PS256, rsaKey}, {jose.EdDSA, edKey},
	}
	for _, tc := range cases {
		t.Run(string(tc.alg), func(t *testing.T) {
			clk := newClock()
			v := newVerifier(clk)
			p, err := v.Verify(context.Background(), proof(t, tc.alg, tc.key, claimsFor("POST", tokenURL, clk.Now())), "POST", mustURL(t, tokenURL), "")
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			want, err := dpop.JKT(tc.key.Public())
			if err != nil {
				t.Fatal(err)
			}
			// go-jose's own RFC 7638 thumbprint agrees.
			tp, err := (&jose.JSONWebKey{Key: tc.key.Public()}).Thumbprint(crypto.SHA256)
			if err != nil {
				t.Fatal(err)
			}
			if p.JKT != want || p.JKT != b64(tp) {
				t.Fatalf("JKT = %s, want %s (go-jose %s)", p.JKT, want, b64(tp))
			}
			if !p.IAT.Equal(clk.Now()) || p.JTI == "" {
				t.Fatalf("proof = %+v", p)
			}
		})
	}
}

func TestJKTRFC7638Example(t *testing.T) {
	// RFC 7638 §3.1.
	jwk := `{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256","kid":"2011-04-29"}`
	var k jose.JSONWebKey
	if err := k.UnmarshalJSON([]byte(jwk)); err != nil {
		t.Fatal(err)
	}
	got, err := dpop.JKT(k.Key)
	if err != nil {
		t.Fatal(err)
	}
	if want := "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"; got != want {
		t.Fatalf("JKT = %s, want %s", got, want)
	}
	if _, err := dpop.JKT("not a key"); !errors.Is(err, dpop.ErrKey) {
		t.Fatalf("JKT(string) err = %v", err)
	}
}

// refusal runs one negative case.
type refusal struct {
	name   string
	proof  func(t *testing.T, clk *clock) string
	method string
	url    string
	token  string
	want   error
}

func TestVerifyRefuses(t *testing.T) {
	keys(t)
	valid := func(mutate func(map[string]any)) func(t *testing.T, clk *clock) string {
		return func(t *testing.T, clk *clock) string {
			c := claimsFor("POST", tokenURL, clk.Now())
			if mutate != nil {
				mutate(c)
			}
			return proof(t, jose.ES256, ecKey, c)
		}
	}
	hdr := func(extra map[string]any) map[string]any {
		h := map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": ecJWK(ecKey, false)}
		for k, v := range extra {
			if v == nil {
				delete(h, k)
			} else {
				h[k] = v
			}
		}
		return h
	}
	cases := []refusal{
		{name: "empty", proof: func(*testing.T, *clock) string { return "" }, want: dpop.ErrMissing},
		{name: "garbage", proof: func(*testing.T, *clock) string { return "not.a.jwt" }, want: dpop.ErrMalformed},
		{name: "two parts", proof: func(*testing.T, *clock) string { return "eyJhbGciOiJFUzI1NiJ9.e30" }, want: dpop.ErrMalformed},
		{name: "huge", proof: func(*testing.T, *clock) string { return strings.Repeat("a", dpop.MaxProofBytes+1) }, want: dpop.ErrMalformed},
		{name: "wrong htm", proof: valid(nil), method: "GET", want: dpop.ErrMethod},
		{name: "htm lower case", proof: valid(func(c map[string]any) { c["htm"] = "post" }), want: dpop.ErrMethod},
		{name: "wrong htu path", proof: valid(func(c map[string]any) { c["htu"] = "https://as.example.org/authorize" }), want: dpop.ErrURL},
		{name: "wrong htu host", proof: valid(func(c map[string]any) { c["htu"] = "https://evil.example.org/token" }), want: dpop.ErrURL},
		{name: "wrong htu scheme", proof: valid(func(c map[string]any) { c["htu"] = "http://as.example.org/token" }), want: dpop.ErrURL},
		{name: "wrong htu port", proof: valid(func(c map[string]any) { c["htu"] = "https://as.example.org:8443/token" }), want: dpop.ErrURL},
		{name: "htu relative", proof: valid(func(c map[string]any) { c["htu"] = "/token" }), want: dpop.ErrURL},
		{name: "htu trailing slash", proof: valid(func(c map[string]any) { c["htu"] = tokenURL + "/" }), want: dpop.ErrURL},
		{name: "stale iat", proof: valid(func(c map[string]any) { c["iat"] = t0.Add(-61 * time.Second).Unix() }), want: dpop.ErrIAT},
		{name: "future iat", proof: valid(func(c map[string]any) { c["iat"] = t0.Add(6 * time.Second).Unix() }), want: dpop.ErrIAT},
		{name: "iat string", proof: valid(func(c map[string]any) { c["iat"] = "1800000000" }), want: dpop.ErrMalformed},
		{name: "no iat", proof: valid(func(c map[string]any) { delete(c, "iat") }), want: dpop.ErrMalformed},
		{name: "no jti", proof: valid(func(c map[string]any) { delete(c, "jti") }), want: dpop.ErrMalformed},
		{name: "empty jti", proof: valid(func(c map[string]any) { c["jti"] = "" }), want: dpop.ErrMalformed},
		{name: "long jti", proof: valid(func(c map[string]any) { c["jti"] = strings.Repeat("j", dpop.MaxJTILength+1) }), want: dpop.ErrMalformed},
		{name: "no htm", proof: valid(func(c map[string]any) { delete(c, "htm") }), want: dpop.ErrMalformed},
		{name: "no htu", proof: valid(func(c map[string]any) { delete(c, "htu") }), want: dpop.ErrMalformed},
		{name: "typ JWT", proof: func(t *testing.T, clk *clock) string {
			return proofTyp(t, jose.ES256, ecKey, "JWT", claimsFor("POST", tokenURL, clk.Now()))
		}, want: dpop.ErrType},
		{name: "no typ", proof: func(t *testing.T, clk *clock) string {
			return proofTyp(t, jose.ES256, ecKey, "", claimsFor("POST", tokenURL, clk.Now()))
		}, want: dpop.ErrType},
		{name: "private key in jwk", proof: func(t *testing.T, clk *clock) string {
			return rawProof(t, hdr(map[string]any{"jwk": ecJWK(ecKey, true)}), claimsFor("POST", tokenURL, clk.Now()), ecKey, nil)
		}, want: dpop.ErrPrivateKey},
		{name: "symmetric jwk", proof: func(t *testing.T, clk *clock) string {
			return rawProof(t, hdr(map[string]any{"jwk": map[string]any{"kty": "oct", "k": "c2VjcmV0"}}), claimsFor("POST", tokenURL, clk.Now()), ecKey, nil)
		}, want: dpop.ErrPrivateKey},
		{name: "no jwk", proof: func(t *testing.T, clk *clock) string {
			return rawProof(t, hdr(map[string]any{"jwk": nil}), claimsFor("POST", tokenURL, clk.Now()), ecKey, nil)
		}, want: dpop.ErrKey},
		{name: "jwk not an object", proof: func(t *testing.T, clk *clock) string {
			return rawProof(t, hdr(map[string]any{"jwk": "key"}), claimsFor("POST", tokenURL, clk.Now()), ecKey, nil)
		}, want: dpop.ErrKey},
		{name: "jwk of another key", proof: func(t *testing.T, clk *clock) string {
			return rawProof(t, hdr(map[string]any{"jwk": ecJWK(ec2Key, false)}), claimsFor("POST", tokenURL, clk.Now()), ecKey, nil)
		}, want: dpop.ErrSignature},
		{name: "HS256", proof: func(t *testing.T, clk *clock) string {
			return rawProof(t, hdr(map[string]any{"alg": "HS256"}), claimsFor("POST", tokenURL, clk.Now()), nil, []byte("0123456789abcdef0123456789abcdef"))
		}, want: dpop.ErrAlg},
		{name: "none", proof: func(t *testing.T, clk *clock) string {
			return rawProof(t, hdr(map[string]any{"alg": "none"}), claimsFor("POST", tokenURL, clk.Now()), nil, nil) + "x"
		}, want: dpop.ErrAlg},
		{name: "ES256 header with P-384 key", proof: func(t *testing.T, clk *clock) string {
			// Signed ES384 but claiming ES256 in a hand-made header: the key does not suit.
			p := proof(t, jose.ES384, ec384, claimsFor("POST", tokenURL, clk.Now()))
			parts := strings.Split(p, ".")
			h := decodeSeg(t, parts[0])
			h["alg"] = "ES256"
			return encodeSeg(t, h) + "." + parts[1] + "." + parts[2]
		}, want: dpop.ErrKey},
		{name: "ath missing", proof: valid(nil), token: "the-token", want: dpop.ErrATH},
		{name: "ath mismatch", proof: valid(func(c map[string]any) { c["ath"] = dpop.ATH("another-token") }), token: "the-token", want: dpop.ErrATH},
		{name: "tampered claims", proof: func(t *testing.T, clk *clock) string {
			p := proof(t, jose.ES256, ecKey, claimsFor("POST", "https://as.example.org/other", clk.Now()))
			parts := strings.Split(p, ".")
			return parts[0] + "." + encodeSeg(t, claimsFor("POST", tokenURL, clk.Now())) + "." + parts[2]
		}, want: dpop.ErrSignature},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			v := newVerifier(clk)
			method, u := tc.method, tc.url
			if method == "" {
				method = "POST"
			}
			if u == "" {
				u = tokenURL
			}
			p, err := v.Verify(context.Background(), tc.proof(t, clk), method, mustURL(t, u), tc.token)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if p != nil || !errors.Is(err, dpop.ErrInvalid) {
				t.Fatalf("refusal must return no proof and wrap ErrInvalid: %v", err)
			}
			if oe := dpop.OAuthError(err); oe.Code != oauth.InvalidDPoPProof {
				t.Fatalf("OAuthError code = %s", oe.Code)
			}
		})
	}
}

func TestVerifyRSATooShort(t *testing.T) {
	k, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	clk := newClock()
	_, err = newVerifier(clk).Verify(context.Background(), proof(t, jose.RS256, k, claimsFor("POST", tokenURL, clk.Now())), "POST", mustURL(t, tokenURL), "")
	if !errors.Is(err, dpop.ErrKey) {
		t.Fatalf("err = %v, want ErrKey", err)
	}
}

func TestVerifyAlgAllowlistNarrowed(t *testing.T) {
	keys(t)
	clk := newClock()
	v := newVerifier(clk)
	v.Algs = []string{"ES256", "HS256"} // HS256 is ignored, never allowed
	if err := v.Validate(); err == nil {
		t.Fatal("Validate accepted HS256")
	}
	if _, err := v.Verify(context.Background(), proof(t, jose.RS256, rsaKey, claimsFor("POST", tokenURL, clk.Now())), "POST", mustURL(t, tokenURL), ""); !errors.Is(err, dpop.ErrAlg) {
		t.Fatalf("RS256 outside the allowlist: err = %v", err)
	}
	if got := v.AllowedAlgs(); len(got) != 1 || got[0] != "ES256" {
		t.Fatalf("AllowedAlgs = %v", got)
	}
}

func TestVerifyReplay(t *testing.T) {
	keys(t)
	clk := newClock()
	v := newVerifier(clk)
	ctx := context.Background()
	c := claimsFor("POST", tokenURL, clk.Now())
	p := proof(t, jose.ES256, ecKey, c)
	if _, err := v.Verify(ctx, p, "POST", mustURL(t, tokenURL), ""); err != nil {
		t.Fatal(err)
	}
	clk.Add(30 * time.Second)
	if _, err := v.Verify(ctx, p, "POST", mustURL(t, tokenURL), ""); !errors.Is(err, dpop.ErrReplayed) {
		t.Fatalf("replay: err = %v, want ErrReplayed", err)
	}
	// Same jti re-signed by the same key: still a replay.
	if _, err := v.Verify(ctx, proof(t, jose.ES256, ecKey, c), "POST", mustURL(t, tokenURL), ""); !errors.Is(err, dpop.ErrReplayed) {
		t.Fatalf("same jti, same key: err = %v, want ErrReplayed", err)
	}
	// Another key may use the same jti value (the cache key includes jkt).
	if _, err := v.Verify(ctx, proof(t, jose.ES256, ec2Key, c), "POST", mustURL(t, tokenURL), ""); err != nil {
		t.Fatalf("same jti, other key: %v", err)
	}
	// After the window the proof is stale, never accepted again.
	clk.Add(time.Hour)
	if _, err := v.Verify(ctx, p, "POST", mustURL(t, tokenURL), ""); !errors.Is(err, dpop.ErrIAT) {
		t.Fatalf("after the window: err = %v, want ErrIAT", err)
	}
}

func TestVerifyRefusedProofDoesNotBurnJTI(t *testing.T) {
	keys(t)
	clk := newClock()
	v := newVerifier(clk)
	c := claimsFor("POST", tokenURL, clk.Now())
	c["ath"] = dpop.ATH("tok")
	p := proof(t, jose.ES256, ecKey, c)
	if _, err := v.Verify(context.Background(), p, "POST", mustURL(t, tokenURL), "other"); !errors.Is(err, dpop.ErrATH) {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), p, "POST", mustURL(t, tokenURL), "tok"); err != nil {
		t.Fatalf("valid use after a refusal: %v", err)
	}
}

func TestVerifyWindowEdges(t *testing.T) {
	keys(t)
	clk := newClock()
	v := newVerifier(clk)
	for _, d := range []time.Duration{-60 * time.Second, 5 * time.Second, 0} {
		c := claimsFor("POST", tokenURL, clk.Now().Add(d))
		if _, err := v.Verify(context.Background(), proof(t, jose.ES256, ecKey, c), "POST", mustURL(t, tokenURL), ""); err != nil {
			t.Fatalf("iat %s: %v", d, err)
		}
	}
	v.IATWindow = 10 * time.Second
	c := claimsFor("POST", tokenURL, clk.Now().Add(-11*time.Second))
	if _, err := v.Verify(context.Background(), proof(t, jose.ES256, ecKey, c), "POST", mustURL(t, tokenURL), ""); !errors.Is(err, dpop.ErrIAT) {
		t.Fatalf("custom window: %v", err)
	}
}

func TestVerifyHTUNormalised(t *testing.T) {
	keys(t)
	cases := []struct{ htu, req string }{
		{"https://AS.Example.ORG/token", "https://as.example.org/token"},
		{"HTTPS://as.example.org:443/token", "https://as.example.org/token"},
		{"https://as.example.org/token?x=1#f", "https://as.example.org/token?y=2"},
		{"http://localhost:80/token", "http://localhost/token"},
		{"http://localhost:8080/fhir/Patient/%7e1", "http://localhost:8080/fhir/Patient/~1"},
		{"https://as.example.org/a%2fb", "https://as.example.org/a%2Fb"},
		{"https://as.example.org", "https://as.example.org/"},
		{"https://[::1]:8443/token", "https://[::1]:8443/token"},
	}
	for _, tc := range cases {
		clk := newClock()
		v := newVerifier(clk)
		p := proof(t, jose.ES256, ecKey, claimsFor("GET", tc.htu, clk.Now()))
		if _, err := v.Verify(context.Background(), p, "GET", mustURL(t, tc.req), ""); err != nil {
			t.Errorf("htu %s vs %s: %v", tc.htu, tc.req, err)
		}
	}
	// Encoded and literal slash differ.
	clk := newClock()
	p := proof(t, jose.ES256, ecKey, claimsFor("GET", "https://as.example.org/a%2Fb", clk.Now()))
	if _, err := newVerifier(clk).Verify(context.Background(), p, "GET", mustURL(t, "https://as.example.org/a/b"), ""); !errors.Is(err, dpop.ErrURL) {
		t.Fatalf("%%2F vs /: err = %v", err)
	}
}

func TestVerifyATH(t *testing.T) {
	keys(t)
	clk := newClock()
	v := newVerifier(clk)
	c := claimsFor("GET", "https://fhir.example.org/r4/Patient/1", clk.Now())
	c["ath"] = dpop.ATH("access-token")
	p := proof(t, jose.ES256, ecKey, c)
	if _, err := v.Verify(context.Background(), p, "GET", mustURL(t, "https://fhir.example.org/r4/Patient/1?_format=json"), "access-token"); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyNonce(t *testing.T) {
	keys(t)
	clk := newClock()
	nonces, err := dpop.NewNonces(nil, time.Minute, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	v := newVerifier(clk)
	v.Nonces = nonces
	ctx := context.Background()

	// Missing nonce: use_dpop_nonce with a fresh nonce to retry with.
	_, err = v.Verify(ctx, proof(t, jose.ES256, ecKey, claimsFor("POST", tokenURL, clk.Now())), "POST", mustURL(t, tokenURL), "")
	if !errors.Is(err, dpop.ErrNonce) {
		t.Fatalf("err = %v, want ErrNonce", err)
	}
	n := dpop.NonceOf(err)
	if n == "" || !nonces.Valid(n) {
		t.Fatalf("nonce %q not valid", n)
	}
	if oe := dpop.OAuthError(err); oe.Code != oauth.UseDPoPNonce || oe.Code.Status() != 400 {
		t.Fatalf("OAuthError = %+v", oe)
	}
	var ne interface{ DPoPNonce() string }
	if !errors.As(err, &ne) || ne.DPoPNonce() != n {
		t.Fatal("error does not expose DPoPNonce")
	}

	// With the nonce: accepted.
	c := claimsFor("POST", tokenURL, clk.Now())
	c["nonce"] = n
	if _, err := v.Verify(ctx, proof(t, jose.ES256, ecKey, c), "POST", mustURL(t, tokenURL), ""); err != nil {
		t.Fatalf("with nonce: %v", err)
	}
	// A forged nonce and a stale one are refused.
	for name, bad := range map[string]string{"forged": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "garbage": "!!", "empty": ""} {
		c := claimsFor("POST", tokenURL, clk.Now())
		c["nonce"] = bad
		if _, err := v.Verify(ctx, proof(t, jose.ES256, ecKey, c), "POST", mustURL(t, tokenURL), ""); !errors.Is(err, dpop.ErrNonce) {
			t.Fatalf("%s nonce: err = %v", name, err)
		}
	}
	clk.Add(61 * time.Second) // previous period: still valid
	if !nonces.Valid(n) {
		t.Fatal("nonce of the previous period refused")
	}
	clk.Add(time.Minute)
	c = claimsFor("POST", tokenURL, clk.Now())
	c["nonce"] = n
	if _, err := v.Verify(ctx, proof(t, jose.ES256, ecKey, c), "POST", mustURL(t, tokenURL), ""); !errors.Is(err, dpop.ErrNonce) {
		t.Fatalf("stale nonce: err = %v", err)
	}
	// Another node's key does not validate our nonce.
	other, _ := dpop.NewNonces(nil, time.Minute, clk.Now)
	if other.Valid(nonces.Nonce()) {
		t.Fatal("nonce valid under another key")
	}
	if _, err := dpop.NewNonces([]byte("short"), 0, nil); !errors.Is(err, dpop.ErrConfig) {
		t.Fatalf("short key: %v", err)
	}
}

func TestVerifyReplayCacheDownFailsClosed(t *testing.T) {
	keys(t)
	clk := newClock()
	boom := errors.New("redis down")
	v := &dpop.Verifier{Replay: failingCache{boom}, Now: clk.Now}
	_, err := v.Verify(context.Background(), proof(t, jose.ES256, ecKey, claimsFor("POST", tokenURL, clk.Now())), "POST", mustURL(t, tokenURL), "")
	if !errors.Is(err, dpop.ErrUnavailable) || !errors.Is(err, boom) || errors.Is(err, dpop.ErrInvalid) {
		t.Fatalf("err = %v", err)
	}
	if oe := dpop.OAuthError(err); oe.Code != oauth.TemporarilyUnavailable {
		t.Fatalf("code = %s", oe.Code)
	}
	if _, err := (&dpop.Verifier{}).Verify(context.Background(), "x", "POST", mustURL(t, tokenURL), ""); !errors.Is(err, dpop.ErrUnavailable) {
		t.Fatalf("no cache: %v", err)
	}
	if err := (&dpop.Verifier{}).Validate(); !errors.Is(err, dpop.ErrConfig) {
		t.Fatalf("Validate without cache: %v", err)
	}
}

func BenchmarkVerifyES256(b *testing.B) {
	keys(b)
	v := &dpop.Verifier{Replay: acceptAll{}, Now: func() time.Time { return t0 }}
	p := proof(b, jose.ES256, ecKey, claimsFor("POST", tokenURL, t0))
	u := mustURL(b, tokenURL)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, p, "POST", u, ""); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyRS256(b *testing.B) {
	keys(b)
	v := &dpop.Verifier{Replay: acceptAll{}, Now: func() time.Time { return t0 }}
	p := proof(b, jose.RS256, rsaKey, claimsFor("POST", tokenURL, t0))
	u := mustURL(b, tokenURL)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, p, "POST", u, ""); err != nil {
			b.Fatal(err)
		}
	}
}

// TestVerifyAliases: a proof may name the request URL under a configured
// alias prefix of this server (its mTLS listener); any other host, port or
// path is still refused, a prefix only matches at a path boundary, and bad
// aliases are configuration errors.
func TestVerifyAliases(t *testing.T) {
	keys(t)
	clk := newClock()
	v := newVerifier(clk)
	v.Aliases = map[string]string{
		"https://as.example.org":          "https://mtls.example.org:9443",
		"https://fhir.example.org/r4/api": "https://mtls.example.org:9443/r4/api",
	}
	if err := v.Validate(); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		request, htu string
		ok           bool
	}{
		{tokenURL, tokenURL, true},
		{tokenURL, "https://mtls.example.org:9443/token", true},
		{tokenURL, "HTTPS://MTLS.example.org:9443/token", true},
		{"https://fhir.example.org/r4/api/Patient/1", "https://mtls.example.org:9443/r4/api/Patient/1", true},
		{"https://fhir.example.org/r4/api", "https://mtls.example.org:9443/r4/api", true},
		{tokenURL, "https://mtls.example.org:9444/token", false},
		{tokenURL, "https://mtls.example.org:9443/par", false},
		{tokenURL, "https://evil.example.org/token", false},
		{"https://fhir.example.org/r4/apix/Patient", "https://mtls.example.org:9443/r4/apix/Patient", false},
		{"https://fhir.example.org/r4/api/Patient/1", "https://mtls.example.org:9443/Patient/1", false},
	}
	for _, tc := range cases {
		_, err := v.Verify(context.Background(), proof(t, jose.ES256, ecKey, claimsFor("GET", tc.htu, clk.Now())), "GET", mustURL(t, tc.request), "")
		if tc.ok && err != nil {
			t.Errorf("request %s, htu %s: %v", tc.request, tc.htu, err)
		}
		if !tc.ok && !errors.Is(err, dpop.ErrURL) {
			t.Errorf("request %s, htu %s: err = %v, want ErrURL", tc.request, tc.htu, err)
		}
	}
	for _, bad := range []string{"ftp://x.example.org", "https://x.example.org/?q=1", "/relative", "https://u@x.example.org"} {
		w := newVerifier(clk)
		w.Aliases = map[string]string{"https://as.example.org": bad}
		if err := w.Validate(); !errors.Is(err, dpop.ErrConfig) {
			t.Errorf("alias %q: Validate = %v, want ErrConfig", bad, err)
		}
	}
}
