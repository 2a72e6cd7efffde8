// Package introspect implements RFC 7662 token introspection at
// /introspect, with the SMART App Launch claims (patient, encounter,
// fhirUser) and RFC 9449 / RFC 8705 confirmation (cnf).
//
// Who may introspect: a client that authenticates with a confidential method
// (client_secret_basic, client_secret_post, private_key_jwt,
// tls_client_auth, self_signed_tls_client_auth). That includes resource
// servers, which are registered as confidential clients (for example with no
// grant types). Public clients are refused with 401 invalid_client. Access
// tokens may be introspected by any such caller; a refresh token only by the
// client it was issued to (any other caller learns {"active": false}).
//
// A token that is revoked (its jti, or its family), expired, unknown,
// malformed, or a refresh token that was already rotated is answered with
// exactly {"active": false}.
package introspect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/clientauth"
	"github.com/fhirgate/fhirgate/internal/mtls"
	"github.com/fhirgate/fhirgate/internal/oauth"
	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/token"
)

// Token type hints (RFC 7009 §2.1, RFC 7662 §2.1) and the token_type this
// endpoint reports for refresh tokens.
const (
	HintAccessToken  = "access_token"
	HintRefreshToken = "refresh_token"
	// TokenTypeRefresh is the token_type of an active refresh token.
	TokenTypeRefresh = "refresh_token"
)

// Errors.
var (
	// ErrOptions: New was given unusable options.
	ErrOptions = errors.New("introspect: invalid options")
	// ErrPublicClient: a public client tried to introspect.
	ErrPublicClient = errors.New("introspect: public clients may not introspect")
)

// Authenticator authenticates the calling client (clientauth.Authenticator,
// or the server's configured authenticator with private_key_jwt and mTLS).
type Authenticator interface {
	Authenticate(ctx context.Context, creds clientauth.Credentials) (*storage.Client, error)
}

// AccessTokenParser verifies a JWT access token (*token.Issuer); audience ""
// accepts any audience.
type AccessTokenParser interface {
	ParseAccessToken(raw, audience string) (*token.AccessClaims, error)
}

// Store is what introspection reads.
type Store interface {
	GetRefreshToken(ctx context.Context, hash []byte) (*storage.RefreshToken, error)
	GetFamily(ctx context.Context, id string) (*storage.TokenFamily, error)
	IsRevoked(ctx context.Context, jti, familyID string, now time.Time) (bool, error)
}

// SessionStore looks up login sessions, for refresh tokens of online_access
// families (which end with their session).
type SessionStore interface {
	GetSession(ctx context.Context, hash []byte, now time.Time) (*storage.Session, error)
}

// Options configures the handler.
type Options struct {
	// Clients backs the default Authenticator (client secrets).
	Clients storage.Clients
	// Authenticator replaces the default clientauth.Authenticator{Clients}.
	Authenticator Authenticator
	// TrustedProxies may pass the client certificate of a TLS connection
	// they terminated in a header (tls_client_auth behind a front proxy).
	TrustedProxies mtls.TrustedProxies
	// Tokens verifies access tokens. Required.
	Tokens AccessTokenParser
	// Store answers for refresh tokens, families and the revocation list. Required.
	Store Store
	// Sessions, if set, makes refresh tokens of online_access families
	// inactive once their login session has ended. Without it such tokens
	// are reported inactive (fail closed).
	Sessions SessionStore
	// IssuerURL is reported as iss for refresh tokens. Required.
	IssuerURL string
	Auditor   audit.Auditor
	Logger    *slog.Logger
	Now       func() time.Time
}

// Handler serves /introspect.
type Handler struct {
	opts Options
	auth Authenticator
}

