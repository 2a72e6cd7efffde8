package jwtverify_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/fhirgate/fhirgate/internal/jwtverify"
	"github.com/fhirgate/fhirgate/internal/token"
)

const aud = "https://gw.example/fhir"

// issuer is a fake authorization server: metadata and a JWK Set that can
// change, and signing keys.
type issuer struct {
	srv     *httptest.Server
	mu      sync.Mutex
	keys    []jose.JSONWebKey // published (public) keys
	jwksHit atomic.Int32
	metaIss string // issuer named in the metadata ("" = the real one)
}

func newIssuer(t *testing.T) *issuer {
	is := &issuer{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", func(w http.ResponseWriter, r *http.Request) {
		iss := is.srv.URL
		is.mu.Lock()
		if is.metaIss != "" {
			iss = is.metaIss
		}
		is.mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": iss, "jwks_uri": is.srv.URL + "/jwks"})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		is.jwksHit.Add(1)
		is.mu.Lock()
		defer is.mu.Unlock()
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: is.keys})
	})
	is.srv = httptest.NewServer(mux)
	t.Cleanup(is.srv.Close)
	return is
}

func (is *issuer) publish(k jose.JSONWebKey) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.keys = append(is.keys, k)
}

func ecKey(t *testing.T, kid string) (*ecdsa.PrivateKey, jose.JSONWebKey) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k, jose.JSONWebKey{Key: &k.PublicKey, KeyID: kid, Algorithm: "ES256", Use: "sig"}
}

