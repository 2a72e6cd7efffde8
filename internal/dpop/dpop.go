// Package dpop verifies RFC 9449 DPoP proofs: the token endpoint checks the
// proof that accompanies a token request and binds the access token to the
// proof's key (cnf.jkt); resource servers (the gateway, /userinfo) check the
// proof that accompanies every use of such a token, including ath, the hash
// of the token.
//
// A proof is accepted only when: typ is dpop+jwt; alg is an allowed
// asymmetric algorithm; the jwk header is a public key (never private
// members) that verifies the signature; htm equals the request method; htu
// equals the request URL (normalised, without query and fragment); iat lies
// within the accepted window; the jti was never seen (replay.Cache, keyed by
// the key thumbprint); ath is the SHA-256 of the access token when one is
// presented; and the nonce is a current server nonce when nonces are
// configured.
package dpop

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fhirgate/fhirgate/internal/replay"
)

// Limits and defaults.
const (
	// TypProof is the typ header of a DPoP proof.
	TypProof = "dpop+jwt"
	// DefaultIATWindow is how old a proof may be.
	DefaultIATWindow = 60 * time.Second
	// DefaultLeeway is how far in the future iat may lie (clock skew).
	DefaultLeeway = 5 * time.Second
	// MaxProofBytes bounds the proof size.
	MaxProofBytes = 8 << 10
	// MaxJTILength bounds the jti length.
	MaxJTILength = 256
	// MinRSABits is the smallest RSA modulus accepted.
	MinRSABits = 2048
)

// SupportedAlgs are the asymmetric algorithms this package can verify and the
// default allowlist. Verifier.Algs may narrow it, never widen it.
var SupportedAlgs = []string{"ES256", "ES384", "RS256", "PS256", "EdDSA"}

// Verifier checks DPoP proofs. The zero values of the optional fields select
// the defaults. It is safe for concurrent use.
type Verifier struct {
	// Replay records proof jtis (required). Share it between nodes.
	Replay replay.Cache
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// IATWindow is how old a proof may be (DefaultIATWindow when zero).
	IATWindow time.Duration
	// Leeway is how far in the future iat may lie (DefaultLeeway when zero).
	Leeway time.Duration
	// Algs is the allowlist (SupportedAlgs when empty); entries outside
	// SupportedAlgs are ignored (see Validate).
	Algs []string
	// Nonces, when set, requires a current server nonce in every proof.
	Nonces NonceSource
	// Aliases maps a URL prefix of this server to another prefix that
	// reaches the same endpoints, such as its mTLS listener (RFC 8705 §5
	// mtls_endpoint_aliases): a proof whose htu names the request URL under
	// the alias prefix instead is accepted too. Keys and values are absolute
	// http(s) URLs.
	Aliases map[string]string
}

// Validate reports configuration mistakes: no replay cache, negative
// windows, an algorithm outside SupportedAlgs.
func (v *Verifier) Validate() error {
	var errs []error
	if v.Replay == nil {
		errs = append(errs, fmt.Errorf("%w: Replay is required", ErrConfig))
	}
	if v.IATWindow < 0 || v.Leeway < 0 {
		errs = append(errs, fmt.Errorf("%w: negative IATWindow or Leeway", ErrConfig))
	}
	for from, to := range v.Aliases {
		for _, p := range []string{from, to} {
			if _, err := normalizePrefix(p); err != nil {
				errs = append(errs, fmt.Errorf("%w: alias %q: %w", ErrConfig, p, err))
			}
		}
	}
	for _, a := range v.Algs {
		if !slices.Contains(SupportedAlgs, a) {
			errs = append(errs, fmt.Errorf("%w: algorithm %q is not supported (allowed: %s)", ErrConfig, a, strings.Join(SupportedAlgs, " ")))
		}
	}
	return errors.Join(errs...)
}