// New validates opts and fills defaults.
func New(opts Options) (*Handler, error) {
	var missing []string
	if opts.Clients == nil && opts.Authenticator == nil {
		missing = append(missing, "Clients or Authenticator")
	}
	if opts.Tokens == nil {
		missing = append(missing, "Tokens")
	}
	if opts.Store == nil {
		missing = append(missing, "Store")
	}
	if opts.IssuerURL == "" {
		missing = append(missing, "IssuerURL")
	}
	if opts.Auditor == nil {
		missing = append(missing, "Auditor")
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: missing %s", ErrOptions, strings.Join(missing, ", "))
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	h := &Handler{opts: opts, auth: opts.Authenticator}
	if h.auth == nil {
		h.auth = clientauth.Authenticator{Clients: opts.Clients}
	}
	return h, nil
}

// Response is the introspection response (RFC 7662 §2.2). An inactive
// token is exactly {"active": false}: every other field is empty then.
type Response struct {
	Active    bool              `json:"active"`
	Scope     string            `json:"scope,omitempty"`
	ClientID  string            `json:"client_id,omitempty"`
	Subject   string            `json:"sub,omitempty"`
	ExpiresAt int64             `json:"exp,omitempty"`
	IssuedAt  int64             `json:"iat,omitempty"`
	Issuer    string            `json:"iss,omitempty"`
	Audience  string            `json:"aud,omitempty"`
	TokenType string            `json:"token_type,omitempty"`
	JTI       string            `json:"jti,omitempty"`
	Patient   string            `json:"patient,omitempty"`
	Encounter string            `json:"encounter,omitempty"`
	FHIRUser  string            `json:"fhirUser,omitempty"`
	Cnf       map[string]string `json:"cnf,omitempty"`
}

// inactive is the answer for every token that is not active.
func inactive() *Response { return &Response{Active: false} }

// Request is a parsed introspection request.
type Request struct {
	Token string
	// Hint is token_type_hint. It is accepted but not needed: an access
	// token is a JWT and a refresh token never contains a dot.
	Hint        string
	Credentials clientauth.Credentials
	SourceIP    string
	UserAgent   string
}

// Introspect authenticates the caller and describes the token. Errors are
// *oauth.Error values: invalid_request, invalid_client (401), or
// server_error / temporarily_unavailable when the store fails (never an
// "active" answer that was not checked).
func (h *Handler) Introspect(ctx context.Context, req Request) (*Response, error) {
	ev := audit.Event{
		Time:      h.opts.Now(),
		Action:    audit.ActionTokenIntrospected,
		Outcome:   audit.Failure,
		SourceIP:  req.SourceIP,
		UserAgent: req.UserAgent,
		ClientID:  req.Credentials.ClientID(),
	}
	resp, err := h.introspect(ctx, req, &ev)
	if err != nil {
		oe := oauth.As(err)
		ev.Reason = string(oe.Code) + ": " + oe.Description
		h.record(ctx, ev)
		return nil, err
	}
	ev.Outcome = audit.Success
	if resp.Active {
		ev.Reason = "active"
	} else {
		ev.Reason = "inactive"
	}
	if err := h.opts.Auditor.Record(context.WithoutCancel(ctx), ev); err != nil {
		return nil, oauth.Wrap(oauth.TemporarilyUnavailable, "audit trail unavailable; try again later",
			fmt.Errorf("introspect: audit: %w", err))
	}
	return resp, nil
}

// Refuse audits a request refused before Introspect could run.
func (h *Handler) Refuse(ctx context.Context, req Request, err error) {
	oe := oauth.As(err)
	h.record(ctx, audit.Event{
		Time:      h.opts.Now(),
		Action:    audit.ActionTokenIntrospected,
		Outcome:   audit.Failure,
		Reason:    string(oe.Code) + ": " + oe.Description,
		SourceIP:  req.SourceIP,
		UserAgent: req.UserAgent,
		ClientID:  req.Credentials.ClientID(),
	})
}

func (h *Handler) record(ctx context.Context, ev audit.Event) {
	if err := h.opts.Auditor.Record(context.WithoutCancel(ctx), ev); err != nil {
		h.opts.Logger.ErrorContext(ctx, "audit of introspection failed", "error", err)
	}
}

func (h *Handler) introspect(ctx context.Context, req Request, ev *audit.Event) (*Response, error) {
	caller, err := h.auth.Authenticate(ctx, req.Credentials)
	if err != nil {
		return nil, err
	}
	ev.ClientID = caller.ID
	if oauth.AuthMethod(caller.AuthMethod) == oauth.AuthNone {
		return nil, oauth.Wrap(oauth.InvalidClient, "introspection requires a confidential client",
			fmt.Errorf("%w: %q", ErrPublicClient, caller.ID))
	}
	if req.Token == "" {
		return nil, oauth.Errorf(oauth.InvalidRequest, "token missing")
	}
	// A JWT (three dot-separated parts) can only be an access token, and a
	// refresh token never contains a dot: the hint only orders the lookups.
	if strings.Count(req.Token, ".") == 2 {
		return h.accessToken(ctx, caller, req.Token, ev)
	}
	return h.refreshToken(ctx, caller, req.Token, ev)
}

func (h *Handler) accessToken(ctx context.Context, caller *storage.Client, raw string, ev *audit.Event) (*Response, error) {
	c, err := h.opts.Tokens.ParseAccessToken(raw, "")
	if err != nil {
		return inactive(), nil
	}
	ev.TokenID, ev.UserID, ev.Patient = c.JTI, c.Subject, c.Patient
	now := h.opts.Now()
	if !now.Before(time.Unix(c.ExpiresAt, 0)) {
		return inactive(), nil // ParseAccessToken tolerates clock skew; introspection does not
	}
	revoked, err := h.opts.Store.IsRevoked(ctx, c.JTI, c.FamilyID, now)
	if err != nil {
		return nil, unavailable("revocation list", err)
	}
	if revoked {
		return inactive(), nil
	}
	if c.FamilyID != "" {
		fam, err := h.opts.Store.GetFamily(ctx, c.FamilyID)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			return inactive(), nil
		case err != nil:
			return nil, unavailable("token family", err)
		case !fam.RevokedAt.IsZero():
			return inactive(), nil
		}
	}
	tt := string(oauth.TokenTypeBearer)
	if c.Cnf["jkt"] != "" {
		tt = string(oauth.TokenTypeDPoP)
	}
	var cnf map[string]string
	if len(c.Cnf) > 0 {
		cnf = c.Cnf
	}
	return &Response{
		Active:    true,
		Scope:     c.Scope,
		ClientID:  c.ClientID,
		Subject:   c.Subject,
		ExpiresAt: c.ExpiresAt,
		IssuedAt:  c.IssuedAt,
		Issuer:    c.Issuer,
		Audience:  c.Audience,
		TokenType: tt,
		JTI:       c.JTI,
		Patient:   c.Patient,
		Encounter: c.Encounter,
		FHIRUser:  c.FHIRUser,
		Cnf:       cnf,
	}, nil
}

