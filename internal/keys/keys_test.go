package keys_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/audit/audittest"
	"github.com/fhirgate/fhirgate/internal/keys"
	"github.com/fhirgate/fhirgate/internal/storage"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)} }
func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func testKEK(t testing.TB) []byte {
	t.Helper()
	k := make([]byte, keys.KEKSize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func newManager(t testing.TB, store storage.Keys, kek []byte, c *clock) *keys.Manager {
	t.Helper()
	m, err := keys.New(context.Background(), keys.Options{Store: store, KEK: kek, Now: c.Now})
	if err != nil {
		t.Fatalf("keys.New: %v", err)
	}
	return m
}

type claims struct {
	Sub string `json:"sub"`
	N   int    `json:"n"`
}

func TestFirstStartGeneratesOneKeyPerAlg(t *testing.T) {
	store := &memKeys{}
	kek := testKEK(t)
	m := newManager(t, store, kek, newClock())
	ks := m.Keys()
	if len(ks) != 2 {
		t.Fatalf("got %d keys, want 2", len(ks))
	}
	algs := map[string]bool{}
	for _, k := range ks {
		if !k.Active || k.EncryptedPrivate != nil || k.KID == "" {
			t.Errorf("key %+v: want active, kid set, no private part exposed", k)
		}
		algs[k.Alg] = true
	}
	if !algs["ES256"] || !algs["RS256"] {
		t.Fatalf("algs %v", algs)
	}
	set := m.JWKS()
	if len(set.Keys) != 2 {
		t.Fatalf("JWKS has %d keys", len(set.Keys))
	}
	for _, k := range set.Keys {
		if !k.IsPublic() || k.KeyID == "" || k.Use != "sig" || (k.Algorithm != "ES256" && k.Algorithm != "RS256") {
			t.Errorf("bad JWK %+v", k)
		}
		if rk, ok := k.Key.(*rsa.PublicKey); ok && rk.N.BitLen() != 2048 {
			t.Errorf("RSA key of %d bits", rk.N.BitLen())
		}
		if ek, ok := k.Key.(*ecdsa.PublicKey); ok && ek.Curve != elliptic.P256() {
			t.Errorf("EC key not P-256")
		}
		raw, _ := json.Marshal(k)
		if bytes.Contains(raw, []byte(`"d"`)) {
			t.Errorf("JWKS leaks a private part: %s", raw)
		}
	}
	// A second start on the same store reuses the keys.
	m2 := newManager(t, store, kek, newClock())
	if len(m2.Keys()) != 2 {
		t.Fatalf("restart created keys: %d", len(m2.Keys()))
	}
}

func TestPrivateKeyAtRestIsSealed(t *testing.T) {
	store := &memKeys{}
	kek := testKEK(t)
	c := newClock()
	m := newManager(t, store, kek, c)
	recs, _ := store.ListSigningKeys(context.Background())
	for _, r := range recs {
		// A plaintext PKCS#8 key embeds the public key (the EC point, the
		// RSA modulus): the sealed blob must not contain it, nor parse as a
		// key at any small offset.
		var jwk jose.JSONWebKey
		if err := jwk.UnmarshalJSON(r.PublicJWK); err != nil {
			t.Fatal(err)
		}
		var marker []byte
		switch k := jwk.Key.(type) {
		case *ecdsa.PublicKey:
			// Fixed width: X.Bytes() drops leading zero bytes, which
			// made the length check below fail for 1 key in 256.
			marker = k.X.FillBytes(make([]byte, (k.Curve.Params().BitSize+7)/8))
		case *rsa.PublicKey:
			marker = k.N.Bytes()
		}
		if len(marker) < 32 || bytes.Contains(r.EncryptedPrivate, marker) {
			t.Errorf("kid %s: sealed private part contains the public key material", r.KID)
		}
		for off := 0; off < 20; off++ {
			if _, err := x509.ParsePKCS8PrivateKey(r.EncryptedPrivate[off:]); err == nil {
				t.Errorf("kid %s: sealed private part parses as PKCS#8 at offset %d", r.KID, off)
			}
		}
		if bytes.Contains(r.PublicJWK, []byte(`"d"`)) {
			t.Errorf("kid %s: public JWK carries a private part", r.KID)
		}
	}
	tok, err := m.Sign("ES256", "JWT", claims{Sub: "a"})
	if err != nil {
		t.Fatal(err)
	}

	// A different KEK cannot open the keys.
	_, err = keys.New(context.Background(), keys.Options{Store: store, KEK: testKEK(t), Now: c.Now})
	if !errors.Is(err, keys.ErrDecrypt) {
		t.Fatalf("wrong KEK: got %v, want ErrDecrypt", err)
	}
	// The right KEK opens them and verifies the earlier token.
	m2 := newManager(t, store, kek, c)
	var got claims
	if err := m2.Verify(tok, []string{"ES256"}, "JWT", &got); err != nil || got.Sub != "a" {
		t.Fatalf("verify after restart: %v %+v", err, got)
	}
}

func TestSealedKeyBoundToKID(t *testing.T) {
	store := &memKeys{}
	kek := testKEK(t)
	c := newClock()
	newManager(t, store, kek, c)
	if _, err := newManager(t, store, kek, c).Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	recs, _ := store.ListSigningKeys(context.Background())
	// Swap the sealed private parts of the two ES256 keys: AAD (kid) must
	// make both fail to open.
	var es []int
	for i, r := range recs {
		if r.Alg == "ES256" {
			es = append(es, i)
		}
	}
	a, b := recs[es[0]], recs[es[1]]
	a.EncryptedPrivate, b.EncryptedPrivate = b.EncryptedPrivate, a.EncryptedPrivate
	store.set(es[0], a)
	store.set(es[1], b)
	_, err := keys.New(context.Background(), keys.Options{Store: store, KEK: kek, Now: c.Now})
	if !errors.Is(err, keys.ErrDecrypt) {
		t.Fatalf("swapped sealed keys: got %v, want ErrDecrypt", err)
	}
	// A flipped bit fails too.
	a.EncryptedPrivate = bytes.Clone(recs[es[0]].EncryptedPrivate)
	a.EncryptedPrivate[len(a.EncryptedPrivate)-1] ^= 1
	store.set(es[0], a)
	store.set(es[1], recs[es[1]])
	if _, err := keys.New(context.Background(), keys.Options{Store: store, KEK: kek, Now: c.Now}); !errors.Is(err, keys.ErrDecrypt) {
		t.Fatalf("flipped bit: got %v, want ErrDecrypt", err)
	}
}

func TestSignVerifyRoundTrip(t *testing.T) {
	m := newManager(t, &memKeys{}, testKEK(t), newClock())
	for _, alg := range []string{"ES256", "RS256"} {
		tok, err := m.Sign(alg, "at+jwt", claims{Sub: "u1", N: 7})
		if err != nil {
			t.Fatal(err)
		}
		h := header(t, tok)
		kid, _ := m.ActiveKID(alg)
		if h["alg"] != alg || h["kid"] != kid || h["typ"] != "at+jwt" {
			t.Errorf("%s header %v", alg, h)
		}
		var got claims
		if err := m.Verify(tok, []string{"ES256", "RS256"}, "application/AT+JWT", &got); err != nil {
			t.Fatalf("%s verify: %v", alg, err)
		}
		if got != (claims{Sub: "u1", N: 7}) {
			t.Errorf("%s claims %+v", alg, got)
		}
	}
	if _, err := m.Sign("HS256", "JWT", claims{}); !errors.Is(err, keys.ErrUnsupportedAlg) {
		t.Errorf("Sign HS256: %v", err)
	}
	if _, err := m.Sign("none", "JWT", claims{}); !errors.Is(err, keys.ErrUnsupportedAlg) {
		t.Errorf("Sign none: %v", err)
	}
}

func TestRotateKeepsOldTokensVerifying(t *testing.T) {
	store := &memKeys{}
	c := newClock()
	rec := &audittest.Recorder{}
	m, err := keys.New(context.Background(), keys.Options{Store: store, KEK: testKEK(t), Now: c.Now, Auditor: rec})
	if err != nil {
		t.Fatal(err)
	}
	oldKID, _ := m.ActiveKID("ES256")
	oldTok, _ := m.Sign("ES256", "JWT", claims{Sub: "old"})
	oldID, _ := m.Sign("RS256", "JWT", claims{Sub: "old"})

	c.Add(time.Minute)
	kids, err := m.Rotate(context.Background())
	if err != nil || len(kids) != 2 {
		t.Fatalf("Rotate: %v %v", kids, err)
	}
	newKID, _ := m.ActiveKID("ES256")
	if newKID == oldKID || newKID != kids[0] {
		t.Fatalf("active kid %s, old %s, rotated %v", newKID, oldKID, kids)
	}
	newTok, _ := m.Sign("ES256", "JWT", claims{Sub: "new"})
	if header(t, newTok)["kid"] != newKID {
		t.Errorf("new token not signed with the new key")
	}
	for _, tok := range []string{oldTok, oldID, newTok} {
		if err := m.Verify(tok, []string{"ES256", "RS256"}, "JWT", &claims{}); err != nil {
			t.Errorf("verify after rotation: %v", err)
		}
	}
	if n := len(m.JWKS().Keys); n != 4 {
		t.Errorf("JWKS after rotation has %d keys, want 4", n)
	}
	retired := 0
	for _, k := range m.Keys() {
		if !k.Active && !k.RetiredAt.IsZero() {
			retired++
		}
	}
	if retired != 2 {
		t.Errorf("%d retired keys, want 2", retired)
	}
	if evs := rec.Events(); len(evs) != 2 || evs[0].Action != audit.ActionKeyRotated {
		t.Errorf("audit events %+v", evs)
	}

	// After RetiredKeyTTL the old keys stop verifying and leave the JWKS.
	c.Add(keys.DefaultRetiredKeyTTL + time.Second)
	if err := m.Verify(oldTok, []string{"ES256"}, "JWT", &claims{}); !errors.Is(err, keys.ErrUnknownKID) {
		t.Errorf("expired retired key still verifies: %v", err)
	}
	if n := len(m.JWKS().Keys); n != 2 {
		t.Errorf("JWKS after expiry has %d keys, want 2", n)
	}
	if err := m.Verify(newTok, []string{"ES256"}, "JWT", &claims{}); err != nil {
		t.Errorf("active key: %v", err)
	}
}

func TestReloadPicksUpRotationByAnotherManager(t *testing.T) {
	store := &memKeys{}
	kek := testKEK(t)
	c := newClock()
	server := newManager(t, store, kek, c)
	cli := newManager(t, store, kek, c)
	before, _ := server.ActiveKID("ES256")
	kids, err := cli.Rotate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	fromCLI, _ := cli.Sign("ES256", "JWT", claims{})
	if err := server.Verify(fromCLI, []string{"ES256"}, "JWT", &claims{}); !errors.Is(err, keys.ErrUnknownKID) {
		t.Fatalf("before reload: %v, want ErrUnknownKID", err)
	}
	if k, _ := server.ActiveKID("ES256"); k != before {
		t.Fatal("active key changed without reload")
	}
	if err := server.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if k, _ := server.ActiveKID("ES256"); k != kids[0] {
		t.Fatalf("after reload active %s, want %s", k, kids[0])
	}
	if err := server.Verify(fromCLI, []string{"ES256"}, "JWT", &claims{}); err != nil {
		t.Fatalf("after reload: %v", err)
	}
}

func TestWatchReloads(t *testing.T) {
	store := &memKeys{}
	kek := testKEK(t)
	c := newClock()
	server := newManager(t, store, kek, c)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { server.Watch(ctx, 5*time.Millisecond); close(done) }()
	kids, err := newManager(t, store, kek, c).Rotate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if k, _ := server.ActiveKID("RS256"); k == kids[1] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Watch did not reload")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
}

func TestVerifyRefusals(t *testing.T) {
	m := newManager(t, &memKeys{}, testKEK(t), newClock())
	esKID, _ := m.ActiveKID("ES256")
	rsKID, _ := m.ActiveKID("RS256")
	good, _ := m.Sign("ES256", "at+jwt", claims{Sub: "u"})
	goodRS, _ := m.Sign("RS256", "at+jwt", claims{Sub: "u"})
	parts := strings.Split(good, ".")
	b64 := base64.RawURLEncoding.EncodeToString
	payload := b64([]byte(`{"sub":"u","n":0}`))

	// An attacker's own keys.
	atkEC, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	atkRSA, _ := rsa.GenerateKey(rand.Reader, 2048)
	forged := func(alg jose.SignatureAlgorithm, key any, kid string, extra map[jose.HeaderKey]any) string {
		opts := (&jose.SignerOptions{}).WithType("at+jwt")
		for k, v := range extra {
			opts = opts.WithHeader(k, v)
		}
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, opts)
		if err != nil {
			t.Fatal(err)
		}
		j, err := s.Sign([]byte(`{"sub":"admin"}`))
		if err != nil {
			t.Fatal(err)
		}
		out, _ := j.CompactSerialize()
		return out
	}
	// HS256 keyed with the server's public key bytes (algorithm confusion).
	set := m.JWKS()
	esJWK := set.Key(esKID)[0]
	pubDER, _ := x509.MarshalPKIXPublicKey(esJWK.Key)

	tamperedPayload := parts[0] + "." + b64([]byte(`{"sub":"admin","n":0}`)) + "." + parts[2]
	cases := map[string]struct {
		tok  string
		algs []string
		typ  string
	}{
		"alg none":              {b64([]byte(`{"alg":"none","kid":"`+esKID+`","typ":"at+jwt"}`)) + "." + payload + ".", []string{"ES256"}, "at+jwt"},
		"alg none no dot":       {b64([]byte(`{"alg":"none","kid":"`+esKID+`","typ":"at+jwt"}`)) + "." + payload, []string{"ES256"}, "at+jwt"},
		"HS256 with public key": {forged(jose.HS256, pubDER, esKID, nil), []string{"ES256", "RS256"}, "at+jwt"},
		"wrong typ":             {good, []string{"ES256"}, "JWT"},
		"typ is a suffix":       {good, []string{"ES256"}, "jwt"},
		"no typ expected":       {good, []string{"ES256"}, ""},
		"unknown kid":           {forged(jose.ES256, atkEC, "nope", nil), []string{"ES256"}, "at+jwt"},
		"our kid, foreign key":  {forged(jose.ES256, atkEC, esKID, nil), []string{"ES256"}, "at+jwt"},
		"no kid":                {forged(jose.ES256, atkEC, "", nil), []string{"ES256"}, "at+jwt"},
		"unknown crit header":   {critical(t, m, esKID), []string{"ES256"}, "at+jwt"},
		"embedded jwk":          {forged(jose.ES256, atkEC, esKID, map[jose.HeaderKey]any{"jwk": jose.JSONWebKey{Key: &atkEC.PublicKey}}), []string{"ES256"}, "at+jwt"},
		"alg/key mismatch":      {forged(jose.RS256, atkRSA, esKID, nil), []string{"ES256", "RS256"}, "at+jwt"},
		"RS kid with ES alg":    {forged(jose.ES256, atkEC, rsKID, nil), []string{"ES256", "RS256"}, "at+jwt"},
		"PS256 on RSA key":      {forged(jose.PS256, atkRSA, rsKID, nil), []string{"RS256"}, "at+jwt"},
		"alg not allowed":       {goodRS, []string{"ES256"}, "at+jwt"},
		"empty allowlist":       {good, nil, "at+jwt"},
		"HS256 in allowlist":    {good, []string{"ES256", "HS256"}, "at+jwt"},
		"tampered payload":      {tamperedPayload, []string{"ES256"}, "at+jwt"},
		"tampered signature":    {parts[0] + "." + parts[1] + "." + b64(make([]byte, 64)), []string{"ES256"}, "at+jwt"},
		"JSON serialization":    {`{"payload":"` + parts[1] + `","protected":"` + parts[0] + `","signature":"` + parts[2] + `"}`, []string{"ES256"}, "at+jwt"},
		"empty":                 {"", []string{"ES256"}, "at+jwt"},
		"garbage":               {"a.b.c", []string{"ES256"}, "at+jwt"},
		"too large":             {parts[0] + "." + strings.Repeat("A", 20000) + "." + parts[2], []string{"ES256"}, "at+jwt"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var got claims
			err := m.Verify(tc.tok, tc.algs, tc.typ, &got)
			if !errors.Is(err, keys.ErrInvalidJWT) {
				t.Fatalf("got %v, want ErrInvalidJWT", err)
			}
			t.Log(err)
			if got.Sub != "" {
				t.Fatalf("claims filled on failure: %+v", got)
			}
		})
	}
	// Control: the good tokens pass.
	if err := m.Verify(good, []string{"ES256"}, "at+jwt", &claims{}); err != nil {
		t.Fatal(err)
	}
	if err := m.Verify(goodRS, []string{"RS256"}, "AT+JWT", &claims{}); err != nil {
		t.Fatal(err)
	}
}

