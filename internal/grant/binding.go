package grant

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/url"

	"github.com/fhirgate/fhirgate/internal/dpop"
	"github.com/fhirgate/fhirgate/internal/mtls"
	"github.com/fhirgate/fhirgate/internal/oauth"
	"github.com/fhirgate/fhirgate/internal/storage"
)

// Causes of sender-constraint refusals (wrapped in the *oauth.Error).
var (
	// ErrDPoPRequired: the client is registered with
	// dpop_bound_access_tokens, or its grant is DPoP-bound, and sent no proof.
	ErrDPoPRequired = errors.New("grant: DPoP proof required")
	// ErrDPoPUnsupported: a proof was sent but no verifier is configured.
	ErrDPoPUnsupported = errors.New("grant: DPoP not configured")
	// ErrBindingRequired: server policy requires a sender-constrained token
	// (DPoP or mTLS) for this client and the request offered neither.
	ErrBindingRequired = errors.New("grant: sender-constrained token required")
	// ErrCodeKeyMismatch: the authorization code was bound (dpop_jkt) to
	// another key than the proof's.
	ErrCodeKeyMismatch = errors.New("grant: authorization code bound to another DPoP key")
	// ErrRefreshKeyMismatch: the refresh token's family is bound to another
	// DPoP key or client certificate than the request's.
	ErrRefreshKeyMismatch = errors.New("grant: refresh token bound to another key or certificate")
)

// binding is the sender constraint of a token request: the DPoP key
// thumbprint of a verified proof and the x5t#S256 of the client certificate.
type binding struct {
	jkt string
	x5t string
}

// cnf is the access token confirmation claim (RFC 9449 §6.1, RFC 8705 §3.1).
func (b binding) cnf() map[string]string {
	if b.jkt == "" && b.x5t == "" {
		return nil
	}
	c := make(map[string]string, 2)
	if b.jkt != "" {
		c["jkt"] = b.jkt
	}
	if b.x5t != "" {
		c[mtls.CnfKey] = b.x5t
	}
	return c
}

// tokenType is DPoP for a DPoP-bound token, Bearer otherwise (a certificate-
// bound token is still a Bearer token on the wire, RFC 8705 §3).
func (b binding) tokenType() oauth.TokenType {
	if b.jkt != "" {
		return oauth.TokenTypeDPoP
	}
	return oauth.TokenTypeBearer
}

// bindingKey carries the request's binding from the dispatcher to the
// grant-specific exchange and the token minting (a request-scoped value).
type bindingKey struct{}

func withBinding(ctx context.Context, b binding) context.Context {
	return context.WithValue(ctx, bindingKey{}, b)
}

// bindingFrom returns the binding the dispatcher established (none when absent).
func bindingFrom(ctx context.Context) binding {
	b, _ := ctx.Value(bindingKey{}).(binding)
	return b
}

// isPublic reports whether the client does not authenticate.
func isPublic(c *storage.Client) bool {
	return c.AuthMethod == "" || oauth.AuthMethod(c.AuthMethod) == oauth.AuthNone
}

// tokenURL is the htu DPoP proofs sent to /token must carry.
func (h *Handler) tokenURL() (*url.URL, error) {
	u := h.opts.TokenURL
	if u == "" {
		u = h.opts.IssuerURL + "/token"
	}
	return url.Parse(u)
}

// bind verifies the request's DPoP proof (RFC 9449 §5: no access token yet)
// and notes its client certificate (RFC 8705 §3), before anything is
// consumed: a nonce challenge or a bad proof leaves the code or refresh
// token usable. It enforces the client's dpop_bound_access_tokens and the
// server's sender-constraint policy.
func (h *Handler) bind(ctx context.Context, client *storage.Client, req Request, gt oauth.GrantType) (binding, error) {
	var b binding
	if req.DPoP != "" {
		if h.opts.DPoP == nil {
			return b, oauth.Wrap(oauth.InvalidDPoPProof, "DPoP is not supported by this server", ErrDPoPUnsupported)
		}
		u, err := h.tokenURL()
		if err != nil {
			return b, oauth.Wrap(oauth.ServerError, "internal error", fmt.Errorf("grant: token URL: %w", err))
		}
		p, err := h.opts.DPoP.Verify(ctx, req.DPoP, "POST", u, "")
		if err != nil {
			return b, dpop.OAuthError(err)
		}
		b.jkt = p.JKT
	}
	if certs := req.Credentials.ClientCerts; len(certs) > 0 && certs[0] != nil {
		b.x5t = mtls.Thumbprint(certs[0])
	}
	if b.jkt == "" && client.DPoPBoundAccessTokens {
		return b, oauth.Wrap(oauth.InvalidDPoPProof, "this client must send a DPoP proof (dpop_bound_access_tokens)", ErrDPoPRequired)
	}
	if b.jkt == "" && b.x5t == "" {
		if h.opts.RequireBoundConfidential && !isPublic(client) {
			return b, oauth.Wrap(oauth.InvalidRequest, "confidential clients must use DPoP or mutual TLS", ErrBindingRequired)
		}
		if h.opts.RequireBoundSystem && gt == oauth.GrantClientCredentials {
			return b, oauth.Wrap(oauth.InvalidRequest, "backend services clients must use DPoP or mutual TLS", ErrBindingRequired)
		}
	}
	return b, nil
}

// checkCodeBinding enforces dpop_jkt (RFC 9449 §10): a code requested with
// a key thumbprint is exchanged only with a proof by that key.
func checkCodeBinding(ac *storage.AuthCode, b binding) error {
	if ac.DPoPJKT == "" {
		return nil
	}
	if b.jkt == "" {
		return oauth.Wrap(oauth.InvalidDPoPProof, "the authorization code is bound to a DPoP key; send a DPoP proof", ErrDPoPRequired)
	}
	if subtle.ConstantTimeCompare([]byte(ac.DPoPJKT), []byte(b.jkt)) != 1 {
		return oauth.Wrap(oauth.InvalidGrant, "the authorization code is bound to another DPoP key", ErrCodeKeyMismatch)
	}
	return nil
}

// familyBinding is what a new token family of a public client is bound to
// (RFC 9449 §5, RFC 8705 §4): its refresh tokens then need a proof with the
// same key, or the same certificate. Confidential clients authenticate
// when refreshing; their families are not bound.
func familyBinding(client *storage.Client, b binding) (jkt, x5t string) {
	if !isPublic(client) {
		return "", ""
	}
	return b.jkt, b.x5t
}

// checkFamilyBinding enforces the binding of a refresh token's family.
func checkFamilyBinding(fam *storage.TokenFamily, b binding) error {
	if fam.DPoPJKT != "" {
		if b.jkt == "" {
			return oauth.Wrap(oauth.InvalidDPoPProof, "the refresh token is bound to a DPoP key; send a DPoP proof", ErrDPoPRequired)
		}
		if subtle.ConstantTimeCompare([]byte(fam.DPoPJKT), []byte(b.jkt)) != 1 {
			return oauth.Wrap(oauth.InvalidGrant, "the refresh token is bound to another DPoP key", ErrRefreshKeyMismatch)
		}
	}
	if fam.CertThumbprint != "" && subtle.ConstantTimeCompare([]byte(fam.CertThumbprint), []byte(b.x5t)) != 1 {
		return oauth.Wrap(oauth.InvalidGrant, "the refresh token is bound to another client certificate", ErrRefreshKeyMismatch)
	}
	return nil
}
