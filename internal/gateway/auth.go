package gateway

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/internal/mtls"
	"github.com/fhirgate/fhirgate/internal/oauth"
	"github.com/fhirgate/fhirgate/internal/policy"
	"github.com/fhirgate/fhirgate/internal/scope"
	"github.com/fhirgate/fhirgate/internal/token"
)

// authError is a refused authentication, rendered as 400/401 with a
// WWW-Authenticate challenge (RFC 6750 §3, RFC 9449 §7.1).
type authError struct {
	status      int
	code        string // invalid_request, invalid_token, invalid_dpop_proof, use_dpop_nonce; "" = no credentials
	description string // client-visible
	cause       error  // logged and audited, never sent
	dpop        bool   // challenge with the DPoP scheme
	nonce       string // DPoP-Nonce to send
	serviceDown bool   // a dependency failed: 503
}

func (e *authError) Error() string {
	if e.cause != nil {
		return e.code + ": " + e.description + ": " + e.cause.Error()
	}
	return e.code + ": " + e.description
}

func (e *authError) Unwrap() error { return e.cause }

// Authorization schemes.
const (
	schemeBearer = "Bearer"
	schemeDPoP   = "DPoP"
)

// credentials extracts the access token from the Authorization header.
func credentials(r *http.Request) (scheme, raw string, err *authError) {
	vals := r.Header.Values("Authorization")
	if len(vals) == 0 {
		return "", "", &authError{status: http.StatusUnauthorized, description: "an access token is required"}
	}
	if len(vals) > 1 {
		return "", "", &authError{status: http.StatusBadRequest, code: "invalid_request", description: "more than one Authorization header"}
	}
	s, tok, ok := strings.Cut(vals[0], " ")
	tok = strings.TrimLeft(tok, " ")
	switch {
	case ok && strings.EqualFold(s, schemeBearer):
		scheme = schemeBearer
	case ok && strings.EqualFold(s, schemeDPoP):
		scheme = schemeDPoP
	default:
		return "", "", &authError{status: http.StatusUnauthorized, description: "use the Bearer or DPoP authorization scheme"}
	}
	if tok == "" || strings.ContainsAny(tok, " \t,") {
		return "", "", &authError{status: http.StatusBadRequest, code: "invalid_request", description: "malformed Authorization header", dpop: scheme == schemeDPoP}
	}
	return scheme, tok, nil
}

// leakedToken returns a token found where tokens must never be: the URL
// query, or an application/x-www-form-urlencoded body (form holds the
// already parsed body, or nil).
func leakedToken(r *http.Request, form url.Values) string {
	if t := r.URL.Query().Get("access_token"); t != "" {
		return t
	}
	if form != nil {
		if t := form.Get("access_token"); t != "" {
			return t
		}
	}
	return ""
}

func isForm(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return false
	}
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "application/x-www-form-urlencoded"
}

// authenticate verifies the token of r and returns the verified entry.
func (h *Handler) authenticate(r *http.Request, scheme, raw string) (*verified, *authError) {
	now := h.opts.Now()
	key := tokenKey(raw)
	v := h.cache.get(key, now)
	if v == nil {
		claims, err := h.opts.Tokens.ParseAccessToken(raw, h.opts.BaseURL)
		if err != nil {
			desc := "the access token is invalid"
			if errors.Is(err, token.ErrExpired) {
				desc = "the access token expired"
			}
			return nil, &authError{status: http.StatusUnauthorized, code: "invalid_token", description: desc, cause: err, dpop: scheme == schemeDPoP}
		}
		set, _, err := scope.ParseSet(claims.Scope)
		if err != nil {
			return nil, &authError{status: http.StatusUnauthorized, code: "invalid_token", description: "the access token is invalid", cause: fmt.Errorf("scope: %w", err), dpop: scheme == schemeDPoP}
		}
		v = &verified{
			claims: claims,
			principal: policy.Principal{Scopes: set, Patient: claims.Patient, FHIRUser: claims.FHIRUser,
				ClientID: claims.ClientID, Subject: claims.Subject},
			expires: time.Unix(claims.ExpiresAt, 0),
		}
		h.cache.put(key, v, now)
	}
	revoked, err := h.opts.Revocations.Revoked(r.Context(), v.claims.JTI, v.claims.FamilyID)
	if err != nil {
		return nil, &authError{status: http.StatusServiceUnavailable, serviceDown: true, description: "token revocation status unavailable", cause: err}
	}
	if revoked {
		h.cache.remove(key)
		return nil, &authError{status: http.StatusUnauthorized, code: "invalid_token", description: "the access token was revoked", cause: errors.New("revoked"), dpop: scheme == schemeDPoP}
	}
	if aerr := h.checkBinding(r, scheme, raw, v.claims); aerr != nil {
		return nil, aerr
	}
	return v, nil
}

