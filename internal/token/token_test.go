package token_test

import (
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/fhirgate/fhirgate/internal/keys"
	"github.com/fhirgate/fhirgate/internal/storage/sqlite"
	"github.com/fhirgate/fhirgate/internal/token"
)

const (
	issuer = "https://auth.example.org"
	aud    = "https://auth.example.org/fhir"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type fixture struct {
	keys  *keys.Manager
	clock *clock
	iss   *token.Issuer
}

// newFixture builds a key manager on a real SQLite file and an Issuer.
func newFixture(t testing.TB, opts token.Options) *fixture {
	t.Helper()
	ctx := context.Background()
	store, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "fhirgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	c := &clock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
	km, err := keys.New(ctx, keys.Options{Store: store, KEK: make([]byte, 32), Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	opts.Signer, opts.Verifier, opts.Now = km, km, c.Now
	if opts.Issuer == "" {
		opts.Issuer = issuer
	}
	iss, err := token.NewIssuer(opts)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{keys: km, clock: c, iss: iss}
}

func decodePart(t testing.TB, tok string, i int) map[string]any {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[i])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	d := json.NewDecoder(strings.NewReader(string(raw)))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

func sampleClaims() token.AccessClaims {
	return token.AccessClaims{
		Subject: "user-1", Audience: aud, ClientID: "app", Scope: "openid fhirUser patient/*.rs",
		Patient: "123", FHIRUser: aud + "/Patient/123", FamilyID: "fam-1",
		Issuer: "https://attacker.example", JTI: "chosen", ExpiresAt: 1 << 40, IssuedAt: 1,
	}
}

func TestAccessTokenShapeRFC9068(t *testing.T) {
	f := newFixture(t, token.Options{})
	raw, signed, err := f.iss.AccessToken(sampleClaims())
	if err != nil {
		t.Fatal(err)
	}
	h := decodePart(t, raw, 0)
	kid, _ := f.keys.ActiveKID("ES256")
	if h["typ"] != "at+jwt" || h["alg"] != "ES256" || h["kid"] != kid {
		t.Errorf("header %v", h)
	}
	p := decodePart(t, raw, 1)
	now := f.clock.Now().Unix()
	for k, want := range map[string]any{
		"iss": issuer, "sub": "user-1", "aud": aud, "client_id": "app",
		"scope": "openid fhirUser patient/*.rs", "patient": "123",
		"fhirUser": aud + "/Patient/123", "fam": "fam-1",
	} {
		if p[k] != want {
			t.Errorf("claim %s = %v, want %v", k, p[k], want)
		}
	}
	if p["iat"].(json.Number).String() != jsonInt(now) || p["exp"].(json.Number).String() != jsonInt(now+900) {
		t.Errorf("iat %v exp %v, want %d and +900", p["iat"], p["exp"], now)
	}
	jti, _ := p["jti"].(string)
	if b, err := base64.RawURLEncoding.DecodeString(jti); err != nil || len(b) != 16 {
		t.Errorf("jti %q is not 128 random bits", jti)
	}
	for _, absent := range []string{"encounter", "nbf", "cnf"} {
		if _, ok := p[absent]; ok {
			t.Errorf("empty claim %s present", absent)
		}
	}
	if signed.Issuer != issuer || signed.JTI != jti || signed.IssuedAt != now {
		t.Errorf("returned claims %+v", signed)
	}
	// jti is fresh each time.
	_, again, _ := f.iss.AccessToken(sampleClaims())
	if again.JTI == signed.JTI {
		t.Error("jti repeated")
	}
	if f.iss.AccessTokenTTL() != 15*time.Minute {
		t.Errorf("default TTL %s", f.iss.AccessTokenTTL())
	}
	// Required claims.
	for _, mut := range []func(*token.AccessClaims){
		func(c *token.AccessClaims) { c.Subject = "" },
		func(c *token.AccessClaims) { c.Audience = "" },
		func(c *token.AccessClaims) { c.ClientID = "" },
	} {
		c := sampleClaims()
		mut(&c)
		if _, _, err := f.iss.AccessToken(c); !errors.Is(err, token.ErrClaims) {
			t.Errorf("incomplete claims: %v", err)
		}
	}
}

func jsonInt(n int64) string { b, _ := json.Marshal(n); return string(b) }

func TestParseAccessToken(t *testing.T) {
	f := newFixture(t, token.Options{})
	c := sampleClaims()
	c.Cnf = map[string]string{"jkt": "abc"}
	raw, signed, _ := f.iss.AccessToken(c)
	for _, a := range []string{aud, aud + "/", ""} {
		got, err := f.iss.ParseAccessToken(raw, a)
		if err != nil {
			t.Fatalf("aud %q: %v", a, err)
		}
		if got.JTI != signed.JTI || got.Cnf["jkt"] != "abc" || got.Patient != "123" {
			t.Errorf("parsed %+v", got)
		}
	}
	// An RS256 access token of ours is accepted (allowlist ES256, RS256).
	rs, _ := f.keys.Sign("RS256", "at+jwt", signed)
	if _, err := f.iss.ParseAccessToken(rs, aud); err != nil {
		t.Errorf("RS256 at+jwt: %v", err)
	}

	// Another issuer with the same keys: wrong iss.
	other, _ := token.NewIssuer(token.Options{Signer: f.keys, Verifier: f.keys, Issuer: "https://other.example", Now: f.clock.Now})
	fromOther, _, _ := other.AccessToken(sampleClaims())
	idt, _ := f.iss.IDToken(token.IDTokenInput{Subject: "user-1", ClientID: "app"})
	noJTI := signed
	noJTI.JTI = ""
	rawNoJTI, _ := f.keys.Sign("ES256", "at+jwt", noJTI)
	jwtTyp, _ := f.keys.Sign("ES256", "JWT", signed)

	refused := map[string]struct{ tok, aud string }{
		"wrong issuer":       {fromOther, aud},
		"wrong audience":     {raw, "https://other.example/fhir"},
		"audience prefix":    {raw, aud + "/r4"},
		"id_token as access": {idt, ""},
		"typ JWT":            {jwtTyp, aud},
		"missing jti":        {rawNoJTI, aud},
		"garbage":            {"x.y.z", aud},
		"empty":              {"", aud},
		"alg none":           {strings.Join([]string{b64(`{"alg":"none","typ":"at+jwt"}`), strings.Split(raw, ".")[1], ""}, "."), aud},
		"tampered":           {tamper(raw), aud},
	}
	for name, tc := range refused {
		if _, err := f.iss.ParseAccessToken(tc.tok, tc.aud); !errors.Is(err, token.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// tamper changes the patient claim and keeps the signature.
func tamper(raw string) string {
	parts := strings.Split(raw, ".")
	p, _ := base64.RawURLEncoding.DecodeString(parts[1])
	p = []byte(strings.Replace(string(p), `"patient":"123"`, `"patient":"999"`, 1))
	parts[1] = base64.RawURLEncoding.EncodeToString(p)
	return strings.Join(parts, ".")
}

func TestAccessTokenExpiryAndSkew(t *testing.T) {
	f := newFixture(t, token.Options{AccessTokenTTL: 10 * time.Minute})
	raw, _, _ := f.iss.AccessToken(sampleClaims())
	f.clock.Add(10*time.Minute + 29*time.Second)
	if _, err := f.iss.ParseAccessToken(raw, aud); err != nil {
		t.Fatalf("within skew: %v", err)
	}
	f.clock.Add(time.Second)
	_, err := f.iss.ParseAccessToken(raw, aud)
	if !errors.Is(err, token.ErrExpired) || !errors.Is(err, token.ErrInvalid) {
		t.Fatalf("past exp+skew: %v, want ErrExpired wrapping ErrInvalid", err)
	}

	// nbf and iat in the future.
	f2 := newFixture(t, token.Options{})
	c := sampleClaims()
	c.NotBefore = f2.clock.Now().Add(time.Minute).Unix()
	nbf, _, _ := f2.iss.AccessToken(c)
	if _, err := f2.iss.ParseAccessToken(nbf, aud); !errors.Is(err, token.ErrInvalid) {
		t.Errorf("nbf a minute ahead: %v", err)
	}
	f2.clock.Add(31 * time.Second)
	if _, err := f2.iss.ParseAccessToken(nbf, aud); err != nil {
		t.Errorf("nbf within skew: %v", err)
	}
	// A token minted by a clock running ahead: iat in the future.
	ahead := &clock{t: f2.clock.Now().Add(2 * time.Minute)}
	fast, _ := token.NewIssuer(token.Options{Signer: f2.keys, Verifier: f2.keys, Issuer: issuer, Now: ahead.Now})
	future, _, _ := fast.AccessToken(sampleClaims())
	if _, err := f2.iss.ParseAccessToken(future, aud); !errors.Is(err, token.ErrInvalid) {
		t.Errorf("iat in the future: %v", err)
	}
}

func TestIssuerOptions(t *testing.T) {
	f := newFixture(t, token.Options{AccessTokenTTL: 60 * time.Minute})
	if f.iss.AccessTokenTTL() != time.Hour {
		t.Fatal("60m refused")
	}
	bad := []token.Options{
		{Signer: f.keys, Issuer: issuer, AccessTokenTTL: 61 * time.Minute},
		{Signer: f.keys, Issuer: issuer, AccessTokenTTL: 24 * time.Hour},
		{Signer: f.keys, Issuer: issuer, AccessTokenTTL: -time.Minute},
		{Signer: f.keys, Issuer: issuer, IDTokenTTL: 2 * time.Hour},
		{Signer: f.keys, Issuer: ""},
		{Signer: f.keys, Issuer: "auth.example.org"},
		{Signer: f.keys, Issuer: "https://auth.example.org?x=1"},
		{Signer: f.keys, Issuer: "https://auth.example.org#f"},
		{Issuer: issuer},
	}
	for _, o := range bad {
		if _, err := token.NewIssuer(o); !errors.Is(err, token.ErrConfig) {
			t.Errorf("%+v accepted: %v", o, err)
		}
	}
}

func TestATHashIndependently(t *testing.T) {
	at := "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln"
	sum := sha256.Sum256([]byte(at))
	want := base64.RawURLEncoding.EncodeToString(sum[:16])
	if token.ATHash(at) != want {
		t.Fatalf("at_hash %s, want %s", token.ATHash(at), want)
	}
	// Known vector from OpenID Connect Core A.3 (access token "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y").
	if got := token.ATHash("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"); got != "77QmUPtjPfzWtF2AnpK9RQ" {
		t.Fatalf("Core A.3 vector: %s", got)
	}
}

func staticKeySet(f *fixture) *oidc.StaticKeySet {
	ks := &oidc.StaticKeySet{}
	for _, k := range f.keys.JWKS().Keys {
		ks.PublicKeys = append(ks.PublicKeys, crypto.PublicKey(k.Key))
	}
	return ks
}

func TestIDTokenVerifiesWithGoOIDC(t *testing.T) {
	f := newFixture(t, token.Options{})
	at, _, _ := f.iss.AccessToken(sampleClaims())
	authTime := f.clock.Now().Add(-2 * time.Minute)
	raw, err := f.iss.IDToken(token.IDTokenInput{
		Subject: "user-1", ClientID: "app", Nonce: "n-0S6", FHIRUser: aud + "/Patient/123",
		AccessToken: at, AuthTime: authTime, Extra: map[string]any{"preferred_username": "amy"},
	})
	if err != nil {
		t.Fatal(err)
	}
	h := decodePart(t, raw, 0)
	rsKID, _ := f.keys.ActiveKID("RS256")
	if h["alg"] != "RS256" || h["typ"] != "JWT" || h["kid"] != rsKID {
		t.Errorf("header %v", h)
	}
	ctx := context.Background()
	v := oidc.NewVerifier(issuer, staticKeySet(f), &oidc.Config{ClientID: "app", Now: f.clock.Now})
	idt, err := v.Verify(ctx, raw)
	if err != nil {
		t.Fatalf("go-oidc: %v", err)
	}
	if idt.Subject != "user-1" || idt.Nonce != "n-0S6" || idt.Issuer != issuer || idt.AccessTokenHash != token.ATHash(at) {
		t.Errorf("id_token %+v", idt)
	}
	if err := idt.VerifyAccessToken(at); err != nil {
		t.Errorf("at_hash: %v", err)
	}
	if err := idt.VerifyAccessToken(at + "x"); err == nil {
		t.Error("at_hash matched another token")
	}
	var cl struct {
		FHIRUser string `json:"fhirUser"`
		AuthTime int64  `json:"auth_time"`
		Username string `json:"preferred_username"`
		Exp      int64  `json:"exp"`
		Iat      int64  `json:"iat"`
	}
	if err := idt.Claims(&cl); err != nil {
		t.Fatal(err)
	}
	if cl.FHIRUser != aud+"/Patient/123" || cl.AuthTime != authTime.Unix() || cl.Username != "amy" || cl.Exp-cl.Iat != 300 {
		t.Errorf("claims %+v", cl)
	}

	// Wrong client, wrong issuer, expired: refused by the independent verifier.
	if _, err := oidc.NewVerifier(issuer, staticKeySet(f), &oidc.Config{ClientID: "other", Now: f.clock.Now}).Verify(ctx, raw); err == nil {
		t.Error("go-oidc accepted another client's id_token")
	}
	if _, err := oidc.NewVerifier("https://other.example", staticKeySet(f), &oidc.Config{ClientID: "app", Now: f.clock.Now}).Verify(ctx, raw); err == nil {
		t.Error("go-oidc accepted a wrong issuer")
	}
	late := func() time.Time { return f.clock.Now().Add(6 * time.Minute) }
	if _, err := oidc.NewVerifier(issuer, staticKeySet(f), &oidc.Config{ClientID: "app", Now: late}).Verify(ctx, raw); err == nil {
		t.Error("go-oidc accepted an expired id_token")
	}

	// ES256 when the client registered it.
	es, err := f.iss.IDToken(token.IDTokenInput{Subject: "user-1", ClientID: "app", Alg: "ES256"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := oidc.NewVerifier(issuer, staticKeySet(f), &oidc.Config{ClientID: "app", Now: f.clock.Now, SupportedSigningAlgs: []string{"ES256"}}).Verify(ctx, es); err != nil {
		t.Errorf("ES256 id_token: %v", err)
	}
	p := decodePart(t, es, 1)
	for _, absent := range []string{"nonce", "auth_time", "at_hash", "fhirUser"} {
		if _, ok := p[absent]; ok {
			t.Errorf("unset claim %s present", absent)
		}
	}
}

func TestIDTokenRefusesBadInput(t *testing.T) {
	f := newFixture(t, token.Options{})
	bad := map[string]token.IDTokenInput{
		"no sub":            {ClientID: "app"},
		"no client":         {Subject: "u"},
		"long sub":          {Subject: strings.Repeat("s", 256), ClientID: "app"},
		"alg HS256":         {Subject: "u", ClientID: "app", Alg: "HS256"},
		"alg none":          {Subject: "u", ClientID: "app", Alg: "none"},
		"relative fhirUser": {Subject: "u", ClientID: "app", FHIRUser: "Patient/123"},
		"Extra overrides":   {Subject: "u", ClientID: "app", Extra: map[string]any{"sub": "admin"}},
		"Extra sets aud":    {Subject: "u", ClientID: "app", Extra: map[string]any{"aud": []string{"app", "evil"}}},
	}
	for name, in := range bad {
		if _, err := f.iss.IDToken(in); !errors.Is(err, token.ErrClaims) {
			t.Errorf("%s: %v, want ErrClaims", name, err)
		}
	}
}

func BenchmarkAccessTokenES256(b *testing.B) {
	f := newFixture(b, token.Options{})
	c := sampleClaims()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := f.iss.AccessToken(c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkIDTokenRS256(b *testing.B) {
	f := newFixture(b, token.Options{})
	at, _, _ := f.iss.AccessToken(sampleClaims())
	in := token.IDTokenInput{Subject: "user-1", ClientID: "app", Nonce: "n", FHIRUser: aud + "/Patient/123", AccessToken: at, AuthTime: f.clock.Now()}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.iss.IDToken(in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseAccessToken(b *testing.B) {
	f := newFixture(b, token.Options{})
	raw, _, _ := f.iss.AccessToken(sampleClaims())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.iss.ParseAccessToken(raw, aud); err != nil {
			b.Fatal(err)
		}
	}
}
