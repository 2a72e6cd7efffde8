// Package token issues and checks fhirgate's tokens: JWT access tokens
// (RFC 9068, typ at+jwt, ES256) and OpenID Connect id_tokens (RS256 by
// default). Signing and signature checks are delegated to a Signer and a
// Verifier (internal/keys); this package owns the claims, lifetimes and the
// time, issuer and audience checks.
package token

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/internal/secret"
)

// Header types and algorithms.
const (
	// TypAccessToken is the JWT typ of access tokens (RFC 9068 §2.1).
	TypAccessToken = "at+jwt"
	// TypIDToken is the JWT typ of id_tokens.
	TypIDToken = "JWT"
	// AlgAccessToken signs access tokens: cheap to verify at the gateway.
	AlgAccessToken = "ES256"
	// AlgIDTokenDefault signs id_tokens unless the client registered ES256.
	AlgIDTokenDefault = "RS256"
)

// Lifetimes.
const (
	DefaultAccessTokenTTL = 15 * time.Minute
	MaxAccessTokenTTL     = 60 * time.Minute
	DefaultIDTokenTTL     = 5 * time.Minute
	// Skew is the clock skew tolerated on exp, nbf and iat.
	Skew = 30 * time.Second
)

// acceptedAlgs is the allowlist for access tokens we verify.
var acceptedAlgs = []string{"ES256", "RS256"}

// Errors. Every ParseAccessToken error wraps ErrInvalid.
var (
	// ErrInvalid: the token is not a valid access token of ours.
	ErrInvalid = errors.New("token: invalid")
	// ErrExpired: the token's exp has passed. It wraps ErrInvalid.
	ErrExpired = fmt.Errorf("%w: expired", ErrInvalid)
	// ErrConfig: bad Options.
	ErrConfig = errors.New("token: bad configuration")
	// ErrClaims: the caller supplied incomplete or conflicting claims.
	ErrClaims = errors.New("token: bad claims")
)

// Signer signs claims as a JWT (implemented by *keys.Manager).
type Signer interface {
	Sign(alg, typ string, claims any) (string, error)
}

// Verifier checks a JWT's signature, alg and typ (implemented by *keys.Manager).
type Verifier interface {
	Verify(raw string, algs []string, typ string, claims any) error
}

// Options configures an Issuer.
type Options struct {
	Signer   Signer
	Verifier Verifier
	// Issuer is the iss of every token, exactly as published in discovery.
	Issuer string
	// AccessTokenTTL defaults to 15 minutes; above 60 minutes is an error.
	AccessTokenTTL time.Duration
	// IDTokenTTL defaults to 5 minutes.
	IDTokenTTL time.Duration
	Now        func() time.Time
}

// Issuer mints and parses tokens. It is safe for concurrent use.
type Issuer struct {
	signer   Signer
	verifier Verifier
	issuer   string
	atTTL    time.Duration
	idTTL    time.Duration
	now      func() time.Time
}

// NewIssuer validates opts and fills defaults.
func NewIssuer(opts Options) (*Issuer, error) {
	if opts.Signer == nil {
		return nil, fmt.Errorf("%w: Signer is required", ErrConfig)
	}
	if opts.Issuer == "" {
		return nil, fmt.Errorf("%w: Issuer is required", ErrConfig)
	}
	u, err := url.Parse(opts.Issuer)
	if err != nil || !u.IsAbs() || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%w: Issuer %q must be an absolute URL without query or fragment", ErrConfig, opts.Issuer)
	}
	i := &Issuer{
		signer:   opts.Signer,
		verifier: opts.Verifier,
		issuer:   opts.Issuer,
		atTTL:    opts.AccessTokenTTL,
		idTTL:    opts.IDTokenTTL,
		now:      opts.Now,
	}
	switch {
	case i.atTTL == 0:
		i.atTTL = DefaultAccessTokenTTL
	case i.atTTL < 0:
		return nil, fmt.Errorf("%w: AccessTokenTTL %s is negative", ErrConfig, i.atTTL)
	case i.atTTL > MaxAccessTokenTTL:
		return nil, fmt.Errorf("%w: AccessTokenTTL %s is above the %s maximum", ErrConfig, i.atTTL, MaxAccessTokenTTL)
	case i.atTTL < time.Second:
		return nil, fmt.Errorf("%w: AccessTokenTTL %s is below one second", ErrConfig, i.atTTL)
	}
	switch {
	case i.idTTL == 0:
		i.idTTL = DefaultIDTokenTTL
	case i.idTTL < time.Second || i.idTTL > MaxAccessTokenTTL:
		return nil, fmt.Errorf("%w: IDTokenTTL %s must be between 1s and %s", ErrConfig, i.idTTL, MaxAccessTokenTTL)
	}
	if i.now == nil {
		i.now = time.Now
	}
	return i, nil
}

