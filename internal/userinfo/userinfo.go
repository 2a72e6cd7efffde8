// Package userinfo serves the OpenID Connect UserInfo endpoint (OIDC Core
// §5.3) for access tokens this server issued. The token must carry the
// openid scope, its token family must not be revoked, and its user must
// still exist.
package userinfo

import (
	"context"
	"crypto/subtle"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/dpop"
	"github.com/fhirgate/fhirgate/internal/mtls"
	"github.com/fhirgate/fhirgate/internal/oauth"
	"github.com/fhirgate/fhirgate/internal/scope"
	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/token"
)

// ErrOptions is returned by New when a required option is missing or invalid.
var ErrOptions = errors.New("userinfo: invalid options")

// Causes of refusals (wrapped in the *oauth.Error).
var (
	ErrNoFamily      = errors.New("userinfo: token carries no family")
	ErrFamilyRevoked = errors.New("userinfo: token family revoked")
	ErrNoUser        = errors.New("userinfo: user no longer exists")
	ErrNoToken       = errors.New("userinfo: no bearer token presented")
	// ErrBoundAsBearer: a DPoP-bound token was sent with the Bearer scheme.
	ErrBoundAsBearer = errors.New("userinfo: DPoP-bound token sent as a bearer token")
	// ErrNotBound: a token without cnf.jkt was sent with the DPoP scheme.
	ErrNotBound = errors.New("userinfo: token sent with the DPoP scheme is not DPoP-bound")
	// ErrDPoPUnsupported: a DPoP-bound token arrived but no verifier is configured.
	ErrDPoPUnsupported = errors.New("userinfo: DPoP not configured")
	// ErrCertMismatch: a certificate-bound token came without its certificate.
	ErrCertMismatch = errors.New("userinfo: client certificate does not match the token")
)

// Options configures the endpoint.
type Options struct {
	Issuer *token.Issuer // verifies access tokens
	Tokens storage.Tokens
	Users  storage.Users
	// FHIRBase is the audience the access tokens must carry.
	FHIRBase string
	// DPoP verifies the proofs sent with DPoP-bound tokens (RFC 9449 §7);
	// nil refuses DPoP-bound tokens.
	DPoP *dpop.Verifier
	// URL is the public URL of this endpoint, the htu of DPoP proofs
	// (required with DPoP).
	URL string
	// TrustedProxies may pass the client certificate in a header (for
	// certificate-bound tokens behind a TLS-terminating proxy).
	TrustedProxies mtls.TrustedProxies
	Auditor        audit.Auditor
	Logger         *slog.Logger
	Now            func() time.Time
}

// Handler serves /userinfo.
type Handler struct {
	opts     Options
	fhirBase string
	self     *url.URL // public URL, for DPoP htu
}

// New validates opts and fills defaults.
func New(opts Options) (*Handler, error) {
	var missing []string
	if opts.Issuer == nil {
		missing = append(missing, "Issuer")
	}
	if opts.Tokens == nil {
		missing = append(missing, "Tokens")
	}
	if opts.Users == nil {
		missing = append(missing, "Users")
	}
	if opts.Auditor == nil {
		missing = append(missing, "Auditor")
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: missing %s", ErrOptions, strings.Join(missing, ", "))
	}
	u, err := url.Parse(opts.FHIRBase)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("%w: FHIRBase %q is not an absolute http(s) URL", ErrOptions, opts.FHIRBase)
	}
	var self *url.URL
	if opts.DPoP != nil {
		self, err = url.Parse(opts.URL)
		if err != nil || (self.Scheme != "https" && self.Scheme != "http") || self.Host == "" {
			return nil, fmt.Errorf("%w: URL %q (needed for DPoP) is not an absolute http(s) URL", ErrOptions, opts.URL)
		}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Handler{opts: opts, fhirBase: strings.TrimRight(opts.FHIRBase, "/"), self: self}, nil
}

// Info is the UserInfo response.
type Info struct {
	Subject           string `json:"sub"`
	FHIRUser          string `json:"fhirUser,omitempty"`
	Name              string `json:"name,omitempty"`
	PreferredUsername string `json:"preferred_username,omitempty"`
}

// Meta describes the caller for the audit record, and how the token was
// presented.
type Meta struct {
	SourceIP  string
	UserAgent string
	// DPoP says the token came with the DPoP authorization scheme; Proof is
	// the DPoP header and Method the request method it must name.
	DPoP   bool
	Proof  string
	Method string
	// ClientCert is the TLS client certificate, for certificate-bound tokens.
	ClientCert *x509.Certificate
}

// UserInfo returns the claims about the user the access token raw was issued
// for. Errors are *oauth.Error values: invalid_token (401) for a token that
// does not verify, is revoked or whose user is gone; insufficient_scope (403)
// without openid; server_error or temporarily_unavailable when the store or
// the audit trail fails (fail closed). Each outcome is audited.
func (h *Handler) UserInfo(ctx context.Context, raw string, m Meta) (*Info, error) {
	ev := audit.Event{Time: h.opts.Now(), Action: audit.ActionUserinfo, SourceIP: m.SourceIP, UserAgent: m.UserAgent}
	info, err := h.userInfo(ctx, raw, m, &ev)
	if err != nil {
		h.refused(ctx, ev, err)
		return nil, err
	}
	ev.Outcome = audit.Success
	if err := h.opts.Auditor.Record(context.WithoutCancel(ctx), ev); err != nil {
		return nil, oauth.Wrap(oauth.TemporarilyUnavailable, "audit trail unavailable; try again later", err)
	}
	return info, nil
}

