package clientauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/fhirgate/fhirgate/internal/jwksfetch"
	"github.com/fhirgate/fhirgate/internal/oauth"
	"github.com/fhirgate/fhirgate/internal/replay"
	"github.com/fhirgate/fhirgate/internal/storage"
)

// AssertionTypeJWTBearer is the client_assertion_type of private_key_jwt
// (RFC 7523 §2.2).
const AssertionTypeJWTBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// Assertion limits.
const (
	// MaxAssertionLifetime bounds how far ahead an assertion's exp may be
	// (SMART Backend Services: no more than five minutes).
	MaxAssertionLifetime = 5 * time.Minute
	// AssertionSkew is the clock skew tolerated on exp, nbf and iat.
	AssertionSkew = 60 * time.Second
	// maxAssertionBytes bounds the size of an assertion.
	maxAssertionBytes = 8 << 10
	// maxJTILen bounds the jti claim.
	maxJTILen = 256
	// minRSABits is the smallest RSA modulus accepted.
	minRSABits = 2048
)

// AssertionAlgs are the signature algorithms accepted on client assertions.
// none and the HMAC algorithms are never accepted: a registered public key
// must not double as an HMAC secret.
var AssertionAlgs = []jose.SignatureAlgorithm{jose.RS384, jose.ES384, jose.RS256, jose.ES256, jose.PS384, jose.PS256, jose.RS512, jose.ES512, jose.PS512}

// Assertion failure causes (wrapped by the *oauth.Error).
var (
	ErrMalformedAssertion = errors.New("clientauth: malformed client assertion")
	ErrAssertionAlg       = errors.New("clientauth: client assertion algorithm not allowed")
	ErrUnknownKey         = errors.New("clientauth: no registered key matches the assertion")
	ErrBadSignature       = errors.New("clientauth: client assertion signature invalid")
	ErrAssertionClaims    = errors.New("clientauth: client assertion claims invalid")
	ErrAssertionReplayed  = errors.New("clientauth: client assertion jti already used")
	ErrClientKeys         = errors.New("clientauth: client keys unavailable")
)

// assertionClaims are the claims RFC 7523 §3 requires (iat and nbf optional).
type assertionClaims struct {
	Issuer    string           `json:"iss"`
	Subject   string           `json:"sub"`
	Audience  jwt.Audience     `json:"aud"`
	Expiry    *jwt.NumericDate `json:"exp"`
	NotBefore *jwt.NumericDate `json:"nbf"`
	IssuedAt  *jwt.NumericDate `json:"iat"`
	ID        string           `json:"jti"`
}

// peekSubject returns the sub claim of a compact JWS without verifying it
// (to find the client to verify it against), or "".
func peekSubject(raw string) string {
	if len(raw) > maxAssertionBytes {
		return ""
	}
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var c struct {
		Sub string `json:"sub"`
	}
	if json.Unmarshal(payload, &c) != nil {
		return ""
	}
	return c.Sub
}

// refuse builds the invalid_client error every failed assertion gets.
func refuse(cause error) error {
	return oauth.Wrap(oauth.InvalidClient, failedDescription, cause)
}

