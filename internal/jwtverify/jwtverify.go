// Package jwtverify verifies fhirgate access tokens at a gateway that runs
// apart from the authorization server: the signing keys come from the
// issuer's JWK Set (jwks_uri, discovered from the issuer's metadata unless
// configured), are cached, and are fetched again when a token names an
// unknown kid (the issuer rotated its keys), at most once per
// MinRefreshInterval so a stream of forged kids cannot turn the gateway into
// a load generator against the issuer.
//
// The claim checks are exactly those of token.Issuer.ParseAccessToken (typ
// at+jwt, iss, aud, exp/nbf/iat with token.Skew, required claims): a Parser
// is a verify-only token.Issuer whose signature checks are done here. Only
// ES256 and RS256 are accepted, each only with a matching public key (EC
// P-256, RSA of at least 2048 bits); "none", HMAC and every other algorithm
// are refused before any key is looked at.
package jwtverify

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/fhirgate/fhirgate/internal/token"
)

// Defaults.
const (
	// DefaultTTL is how long a fetched key set is used before it is fetched
	// again on the next verification.
	DefaultTTL = 10 * time.Minute
	// DefaultMinRefreshInterval is the least time between two fetches.
	DefaultMinRefreshInterval = 30 * time.Second
	// DefaultMaxStaleness is how long a key set whose refresh keeps failing
	// is still used; after that verification fails closed.
	DefaultMaxStaleness = time.Hour
	// DefaultTimeout bounds one fetch.
	DefaultTimeout = 5 * time.Second
	maxDocBytes    = 256 << 10
	maxJWTBytes    = 16 << 10
	maxKeys        = 64
)

// Errors. Every Verify error wraps ErrInvalid.
var (
	// ErrOptions reports unusable Options.
	ErrOptions = errors.New("jwtverify: invalid options")
	// ErrInvalid: the JWT is not acceptable.
	ErrInvalid = errors.New("jwtverify: invalid JWT")
	// ErrUnknownKID: no key of the issuer has the token's kid, even after a
	// refresh. It wraps ErrInvalid.
	ErrUnknownKID = fmt.Errorf("%w: unknown kid", ErrInvalid)
	// ErrKeysUnavailable: the issuer's keys could not be fetched (or are
	// older than MaxStaleness). It wraps ErrInvalid.
	ErrKeysUnavailable = fmt.Errorf("%w: issuer keys unavailable", ErrInvalid)
)

// supported maps the accepted algorithms to a check of the key type.
var supported = map[string]func(any) bool{
	"ES256": func(k any) bool {
		ec, ok := k.(*ecdsa.PublicKey)
		return ok && ec.Curve == elliptic.P256()
	},
	"RS256": func(k any) bool {
		r, ok := k.(*rsa.PublicKey)
		return ok && r.N.BitLen() >= 2048
	},
}

// Options configures a Keys.
type Options struct {
	// Issuer is the authorization server (the iss of its tokens). Required.
	Issuer string
	// JWKSURI is the issuer's JWK Set. When empty it is discovered from
	// {Issuer}/.well-known/oauth-authorization-server (RFC 8414), falling
	// back to /.well-known/openid-configuration; the document's issuer must
	// equal Issuer.
	JWKSURI string
	// Algorithms is the allowlist, a subset of ES256 and RS256; both when empty.
	Algorithms []string
	// HTTPClient fetches the documents; a client with DefaultTimeout when nil.
	HTTPClient         *http.Client
	TTL                time.Duration // DefaultTTL when zero
	MinRefreshInterval time.Duration // DefaultMinRefreshInterval when zero
	MaxStaleness       time.Duration // DefaultMaxStaleness when zero; at least TTL
	Logger             *slog.Logger
	Now                func() time.Time
}

// Keys is the issuer's verification keys, fetched on demand. It implements
// token.Verifier and is safe for concurrent use.
type Keys struct {
	opts  Options
	algs  map[string]bool
	fetch sync.Mutex // serialises fetches

	mu          sync.RWMutex
	jwksURI     string
	byKID       map[string]jose.JSONWebKey
	fetchedAt   time.Time // last successful fetch
	attemptedAt time.Time // last attempt
	lastErr     error
	fetches     int
}

