package clientreg

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/fhirgate/fhirgate/internal/oauth"
	"github.com/fhirgate/fhirgate/internal/secret"
	"github.com/fhirgate/fhirgate/internal/storage"
)

// MaxRegistrationTokenTTL bounds the lifetime of an initial access token.
const MaxRegistrationTokenTTL = 366 * 24 * time.Hour

// ErrInvalidTTL is returned by NewRegistrationToken for a non-positive or
// too long lifetime.
var ErrInvalidTTL = errors.New("clientreg: registration token lifetime must be positive and at most a year")

// Create validates m and stores a new client built by Build. Validation
// failures are *oauth.Error values; store failures are wrapped with %w. The
// returned secret is "" for public clients and is shown to the caller once.
func Create(ctx context.Context, store storage.Clients, m Metadata, now time.Time) (*storage.Client, string, error) {
	c, plain, err := Build(m, now)
	if err != nil {
		return nil, "", err
	}
	if err := store.CreateClient(ctx, c); err != nil {
		return nil, "", fmt.Errorf("clientreg: create client: %w", err)
	}
	return c, plain, nil
}

// Build validates m and returns a new client record without storing it. The
// client id comes from secret.ID. For the client_secret_basic and
// client_secret_post methods a 256-bit URL-safe secret is generated and only
// storage.HashSecret(secret) is kept in the record; the secret itself is
// returned for showing once. For "none" the returned secret is "".
func Build(m Metadata, now time.Time) (*storage.Client, string, error) {
	v, err := Validate(m)
	if err != nil {
		return nil, "", err
	}
	c := &storage.Client{
		ID:        secret.ID(),
		CreatedAt: now,
		UpdatedAt: now,
	}
	Apply(c, v)
	var plain string
	if oauth.AuthMethod(c.AuthMethod).UsesSecret() {
		plain = secret.Token()
		c.SecretHash = storage.HashSecret(plain)
	}
	return c, plain, nil
}

// Apply copies validated metadata onto c. It leaves the id, secret hash,
// registration token hash and timestamps alone.
func Apply(c *storage.Client, v Metadata) {
	c.Name = v.ClientName
	c.RedirectURIs = append([]string(nil), v.RedirectURIs...)
	c.Scope = v.Scope
	c.AuthMethod = v.TokenEndpointAuthMethod
	c.GrantTypes = append([]string(nil), v.GrantTypes...)
	c.LogoURI = v.LogoURI
	c.LaunchURI = v.LaunchURI
	c.IDTokenSignedResponseAlg = v.IDTokenSignedResponseAlg
	c.JWKS = append([]byte(nil), v.JWKS...)
	if len(c.JWKS) == 0 {
		c.JWKS = nil
	}
	c.JWKSURI = v.JWKSURI
	c.TLSClientAuthSubjectDN = v.TLSClientAuthSubjectDN
	c.DPoPBoundAccessTokens = v.DPoPBoundAccessTokens
	c.RequirePAR = v.RequirePushedAuthorizationRequests
}

// FromClient returns the registered metadata of c.
func FromClient(c *storage.Client) Metadata {
	m := Metadata{
		ClientName:               c.Name,
		RedirectURIs:             append([]string(nil), c.RedirectURIs...),
		Scope:                    c.Scope,
		TokenEndpointAuthMethod:  c.AuthMethod,
		GrantTypes:               append([]string(nil), c.GrantTypes...),
		ResponseTypes:            responseTypes(c.GrantTypes),
		LogoURI:                  c.LogoURI,
		LaunchURI:                c.LaunchURI,
		IDTokenSignedResponseAlg: c.IDTokenSignedResponseAlg,
		JWKSURI:                  c.JWKSURI,

		TLSClientAuthSubjectDN:             c.TLSClientAuthSubjectDN,
		DPoPBoundAccessTokens:              c.DPoPBoundAccessTokens,
		RequirePushedAuthorizationRequests: c.RequirePAR,
	}
	if len(c.JWKS) > 0 {
		m.JWKS = append([]byte(nil), c.JWKS...)
	}
	return m
}

// NewRegistrationToken issues an RFC 7591 initial access token valid for ttl
// from now. Only its hash is stored; the token is returned once. The token
// may be used for several registrations until it expires.
func NewRegistrationToken(ctx context.Context, store storage.RegistrationTokens, ttl time.Duration, now time.Time) (string, error) {
	if ttl <= 0 || ttl > MaxRegistrationTokenTTL {
		return "", ErrInvalidTTL
	}
	tok := secret.Token()
	rec := &storage.RegistrationToken{
		Hash:      storage.HashSecret(tok),
		CreatedAt: now,
		ExpiresAt: now.Add(ttl),
	}
	if err := store.CreateRegistrationToken(ctx, rec); err != nil {
		return "", fmt.Errorf("clientreg: create registration token: %w", err)
	}
	return tok, nil
}

// responseTypes is ["code"] for clients with the authorization_code grant
// (or the default grant types), none for client_credentials-only clients.
func responseTypes(grants []string) []string {
	if len(grants) == 0 || slices.Contains(grants, string(oauth.GrantAuthorizationCode)) {
		return []string{string(oauth.ResponseCode)}
	}
	return nil
}