// verifyAssertion checks a private_key_jwt assertion for client: signature
// by one of its registered keys with an allowed algorithm, iss = sub =
// client_id, aud one of a.Audiences, exp present and at most
// MaxAssertionLifetime ahead, nbf/iat not in the future, and a jti never
// seen before (recorded until the assertion expires).
func (a Authenticator) verifyAssertion(ctx context.Context, client *storage.Client, typ, raw string) error {
	if typ != AssertionTypeJWTBearer || raw == "" {
		return oauth.Wrap(oauth.InvalidClient, "client_assertion_type must be "+AssertionTypeJWTBearer+
			" with a client_assertion", ErrMalformedAssertion)
	}
	if a.Replay == nil || len(a.Audiences) == 0 {
		return oauth.Wrap(oauth.InvalidClient, "private_key_jwt is not enabled on this server",
			fmt.Errorf("%w: private_key_jwt needs Audiences and Replay", ErrNotConfigured))
	}
	if len(raw) > maxAssertionBytes {
		return refuse(fmt.Errorf("%w: larger than %d bytes", ErrMalformedAssertion, maxAssertionBytes))
	}
	jws, err := jose.ParseSigned(raw, AssertionAlgs)
	if err != nil {
		return refuse(fmt.Errorf("%w: %w", ErrAssertionAlg, err))
	}
	if len(jws.Signatures) != 1 {
		return refuse(fmt.Errorf("%w: want exactly one signature", ErrMalformedAssertion))
	}
	hdr := jws.Signatures[0].Header
	alg := jose.SignatureAlgorithm(hdr.Algorithm)
	// A jku header must name the registered jwks_uri (SMART
	// client-confidential-asymmetric); keys are never fetched from it.
	if jku, ok := hdr.ExtraHeaders["jku"]; ok {
		if s, _ := jku.(string); s == "" || s != client.JWKSURI {
			return refuse(fmt.Errorf("%w: jku is not the registered jwks_uri", ErrUnknownKey))
		}
	}
	payload, err := a.verifyWithClientKeys(ctx, client, jws, hdr.KeyID, alg)
	if err != nil {
		return err
	}
	var c assertionClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return refuse(fmt.Errorf("%w: claims are not a JSON object", ErrMalformedAssertion))
	}
	exp, err := a.checkClaims(client.ID, &c)
	if err != nil {
		return refuse(err)
	}
	key := "client_assertion:" + client.ID + ":" + c.ID
	switch err := a.Replay.UseOnce(ctx, key, exp.Add(AssertionSkew)); {
	case errors.Is(err, replay.ErrReplayed), errors.Is(err, replay.ErrExpired):
		return refuse(fmt.Errorf("%w: %w", ErrAssertionReplayed, err))
	case err != nil:
		return oauth.Wrap(oauth.TemporarilyUnavailable, "replay cache unavailable; try again later",
			fmt.Errorf("clientauth: record assertion jti: %w", err))
	}
	return nil
}

// checkClaims applies the RFC 7523 §3 and SMART Backend Services rules and
// returns the assertion's expiry.
func (a Authenticator) checkClaims(clientID string, c *assertionClaims) (time.Time, error) {
	now := a.now()
	switch {
	case c.Issuer != clientID || c.Subject != clientID:
		return time.Time{}, fmt.Errorf("%w: iss and sub must both be the client_id", ErrAssertionClaims)
	case !a.audienceOK(c.Audience):
		return time.Time{}, fmt.Errorf("%w: aud %v is not this server's token endpoint", ErrAssertionClaims, []string(c.Audience))
	case c.Expiry == nil:
		return time.Time{}, fmt.Errorf("%w: exp missing", ErrAssertionClaims)
	case c.ID == "" || len(c.ID) > maxJTILen:
		return time.Time{}, fmt.Errorf("%w: jti missing or too long", ErrAssertionClaims)
	}
	exp := c.Expiry.Time()
	switch {
	case !now.Before(exp.Add(AssertionSkew)):
		return time.Time{}, fmt.Errorf("%w: expired", ErrAssertionClaims)
	case exp.After(now.Add(MaxAssertionLifetime + AssertionSkew)):
		return time.Time{}, fmt.Errorf("%w: exp more than %s ahead", ErrAssertionClaims, MaxAssertionLifetime)
	case c.NotBefore != nil && c.NotBefore.Time().After(now.Add(AssertionSkew)):
		return time.Time{}, fmt.Errorf("%w: not yet valid (nbf)", ErrAssertionClaims)
	case c.IssuedAt != nil && c.IssuedAt.Time().After(now.Add(AssertionSkew)):
		return time.Time{}, fmt.Errorf("%w: issued in the future (iat)", ErrAssertionClaims)
	case c.IssuedAt != nil && c.IssuedAt.Time().After(exp):
		return time.Time{}, fmt.Errorf("%w: iat after exp", ErrAssertionClaims)
	}
	return exp, nil
}

