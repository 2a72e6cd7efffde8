// Package revoke implements RFC 7009 token revocation at /revoke, and
// consent revocation (the CLI and the account pages).
//
// At /revoke the client authenticates as at /token (public clients identify
// with client_id) and may revoke only tokens issued to it:
//   - a refresh token revokes its whole token family: every refresh token
//     and, through the revocation list, every access token of the grant;
//   - a JWT access token is put on the revocation list (its jti) until its
//     natural expiry, which the gateway consults.
//
// A token that is unknown, malformed or already expired is answered 200
// with nothing done (RFC 7009 §2.2): the client cannot tell it apart.
// token_type_hint is accepted but not needed (an access token is a JWT, a
// refresh token never contains a dot).
package revoke

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

// Revocation reasons recorded on token families.
const (
	ReasonClientRevoked  = "revoked by the client (RFC 7009)"
	ReasonConsentRevoked = "consent revoked"
)

// Errors.
var (
	// ErrOptions: New was given unusable options.
	ErrOptions = errors.New("revoke: invalid options")
	// ErrNotOwner: the token was issued to another client.
	ErrNotOwner = errors.New("revoke: token issued to another client")
)

// Authenticator authenticates the calling client.
type Authenticator interface {
	Authenticate(ctx context.Context, creds clientauth.Credentials) (*storage.Client, error)
}

// AccessTokenParser verifies a JWT access token (*token.Issuer); audience ""
// accepts any audience.
type AccessTokenParser interface {
	ParseAccessToken(raw, audience string) (*token.AccessClaims, error)
}

// Store is what revocation writes.
type Store interface {
	GetRefreshToken(ctx context.Context, hash []byte) (*storage.RefreshToken, error)
	RevokeFamily(ctx context.Context, id string, now time.Time, reason string) error
	RevokeAccessToken(ctx context.Context, jti string, expiresAt, now time.Time) error
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
	// Store records revocations. Required.
	Store Store
	// Revoked, if set, is told about each revocation at once (for example
	// the in-process gateway's revocation.Checker.Add).
	Revoked func(storage.RevokedToken)
	Auditor audit.Auditor
	Logger  *slog.Logger
	Now     func() time.Time
}

// Handler serves /revoke.
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

// Request is a parsed revocation request.
type Request struct {
	Token       string
	Hint        string // token_type_hint; accepted, not needed
	Credentials clientauth.Credentials
	SourceIP    string
	UserAgent   string
}

// Revoke authenticates the client and revokes the token. A nil error means
// 200 (also for unknown, malformed and expired tokens). Errors are
// *oauth.Error values: invalid_request, invalid_client (401),
// unauthorized_client (the token belongs to another client),
// temporarily_unavailable (store or audit failure; retrying is safe).
func (h *Handler) Revoke(ctx context.Context, req Request) error {
	ev := audit.Event{
		Time:      h.opts.Now(),
		Action:    audit.ActionTokenRevoked,
		Outcome:   audit.Failure,
		SourceIP:  req.SourceIP,
		UserAgent: req.UserAgent,
		ClientID:  req.Credentials.ClientID(),
	}
	if err := h.revoke(ctx, req, &ev); err != nil {
		oe := oauth.As(err)
		ev.Reason = string(oe.Code) + ": " + oe.Description
		h.record(ctx, ev)
		return err
	}
	ev.Outcome = audit.Success
	if err := h.opts.Auditor.Record(context.WithoutCancel(ctx), ev); err != nil {
		return oauth.Wrap(oauth.TemporarilyUnavailable, "audit trail unavailable; try again later",
			fmt.Errorf("revoke: audit: %w", err))
	}
	return nil
}

// Refuse audits a request refused before Revoke could run.
func (h *Handler) Refuse(ctx context.Context, req Request, err error) {
	oe := oauth.As(err)
	h.record(ctx, audit.Event{
		Time:      h.opts.Now(),
		Action:    audit.ActionTokenRevoked,
		Outcome:   audit.Failure,
		Reason:    string(oe.Code) + ": " + oe.Description,
		SourceIP:  req.SourceIP,
		UserAgent: req.UserAgent,
		ClientID:  req.Credentials.ClientID(),
	})
}