// Refuse audits a request refused before UserInfo could run (a malformed
// HTTP request).
func (h *Handler) Refuse(ctx context.Context, m Meta, err error) {
	h.refused(ctx, audit.Event{Time: h.opts.Now(), Action: audit.ActionUserinfo, SourceIP: m.SourceIP, UserAgent: m.UserAgent}, err)
}

func (h *Handler) refused(ctx context.Context, ev audit.Event, err error) {
	oe := oauth.As(err)
	ev.Outcome = audit.Failure
	ev.Reason = string(oe.Code) + ": " + oe.Description
	if aerr := h.opts.Auditor.Record(context.WithoutCancel(ctx), ev); aerr != nil {
		h.opts.Logger.ErrorContext(ctx, "audit of refused userinfo failed", "error", aerr)
	}
}

func (h *Handler) userInfo(ctx context.Context, raw string, m Meta, ev *audit.Event) (*Info, error) {
	if raw == "" {
		return nil, oauth.Wrap(oauth.InvalidToken, "a bearer access token is required", ErrNoToken)
	}
	claims, err := h.opts.Issuer.ParseAccessToken(raw, h.fhirBase)
	if err != nil {
		return nil, oauth.Wrap(oauth.InvalidToken, "the access token is invalid or expired", err)
	}
	ev.UserID, ev.ClientID, ev.TokenID, ev.Scope, ev.Patient = claims.Subject, claims.ClientID, claims.JTI, claims.Scope, claims.Patient
	if err := h.checkBinding(ctx, raw, claims, m); err != nil {
		return nil, err
	}
	granted, _, err := scope.ParseSet(claims.Scope)
	if err != nil {
		return nil, oauth.Wrap(oauth.InvalidToken, "the access token is invalid or expired", err)
	}
	if claims.FamilyID == "" {
		// Without a family the revocation state cannot be checked: fail closed.
		return nil, oauth.Wrap(oauth.InvalidToken, "the access token is invalid or expired", ErrNoFamily)
	}
	fam, err := h.opts.Tokens.GetFamily(ctx, claims.FamilyID)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return nil, oauth.Wrap(oauth.InvalidToken, "the access token is invalid or expired", fmt.Errorf("%w: %w", ErrNoFamily, err))
	case err != nil:
		return nil, oauth.Wrap(oauth.TemporarilyUnavailable, "revocation state unavailable; try again later", err)
	case !fam.RevokedAt.IsZero():
		return nil, oauth.Wrap(oauth.InvalidToken, "the access token has been revoked", ErrFamilyRevoked)
	}
	if !granted.Has(scope.OpenID) {
		return nil, oauth.Errorf(oauth.InsufficientScope, "the access token lacks the openid scope")
	}
	user, err := h.opts.Users.GetUser(ctx, claims.Subject)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return nil, oauth.Wrap(oauth.InvalidToken, "the access token is invalid or expired", fmt.Errorf("%w: %w", ErrNoUser, err))
	case err != nil:
		return nil, oauth.Wrap(oauth.TemporarilyUnavailable, "user directory unavailable; try again later", err)
	}
	ev.FHIRUser = user.FHIRUser
	info := &Info{Subject: user.ID}
	if granted.Has(scope.FHIRUser) && user.FHIRUser != "" {
		info.FHIRUser = h.fhirBase + "/" + strings.TrimLeft(user.FHIRUser, "/")
	}
	if granted.Has(scope.Profile) {
		info.Name = user.Username
		info.PreferredUsername = user.Username
	}
	return info, nil
}

// checkBinding enforces the token's sender constraint: a DPoP-bound token
// (cnf.jkt) only with the DPoP scheme and a valid proof by that key for this
// request and token (RFC 9449 §7); an unbound token never with the DPoP
// scheme; a certificate-bound token (cnf x5t#S256) only with that
// certificate (RFC 8705 §3).
func (h *Handler) checkBinding(ctx context.Context, raw string, claims *token.AccessClaims, m Meta) error {
	jkt := claims.Cnf["jkt"]
	switch {
	case jkt != "" && !m.DPoP:
		return oauth.Wrap(oauth.InvalidToken, "a DPoP-bound access token must be sent with the DPoP scheme", ErrBoundAsBearer)
	case jkt == "" && m.DPoP:
		return oauth.Wrap(oauth.InvalidToken, "the access token is not DPoP-bound; use the Bearer scheme", ErrNotBound)
	case jkt != "":
		if h.opts.DPoP == nil {
			return oauth.Wrap(oauth.InvalidToken, "DPoP-bound tokens are not accepted here", ErrDPoPUnsupported)
		}
		p, err := h.opts.DPoP.Verify(ctx, m.Proof, m.Method, h.self, raw)
		if err == nil && subtle.ConstantTimeCompare([]byte(p.JKT), []byte(jkt)) != 1 {
			err = dpop.ErrKeyMismatch
		}
		if err != nil {
			return dpop.OAuthError(err)
		}
	}
	if x5t := claims.Cnf[mtls.CnfKey]; x5t != "" && !mtls.Matches(m.ClientCert, x5t) {
		return oauth.Wrap(oauth.InvalidToken, "the access token is bound to another client certificate", ErrCertMismatch)
	}
	return nil
}