// audienceOK reports whether aud names one of the accepted audiences
// (ignoring a trailing slash).
func (a Authenticator) audienceOK(aud jwt.Audience) bool {
	for _, got := range aud {
		g := strings.TrimRight(got, "/")
		for _, want := range a.Audiences {
			if g != "" && g == strings.TrimRight(want, "/") {
				return true
			}
		}
	}
	return false
}

// verifyWithClientKeys verifies jws with the client's key named by kid (any
// compatible key when kid is empty). For a jwks_uri client an unknown kid
// triggers one (rate-limited) refresh of the set.
func (a Authenticator) verifyWithClientKeys(ctx context.Context, client *storage.Client, jws *jose.JSONWebSignature,
	kid string, alg jose.SignatureAlgorithm) ([]byte, error) {
	set, err := a.clientKeys(ctx, client)
	if err != nil {
		return nil, err
	}
	cands := candidates(set, kid, alg)
	if len(cands) == 0 && client.JWKSURI != "" {
		set, refreshed, rerr := a.JWKS.Refresh(ctx, client.JWKSURI)
		if rerr == nil && refreshed {
			cands = candidates(set, kid, alg)
		}
	}
	switch len(cands) {
	case 0:
		return nil, refuse(fmt.Errorf("%w: kid %q alg %s", ErrUnknownKey, kid, alg))
	case 1:
	default:
		// SMART: zero or several candidate keys mean failure.
		return nil, refuse(fmt.Errorf("%w: kid %q alg %s names %d keys", ErrUnknownKey, kid, alg, len(cands)))
	}
	payload, err := jws.Verify(cands[0].Key)
	if err != nil {
		return nil, refuse(ErrBadSignature)
	}
	return payload, nil
}

// clientKeys returns the client's registered public keys: its jwks, else the
// set fetched from its jwks_uri.
func (a Authenticator) clientKeys(ctx context.Context, client *storage.Client) (*jose.JSONWebKeySet, error) {
	switch {
	case len(client.JWKS) > 0:
		set, err := jwksfetch.ParseSet(client.JWKS)
		if err != nil {
			return nil, refuse(fmt.Errorf("%w: registered jwks: %w", ErrClientKeys, err))
		}
		return set, nil
	case client.JWKSURI != "":
		if a.JWKS == nil {
			return nil, oauth.Wrap(oauth.InvalidClient, "jwks_uri is not enabled on this server",
				fmt.Errorf("%w: no JWKS fetcher", ErrNotConfigured))
		}
		set, err := a.JWKS.Get(ctx, client.JWKSURI)
		if err != nil {
			return nil, refuse(fmt.Errorf("%w: %w", ErrClientKeys, err))
		}
		return set, nil
	}
	return nil, refuse(fmt.Errorf("%w: client %q has neither jwks nor jwks_uri", ErrClientKeys, client.ID))
}

// candidates returns the keys of set that may verify a signature by alg
// with key id kid (every compatible key when kid is empty).
func candidates(set *jose.JSONWebKeySet, kid string, alg jose.SignatureAlgorithm) []jose.JSONWebKey {
	if set == nil {
		return nil
	}
	var out []jose.JSONWebKey
	for _, k := range set.Keys {
		if kid != "" && k.KeyID != kid {
			continue
		}
		if k.Algorithm != "" && k.Algorithm != string(alg) {
			continue
		}
		if compatible(k.Key, alg) {
			out = append(out, k)
		}
	}
	return out
}

// compatible reports whether a public key of this type may verify alg.
func compatible(key any, alg jose.SignatureAlgorithm) bool {
	switch k := key.(type) {
	case *rsa.PublicKey:
		switch alg {
		case jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512:
			return k.N.BitLen() >= minRSABits
		}
	case *ecdsa.PublicKey:
		switch alg {
		case jose.ES256:
			return k.Curve == elliptic.P256()
		case jose.ES384:
			return k.Curve == elliptic.P384()
		case jose.ES512:
			return k.Curve == elliptic.P521()
		}
	}
	return false
}
