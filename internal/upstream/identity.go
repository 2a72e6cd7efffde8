package upstream

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/fhirgate/fhirgate/internal/secret"
)

// DefaultIdentityHeader carries the signed identity JWT to the backend.
const DefaultIdentityHeader = "X-Fhirgate-Identity"

// IdentityTyp is the JWT typ of identity assertions.
const IdentityTyp = "fhirgate-identity+jwt"

// Signer signs claims as a JWT (satisfied by *keys.Manager).
type Signer interface {
	Sign(alg, typ string, claims any) (string, error)
}

// IdentityOptions configures an Identity.
type IdentityOptions struct {
	Signer Signer
	// Issuer is the iss (the gateway's FHIR base URL); Audience the aud
	// (the backend's base URL).
	Issuer, Audience string
	// Header defaults to DefaultIdentityHeader.
	Header string
	// TTL is the assertion lifetime, default 60 seconds, at most 5 minutes.
	TTL time.Duration
	// CacheSize bounds cached assertions (default 4096).
	CacheSize int
	Now       func() time.Time
}

// Who is the caller the identity assertion describes.
type Who struct {
	Subject, ClientID, Patient, FHIRUser, Scope string
	// TokenID is the jti of the access token; assertions are cached per
	// token while they have at least half their lifetime left.
	TokenID string
}

// IdentityClaims are the claims of the assertion.
type IdentityClaims struct {
	Issuer    string `json:"iss"`
	Audience  string `json:"aud"`
	Subject   string `json:"sub"`
	ClientID  string `json:"client_id"`
	Patient   string `json:"patient,omitempty"`
	FHIRUser  string `json:"fhirUser,omitempty"`
	Scope     string `json:"scope,omitempty"`
	IssuedAt  int64  `json:"iat"`
	ExpiresAt int64  `json:"exp"`
	JTI       string `json:"jti"`
}

// Identity signs short ES256 assertions of who is asking, for backends that
// want to know (and can verify them against the gateway's JWKS).
type Identity struct {
	opts IdentityOptions

	mu    sync.Mutex
	cache map[string]cachedAssertion
}

type cachedAssertion struct {
	jwt      string
	reuseTil time.Time
}

// NewIdentity validates opts.
func NewIdentity(opts IdentityOptions) (*Identity, error) {
	if opts.Signer == nil || opts.Issuer == "" || opts.Audience == "" {
		return nil, errors.New("upstream: identity needs Signer, Issuer and Audience")
	}
	if opts.Header == "" {
		opts.Header = DefaultIdentityHeader
	}
	if !validHeaderName(opts.Header) {
		return nil, fmt.Errorf("%w: identity header %q", ErrConfig, opts.Header)
	}
	switch {
	case opts.TTL == 0:
		opts.TTL = time.Minute
	case opts.TTL < time.Second || opts.TTL > 5*time.Minute:
		return nil, fmt.Errorf("%w: identity TTL %s outside 1s..5m", ErrConfig, opts.TTL)
	}
	if opts.CacheSize <= 0 {
		opts.CacheSize = 4096
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Identity{opts: opts, cache: map[string]cachedAssertion{}}, nil
}

// Header is the header name the assertion travels in.
func (id *Identity) Header() string { return id.opts.Header }

// Assert returns a signed assertion for w.
func (id *Identity) Assert(w Who) (string, error) {
	now := id.opts.Now()
	key := w.TokenID
	if key != "" {
		id.mu.Lock()
		c, ok := id.cache[key]
		id.mu.Unlock()
		if ok && now.Before(c.reuseTil) {
			return c.jwt, nil
		}
	}
	claims := IdentityClaims{
		Issuer: id.opts.Issuer, Audience: id.opts.Audience,
		Subject: w.Subject, ClientID: w.ClientID, Patient: w.Patient, FHIRUser: w.FHIRUser, Scope: w.Scope,
		IssuedAt: now.Unix(), ExpiresAt: now.Add(id.opts.TTL).Unix(), JTI: secret.ID(),
	}
	jwt, err := id.opts.Signer.Sign("ES256", IdentityTyp, claims)
	if err != nil {
		return "", fmt.Errorf("upstream: sign identity: %w", err)
	}
	if key != "" {
		id.mu.Lock()
		if len(id.cache) >= id.opts.CacheSize {
			for k, v := range id.cache {
				if !now.Before(v.reuseTil) || len(id.cache) >= id.opts.CacheSize {
					delete(id.cache, k)
				}
			}
		}
		id.cache[key] = cachedAssertion{jwt: jwt, reuseTil: now.Add(id.opts.TTL / 2)}
		id.mu.Unlock()
	}
	return jwt, nil
}
