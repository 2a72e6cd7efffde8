// Package clientauth authenticates OAuth clients at the token endpoint
// (RFC 6749 §2.3). The core is plain Go: http.go turns a request into
// Credentials, and Authenticator decides.
//
// Each client is registered with exactly one method (storage.Client.AuthMethod).
// Supported now: none (public clients, which rely on PKCE), client_secret_basic
// and client_secret_post. Clients registered for private_key_jwt or mTLS are
// refused until those methods arrive.
package clientauth

import (
	"context"
	"errors"
	"fmt"

	"github.com/fhirgate/fhirgate/internal/oauth"
	"github.com/fhirgate/fhirgate/internal/secret"
	"github.com/fhirgate/fhirgate/internal/storage"
)

// Causes carried (wrapped) by the *oauth.Error that Authenticate returns.
// They are for logs and tests; the client sees only the oauth description.
var (
	ErrNoCredentials     = errors.New("clientauth: no client credentials")
	ErrMultipleMethods   = errors.New("clientauth: more than one authentication method used")
	ErrClientIDMismatch  = errors.New("clientauth: client_id in body differs from the authenticated client")
	ErrUnknownClient     = errors.New("clientauth: unknown client")
	ErrDisabledClient    = errors.New("clientauth: client disabled")
	ErrWrongSecret       = errors.New("clientauth: wrong client secret")
	ErrMethodMismatch    = errors.New("clientauth: method differs from the registered one")
	ErrUnsupportedMethod = errors.New("clientauth: registered method not supported yet")
)

// failedDescription is the one description every failed authentication of a
// presented client id gets, so responses do not reveal which ids exist.
const failedDescription = "client authentication failed"

// Credentials is what a token request presents to authenticate its client.
type Credentials struct {
	// BasicID and BasicSecret come from an Authorization: Basic header,
	// already form-urlencoding-decoded (RFC 6749 §2.3.1). HasBasic says the
	// header was present.
	HasBasic    bool
	BasicID     string
	BasicSecret string
	// FormID and FormSecret are the client_id and client_secret body
	// parameters; HasFormSecret says client_secret was sent (even empty).
	FormID        string
	FormSecret    string
	HasFormSecret bool
	// HasAssertion says client_assertion or client_assertion_type was sent
	// (private_key_jwt, RFC 7523), which is not supported yet.
	HasAssertion bool
}

// Method returns the authentication method the credentials use, or an
// invalid_request error when they mix methods, or invalid_client when none
// is present.
func (c Credentials) Method() (oauth.AuthMethod, error) {
	n := 0
	var m oauth.AuthMethod
	if c.HasBasic {
		n++
		m = oauth.AuthClientSecretBasic
	}
	if c.HasFormSecret {
		n++
		m = oauth.AuthClientSecretPost
	}
	if c.HasAssertion {
		n++
		m = oauth.AuthPrivateKeyJWT
	}
	switch {
	case n > 1:
		return "", oauth.Wrap(oauth.InvalidRequest, "use exactly one client authentication method", ErrMultipleMethods)
	case n == 1:
		return m, nil
	case c.FormID != "":
		return oauth.AuthNone, nil
	}
	return "", oauth.Wrap(oauth.InvalidClient, "client authentication required", ErrNoCredentials)
}

// ClientID returns the client id the credentials name.
func (c Credentials) ClientID() string {
	if c.HasBasic {
		return c.BasicID
	}
	return c.FormID
}

// Authenticator checks Credentials against the registered clients.
type Authenticator struct {
	Clients storage.Clients
}

// Authenticate returns the authenticated client, or an *oauth.Error:
// invalid_request for mixed methods, 401 invalid_client for every failed
// authentication (unknown, disabled, wrong secret, wrong method; one shared
// description), server_error when the store fails.
func (a Authenticator) Authenticate(ctx context.Context, creds Credentials) (*storage.Client, error) {
	method, err := creds.Method()
	if err != nil {
		return nil, err
	}
	id := creds.ClientID()
	if creds.HasBasic && creds.FormID != "" && creds.FormID != creds.BasicID {
		return nil, oauth.Wrap(oauth.InvalidRequest, "client_id does not match the authenticated client", ErrClientIDMismatch)
	}
	if id == "" {
		return nil, oauth.Wrap(oauth.InvalidClient, failedDescription, fmt.Errorf("%w: empty client_id", ErrUnknownClient))
	}
	client, err := a.Clients.GetClient(ctx, id)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, oauth.Wrap(oauth.InvalidClient, failedDescription, fmt.Errorf("%w: %q", ErrUnknownClient, id))
		}
		return nil, oauth.Wrap(oauth.ServerError, "internal error", fmt.Errorf("clientauth: get client: %w", err))
	}
	if client.Disabled {
		return nil, oauth.Wrap(oauth.InvalidClient, failedDescription, fmt.Errorf("%w: %q", ErrDisabledClient, id))
	}
	registered := oauth.AuthMethod(client.AuthMethod)
	switch registered {
	case oauth.AuthNone, oauth.AuthClientSecretBasic, oauth.AuthClientSecretPost:
	default:
		return nil, oauth.Wrap(oauth.InvalidClient, "client authentication method not supported yet",
			fmt.Errorf("%w: %q registered with %q", ErrUnsupportedMethod, id, registered))
	}
	if method != registered {
		return nil, oauth.Wrap(oauth.InvalidClient, failedDescription,
			fmt.Errorf("%w: %q registered with %q, presented %q", ErrMethodMismatch, id, registered, method))
	}
	if registered.UsesSecret() {
		presented := creds.FormSecret
		if creds.HasBasic {
			presented = creds.BasicSecret
		}
		if len(client.SecretHash) == 0 || presented == "" ||
			!secret.Equal(storage.HashSecret(presented), client.SecretHash) {
			return nil, oauth.Wrap(oauth.InvalidClient, failedDescription, fmt.Errorf("%w: %q", ErrWrongSecret, id))
		}
	}
	return client, nil
}