// AccessTokenTTL is the access-token lifetime (the token response expires_in).
func (i *Issuer) AccessTokenTTL() time.Duration { return i.atTTL }

// IDTokenTTL is the id_token lifetime.
func (i *Issuer) IDTokenTTL() time.Duration { return i.idTTL }

// Issuer returns the iss value.
func (i *Issuer) Issuer() string { return i.issuer }

// AccessClaims are the claims of a JWT access token (RFC 9068 §2.2 plus the
// SMART launch context).
type AccessClaims struct {
	Issuer    string            `json:"iss"`
	Subject   string            `json:"sub"`
	Audience  string            `json:"aud"`
	ClientID  string            `json:"client_id"`
	Scope     string            `json:"scope"`
	JTI       string            `json:"jti"`
	IssuedAt  int64             `json:"iat"`
	NotBefore int64             `json:"nbf,omitempty"`
	ExpiresAt int64             `json:"exp"`
	Patient   string            `json:"patient,omitempty"`
	Encounter string            `json:"encounter,omitempty"`
	FHIRUser  string            `json:"fhirUser,omitempty"`
	FamilyID  string            `json:"fam,omitempty"`
	Cnf       map[string]string `json:"cnf,omitempty"`
}

// AccessToken fills iss, iat, exp and a random 128-bit jti into c (any values
// the caller set for them are replaced) and signs it ES256 with typ at+jwt.
// sub, aud and client_id are required. It returns the token and the claims
// as signed.
func (i *Issuer) AccessToken(c AccessClaims) (string, AccessClaims, error) {
	if c.Subject == "" || c.Audience == "" || c.ClientID == "" {
		return "", AccessClaims{}, fmt.Errorf("%w: access token needs sub, aud and client_id", ErrClaims)
	}
	now := i.now()
	c.Issuer = i.issuer
	c.IssuedAt = now.Unix()
	c.ExpiresAt = now.Add(i.atTTL).Unix()
	c.JTI = secret.ID()
	if c.NotBefore != 0 && c.NotBefore > c.ExpiresAt {
		return "", AccessClaims{}, fmt.Errorf("%w: nbf after exp", ErrClaims)
	}
	raw, err := i.signer.Sign(AlgAccessToken, TypAccessToken, c)
	if err != nil {
		return "", AccessClaims{}, fmt.Errorf("token: sign access token: %w", err)
	}
	return raw, c, nil
}

// ParseAccessToken verifies an access token: signature by one of our keys
// (ES256 or RS256), typ at+jwt, iss equal to ours, aud equal to audience when
// audience is non-empty (a trailing "/" on either side is ignored), exp in
// the future and nbf/iat not in the future, each with Skew. Required claims
// (sub, client_id, jti, exp, iat) must be present. Errors wrap ErrInvalid
// (ErrExpired for an expired token).
func (i *Issuer) ParseAccessToken(raw string, audience string) (*AccessClaims, error) {
	if i.verifier == nil {
		return nil, fmt.Errorf("%w: no verifier configured", ErrInvalid)
	}
	var c AccessClaims
	if err := i.verifier.Verify(raw, acceptedAlgs, TypAccessToken, &c); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if c.Issuer != i.issuer {
		return nil, fmt.Errorf("%w: wrong issuer", ErrInvalid)
	}
	if audience != "" && trimSlash(c.Audience) != trimSlash(audience) {
		return nil, fmt.Errorf("%w: wrong audience", ErrInvalid)
	}
	if c.Subject == "" || c.ClientID == "" || c.JTI == "" || c.ExpiresAt == 0 || c.IssuedAt == 0 {
		return nil, fmt.Errorf("%w: missing required claim", ErrInvalid)
	}
	now := i.now()
	if !now.Before(time.Unix(c.ExpiresAt, 0).Add(Skew)) {
		return nil, ErrExpired
	}
	if c.NotBefore != 0 && now.Add(Skew).Before(time.Unix(c.NotBefore, 0)) {
		return nil, fmt.Errorf("%w: not yet valid", ErrInvalid)
	}
	if now.Add(Skew).Before(time.Unix(c.IssuedAt, 0)) {
		return nil, fmt.Errorf("%w: issued in the future", ErrInvalid)
	}
	return &c, nil
}