func (h *Handler) refreshToken(ctx context.Context, caller *storage.Client, raw string, ev *audit.Event) (*Response, error) {
	rt, err := h.opts.Store.GetRefreshToken(ctx, storage.RefreshTokenKey(raw))
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return inactive(), nil
	case err != nil:
		return nil, unavailable("refresh token", err)
	}
	ev.UserID = rt.UserID
	now := h.opts.Now()
	if rt.ClientID != caller.ID || !rt.UsedAt.IsZero() || !now.Before(rt.ExpiresAt) {
		return inactive(), nil
	}
	fam, err := h.opts.Store.GetFamily(ctx, rt.FamilyID)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return inactive(), nil
	case err != nil:
		return nil, unavailable("token family", err)
	}
	if !fam.RevokedAt.IsZero() || !now.Before(fam.ExpiresAt) {
		return inactive(), nil
	}
	if len(fam.SessionHash) > 0 {
		if h.opts.Sessions == nil {
			return inactive(), nil
		}
		_, err := h.opts.Sessions.GetSession(ctx, fam.SessionHash, now)
		switch {
		case errors.Is(err, storage.ErrNotFound), errors.Is(err, storage.ErrExpired):
			return inactive(), nil
		case err != nil:
			return nil, unavailable("session", err)
		}
	}
	cnf := map[string]string{}
	if fam.DPoPJKT != "" {
		cnf["jkt"] = fam.DPoPJKT
	}
	if fam.CertThumbprint != "" {
		cnf["x5t#S256"] = fam.CertThumbprint
	}
	if len(cnf) == 0 {
		cnf = nil
	}
	return &Response{
		Active:    true,
		Scope:     rt.Scope,
		ClientID:  rt.ClientID,
		Subject:   rt.UserID,
		ExpiresAt: rt.ExpiresAt.Unix(),
		IssuedAt:  rt.CreatedAt.Unix(),
		Issuer:    h.opts.IssuerURL,
		TokenType: TokenTypeRefresh,
		Patient:   fam.Context.Patient,
		Encounter: fam.Context.Encounter,
		Cnf:       cnf,
	}, nil
}

// unavailable is the error when a store read fails: the caller must not
// take the token as active or inactive.
func unavailable(what string, err error) error {
	return oauth.Wrap(oauth.TemporarilyUnavailable, "token status unavailable; try again later",
		fmt.Errorf("introspect: %s: %w", what, err))
}