func sign(t *testing.T, alg jose.SignatureAlgorithm, key any, kid, typ string, claims any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType(jose.ContentType(typ)).WithHeader("kid", kid)
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(claims)
	jws, err := s.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func claims(iss string, now time.Time) token.AccessClaims {
	return token.AccessClaims{Issuer: iss, Subject: "u1", Audience: aud, ClientID: "c1", Scope: "patient/*.rs",
		JTI: "j1", IssuedAt: now.Unix(), ExpiresAt: now.Add(5 * time.Minute).Unix(), Patient: "p1"}
}

func setup(t *testing.T) (*issuer, *clock, *jwtverify.Parser) {
	t.Helper()
	is := newIssuer(t)
	clk := &clock{t: time.Now()}
	keys, err := jwtverify.New(jwtverify.Options{Issuer: is.srv.URL, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	p, err := jwtverify.NewParser(keys, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	return is, clk, p
}

func TestVerifyAndClaimChecks(t *testing.T) {
	is, clk, p := setup(t)
	k1, pub1 := ecKey(t, "k1")
	is.publish(pub1)
	now := clk.now()
	good := claims(is.srv.URL, now)
	c, err := p.ParseAccessToken(sign(t, jose.ES256, k1, "k1", "at+jwt", good), aud)
	if err != nil || c.Patient != "p1" || c.Subject != "u1" {
		t.Fatalf("valid token: %v %+v", err, c)
	}
	// Same checks as token.Issuer.ParseAccessToken.
	for name, mut := range map[string]func(*token.AccessClaims){
		"wrong iss":   func(c *token.AccessClaims) { c.Issuer = "https://evil.example" },
		"wrong aud":   func(c *token.AccessClaims) { c.Audience = "https://other.example/fhir" },
		"expired":     func(c *token.AccessClaims) { c.ExpiresAt = now.Add(-time.Minute).Unix() },
		"not yet":     func(c *token.AccessClaims) { c.NotBefore = now.Add(time.Minute).Unix() },
		"future iat":  func(c *token.AccessClaims) { c.IssuedAt = now.Add(time.Minute).Unix() },
		"no sub":      func(c *token.AccessClaims) { c.Subject = "" },
		"no jti":      func(c *token.AccessClaims) { c.JTI = "" },
		"no clientid": func(c *token.AccessClaims) { c.ClientID = "" },
	} {
		cl := good
		mut(&cl)
		if _, err := p.ParseAccessToken(sign(t, jose.ES256, k1, "k1", "at+jwt", cl), aud); !errors.Is(err, token.ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// typ must be at+jwt.
	if _, err := p.ParseAccessToken(sign(t, jose.ES256, k1, "k1", "JWT", good), aud); !errors.Is(err, token.ErrInvalid) {
		t.Errorf("typ JWT: %v", err)
	}
	if _, err := p.ParseAccessToken(sign(t, jose.ES256, k1, "k1", "application/at+jwt", good), aud); err != nil {
		t.Errorf("typ application/at+jwt: %v", err)
	}
	// A tampered payload.
	raw := sign(t, jose.ES256, k1, "k1", "at+jwt", good)
	parts := strings.Split(raw, ".")
	other := good
	other.Patient = "p2"
	ob, _ := json.Marshal(other)
	parts[1] = base64.RawURLEncoding.EncodeToString(ob)
	if _, err := p.ParseAccessToken(strings.Join(parts, "."), aud); !errors.Is(err, token.ErrInvalid) {
		t.Errorf("tampered: %v", err)
	}
	// A key the issuer never published, with a known kid.
	k2, _ := ecKey(t, "k1")
	if _, err := p.ParseAccessToken(sign(t, jose.ES256, k2, "k1", "at+jwt", good), aud); !errors.Is(err, token.ErrInvalid) {
		t.Errorf("foreign key: %v", err)
	}
	if is.jwksHit.Load() != 1 {
		t.Errorf("jwks fetched %d times, want 1 (cached)", is.jwksHit.Load())
	}
}

func TestRefusedAlgorithms(t *testing.T) {
	is, clk, p := setup(t)
	_, pub1 := ecKey(t, "k1")
	is.publish(pub1)
	good := claims(is.srv.URL, clk.now())
	payload, _ := json.Marshal(good)
	enc := base64.RawURLEncoding.EncodeToString
	// alg none.
	none := enc([]byte(`{"alg":"none","typ":"at+jwt","kid":"k1"}`)) + "." + enc(payload) + "."
	if _, err := p.ParseAccessToken(none, aud); !errors.Is(err, token.ErrInvalid) {
		t.Fatalf("alg none: %v", err)
	}
	// HS256 keyed with the public key's bytes (the classic confusion) and
	// with any secret.
	for _, secret := range [][]byte{[]byte("0123456789abcdef0123456789abcdef"), []byte(enc(pub1.Key.(*ecdsa.PublicKey).X.Bytes()))} {
		raw := sign(t, jose.HS256, secret, "k1", "at+jwt", good)
		if _, err := p.ParseAccessToken(raw, aud); !errors.Is(err, token.ErrInvalid) {
			t.Fatalf("HS256: %v", err)
		}
	}
	// RS256 header over an EC key id.
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	if _, err := p.ParseAccessToken(sign(t, jose.RS256, rk, "k1", "at+jwt", good), aud); !errors.Is(err, token.ErrInvalid) {
		t.Fatalf("RS256 with EC kid: %v", err)
	}
	// PS256/ES384 are not on the allowlist.
	ek, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, err := p.ParseAccessToken(sign(t, jose.ES384, ek, "k1", "at+jwt", good), aud); !errors.Is(err, token.ErrInvalid) {
		t.Fatalf("ES384: %v", err)
	}
	// An embedded jwk header is never trusted.
	k3, _ := ecKey(t, "k3")
	opts := (&jose.SignerOptions{EmbedJWK: true}).WithType("at+jwt")
	s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k3}, opts)
	jws, _ := s.Sign(payload)
	embedded, _ := jws.CompactSerialize()
	if _, err := p.ParseAccessToken(embedded, aud); !errors.Is(err, token.ErrInvalid) {
		t.Fatalf("embedded jwk: %v", err)
	}
	// Allowlist in Options: only ES256 and RS256 may be configured.
	for _, a := range []string{"none", "HS256", "PS256"} {
		if _, err := jwtverify.New(jwtverify.Options{Issuer: is.srv.URL, Algorithms: []string{a}}); !errors.Is(err, jwtverify.ErrOptions) {
			t.Errorf("allowlist %s: %v", a, err)
		}
	}
}

func TestSymmetricKeyInSetRefused(t *testing.T) {
	is, clk, p := setup(t)
	secret := []byte("0123456789abcdef0123456789abcdef")
	is.publish(jose.JSONWebKey{Key: secret, KeyID: "h1", Algorithm: "HS256"})
	raw := sign(t, jose.HS256, secret, "h1", "at+jwt", claims(is.srv.URL, clk.now()))
	if _, err := p.ParseAccessToken(raw, aud); !errors.Is(err, token.ErrInvalid) {
		t.Fatalf("HS256 with an oct key in the set: %v", err)
	}
}

func TestKeyRotationPickedUpByUnknownKID(t *testing.T) {
	is, clk, p := setup(t)
	k1, pub1 := ecKey(t, "k1")
	is.publish(pub1)
	if _, err := p.ParseAccessToken(sign(t, jose.ES256, k1, "k1", "at+jwt", claims(is.srv.URL, clk.now())), aud); err != nil {
		t.Fatal(err)
	}
	// The issuer rotates: a new key, published after our fetch.
	k2, pub2 := ecKey(t, "k2")
	is.publish(pub2)
	clk.add(jwtverify.DefaultMinRefreshInterval + time.Second)
	c, err := p.ParseAccessToken(sign(t, jose.ES256, k2, "k2", "at+jwt", claims(is.srv.URL, clk.now())), aud)
	if err != nil || c == nil {
		t.Fatalf("token of the rotated key: %v", err)
	}
	if got := is.jwksHit.Load(); got != 2 {
		t.Fatalf("jwks fetched %d times, want 2", got)
	}
	// RS256 keys are accepted too.
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	is.publish(jose.JSONWebKey{Key: &rk.PublicKey, KeyID: "r1", Algorithm: "RS256", Use: "sig"})
	clk.add(jwtverify.DefaultMinRefreshInterval + time.Second)
	if _, err := p.ParseAccessToken(sign(t, jose.RS256, rk, "r1", "at+jwt", claims(is.srv.URL, clk.now())), aud); err != nil {
		t.Fatalf("RS256: %v", err)
	}
	// After TTL the set is fetched again even for a known kid; removed keys stop working.
	is.mu.Lock()
	is.keys = []jose.JSONWebKey{pub2}
	is.mu.Unlock()
	clk.add(jwtverify.DefaultTTL)
	if _, err := p.ParseAccessToken(sign(t, jose.ES256, k1, "k1", "at+jwt", claims(is.srv.URL, clk.now())), aud); !errors.Is(err, jwtverify.ErrUnknownKID) {
		t.Fatalf("removed key: %v", err)
	}
}

func TestRefreshIsRateLimited(t *testing.T) {
	is, clk, p := setup(t)
	k1, pub1 := ecKey(t, "k1")
	is.publish(pub1)
	good := claims(is.srv.URL, clk.now())
	if _, err := p.ParseAccessToken(sign(t, jose.ES256, k1, "k1", "at+jwt", good), aud); err != nil {
		t.Fatal(err)
	}
	// A flood of tokens with made-up kids, from many goroutines: no fetch
	// within the interval.
	forger, _ := ecKey(t, "x")
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			kid := "forged-" + string(rune('a'+i%26))
			if _, err := p.ParseAccessToken(sign(t, jose.ES256, forger, kid, "at+jwt", good), aud); !errors.Is(err, jwtverify.ErrUnknownKID) {
				t.Errorf("forged kid: %v", err)
			}
		}()
	}
	wg.Wait()
	if got := is.jwksHit.Load(); got != 1 {
		t.Fatalf("jwks fetched %d times within the interval, want 1", got)
	}
	// After the interval: exactly one more fetch for the next burst.
	clk.add(jwtverify.DefaultMinRefreshInterval + time.Second)
	for i := range 20 {
		_, _ = p.ParseAccessToken(sign(t, jose.ES256, forger, "again-"+string(rune('a'+i)), "at+jwt", good), aud)
	}
	if got := is.jwksHit.Load(); got != 2 {
		t.Fatalf("jwks fetched %d times, want 2", got)
	}
	// Valid tokens are unaffected throughout.
	if _, err := p.ParseAccessToken(sign(t, jose.ES256, k1, "k1", "at+jwt", good), aud); err != nil {
		t.Fatal(err)
	}
}

func TestIssuerMismatchAndOutage(t *testing.T) {
	is, clk, p := setup(t)
	k1, pub1 := ecKey(t, "k1")
	is.publish(pub1)
	is.mu.Lock()
	is.metaIss = "https://evil.example"
	is.mu.Unlock()
	raw := sign(t, jose.ES256, k1, "k1", "at+jwt", claims(is.srv.URL, clk.now()))
	if _, err := p.ParseAccessToken(raw, aud); !errors.Is(err, jwtverify.ErrKeysUnavailable) {
		t.Fatalf("metadata naming another issuer: %v", err)
	}
	// Recovery after the interval.
	is.mu.Lock()
	is.metaIss = ""
	is.mu.Unlock()
	clk.add(jwtverify.DefaultMinRefreshInterval + time.Second)
	if _, err := p.ParseAccessToken(sign(t, jose.ES256, k1, "k1", "at+jwt", claims(is.srv.URL, clk.now())), aud); err != nil {
		t.Fatal(err)
	}
	// The issuer goes away: cached keys serve until MaxStaleness, then fail closed.
	is.srv.Close()
	clk.add(jwtverify.DefaultTTL + time.Second)
	if _, err := p.ParseAccessToken(sign(t, jose.ES256, k1, "k1", "at+jwt", claims(is.srv.URL, clk.now())), aud); err != nil {
		t.Fatalf("within MaxStaleness: %v", err)
	}
	clk.add(jwtverify.DefaultMaxStaleness)
	if _, err := p.ParseAccessToken(sign(t, jose.ES256, k1, "k1", "at+jwt", claims(is.srv.URL, clk.now())), aud); !errors.Is(err, jwtverify.ErrKeysUnavailable) {
		t.Fatalf("past MaxStaleness: %v", err)
	}
}

func TestConfiguredJWKSURI(t *testing.T) {
	is := newIssuer(t)
	k1, pub1 := ecKey(t, "k1")
	is.publish(pub1)
	is.mu.Lock()
	is.metaIss = "https://evil.example" // ignored: no discovery
	is.mu.Unlock()
	keys, err := jwtverify.New(jwtverify.Options{Issuer: is.srv.URL, JWKSURI: is.srv.URL + "/jwks"})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := jwtverify.NewParser(keys, nil)
	if _, err := p.ParseAccessToken(sign(t, jose.ES256, k1, "k1", "at+jwt", claims(is.srv.URL, time.Now())), aud); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []jwtverify.Options{{Issuer: "not a url"}, {Issuer: is.srv.URL, JWKSURI: "ftp://x"},
		{Issuer: is.srv.URL, TTL: time.Hour, MaxStaleness: time.Minute}} {
		if _, err := jwtverify.New(bad); !errors.Is(err, jwtverify.ErrOptions) {
			t.Errorf("%+v: %v", bad, err)
		}
	}
}
