package grant

import (
	"context"
	"errors"
	"net/url"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/oauth"
	"github.com/fhirgate/fhirgate/internal/scope"
	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/token"
)

// DefaultBackendAccessTokenTTL is the SMART Backend Services access token
// lifetime when none is configured (the specification asks for at most five
// minutes).
const DefaultBackendAccessTokenTTL = 5 * time.Minute

// Causes of client_credentials refusals (wrapped in the *oauth.Error).
var (
	ErrPublicClient    = errors.New("grant: public clients may not use client_credentials")
	ErrNonSystemScope  = errors.New("grant: client_credentials grants only system/ scopes")
	ErrNoGrantedScopes = errors.New("grant: none of the requested scopes is registered for the client")
)

// clientCredentials is SMART Backend Services (RFC 6749 §4.4): a
// confidential client gets an access token for itself (sub = client_id)
// with the system/ scopes it asked for that its registration allows. No
// refresh token, no id_token, no launch context.
func (h *Handler) clientCredentials(ctx context.Context, client *storage.Client, form url.Values, ev *audit.Event) (*result, error) {
	switch oauth.AuthMethod(client.AuthMethod) {
	case oauth.AuthNone, "":
		return nil, oauth.Wrap(oauth.UnauthorizedClient, "client_credentials requires a confidential client", ErrPublicClient)
	}
	raw := form.Get("scope")
	if raw == "" {
		return nil, oauth.Errorf(oauth.InvalidScope, "scope is required (system/ scopes)")
	}
	requested, _, err := scope.ParseSet(raw)
	if err != nil {
		return nil, oauth.Wrap(oauth.InvalidScope, "malformed scope", err)
	}
	for _, s := range requested {
		if s.Kind != scope.Resource || s.Context != scope.System {
			return nil, oauth.Wrap(oauth.InvalidScope, "client_credentials grants only system/ scopes", ErrNonSystemScope)
		}
	}
	allowed, _, err := scope.ParseSet(client.Scope)
	if err != nil {
		return nil, oauth.Wrap(oauth.ServerError, "internal error", err)
	}
	granted := scope.Narrow(requested, allowed)
	if len(granted) == 0 {
		return nil, oauth.Wrap(oauth.InvalidScope, "none of the requested scopes is registered for this client", ErrNoGrantedScopes)
	}
	issuer := h.opts.BackendIssuer
	if issuer == nil {
		issuer = h.opts.Issuer
	}
	grantedStr := granted.String()
	bnd := bindingFrom(ctx)
	at, claims, err := issuer.AccessToken(token.AccessClaims{
		Subject:  client.ID,
		Audience: h.fhirBase,
		ClientID: client.ID,
		Scope:    grantedStr,
		Cnf:      bnd.cnf(),
	})
	if err != nil {
		return nil, oauth.Wrap(oauth.ServerError, "internal error", err)
	}
	ev.Scope = grantedStr
	ev.TokenID = claims.JTI
	return &result{resp: &Response{
		AccessToken: at,
		TokenType:   bnd.tokenType(),
		ExpiresIn:   claims.ExpiresAt - claims.IssuedAt,
		Scope:       grantedStr,
	}}, nil
}