// AllowedAlgs returns the effective allowlist (for discovery:
// dpop_signing_alg_values_supported, and WWW-Authenticate algs).
func (v *Verifier) AllowedAlgs() []string {
	if len(v.Algs) == 0 {
		return slices.Clone(SupportedAlgs)
	}
	out := make([]string, 0, len(v.Algs))
	for _, a := range v.Algs {
		if slices.Contains(SupportedAlgs, a) && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

func (v *Verifier) allows(alg string) bool {
	if !slices.Contains(SupportedAlgs, alg) {
		return false
	}
	return len(v.Algs) == 0 || slices.Contains(v.Algs, alg)
}

func (v *Verifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

func (v *Verifier) window() time.Duration {
	if v.IATWindow > 0 {
		return v.IATWindow
	}
	return DefaultIATWindow
}

func (v *Verifier) leeway() time.Duration {
	if v.Leeway > 0 {
		return v.Leeway
	}
	return DefaultLeeway
}

// Proof is a verified DPoP proof.
type Proof struct {
	// JKT is the RFC 7638 thumbprint of the proof's key.
	JKT string
	// JTI is the proof's unique identifier.
	JTI string
	// IAT is when the proof was made.
	IAT time.Time
	// Key is the public key that signed the proof.
	Key crypto.PublicKey
}

// header is the part of the JOSE header checked before go-jose parses it.
type header struct {
	Typ string          `json:"typ"`
	Alg string          `json:"alg"`
	JWK json.RawMessage `json:"jwk"`
}

// privateJWKMembers are JWK members that carry private or symmetric key
// material (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037).
var privateJWKMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k", "priv"}

// claims are the proof's claims. Pointers tell absent from empty.
type claims struct {
	JTI   *string          `json:"jti"`
	HTM   *string          `json:"htm"`
	HTU   *string          `json:"htu"`
	IAT   *json.RawMessage `json:"iat"`
	ATH   *string          `json:"ath"`
	Nonce *string          `json:"nonce"`
}

// Verify checks proof for a request with method and absolute URL u (its
// query and fragment are ignored). accessToken is the token presented with
// the proof at a resource server, or "" at the token endpoint; when set, the
// proof's ath must be its hash. The jti is recorded in the replay cache only
// once every other check passed. Errors wrap ErrInvalid (a *NonceError when
// a nonce is needed) or ErrUnavailable.
func (v *Verifier) Verify(ctx context.Context, proof, method string, u *url.URL, accessToken string) (*Proof, error) {
	if v.Replay == nil {
		return nil, fmt.Errorf("%w: %w: no replay cache", ErrUnavailable, ErrConfig)
	}
	if proof == "" {
		return nil, ErrMissing
	}
	if len(proof) > MaxProofBytes {
		return nil, fmt.Errorf("%w: proof larger than %d bytes", ErrMalformed, MaxProofBytes)
	}
	parts := strings.Split(proof, ".")
	if len(parts) != 3 || parts[2] == "" {
		return nil, fmt.Errorf("%w: not a compact JWS", ErrMalformed)
	}
	rawHeader, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return nil, fmt.Errorf("%w: header encoding: %w", ErrMalformed, err)
	}
	var h header
	if err := json.Unmarshal(rawHeader, &h); err != nil {
		return nil, fmt.Errorf("%w: header: %w", ErrMalformed, err)
	}
	if h.Typ != TypProof {
		return nil, ErrType
	}
	if !v.allows(h.Alg) {
		return nil, fmt.Errorf("%w: %q", ErrAlg, h.Alg)
	}
	if len(h.JWK) == 0 || string(h.JWK) == "null" {
		return nil, fmt.Errorf("%w: no jwk header", ErrKey)
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(h.JWK, &members); err != nil {
		return nil, fmt.Errorf("%w: jwk is not a JSON object", ErrKey)
	}
	for _, m := range privateJWKMembers {
		if _, ok := members[m]; ok {
			return nil, fmt.Errorf("%w: member %q", ErrPrivateKey, m)
		}
	}

	jws, err := jose.ParseSignedCompact(proof, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(h.Alg)})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if len(jws.Signatures) != 1 || jws.Signatures[0].Protected.JSONWebKey == nil {
		return nil, fmt.Errorf("%w: no usable jwk", ErrKey)
	}
	jwk := jws.Signatures[0].Protected.JSONWebKey
	if !jwk.Valid() || !jwk.IsPublic() {
		return nil, fmt.Errorf("%w: jwk invalid or not public", ErrKey)
	}
	if err := keySuitsAlg(jwk.Key, h.Alg); err != nil {
		return nil, err
	}
	payload, err := jws.Verify(jwk.Key)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSignature, err)
	}

	var c claims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, fmt.Errorf("%w: claims: %w", ErrMalformed, err)
	}
	if c.JTI == nil || *c.JTI == "" || len(*c.JTI) > MaxJTILength {
		return nil, fmt.Errorf("%w: jti missing or longer than %d", ErrMalformed, MaxJTILength)
	}
	if c.HTM == nil || c.HTU == nil || c.IAT == nil {
		return nil, fmt.Errorf("%w: htm, htu and iat are required", ErrMalformed)
	}
	if *c.HTM != method {
		return nil, ErrMethod
	}
	want, err := NormalizeURL(u)
	if err != nil {
		return nil, fmt.Errorf("dpop: request URL: %w", err)
	}
	got, err := url.Parse(*c.HTU)
	if err != nil {
		return nil, fmt.Errorf("%w: htu: %w", ErrURL, err)
	}
	gotN, err := NormalizeURL(got)
	if err != nil || (gotN != want && !v.aliasOf(want, gotN)) {
		return nil, ErrURL
	}
	iat, err := numericDate(*c.IAT)
	if err != nil {
		return nil, err
	}
	now := v.now()
	if iat.Before(now.Add(-v.window())) || iat.After(now.Add(v.leeway())) {
		return nil, fmt.Errorf("%w: iat %s, now %s", ErrIAT, iat.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if accessToken != "" {
		if c.ATH == nil || subtle.ConstantTimeCompare([]byte(*c.ATH), []byte(ATH(accessToken))) != 1 {
			return nil, ErrATH
		}
	}
	if v.Nonces != nil {
		if c.Nonce == nil || !v.Nonces.Valid(*c.Nonce) {
			return nil, &NonceError{Nonce: v.Nonces.Nonce(), Err: ErrNonce}
		}
	}
	jkt, err := JKT(jwk.Key)
	if err != nil {
		return nil, err
	}
	// The proof is acceptable until iat leaves the window; remember the jti
	// until then (and a second more).
	jtiSum := sha256.Sum256([]byte(*c.JTI))
	key := "dpop:" + jkt + ":" + base64.RawURLEncoding.EncodeToString(jtiSum[:])
	switch err := v.Replay.UseOnce(ctx, key, iat.Add(v.window()+time.Second)); {
	case err == nil:
	case errors.Is(err, replay.ErrReplayed):
		return nil, ErrReplayed
	default:
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return &Proof{JKT: jkt, JTI: *c.JTI, IAT: iat, Key: jwk.Key}, nil
}

// keySuitsAlg checks the key type, curve and size against the alg.
func keySuitsAlg(key any, alg string) error {
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		if (alg == "ES256" && k.Curve == elliptic.P256()) || (alg == "ES384" && k.Curve == elliptic.P384()) {
			return nil
		}
	case *rsa.PublicKey:
		if alg == "RS256" || alg == "PS256" {
			if k.N.BitLen() < MinRSABits {
				return fmt.Errorf("%w: RSA key shorter than %d bits", ErrKey, MinRSABits)
			}
			return nil
		}
	case ed25519.PublicKey:
		if alg == "EdDSA" {
			return nil
		}
	default:
		return fmt.Errorf("%w: unsupported key type %T", ErrKey, key)
	}
	return fmt.Errorf("%w: key does not suit alg %s", ErrKey, alg)
}

// numericDate parses a JWT NumericDate (seconds since the epoch, possibly
// with a fraction).
func numericDate(raw json.RawMessage) (time.Time, error) {
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1e11 {
		return time.Time{}, fmt.Errorf("%w: iat is not a NumericDate", ErrMalformed)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), nil
}

// aliasOf reports whether htu is the normalised request URL want reached
// through one of v.Aliases.
func (v *Verifier) aliasOf(want, htu string) bool {
	for from, to := range v.Aliases {
		f, err := normalizePrefix(from)
		if err != nil {
			continue
		}
		rest, ok := strings.CutPrefix(want, f)
		if !ok || (rest != "" && rest[0] != '/') {
			continue
		}
		if t, err := normalizePrefix(to); err == nil && t+rest == htu {
			return true
		}
	}
	return false
}

// normalizePrefix is NormalizeURL of a URL prefix, without its trailing "/".
func normalizePrefix(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrURL, err)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%w: a prefix has no query or fragment", ErrURL)
	}
	n, err := NormalizeURL(u)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(n, "/"), nil
}

