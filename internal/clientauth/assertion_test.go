package clientauth_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/fhirgate/fhirgate/internal/clientauth"
	"github.com/fhirgate/fhirgate/internal/jwksfetch"
	"github.com/fhirgate/fhirgate/internal/oauth"
	"github.com/fhirgate/fhirgate/internal/replay"
	"github.com/fhirgate/fhirgate/internal/secret"
	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/storage/sqlite"
)

const (
	tokenURL  = "https://as.example/token"
	issuerURL = "https://as.example"
)

var (
	keyOnce sync.Once
	rsaKey  *rsa.PrivateKey
	ecKey   *ecdsa.PrivateKey
	ecKey2  *ecdsa.PrivateKey
)

func testKeys(t testing.TB) {
	t.Helper()
	keyOnce.Do(func() {
		var err error
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if ecKey, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); err != nil {
			panic(err)
		}
		if ecKey2, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); err != nil {
			panic(err)
		}
	})
}

func jwksJSON(t testing.TB, keys ...jose.JSONWebKey) []byte {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sign builds a client assertion with the given header alg/kid and claims.
func sign(t testing.TB, alg jose.SignatureAlgorithm, key any, kid string, claims map[string]any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	obj, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func claimsFor(id string, now time.Time) map[string]any {
	return map[string]any{
		"iss": id, "sub": id, "aud": tokenURL, "jti": secret.ID(),
		"exp": now.Add(4 * time.Minute).Unix(), "iat": now.Unix(),
	}
}

type fixture struct {
	st   storage.Clients
	a    clientauth.Authenticator
	now  time.Time
	hits *atomic.Int32
	srv  *httptest.Server
	keys *atomic.Pointer[[]byte] // what the jwks_uri server serves
}

func newFixture(t testing.TB) *fixture {
	testKeys(t)
	return buildFixture(t, newStoreTB(t))
}

func newStoreTB(t testing.TB) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func buildFixture(t testing.TB, st storage.Clients) *fixture {
	f := &fixture{st: st, now: time.Now(), hits: &atomic.Int32{}, keys: &atomic.Pointer[[]byte]{}}
	served := jwksJSON(t, jose.JSONWebKey{Key: &ecKey.PublicKey, KeyID: "ec1", Algorithm: "ES384", Use: "sig"})
	f.keys.Store(&served)
	f.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Write(*f.keys.Load())
	}))
	t.Cleanup(f.srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(f.srv.Certificate())
	fetcher, err := jwksfetch.New(jwksfetch.Options{RootCAs: pool, InsecureAllowPrivateAddresses: true, Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	mk := func(c storage.Client) {
		c.Name = c.ID
		c.Scope = "system/*.rs"
		c.GrantTypes = []string{string(oauth.GrantClientCredentials)}
		if err := st.CreateClient(ctx, &c); err != nil {
			t.Fatal(err)
		}
	}
	mk(storage.Client{ID: "rsa-inline", AuthMethod: string(oauth.AuthPrivateKeyJWT),
		JWKS: jwksJSON(t, jose.JSONWebKey{Key: &rsaKey.PublicKey, KeyID: "rsa1", Algorithm: "RS384", Use: "sig"})})
	mk(storage.Client{ID: "ec-uri", AuthMethod: string(oauth.AuthPrivateKeyJWT), JWKSURI: f.srv.URL + "/jwks"})
	mk(storage.Client{ID: "secret", AuthMethod: string(oauth.AuthClientSecretBasic), SecretHash: storage.HashSecret("s3cret")})
	f.a = clientauth.Authenticator{
		Clients:   st,
		Audiences: []string{tokenURL, issuerURL},
		Replay:    replay.NewMemory(func() time.Time { return f.now }, 10000),
		JWKS:      fetcher,
		Now:       func() time.Time { return f.now },
	}
	return f
}

func assertionCreds(raw string) clientauth.Credentials {
	return clientauth.Credentials{HasAssertion: true, Assertion: raw, AssertionType: clientauth.AssertionTypeJWTBearer}
}

func TestPrivateKeyJWTAccepts(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	raw := sign(t, jose.RS384, rsaKey, "rsa1", claimsFor("rsa-inline", f.now))
	c, err := f.a.Authenticate(ctx, assertionCreds(raw))
	if err != nil || c.ID != "rsa-inline" {
		t.Fatalf("rsa inline: %v %v", c, err)
	}
	// client_id may be given; it must match.
	creds := assertionCreds(sign(t, jose.RS384, rsaKey, "rsa1", claimsFor("rsa-inline", f.now)))
	creds.FormID = "rsa-inline"
	if _, err := f.a.Authenticate(ctx, creds); err != nil {
		t.Fatal(err)
	}
	// ES384 via jwks_uri, aud = issuer (FAPI 2.0) and as an array.
	cl := claimsFor("ec-uri", f.now)
	cl["aud"] = []string{"https://other.example", issuerURL + "/"}
	if c, err := f.a.Authenticate(ctx, assertionCreds(sign(t, jose.ES384, ecKey, "ec1", cl))); err != nil || c.ID != "ec-uri" {
		t.Fatalf("ec uri: %v %v", c, err)
	}
	// Without kid the compatible registered key is tried.
	if _, err := f.a.Authenticate(ctx, assertionCreds(sign(t, jose.ES384, ecKey, "", claimsFor("ec-uri", f.now)))); err != nil {
		t.Fatal(err)
	}
	if n := f.hits.Load(); n != 1 {
		t.Fatalf("jwks_uri fetched %d times, want 1 (cached)", n)
	}
}

func TestPrivateKeyJWTRefusals(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	now := f.now
	with := func(id string, mod func(map[string]any)) map[string]any {
		c := claimsFor(id, now)
		mod(c)
		return c
	}
	hmacWithPublicKey := func() string {
		pub, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
		return sign(t, jose.HS256, pub, "rsa1", claimsFor("rsa-inline", now))
	}
	none := func() string {
		h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","kid":"rsa1"}`))
		p, _ := json.Marshal(claimsFor("rsa-inline", now))
		return h + "." + base64.RawURLEncoding.EncodeToString(p) + "."
	}
	replayed := sign(t, jose.RS384, rsaKey, "rsa1", claimsFor("rsa-inline", now))
	if _, err := f.a.Authenticate(ctx, assertionCreds(replayed)); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		creds clientauth.Credentials
		cause error
	}{
		{"wrong aud", assertionCreds(sign(t, jose.RS384, rsaKey, "rsa1", with("rsa-inline", func(c map[string]any) { c["aud"] = "https://evil.example/token" }))), clientauth.ErrAssertionClaims},
		{"no aud", assertionCreds(sign(t, jose.RS384, rsaKey, "rsa1", with("rsa-inline", func(c map[string]any) { delete(c, "aud") }))), clientauth.ErrAssertionClaims},
		{"exp far ahead", assertionCreds(sign(t, jose.RS384, rsaKey, "rsa1", with("rsa-inline", func(c map[string]any) { c["exp"] = now.Add(10 * time.Minute).Unix() }))), clientauth.ErrAssertionClaims},
		{"expired", assertionCreds(sign(t, jose.RS384, rsaKey, "rsa1", with("rsa-inline", func(c map[string]any) { c["exp"] = now.Add(-2 * time.Minute).Unix() }))), clientauth.ErrAssertionClaims},
		{"no exp", assertionCreds(sign(t, jose.RS384, rsaKey, "rsa1", with("rsa-inline", func(c map[string]any) { delete(c, "exp") }))), clientauth.ErrAssertionClaims},
		{"no jti", assertionCreds(sign(t, jose.RS384, rsaKey, "rsa1", with("rsa-inline", func(c map[string]any) { delete(c, "jti") }))), clientauth.ErrAssertionClaims},
		{"iat in future", assertionCreds(sign(t, jose.RS384, rsaKey, "rsa1", with("rsa-inline", func(c map[string]any) { c["iat"] = now.Add(2 * time.Minute).Unix() }))), clientauth.ErrAssertionClaims},
		{"nbf in future", assertionCreds(sign(t, jose.RS384, rsaKey, "rsa1", with("rsa-inline", func(c map[string]any) { c["nbf"] = now.Add(2 * time.Minute).Unix() }))), clientauth.ErrAssertionClaims},
		{"iss differs from sub", assertionCreds(sign(t, jose.RS384, rsaKey, "rsa1", with("rsa-inline", func(c map[string]any) { c["iss"] = "ec-uri" }))), clientauth.ErrAssertionClaims},
		{"replayed jti", assertionCreds(replayed), clientauth.ErrAssertionReplayed},
		{"unknown kid", assertionCreds(sign(t, jose.RS384, rsaKey, "nope", claimsFor("rsa-inline", now))), clientauth.ErrUnknownKey},
		{"wrong key same kid", assertionCreds(sign(t, jose.ES384, ecKey2, "ec1", claimsFor("ec-uri", now))), clientauth.ErrBadSignature},
		{"alg none", assertionCreds(none()), clientauth.ErrAssertionAlg},
		{"HS256 with the public key", assertionCreds(hmacWithPublicKey()), clientauth.ErrAssertionAlg},
		{"alg not matching key", assertionCreds(sign(t, jose.PS384, rsaKey, "rsa1", claimsFor("rsa-inline", now))), clientauth.ErrUnknownKey},
		{"other client's key", assertionCreds(sign(t, jose.ES384, ecKey, "ec1", claimsFor("rsa-inline", now))), clientauth.ErrUnknownKey},
		{"wrong assertion type", clientauth.Credentials{HasAssertion: true, AssertionType: "urn:x", Assertion: sign(t, jose.RS384, rsaKey, "rsa1", claimsFor("rsa-inline", now))}, clientauth.ErrMalformedAssertion},
		{"garbage", assertionCreds("a.b.c"), clientauth.ErrMalformedAssertion},
		{"client_id differs from sub", func() clientauth.Credentials {
			c := assertionCreds(sign(t, jose.RS384, rsaKey, "rsa1", claimsFor("rsa-inline", now)))
			c.FormID = "ec-uri"
			return c
		}(), clientauth.ErrClientIDMismatch},
		{"assertion by a secret client", assertionCreds(sign(t, jose.RS384, rsaKey, "rsa1", claimsFor("secret", now))), clientauth.ErrMethodMismatch},
		{"secret for a jwt client", clientauth.Credentials{HasBasic: true, BasicID: "rsa-inline", BasicSecret: "x"}, clientauth.ErrMethodMismatch},
		{"public for a jwt client", clientauth.Credentials{FormID: "rsa-inline"}, clientauth.ErrMethodMismatch},
		{"unknown client", assertionCreds(sign(t, jose.RS384, rsaKey, "rsa1", claimsFor("nobody", now))), clientauth.ErrUnknownClient},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := f.a.Authenticate(ctx, tc.creds)
			var oe *oauth.Error
			if c != nil || !errors.As(err, &oe) || oe.Code != oauth.InvalidClient || !errors.Is(err, tc.cause) {
				t.Fatalf("client %v err %v, want invalid_client wrapping %v", c, err, tc.cause)
			}
		})
	}
}