func TestTypMatches(t *testing.T) {
	cases := []struct {
		got, want string
		ok        bool
	}{
		{"at+jwt", "at+jwt", true},
		{"AT+JWT", "at+jwt", true},
		{"application/at+jwt", "at+jwt", true},
		{"Application/At+Jwt", "application/at+jwt", true},
		{"at+jwt", "application/at+jwt", true},
		{"JWT", "at+jwt", false},
		{"", "JWT", false},
		{"application/", "", false},
		{"text/at+jwt", "at+jwt", false},
		{"dpop+jwt", "at+jwt", false},
	}
	for _, c := range cases {
		if keys.TypMatches(c.got, c.want) != c.ok {
			t.Errorf("TypMatches(%q, %q) != %v", c.got, c.want, c.ok)
		}
	}
}

func TestOptionsValidation(t *testing.T) {
	ctx := context.Background()
	if _, err := keys.New(ctx, keys.Options{KEK: testKEK(t)}); err == nil {
		t.Error("no store accepted")
	}
	for _, n := range []int{0, 16, 31, 33} {
		if _, err := keys.New(ctx, keys.Options{Store: &memKeys{}, KEK: make([]byte, n)}); !errors.Is(err, keys.ErrBadKEK) {
			t.Errorf("KEK of %d bytes: %v", n, err)
		}
	}
	if _, err := keys.New(ctx, keys.Options{Store: &memKeys{}, KEK: testKEK(t), RetiredKeyTTL: 10 * time.Minute}); err == nil {
		t.Error("RetiredKeyTTL shorter than token lifetime accepted")
	}
}