// checkBinding enforces sender constraints: DPoP (cnf.jkt) and mTLS
// certificate binding (cnf x5t#S256).
func (h *Handler) checkBinding(r *http.Request, scheme, raw string, c *token.AccessClaims) *authError {
	jkt := c.Cnf["jkt"]
	switch {
	case jkt != "" && scheme != schemeDPoP:
		return &authError{status: http.StatusUnauthorized, code: "invalid_token", dpop: true,
			description: "a DPoP-bound access token must be sent with the DPoP scheme", cause: errors.New("DPoP-bound token sent as Bearer")}
	case jkt == "" && scheme == schemeDPoP:
		return &authError{status: http.StatusUnauthorized, code: "invalid_token", dpop: true,
			description: "the access token is not DPoP-bound", cause: errors.New("unbound token sent with DPoP scheme")}
	case jkt != "":
		if h.opts.DPoP == nil {
			return &authError{status: http.StatusUnauthorized, code: "invalid_dpop_proof", dpop: true,
				description: "DPoP is not supported here", cause: errors.New("no DPoP verifier configured")}
		}
		if err := h.opts.DPoP.Verify(h.publicRequest(r), raw, jkt); err != nil {
			ae := &authError{status: http.StatusUnauthorized, code: "invalid_dpop_proof", dpop: true,
				description: "the DPoP proof is invalid", cause: err}
			var ne NonceError
			if errors.As(err, &ne) && ne.DPoPNonce() != "" {
				ae.code, ae.description, ae.nonce = string(oauth.UseDPoPNonce), "a DPoP nonce is required", ne.DPoPNonce()
			}
			return ae
		}
	}
	if x5t := c.Cnf[mtls.CnfKey]; x5t != "" {
		// The certificate of the TLS connection, or the one a trusted
		// TLS-terminating proxy forwards (a header from anyone else is refused).
		cert, err := mtls.ClientCert(r, h.opts.TrustedProxies)
		switch {
		case errors.Is(err, mtls.ErrNoCert):
			return &authError{status: http.StatusUnauthorized, code: "invalid_token",
				description: "the access token is bound to a client certificate", cause: err}
		case err != nil:
			return &authError{status: http.StatusBadRequest, code: "invalid_request",
				description: "unacceptable client certificate header", cause: err}
		case !mtls.Matches(cert, x5t):
			return &authError{status: http.StatusUnauthorized, code: "invalid_token",
				description: "the access token is bound to another client certificate", cause: mtls.ErrMismatch}
		}
	}
	return nil
}

// publicRequest returns a shallow copy of r whose URL is the absolute public
// URL the client called (for the DPoP htu check).
func (h *Handler) publicRequest(r *http.Request) *http.Request {
	rr := *r
	u := *r.URL
	u.Scheme, u.Host = h.base.Scheme, h.base.Host
	rr.URL = &u
	return &rr
}

// challenge writes the WWW-Authenticate headers for e.
func (h *Handler) challenge(w http.ResponseWriter, e *authError) {
	realm := `realm="fhir"`
	hdr := w.Header()
	if e.code == "" {
		// No credentials: offer both schemes, no error code (RFC 6750 §3.1).
		hdr.Add("WWW-Authenticate", "Bearer "+realm)
		if h.dpopAlgs != "" {
			hdr.Add("WWW-Authenticate", "DPoP "+realm+h.dpopAlgs)
		}
		return
	}
	params := fmt.Sprintf(`%s, error=%q, error_description=%q`, realm, e.code, e.description)
	if e.dpop {
		hdr.Add("WWW-Authenticate", "DPoP "+params+h.dpopAlgs)
	} else {
		hdr.Add("WWW-Authenticate", "Bearer "+params)
	}
	if e.nonce != "" {
		hdr.Set("DPoP-Nonce", e.nonce)
	}
}
