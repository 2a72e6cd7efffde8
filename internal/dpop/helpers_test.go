package dpop_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fhirgate/fhirgate/internal/dpop"
	"github.com/fhirgate/fhirgate/internal/replay"
)

var t0 = time.Unix(1_800_000_000, 0)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: t0} }

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newVerifier(clk *clock) *dpop.Verifier {
	return &dpop.Verifier{Replay: replay.NewMemory(clk.Now, 1000), Now: clk.Now}
}

var (
	keyOnce sync.Once
	ecKey   *ecdsa.PrivateKey
	ec2Key  *ecdsa.PrivateKey
	ec384   *ecdsa.PrivateKey
	rsaKey  *rsa.PrivateKey
	edKey   ed25519.PrivateKey
)

func keys(t testing.TB) {
	t.Helper()
	keyOnce.Do(func() {
		ecKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		ec2Key, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		ec384, _ = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		rsaKey, _ = rsa.GenerateKey(rand.Reader, 2048)
		_, edKey, _ = ed25519.GenerateKey(rand.Reader)
	})
}

// claimsFor returns valid proof claims for a request.
func claimsFor(method, htu string, iat time.Time) map[string]any {
	return map[string]any{
		"jti": base64.RawURLEncoding.EncodeToString(randBytes(12)),
		"htm": method,
		"htu": htu,
		"iat": iat.Unix(),
	}
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// proof signs claims with go-jose, embedding the public JWK, typ dpop+jwt.
func proof(t testing.TB, alg jose.SignatureAlgorithm, key crypto.Signer, claims map[string]any) string {
	t.Helper()
	return proofTyp(t, alg, key, "dpop+jwt", claims)
}

func proofTyp(t testing.TB, alg jose.SignatureAlgorithm, key crypto.Signer, typ string, claims map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{EmbedJWK: true})
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// rawProof builds a compact JWS by hand from a header and claims, signed
// ES256 with key (or HS256 with hmacKey, or unsigned for alg none). It lets
// tests send what go-jose refuses to produce.
func rawProof(t testing.TB, hdr map[string]any, claims map[string]any, key *ecdsa.PrivateKey, hmacKey []byte) string {
	t.Helper()
	h, _ := json.Marshal(hdr)
	c, _ := json.Marshal(claims)
	input := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	var sig []byte
	switch {
	case hmacKey != nil:
		m := hmac.New(sha256.New, hmacKey)
		m.Write([]byte(input))
		sig = m.Sum(nil)
	case key != nil:
		sum := sha256.Sum256([]byte(input))
		r, s, err := ecdsa.Sign(rand.Reader, key, sum[:])
		if err != nil {
			t.Fatal(err)
		}
		sig = make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// ecJWK returns the public JWK members of k; with private, "d" too.
func ecJWK(k *ecdsa.PrivateKey, private bool) map[string]any {
	b64 := base64.RawURLEncoding.EncodeToString
	pad := func(n *big.Int) []byte { b := make([]byte, 32); n.FillBytes(b); return b }
	raw, _ := k.PublicKey.ECDH()
	pub := raw.Bytes()
	m := map[string]any{"kty": "EC", "crv": "P-256", "x": b64(pub[1:33]), "y": b64(pub[33:])}
	if private {
		m["d"] = b64(pad(k.D))
	}
	return m
}

// failingCache is a replay cache that is down.
type failingCache struct{ err error }

func (f failingCache) UseOnce(context.Context, string, time.Time) error { return f.err }

// acceptAll is a replay cache that records nothing (benchmarks only).
type acceptAll struct{}

func (acceptAll) UseOnce(context.Context, string, time.Time) error { return nil }

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func decodeSeg(t testing.TB, s string) map[string]any {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func encodeSeg(t testing.TB, m map[string]any) string {
	t.Helper()
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(raw)
}