func (h *Handler) record(ctx context.Context, ev audit.Event) {
	if err := h.opts.Auditor.Record(context.WithoutCancel(ctx), ev); err != nil {
		h.opts.Logger.ErrorContext(ctx, "audit of token revocation failed", "error", err)
	}
}

func (h *Handler) revoke(ctx context.Context, req Request, ev *audit.Event) error {
	client, err := h.auth.Authenticate(ctx, req.Credentials)
	if err != nil {
		return err
	}
	ev.ClientID = client.ID
	if req.Token == "" {
		return oauth.Errorf(oauth.InvalidRequest, "token missing")
	}
	// Revocation must not be undone by a client disconnecting half way.
	ctx = context.WithoutCancel(ctx)
	if strings.Count(req.Token, ".") == 2 {
		return h.accessToken(ctx, client, req.Token, ev)
	}
	return h.refreshToken(ctx, client, req.Token, ev)
}

func (h *Handler) accessToken(ctx context.Context, client *storage.Client, raw string, ev *audit.Event) error {
	c, err := h.opts.Tokens.ParseAccessToken(raw, "")
	if err != nil {
		ev.Reason = "unknown, invalid or expired access token; nothing revoked"
		return nil
	}
	ev.TokenID, ev.UserID, ev.Patient = c.JTI, c.Subject, c.Patient
	if c.ClientID != client.ID {
		return oauth.Wrap(oauth.UnauthorizedClient, "the token was not issued to this client",
			fmt.Errorf("%w: access token of %q, presented by %q", ErrNotOwner, c.ClientID, client.ID))
	}
	now := h.opts.Now()
	exp := time.Unix(c.ExpiresAt, 0).Add(token.Skew) // the gateway accepts it until then
	if err := h.opts.Store.RevokeAccessToken(ctx, c.JTI, exp, now); err != nil {
		return oauth.Wrap(oauth.TemporarilyUnavailable, "revocation failed; try again later",
			fmt.Errorf("revoke: access token: %w", err))
	}
	if h.opts.Revoked != nil {
		h.opts.Revoked(storage.RevokedToken{Kind: storage.RevokedAccessToken, ID: c.JTI, RevokedAt: now, ExpiresAt: exp})
	}
	ev.Reason = "access token revoked"
	return nil
}

func (h *Handler) refreshToken(ctx context.Context, client *storage.Client, raw string, ev *audit.Event) error {
	rt, err := h.opts.Store.GetRefreshToken(ctx, storage.RefreshTokenKey(raw))
	switch {
	case errors.Is(err, storage.ErrNotFound):
		ev.Reason = "unknown token; nothing revoked"
		return nil
	case err != nil:
		return oauth.Wrap(oauth.TemporarilyUnavailable, "revocation failed; try again later",
			fmt.Errorf("revoke: get refresh token: %w", err))
	}
	ev.UserID = rt.UserID
	if rt.ClientID != client.ID {
		return oauth.Wrap(oauth.UnauthorizedClient, "the token was not issued to this client",
			fmt.Errorf("%w: refresh token of %q, presented by %q", ErrNotOwner, rt.ClientID, client.ID))
	}
	now := h.opts.Now()
	if err := h.opts.Store.RevokeFamily(ctx, rt.FamilyID, now, ReasonClientRevoked); err != nil {
		return oauth.Wrap(oauth.TemporarilyUnavailable, "revocation failed; try again later",
			fmt.Errorf("revoke: family: %w", err))
	}
	if h.opts.Revoked != nil {
		h.opts.Revoked(storage.RevokedToken{Kind: storage.RevokedFamily, ID: rt.FamilyID, RevokedAt: now,
			ExpiresAt: now.Add(storage.FamilyRevocationTTL)})
	}
	ev.Reason = "refresh token family revoked"
	return nil
}