func TestParseKEK(t *testing.T) {
	raw := bytes.Repeat([]byte{0xfb, 0xff, 0x01}, 11)[:32]
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		got, err := keys.ParseKEK("  " + enc.EncodeToString(raw) + "\n")
		if err != nil || !bytes.Equal(got, raw) {
			t.Errorf("%v: %v", enc, err)
		}
	}
	for _, bad := range []string{"", "not base64!!", base64.StdEncoding.EncodeToString(raw[:31]), base64.StdEncoding.EncodeToString(append(raw, 0))} {
		if _, err := keys.ParseKEK(bad); !errors.Is(err, keys.ErrBadKEK) {
			t.Errorf("ParseKEK(%q): %v", bad, err)
		}
	}
}

func TestDevKEK(t *testing.T) {
	a, b := keys.DevKEK(), keys.DevKEK()
	if len(a) != 32 || !bytes.Equal(a, b) || !keys.IsDevKEK(a) || keys.IsDevKEK(testKEK(t)) {
		t.Fatal("DevKEK must be a fixed 32-byte key")
	}
	a[0] ^= 1 // callers cannot change it
	if !keys.IsDevKEK(keys.DevKEK()) {
		t.Fatal("DevKEK is mutable")
	}
	var logs bytes.Buffer
	_, err := keys.New(context.Background(), keys.Options{Store: &memKeys{}, KEK: keys.DevKEK(), Logger: slogTo(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "DEVELOPMENT KEY-ENCRYPTION KEY") {
		t.Errorf("no loud warning for the dev KEK: %q", logs.String())
	}
}

func TestConcurrentSignVerifyRotate(t *testing.T) {
	m := newManager(t, &memKeys{}, testKEK(t), newClock())
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				tok, err := m.Sign("ES256", "JWT", claims{N: j})
				if err == nil {
					err = m.Verify(tok, []string{"ES256"}, "JWT", &claims{})
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if _, err := m.Rotate(context.Background()); err != nil {
			errs <- err
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func slogTo(w *bytes.Buffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, nil))
}

func header(t testing.TB, tok string) map[string]any {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatal(err)
	}
	return h
}

// critical returns a token whose header marks an unknown extension critical
// (RFC 7515 §4.1.11: the recipient must refuse it). The header is swapped in
// by hand, so the signature no longer matches either; the parser's crit
// check refuses it first.
func critical(t *testing.T, m *keys.Manager, kid string) string {
	t.Helper()
	hdr := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"ES256","kid":"` + kid + `","typ":"at+jwt","crit":["x-must"],"x-must":1}`))
	good, _ := m.Sign("ES256", "at+jwt", claims{Sub: "u"})
	parts := strings.Split(good, ".")
	return hdr + "." + parts[1] + "." + parts[2]
}

func BenchmarkSignES256(b *testing.B) {
	m := newManager(b, &memKeys{}, testKEK(b), newClock())
	c := claims{Sub: "user", N: 1}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Sign("ES256", "at+jwt", c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyES256(b *testing.B) {
	m := newManager(b, &memKeys{}, testKEK(b), newClock())
	tok, _ := m.Sign("ES256", "at+jwt", claims{Sub: "user", N: 1})
	b.ReportAllocs()
	for b.Loop() {
		var c claims
		if err := m.Verify(tok, []string{"ES256"}, "at+jwt", &c); err != nil {
			b.Fatal(err)
		}
	}
}
