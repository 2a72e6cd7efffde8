package keys

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/go-jose/go-jose/v4"
)

// maxJWTBytes bounds the size of a JWT Verify will parse.
const maxJWTBytes = 16 << 10

// Sign serialises claims as JSON and signs them with the active key of alg
// ("ES256" or "RS256"). The protected header carries alg, kid and typ (typ is
// omitted when empty).
func (m *Manager) Sign(alg, typ string, claims any) (string, error) {
	if alg != ES256 && alg != RS256 {
		return "", fmt.Errorf("%w: %q", ErrUnsupportedAlg, alg)
	}
	k := m.state.Load().active[alg]
	if k == nil {
		return "", fmt.Errorf("%w for %s", ErrNoActiveKey, alg)
	}
	signer, err := k.signer(typ)
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("keys: encode claims: %w", err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("keys: sign: %w", err)
	}
	return jws.CompactSerialize()
}

// signer returns a cached go-jose signer of k for header typ.
func (k *loadedKey) signer(typ string) (jose.Signer, error) {
	if s, ok := k.signers.Load(typ); ok {
		return s.(jose.Signer), nil
	}
	opts := &jose.SignerOptions{}
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	s, err := jose.NewSigner(jose.SigningKey{
		Algorithm: k.alg,
		Key:       jose.JSONWebKey{Key: k.priv, KeyID: k.rec.KID, Algorithm: string(k.alg)},
	}, opts)
	if err != nil {
		return nil, fmt.Errorf("keys: signer for %s: %w", k.rec.KID, err)
	}
	actual, _ := k.signers.LoadOrStore(typ, s)
	return actual.(jose.Signer), nil
}

// Verify checks a compact JWS signed by one of our keys and unmarshals its
// payload into claims. The header alg must be in algs (a subset of ES256 and
// RS256) and match the key named by kid; the key must be active or retired
// less than RetiredKeyTTL ago; the header typ must equal typ, compared
// case-insensitively with an optional "application/" prefix. It checks the
// signature only: time and audience checks belong to the caller. Every error
// wraps ErrInvalidJWT.
func (m *Manager) Verify(raw string, algs []string, typ string, claims any) error {
	if typ == "" {
		return fmt.Errorf("%w: no expected typ given", ErrInvalidJWT)
	}
	if len(raw) > maxJWTBytes {
		return fmt.Errorf("%w: too large", ErrInvalidJWT)
	}
	allowed := make([]jose.SignatureAlgorithm, 0, len(algs))
	for _, a := range algs {
		if a != ES256 && a != RS256 {
			return fmt.Errorf("%w: %w: %q in allowlist", ErrInvalidJWT, ErrUnsupportedAlg, a)
		}
		allowed = append(allowed, jose.SignatureAlgorithm(a))
	}
	if len(allowed) == 0 {
		return fmt.Errorf("%w: empty algorithm allowlist", ErrInvalidJWT)
	}
	if strings.Count(raw, ".") != 2 {
		return fmt.Errorf("%w: not a compact JWS", ErrInvalidJWT)
	}
	jws, err := jose.ParseSignedCompact(raw, allowed)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidJWT, err)
	}
	if len(jws.Signatures) != 1 {
		return fmt.Errorf("%w: expected one signature", ErrInvalidJWT)
	}
	h := jws.Signatures[0].Protected
	if h.KeyID == "" {
		return fmt.Errorf("%w: no kid", ErrInvalidJWT)
	}
	gotTyp, _ := h.ExtraHeaders[jose.HeaderType].(string)
	if !TypMatches(gotTyp, typ) {
		return fmt.Errorf("%w: typ %q, want %q", ErrInvalidJWT, gotTyp, typ)
	}
	k := m.state.Load().byKID[h.KeyID]
	if k == nil || !m.usable(k, m.now()) {
		return ErrUnknownKID
	}
	if string(k.alg) != h.Algorithm {
		return fmt.Errorf("%w: alg %s does not match key %s", ErrInvalidJWT, h.Algorithm, k.rec.Alg)
	}
	payload, err := jws.Verify(k.pub)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidJWT, err)
	}
	if claims != nil {
		if err := json.Unmarshal(payload, claims); err != nil {
			return fmt.Errorf("%w: claims: %w", ErrInvalidJWT, err)
		}
	}
	return nil
}

// TypMatches compares a JWT typ header with an expected media type:
// case-insensitively, the "application/" prefix optional (RFC 7515 §4.1.9).
// An empty type matches nothing.
func TypMatches(got, want string) bool {
	g, w := stripApplication(got), stripApplication(want)
	return g != "" && strings.EqualFold(g, w)
}

func stripApplication(s string) string {
	const p = "application/"
	if len(s) >= len(p) && strings.EqualFold(s[:len(p)], p) {
		return s[len(p):]
	}
	return s
}
