// Package oauth holds the OAuth 2.0 vocabulary shared by every fhirgate
// feature: typed error codes with their HTTP status table, grant types,
// response types, token types and client authentication methods. It uses the
// standard library only and performs no I/O.
package oauth

import (
	"errors"
	"fmt"
)

// ErrorCode is an OAuth 2.0 / OpenID Connect / RFC 7591 error code.
type ErrorCode string

// Error codes from RFC 6749 §4.1.2.1 and §5.2, RFC 6750 §3.1, RFC 7591 §3.2.2,
// RFC 9449 and OpenID Connect Core §3.1.2.6.
const (
	InvalidRequest          ErrorCode = "invalid_request"
	InvalidClient           ErrorCode = "invalid_client"
	InvalidGrant            ErrorCode = "invalid_grant"
	UnauthorizedClient      ErrorCode = "unauthorized_client"
	UnsupportedGrantType    ErrorCode = "unsupported_grant_type"
	UnsupportedResponseType ErrorCode = "unsupported_response_type"
	InvalidScope            ErrorCode = "invalid_scope"
	AccessDenied            ErrorCode = "access_denied"
	ServerError             ErrorCode = "server_error"
	TemporarilyUnavailable  ErrorCode = "temporarily_unavailable"
	InvalidToken            ErrorCode = "invalid_token"
	InsufficientScope       ErrorCode = "insufficient_scope"
	InvalidRedirectURI      ErrorCode = "invalid_redirect_uri"
	InvalidClientMetadata   ErrorCode = "invalid_client_metadata"
	InvalidDPoPProof        ErrorCode = "invalid_dpop_proof"
	UseDPoPNonce            ErrorCode = "use_dpop_nonce" // RFC 9449 §8: retry with the DPoP-Nonce response header's nonce
	LoginRequired           ErrorCode = "login_required"
	ConsentRequired         ErrorCode = "consent_required"
	InteractionRequired     ErrorCode = "interaction_required"
	SlowDown                ErrorCode = "slow_down"
)

// statusByCode is the HTTP status each error code carries when it is sent as
// a JSON error response (RFC 6749 §5.2, RFC 6750 §3.1, RFC 7591 §3.2.2).
var statusByCode = map[ErrorCode]int{
	InvalidRequest:          400,
	InvalidClient:           401,
	InvalidGrant:            400,
	UnauthorizedClient:      400,
	UnsupportedGrantType:    400,
	UnsupportedResponseType: 400,
	InvalidScope:            400,
	AccessDenied:            403,
	ServerError:             500,
	TemporarilyUnavailable:  503,
	InvalidToken:            401,
	InsufficientScope:       403,
	InvalidRedirectURI:      400,
	InvalidClientMetadata:   400,
	InvalidDPoPProof:        400,
	UseDPoPNonce:            400,
	LoginRequired:           400,
	ConsentRequired:         400,
	InteractionRequired:     400,
	SlowDown:                429,
}

// Status returns the HTTP status code for a JSON error response carrying c.
// Unknown codes map to 400.
func (c ErrorCode) Status() int {
	if s, ok := statusByCode[c]; ok {
		return s
	}
	return 400
}

// Error is a protocol error. Description is safe to show to the client;
// Cause is for logs only and is never sent.
type Error struct {
	Code        ErrorCode
	Description string
	Cause       error
}

// Errorf returns a protocol error whose client-visible description is
// formatted from format and args.
func Errorf(code ErrorCode, format string, args ...any) *Error {
	return &Error{Code: code, Description: fmt.Sprintf(format, args...)}
}

// Wrap returns a protocol error that keeps cause for the logs while showing
// the client only description.
func Wrap(code ErrorCode, description string, cause error) *Error {
	return &Error{Code: code, Description: description, Cause: cause}
}

// Error implements error; it includes the cause, so never send it to a client.
func (e *Error) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Description, e.Cause)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Description)
}

// Unwrap returns the logged cause.
func (e *Error) Unwrap() error { return e.Cause }

// Status returns the HTTP status for the error's code.
func (e *Error) Status() int { return e.Code.Status() }

// As returns the *Error in err's chain, or a server_error wrapping err when
// there is none, so callers always have something standards-shaped to send.
func As(err error) *Error {
	var oe *Error
	if errors.As(err, &oe) {
		return oe
	}
	return &Error{Code: ServerError, Description: "internal error", Cause: err}
}

// GrantType is an OAuth 2.0 grant type.
type GrantType string

// Grant types fhirgate knows. The password and implicit grants are never offered.
const (
	GrantAuthorizationCode GrantType = "authorization_code"
	GrantRefreshToken      GrantType = "refresh_token"
	GrantClientCredentials GrantType = "client_credentials"
)

// ResponseType is an authorization endpoint response type.
type ResponseType string

// ResponseCode is the only response type fhirgate issues.
const ResponseCode ResponseType = "code"

// TokenType is the token_type of a token response.
type TokenType string

// Token types (RFC 6750, RFC 9449).
const (
	TokenTypeBearer TokenType = "Bearer"
	TokenTypeDPoP   TokenType = "DPoP"
)

// AuthMethod is a client authentication method at the token endpoint
// (token_endpoint_auth_method, RFC 7591 §2).
type AuthMethod string

// Client authentication methods.
const (
	AuthNone                    AuthMethod = "none"
	AuthClientSecretBasic       AuthMethod = "client_secret_basic"
	AuthClientSecretPost        AuthMethod = "client_secret_post"
	AuthPrivateKeyJWT           AuthMethod = "private_key_jwt"
	AuthTLSClientAuth           AuthMethod = "tls_client_auth"
	AuthSelfSignedTLSClientAuth AuthMethod = "self_signed_tls_client_auth"
)

// ParseAuthMethod returns the method named s, or false when s names none.
func ParseAuthMethod(s string) (AuthMethod, bool) {
	switch m := AuthMethod(s); m {
	case AuthNone, AuthClientSecretBasic, AuthClientSecretPost, AuthPrivateKeyJWT,
		AuthTLSClientAuth, AuthSelfSignedTLSClientAuth:
		return m, true
	}
	return "", false
}

// UsesSecret reports whether the method authenticates with a shared secret.
func (m AuthMethod) UsesSecret() bool {
	return m == AuthClientSecretBasic || m == AuthClientSecretPost
}