func TestPrivateKeyJWTUnknownKidRefreshesOnce(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.a.Authenticate(ctx, assertionCreds(sign(t, jose.ES384, ecKey, "ec1", claimsFor("ec-uri", f.now)))); err != nil {
		t.Fatal(err)
	}
	// The client rotates to a new key; the first assertion with the new kid
	// triggers one refresh (after the rate-limit interval).
	served := jwksJSON(t, jose.JSONWebKey{Key: &ecKey2.PublicKey, KeyID: "ec2", Algorithm: "ES384"})
	f.keys.Store(&served)
	if _, err := f.a.Authenticate(ctx, assertionCreds(sign(t, jose.ES384, ecKey2, "ec2", claimsFor("ec-uri", f.now)))); !errors.Is(err, clientauth.ErrUnknownKey) {
		t.Fatalf("refresh within the interval: %v", err)
	}
	f.now = f.now.Add(2 * time.Minute)
	if _, err := f.a.Authenticate(ctx, assertionCreds(sign(t, jose.ES384, ecKey2, "ec2", claimsFor("ec-uri", f.now)))); err != nil {
		t.Fatal(err)
	}
	// A flood of unknown kids does not hammer the client's server.
	before := f.hits.Load()
	for range 20 {
		f.a.Authenticate(ctx, assertionCreds(sign(t, jose.ES384, ecKey2, "zzz", claimsFor("ec-uri", f.now))))
	}
	if f.hits.Load() != before {
		t.Fatalf("unknown kids caused %d fetches", f.hits.Load()-before)
	}
}