// New validates opts and fills defaults. It does not fetch anything: the
// first verification does (the issuer may start after the gateway).
func New(opts Options) (*Keys, error) {
	if u, err := url.Parse(opts.Issuer); err != nil || !u.IsAbs() || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%w: Issuer %q must be an absolute URL", ErrOptions, opts.Issuer)
	}
	if opts.JWKSURI != "" {
		if u, err := url.Parse(opts.JWKSURI); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("%w: JWKSURI %q must be an absolute http(s) URL", ErrOptions, opts.JWKSURI)
		}
	}
	if opts.TTL < 0 || opts.MinRefreshInterval < 0 || opts.MaxStaleness < 0 {
		return nil, fmt.Errorf("%w: negative duration", ErrOptions)
	}
	if len(opts.Algorithms) == 0 {
		opts.Algorithms = []string{"ES256", "RS256"}
	}
	algs := map[string]bool{}
	for _, a := range opts.Algorithms {
		if supported[a] == nil {
			return nil, fmt.Errorf("%w: algorithm %q is not allowed (ES256, RS256)", ErrOptions, a)
		}
		algs[a] = true
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: DefaultTimeout}
	}
	if opts.TTL == 0 {
		opts.TTL = DefaultTTL
	}
	if opts.MinRefreshInterval == 0 {
		opts.MinRefreshInterval = DefaultMinRefreshInterval
	}
	if opts.MaxStaleness == 0 {
		opts.MaxStaleness = DefaultMaxStaleness
	}
	if opts.MaxStaleness < opts.TTL {
		return nil, fmt.Errorf("%w: MaxStaleness %s is below TTL %s", ErrOptions, opts.MaxStaleness, opts.TTL)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if strings.HasPrefix(opts.Issuer, "http://") || strings.HasPrefix(opts.JWKSURI, "http://") {
		opts.Logger.Warn("jwtverify: fetching the issuer's keys over plain http; use https outside development")
	}
	return &Keys{opts: opts, algs: algs, jwksURI: opts.JWKSURI}, nil
}

// Fetches reports how many key-set fetches were attempted (for tests and
// metrics).
func (k *Keys) Fetches() int {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.fetches
}

// Verify checks a compact JWS signed by one of the issuer's keys and
// unmarshals its payload into claims (token.Verifier). The header alg must
// be in algs and in the configured allowlist and fit the key named by kid;
// typ must match (token's rules: case-insensitive, optional "application/").
// Time, issuer and audience checks belong to the caller (token.Issuer).
func (k *Keys) Verify(raw string, algs []string, typ string, claims any) error {
	if typ == "" {
		return fmt.Errorf("%w: no expected typ given", ErrInvalid)
	}
	if len(raw) > maxJWTBytes || strings.Count(raw, ".") != 2 {
		return fmt.Errorf("%w: not a compact JWS of acceptable size", ErrInvalid)
	}
	var allowed []jose.SignatureAlgorithm
	for _, a := range algs {
		if k.algs[a] {
			allowed = append(allowed, jose.SignatureAlgorithm(a))
		}
	}
	if len(allowed) == 0 {
		return fmt.Errorf("%w: empty algorithm allowlist", ErrInvalid)
	}
	jws, err := jose.ParseSignedCompact(raw, allowed)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if len(jws.Signatures) != 1 {
		return fmt.Errorf("%w: expected one signature", ErrInvalid)
	}
	h := jws.Signatures[0].Protected
	if h.KeyID == "" {
		return fmt.Errorf("%w: no kid", ErrInvalid)
	}
	if h.JSONWebKey != nil || h.ExtraHeaders["jku"] != nil || h.ExtraHeaders["x5u"] != nil {
		return fmt.Errorf("%w: key material in the header is not accepted", ErrInvalid)
	}
	gotTyp, _ := h.ExtraHeaders[jose.HeaderType].(string)
	if !typMatches(gotTyp, typ) {
		return fmt.Errorf("%w: typ %q, want %q", ErrInvalid, gotTyp, typ)
	}
	key, err := k.key(h.KeyID)
	if err != nil {
		return err
	}
	if key.Algorithm != "" && key.Algorithm != h.Algorithm {
		return fmt.Errorf("%w: alg %s does not match key %s (%s)", ErrInvalid, h.Algorithm, h.KeyID, key.Algorithm)
	}
	if fits := supported[h.Algorithm]; fits == nil || !fits(key.Key) {
		return fmt.Errorf("%w: key %s does not fit alg %s", ErrInvalid, h.KeyID, h.Algorithm)
	}
	payload, err := jws.Verify(key.Key)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if claims != nil {
		if err := json.Unmarshal(payload, claims); err != nil {
			return fmt.Errorf("%w: claims: %w", ErrInvalid, err)
		}
	}
	return nil
}

// key returns the issuer's key kid: from the cached set while it is fresh,
// refreshing when the set is older than TTL or lacks kid (rate-limited).
func (k *Keys) key(kid string) (jose.JSONWebKey, error) {
	now := k.opts.Now()
	k.mu.RLock()
	key, ok := k.byKID[kid]
	fresh := k.byKID != nil && now.Sub(k.fetchedAt) < k.opts.TTL
	k.mu.RUnlock()
	if ok && fresh {
		return key, nil
	}
	k.refresh(now)
	now = k.opts.Now()
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.byKID == nil || now.Sub(k.fetchedAt) > k.opts.MaxStaleness {
		return jose.JSONWebKey{}, fmt.Errorf("%w: %w", ErrKeysUnavailable, k.lastErr)
	}
	if key, ok := k.byKID[kid]; ok {
		return key, nil
	}
	return jose.JSONWebKey{}, ErrUnknownKID
}

