// Package clientauth authenticates OAuth clients at the token endpoint
// (RFC 6749 §2.3). The core is plain Go: http.go turns a request into
// Credentials, and Authenticator decides.
//
// Each client is registered with exactly one method (storage.Client.AuthMethod)
// and any other method it tries is refused: none (public clients, which rely
// on PKCE), client_secret_basic, client_secret_post, private_key_jwt (RFC
// 7523, SMART Backend Services; assertion.go), tls_client_auth and
// self_signed_tls_client_auth (RFC 8705; mtls.go).
package clientauth

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/fhirgate/fhirgate/internal/oauth"
	"github.com/fhirgate/fhirgate/internal/replay"
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
	ErrUnsupportedMethod = errors.New("clientauth: registered method not supported")
	// ErrNotConfigured: the registered method needs server configuration
	// that is missing (replay cache, JWKS fetcher, client CA pool).
	ErrNotConfigured = errors.New("clientauth: method not configured on this server")
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
	// (private_key_jwt, RFC 7523); Assertion and AssertionType are their values.
	HasAssertion  bool
	Assertion     string
	AssertionType string
	// ClientCerts is the TLS client certificate chain (leaf first) the
	// request was made with, for tls_client_auth and
	// self_signed_tls_client_auth; nil without one.
	ClientCerts []*x509.Certificate
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

// ClientID returns the client id the credentials name. For an assertion
// without client_id it is the assertion's (not yet verified) sub claim.
func (c Credentials) ClientID() string {
	if c.HasBasic {
		return c.BasicID
	}
	if c.FormID == "" && c.Assertion != "" {
		return peekSubject(c.Assertion)
	}
	return c.FormID
}

// KeySource fetches the JWK Set at a client's jwks_uri (implemented by
// *jwksfetch.Fetcher).
type KeySource interface {
	// Get returns the (possibly cached) set.
	Get(ctx context.Context, uri string) (*jose.JSONWebKeySet, error)
	// Refresh fetches the set again unless that was done very recently
	// (then the cached set comes back with refreshed false).
	Refresh(ctx context.Context, uri string) (set *jose.JSONWebKeySet, refreshed bool, err error)
}

// Authenticator checks Credentials against the registered clients. The
// zero value with Clients set handles none and client_secret_*; the other
// fields enable the asymmetric methods.
type Authenticator struct {
	Clients storage.Clients
	// Audiences are the aud values accepted in client assertions: the token
	// endpoint URL, the PAR endpoint URL and the issuer identifier (RFC 7523
	// §3, RFC 9126 §2). private_key_jwt is refused without them.
	Audiences []string
	// Replay remembers assertion jti values until the assertion expires;
	// private_key_jwt is refused (fail closed) without it.
	Replay replay.Cache
	// JWKS fetches jwks_uri sets; clients registered with a jwks_uri are
	// refused without it.
	JWKS KeySource
	// ClientCAs verifies tls_client_auth certificate chains; that method is
	// refused without it.
	ClientCAs *x509.CertPool
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

func (a Authenticator) now() time.Time {
	if a.Now == nil {
		return time.Now()
	}
	return a.Now()
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
	if method == oauth.AuthPrivateKeyJWT {
		sub := peekSubject(creds.Assertion)
		switch {
		case creds.FormID == "" && sub == "":
			return nil, oauth.Wrap(oauth.InvalidClient, "client_assertion is not a signed JWT with a sub claim", ErrMalformedAssertion)
		case creds.FormID == "":
			id = sub
		case sub != "" && sub != creds.FormID:
			return nil, oauth.Wrap(oauth.InvalidClient, failedDescription, fmt.Errorf("%w: client_id %q, assertion sub %q",
				ErrClientIDMismatch, creds.FormID, sub))
		}
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
	case oauth.AuthNone, oauth.AuthClientSecretBasic, oauth.AuthClientSecretPost, oauth.AuthPrivateKeyJWT:
	case oauth.AuthTLSClientAuth, oauth.AuthSelfSignedTLSClientAuth:
		// A certificate method presents only client_id (and the certificate).
		if method == oauth.AuthNone {
			method = registered
		}
	default:
		return nil, oauth.Wrap(oauth.InvalidClient, "client authentication method not supported",
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
	switch registered {
	case oauth.AuthPrivateKeyJWT:
		if err := a.verifyAssertion(ctx, client, creds.AssertionType, creds.Assertion); err != nil {
			return nil, err
		}
	case oauth.AuthTLSClientAuth:
		if err := a.verifyTLSClientAuth(client, creds.ClientCerts); err != nil {
			return nil, err
		}
	case oauth.AuthSelfSignedTLSClientAuth:
		if err := a.verifySelfSigned(ctx, client, creds.ClientCerts); err != nil {
			return nil, err
		}
	}
	return client, nil
}