func TestJWKSURIOnLoopbackRefusedByDefault(t *testing.T) {
	f := newFixture(t)
	strict, err := jwksfetch.New(jwksfetch.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f.a.JWKS = strict
	_, err = f.a.Authenticate(context.Background(), assertionCreds(sign(t, jose.ES384, ecKey, "ec1", claimsFor("ec-uri", f.now))))
	if !errors.Is(err, clientauth.ErrClientKeys) || f.hits.Load() != 0 {
		t.Fatalf("err %v, hits %d", err, f.hits.Load())
	}
}

func TestPrivateKeyJWTFailsClosedWithoutReplayCache(t *testing.T) {
	f := newFixture(t)
	f.a.Replay = nil
	_, err := f.a.Authenticate(context.Background(), assertionCreds(sign(t, jose.RS384, rsaKey, "rsa1", claimsFor("rsa-inline", f.now))))
	if !errors.Is(err, clientauth.ErrNotConfigured) {
		t.Fatal(err)
	}
}

type brokenReplay struct{}

func (brokenReplay) UseOnce(context.Context, string, time.Time) error { return errors.New("down") }

func TestPrivateKeyJWTReplayCacheDown(t *testing.T) {
	f := newFixture(t)
	f.a.Replay = brokenReplay{}
	_, err := f.a.Authenticate(context.Background(), assertionCreds(sign(t, jose.RS384, rsaKey, "rsa1", claimsFor("rsa-inline", f.now))))
	if oe := oauth.As(err); oe.Code != oauth.TemporarilyUnavailable {
		t.Fatalf("err %v, want temporarily_unavailable", err)
	}
}

func TestConcurrentReplayOneWinner(t *testing.T) {
	f := newFixture(t)
	raw := sign(t, jose.RS384, rsaKey, "rsa1", claimsFor("rsa-inline", f.now))
	var ok atomic.Int32
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if _, err := f.a.Authenticate(context.Background(), assertionCreds(raw)); err == nil {
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 {
		t.Fatalf("%d winners", ok.Load())
	}
}

// BenchmarkAssertionRS384 measures a full private_key_jwt authentication
// (client lookup in SQLite, RS384 verification, claim checks, replay record).
func BenchmarkAssertionRS384(b *testing.B) {
	testKeys(b)
	benchAssertion(b, jose.RS384, rsaKey, "rsa1", "rsa-inline")
}

// BenchmarkAssertionES384 is the same with ES384 keys from a jwks_uri (cached).
func BenchmarkAssertionES384(b *testing.B) {
	testKeys(b)
	benchAssertion(b, jose.ES384, ecKey, "ec1", "ec-uri")
}

func benchAssertion(b *testing.B, alg jose.SignatureAlgorithm, key crypto.Signer, kid, id string) {
	st := newStoreTB(b)
	f := buildFixture(b, st)
	ctx := context.Background()
	raws := make([]string, b.N)
	for i := range raws {
		raws[i] = sign(b, alg, key, kid, claimsFor(id, f.now))
	}
	b.ResetTimer()
	for i := range b.N {
		if _, err := f.a.Authenticate(ctx, assertionCreds(raws[i])); err != nil {
			b.Fatal(err)
		}
	}
}

func signWithJKU(t testing.TB, key any, kid, jku string, claims map[string]any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES384, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithHeader("jku", jku))
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	obj, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := obj.CompactSerialize()
	return raw
}

func TestAssertionJKUAndAmbiguousKeys(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	// jku equal to the registered jwks_uri is fine; any other is refused.
	if _, err := f.a.Authenticate(ctx, assertionCreds(signWithJKU(t, ecKey, "ec1", f.srv.URL+"/jwks", claimsFor("ec-uri", f.now)))); err != nil {
		t.Fatal(err)
	}
	_, err := f.a.Authenticate(ctx, assertionCreds(signWithJKU(t, ecKey, "ec1", "https://evil.example/jwks", claimsFor("ec-uri", f.now))))
	if !errors.Is(err, clientauth.ErrUnknownKey) {
		t.Fatalf("foreign jku: %v", err)
	}
	// Two compatible keys and no kid: ambiguous, refused.
	two := jwksJSON(t, jose.JSONWebKey{Key: &ecKey.PublicKey, KeyID: "a"}, jose.JSONWebKey{Key: &ecKey2.PublicKey, KeyID: "b"})
	if err := f.st.CreateClient(ctx, &storage.Client{ID: "two", Name: "two", AuthMethod: "private_key_jwt", JWKS: two}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.a.Authenticate(ctx, assertionCreds(sign(t, jose.ES384, ecKey, "", claimsFor("two", f.now)))); !errors.Is(err, clientauth.ErrUnknownKey) {
		t.Fatalf("ambiguous: %v", err)
	}
	if _, err := f.a.Authenticate(ctx, assertionCreds(sign(t, jose.ES384, ecKey, "a", claimsFor("two", f.now)))); err != nil {
		t.Fatal(err)
	}
	// Inferno sends exp = now + 300 s exactly; a little clock skew is tolerated.
	c := claimsFor("rsa-inline", f.now)
	c["exp"] = f.now.Add(5*time.Minute + 30*time.Second).Unix()
	if _, err := f.a.Authenticate(ctx, assertionCreds(sign(t, jose.RS384, rsaKey, "rsa1", c))); err != nil {
		t.Fatal(err)
	}
}
