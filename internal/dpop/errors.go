package dpop

import (
	"errors"
	"fmt"

	"github.com/fhirgate/fhirgate/internal/oauth"
)

// Errors. Every refusal of a proof wraps ErrInvalid; a replay cache failure
// wraps ErrUnavailable instead (the request is refused, but it is not the
// client's fault). Test them with errors.Is.
var (
	// ErrInvalid: the proof is not acceptable.
	ErrInvalid = errors.New("dpop: invalid proof")
	// ErrMissing: no DPoP proof was sent.
	ErrMissing = fmt.Errorf("%w: no proof", ErrInvalid)
	// ErrMultiple: more than one DPoP header was sent (RFC 9449 §4.3 step 1).
	ErrMultiple = fmt.Errorf("%w: more than one DPoP header", ErrInvalid)
	// ErrMalformed: not a compact JWS with JSON header and claims, or a
	// required claim is missing or has the wrong type.
	ErrMalformed = fmt.Errorf("%w: malformed", ErrInvalid)
	// ErrType: the typ header is not dpop+jwt.
	ErrType = fmt.Errorf("%w: typ is not dpop+jwt", ErrInvalid)
	// ErrAlg: the alg is not an allowed asymmetric algorithm (none, HS256...).
	ErrAlg = fmt.Errorf("%w: algorithm not allowed", ErrInvalid)
	// ErrKey: the jwk header is missing, unsupported, too weak or does not
	// suit the alg.
	ErrKey = fmt.Errorf("%w: unacceptable jwk", ErrInvalid)
	// ErrPrivateKey: the jwk header holds private key material. It wraps ErrKey.
	ErrPrivateKey = fmt.Errorf("%w: jwk holds private key material", ErrKey)
	// ErrSignature: the signature does not verify with the jwk.
	ErrSignature = fmt.Errorf("%w: bad signature", ErrInvalid)
	// ErrMethod: htm differs from the request method.
	ErrMethod = fmt.Errorf("%w: htm does not match the request method", ErrInvalid)
	// ErrURL: htu differs from the request URL.
	ErrURL = fmt.Errorf("%w: htu does not match the request URL", ErrInvalid)
	// ErrIAT: iat is outside the accepted window (stale or in the future).
	ErrIAT = fmt.Errorf("%w: iat outside the accepted window", ErrInvalid)
	// ErrReplayed: the proof's jti was used before.
	ErrReplayed = fmt.Errorf("%w: jti replayed", ErrInvalid)
	// ErrATH: ath is missing or is not the hash of the access token.
	ErrATH = fmt.Errorf("%w: ath does not match the access token", ErrInvalid)
	// ErrNonce: a server nonce is required and was missing or stale. Errors
	// carrying it are *NonceError values with the nonce to retry with.
	ErrNonce = fmt.Errorf("%w: server nonce missing or stale", ErrInvalid)
	// ErrKeyMismatch: the proof is signed by another key than the one the
	// token, code or refresh token is bound to.
	ErrKeyMismatch = fmt.Errorf("%w: proof key does not match the bound key", ErrInvalid)
	// ErrUnavailable: the replay cache could not record the jti.
	ErrUnavailable = errors.New("dpop: replay cache unavailable")
	// ErrConfig: the Verifier is misconfigured.
	ErrConfig = errors.New("dpop: bad configuration")
)

// NonceError is returned when a server nonce is required (RFC 9449 §8). It
// wraps ErrNonce and carries the nonce the client must use. It satisfies the
// gateway's NonceError interface.
type NonceError struct {
	Nonce string
	Err   error
}

// Error implements error.
func (e *NonceError) Error() string { return e.Err.Error() }

// Unwrap returns the cause (wrapping ErrNonce).
func (e *NonceError) Unwrap() error { return e.Err }

// DPoPNonce returns the nonce to send in the DPoP-Nonce response header.
func (e *NonceError) DPoPNonce() string { return e.Nonce }

// NonceOf returns the nonce a NonceError in err's chain carries, or "".
func NonceOf(err error) string {
	if ne, ok := errors.AsType[*NonceError](err); ok {
		return ne.Nonce
	}
	return ""
}

// OAuthError maps a Verify error to the protocol error: use_dpop_nonce for a
// missing nonce, temporarily_unavailable when the replay cache failed (fail
// closed), invalid_dpop_proof otherwise. The cause stays in Cause only.
func OAuthError(err error) *oauth.Error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNonce) && NonceOf(err) != "":
		return oauth.Wrap(oauth.UseDPoPNonce, "a DPoP nonce is required; retry with the DPoP-Nonce header value", err)
	case errors.Is(err, ErrUnavailable):
		return oauth.Wrap(oauth.TemporarilyUnavailable, "DPoP replay protection unavailable; try again later", err)
	case errors.Is(err, ErrKeyMismatch):
		return oauth.Wrap(oauth.InvalidDPoPProof, "the DPoP proof is signed by another key than the one bound to the grant", err)
	case errors.Is(err, ErrMissing):
		return oauth.Wrap(oauth.InvalidDPoPProof, "a DPoP proof is required", err)
	}
	return oauth.Wrap(oauth.InvalidDPoPProof, "the DPoP proof is invalid", err)
}