// refresh fetches the key set unless another fetch was attempted less than
// MinRefreshInterval ago. Concurrent callers wait for one fetch.
func (k *Keys) refresh(now time.Time) {
	k.fetch.Lock()
	defer k.fetch.Unlock()
	k.mu.RLock()
	recent := !k.attemptedAt.IsZero() && now.Sub(k.attemptedAt) < k.opts.MinRefreshInterval
	uri := k.jwksURI
	k.mu.RUnlock()
	if recent {
		return
	}
	k.mu.Lock()
	k.attemptedAt, k.fetches = now, k.fetches+1
	k.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), DefaultTimeout)
	defer cancel()
	var err error
	if uri == "" {
		if uri, err = k.discover(ctx); err != nil {
			k.fail(err)
			return
		}
	}
	set, err := k.fetchSet(ctx, uri)
	if err != nil {
		k.fail(err)
		return
	}
	k.mu.Lock()
	k.jwksURI, k.byKID, k.fetchedAt, k.lastErr = uri, set, now, nil
	k.mu.Unlock()
}

func (k *Keys) fail(err error) {
	k.opts.Logger.Warn("jwtverify: fetching the issuer's keys failed", "issuer", k.opts.Issuer, "error", err)
	k.mu.Lock()
	k.lastErr = err
	k.mu.Unlock()
}

// discover reads jwks_uri from the issuer's metadata.
func (k *Keys) discover(ctx context.Context) (string, error) {
	base := strings.TrimRight(k.opts.Issuer, "/")
	var lastErr error
	for _, p := range []string{"/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"} {
		var doc struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		if err := k.getJSON(ctx, base+p, &doc); err != nil {
			lastErr = err
			continue
		}
		if doc.Issuer != k.opts.Issuer {
			return "", fmt.Errorf("metadata at %s names issuer %q, want %q", p, doc.Issuer, k.opts.Issuer)
		}
		u, err := url.Parse(doc.JWKSURI)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return "", fmt.Errorf("metadata at %s has no usable jwks_uri", p)
		}
		return doc.JWKSURI, nil
	}
	return "", fmt.Errorf("issuer metadata: %w", lastErr)
}

// fetchSet fetches and checks the JWK Set: public asymmetric signing keys
// with a kid; others are skipped, a private key fails the whole set.
func (k *Keys) fetchSet(ctx context.Context, uri string) (map[string]jose.JSONWebKey, error) {
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := k.getJSON(ctx, uri, &raw); err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	if len(raw.Keys) == 0 || len(raw.Keys) > maxKeys {
		return nil, fmt.Errorf("jwks: %d keys", len(raw.Keys))
	}
	out := map[string]jose.JSONWebKey{}
	for _, rk := range raw.Keys {
		var jk jose.JSONWebKey
		if err := jk.UnmarshalJSON(rk); err != nil {
			continue // a key type we cannot use
		}
		if !jk.IsPublic() {
			return nil, errors.New("jwks: the set holds a private or symmetric key")
		}
		if jk.KeyID == "" || (jk.Use != "" && jk.Use != "sig") || !jk.Valid() {
			continue
		}
		out[jk.KeyID] = jk
	}
	if len(out) == 0 {
		return nil, errors.New("jwks: no usable signing key")
	}
	return out, nil
}

func (k *Keys) getJSON(ctx context.Context, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := k.opts.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", u, resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxDocBytes+1))
	if err != nil {
		return err
	}
	if len(b) > maxDocBytes {
		return fmt.Errorf("GET %s: document too large", u)
	}
	return json.Unmarshal(b, v)
}

func typMatches(got, want string) bool {
	strip := func(s string) string {
		const p = "application/"
		if len(s) >= len(p) && strings.EqualFold(s[:len(p)], p) {
			return s[len(p):]
		}
		return s
	}
	g, w := strip(got), strip(want)
	return g != "" && strings.EqualFold(g, w)
}

// Parser verifies access tokens of a remote issuer; it satisfies the
// gateway's TokenParser.
type Parser struct {
	issuer *token.Issuer
	keys   *Keys
}

// verifyOnly refuses to sign: a Parser never mints tokens.
type verifyOnly struct{}

// errVerifyOnly is returned by verifyOnly.Sign.
var errVerifyOnly = errors.New("jwtverify: a remote-key parser cannot sign")

func (verifyOnly) Sign(string, string, any) (string, error) { return "", errVerifyOnly }

// NewParser builds a Parser for keys' issuer.
func NewParser(keys *Keys, now func() time.Time) (*Parser, error) {
	if keys == nil {
		return nil, fmt.Errorf("%w: keys are required", ErrOptions)
	}
	iss, err := token.NewIssuer(token.Options{Signer: verifyOnly{}, Verifier: keys, Issuer: keys.opts.Issuer, Now: now})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrOptions, err)
	}
	return &Parser{issuer: iss, keys: keys}, nil
}

// ParseAccessToken verifies raw exactly as token.Issuer.ParseAccessToken
// does, with the issuer's fetched keys. Errors wrap token.ErrInvalid.
func (p *Parser) ParseAccessToken(raw, audience string) (*token.AccessClaims, error) {
	return p.issuer.ParseAccessToken(raw, audience)
}

// Keys returns the parser's key source.
func (p *Parser) Keys() *Keys { return p.keys }