func trimSlash(s string) string { return strings.TrimRight(s, "/") }

// IDTokenInput is what an id_token states.
type IDTokenInput struct {
	Subject  string
	ClientID string
	Nonce    string
	// FHIRUser is the absolute URL of the user's FHIR resource.
	FHIRUser string
	// AccessToken, if set, is hashed into at_hash.
	AccessToken string
	// Alg is "RS256" (the default when empty) or "ES256".
	Alg      string
	AuthTime time.Time
	// Extra adds claims such as name or preferred_username; it may not
	// override a claim this package sets.
	Extra map[string]any
}

// reservedIDClaims are the claims IDToken sets itself.
var reservedIDClaims = map[string]bool{
	"iss": true, "sub": true, "aud": true, "exp": true, "iat": true, "nbf": true, "jti": true,
	"nonce": true, "auth_time": true, "at_hash": true, "c_hash": true, "fhirUser": true, "azp": true,
}

// IDToken signs an OpenID Connect id_token (typ JWT) with iss, sub, aud
// (the client id), exp, iat, and when known nonce, auth_time, at_hash and
// fhirUser.
func (i *Issuer) IDToken(in IDTokenInput) (string, error) {
	if in.Subject == "" || in.ClientID == "" {
		return "", fmt.Errorf("%w: id_token needs sub and client_id", ErrClaims)
	}
	if len(in.Subject) > 255 {
		return "", fmt.Errorf("%w: sub longer than 255 characters", ErrClaims)
	}
	alg := in.Alg
	if alg == "" {
		alg = AlgIDTokenDefault
	}
	if alg != "RS256" && alg != "ES256" {
		return "", fmt.Errorf("%w: id_token alg %q not supported", ErrClaims, in.Alg)
	}
	now := i.now()
	claims := make(map[string]any, 10+len(in.Extra))
	for k, v := range in.Extra {
		if reservedIDClaims[k] {
			return "", fmt.Errorf("%w: Extra may not set %q", ErrClaims, k)
		}
		claims[k] = v
	}
	claims["iss"] = i.issuer
	claims["sub"] = in.Subject
	claims["aud"] = in.ClientID
	claims["iat"] = now.Unix()
	claims["exp"] = now.Add(i.idTTL).Unix()
	if in.Nonce != "" {
		claims["nonce"] = in.Nonce
	}
	if !in.AuthTime.IsZero() {
		claims["auth_time"] = in.AuthTime.Unix()
	}
	if in.AccessToken != "" {
		claims["at_hash"] = ATHash(in.AccessToken)
	}
	if in.FHIRUser != "" {
		u, err := url.Parse(in.FHIRUser)
		if err != nil || !u.IsAbs() || u.Host == "" {
			return "", fmt.Errorf("%w: fhirUser %q is not an absolute URL", ErrClaims, in.FHIRUser)
		}
		claims["fhirUser"] = in.FHIRUser
	}
	raw, err := i.signer.Sign(alg, TypIDToken, claims)
	if err != nil {
		return "", fmt.Errorf("token: sign id_token: %w", err)
	}
	return raw, nil
}

// ATHash is the OpenID Connect at_hash of an access token for RS256 and
// ES256: the base64url left half of its SHA-256 digest (Core §3.1.3.6).
func ATHash(accessToken string) string {
	sum := sha256.Sum256([]byte(accessToken))
	return base64.RawURLEncoding.EncodeToString(sum[:len(sum)/2])
}