// ATH returns the ath claim value for an access token: base64url (no
// padding) of its SHA-256 hash (RFC 9449 §4.2).
func ATH(accessToken string) string {
	sum := sha256.Sum256([]byte(accessToken))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// NormalizeURL returns the form of an absolute http(s) URL that htu is
// compared in (RFC 9449 §4.3 with RFC 3986 §6.2.2-6.2.3): scheme and host in
// lower case, the default port dropped, an empty path as "/",
// percent-encodings in upper case and unreserved characters decoded; query
// and fragment dropped. URLs with user information are refused.
func NormalizeURL(u *url.URL) (string, error) {
	if u == nil || u.Host == "" || u.User != nil || u.Opaque != "" {
		return "", fmt.Errorf("%w: not an absolute URL", ErrURL)
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "https" && scheme != "http" {
		return "", fmt.Errorf("%w: scheme %q", ErrURL, u.Scheme)
	}
	host := strings.ToLower(u.Hostname())
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port := u.Port(); port != "" && !(scheme == "https" && port == "443") && !(scheme == "http" && port == "80") {
		host += ":" + port
	}
	path, err := normalizePath(u.EscapedPath())
	if err != nil {
		return "", err
	}
	return scheme + "://" + host + path, nil
}

func isUnreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func normalizePath(p string) (string, error) {
	if p == "" {
		return "/", nil
	}
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); i++ {
		if p[i] != '%' {
			b.WriteByte(p[i])
			continue
		}
		if i+2 >= len(p) {
			return "", fmt.Errorf("%w: bad percent-encoding", ErrURL)
		}
		hi, ok1 := unhex(p[i+1])
		lo, ok2 := unhex(p[i+2])
		if !ok1 || !ok2 {
			return "", fmt.Errorf("%w: bad percent-encoding", ErrURL)
		}
		if c := hi<<4 | lo; isUnreserved(c) {
			b.WriteByte(c)
		} else {
			b.WriteString(strings.ToUpper(p[i : i+3]))
		}
		i += 2
	}
	return b.String(), nil
}
