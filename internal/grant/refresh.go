package grant

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/oauth"
	"github.com/fhirgate/fhirgate/internal/scope"
	"github.com/fhirgate/fhirgate/internal/secret"
	"github.com/fhirgate/fhirgate/internal/storage"
)

// Causes of refresh_token refusals (wrapped in the *oauth.Error).
var (
	ErrRefreshReuse  = errors.New("grant: refresh token used after rotation")
	ErrRefreshClient = errors.New("grant: refresh token issued to another client")
	// ErrSessionEnded: an online_access refresh token outlived its login session.
	ErrSessionEnded = errors.New("grant: the login session of an online_access grant has ended")
)

// ReasonSessionEnded is the revocation reason of an online_access family
// found refreshing after its login session ended.
const ReasonSessionEnded = "login session ended (online_access)"

// SessionLookup finds login sessions (storage.Sessions satisfies it).
type SessionLookup interface {
	GetSession(ctx context.Context, hash []byte, now time.Time) (*storage.Session, error)
}

// onlineSession returns the login session an online_access family ends
// with, or nil for grants with offline_access (whose refresh tokens have an
// idle and an absolute lifetime instead).
func onlineSession(granted scope.Set, ac *storage.AuthCode) []byte {
	if granted.Has(scope.OfflineAccess) || !granted.Has(scope.OnlineAccess) {
		return nil
	}
	return ac.SessionHash
}

// refreshable reports whether the family may carry a refresh token: always
// with offline_access; with online_access only when it is tied to a login
// session (a code without one gets no refresh token: fail closed).
func refreshable(granted scope.Set, fam *storage.TokenFamily) bool {
	return granted.Has(scope.OfflineAccess) || (granted.Has(scope.OnlineAccess) && len(fam.SessionHash) > 0)
}

// checkSession refuses (and revokes the family of) an online_access refresh
// whose login session is gone or expired.
func (h *Handler) checkSession(ctx context.Context, fam *storage.TokenFamily) error {
	if len(fam.SessionHash) == 0 {
		return nil
	}
	if h.opts.Sessions == nil {
		return oauth.Wrap(oauth.InvalidGrant, "refresh token expired",
			fmt.Errorf("%w: no session store configured", ErrSessionEnded))
	}
	now := h.opts.Now()
	_, err := h.opts.Sessions.GetSession(ctx, fam.SessionHash, now)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, storage.ErrNotFound), errors.Is(err, storage.ErrExpired):
		rerr := h.opts.Tokens.RevokeFamily(context.WithoutCancel(ctx), fam.ID, now, ReasonSessionEnded)
		if rerr != nil {
			h.opts.Logger.ErrorContext(ctx, "revoking an ended online_access family failed", "family", fam.ID, "error", rerr)
		}
		return oauth.Wrap(oauth.InvalidGrant, "refresh token expired (the login session ended)", fmt.Errorf("%w: %w", ErrSessionEnded, err))
	default:
		return storeError("get session", err)
	}
}

// refreshToken rotates a refresh token (RFC 6749 §6, RFC 9700 §4.14): the
// presented token is replaced by a new one in one store transaction; a token
// presented again after its rotation revokes its whole family.
func (h *Handler) refreshToken(ctx context.Context, client *storage.Client, form url.Values, ev *audit.Event) (*result, error) {
	raw := form.Get("refresh_token")
	if raw == "" {
		return nil, oauth.Errorf(oauth.InvalidRequest, "refresh_token missing")
	}
	hash := storage.RefreshTokenKey(raw)
	old, fam, user, err := h.opts.Tokens.GetRefreshGrant(ctx, hash)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, oauth.Wrap(oauth.InvalidGrant, "invalid refresh token", err)
	} else if err != nil {
		return nil, storeError("get refresh token", err)
	}
	// Check the binding before rotating, so another client cannot burn it.
	if old.ClientID != client.ID {
		return nil, oauth.Wrap(oauth.InvalidGrant, "invalid refresh token",
			fmt.Errorf("%w: issued to %q, presented by %q", ErrRefreshClient, old.ClientID, client.ID))
	}
	ev.UserID = old.UserID
	if user == nil { // before rotating: the token is refused, not burnt
		return nil, oauth.Wrap(oauth.InvalidGrant, "the authorizing user no longer exists",
			fmt.Errorf("grant: user %q: %w", old.UserID, storage.ErrNotFound))
	}
	if h.suspended("", user.ID) { // before rotating: the token stays usable once cleared
		return nil, errUserSuspended()
	}
	// The DPoP key or certificate binding (public clients), checked before
	// rotating so that a thief without the key cannot burn the token.
	if err := checkFamilyBinding(fam, bindingFrom(ctx)); err != nil {
		return nil, err
	}
	if err := h.checkSession(ctx, fam); err != nil {
		return nil, err
	}
	familyScope, _, err := scope.ParseSet(fam.Scope)
	if err != nil {
		return nil, oauth.Wrap(oauth.ServerError, "internal error", fmt.Errorf("grant: stored family scope: %w", err))
	}
	granted, grantedStr := familyScope, fam.Scope
	if reqScope := form.Get("scope"); reqScope != "" {
		requested, unknown, err := scope.ParseSet(reqScope)
		if err != nil {
			return nil, oauth.Wrap(oauth.InvalidScope, "malformed scope", err)
		}
		if len(unknown) > 0 || !scope.Covers(familyScope, requested) {
			return nil, oauth.Errorf(oauth.InvalidScope, "requested scope exceeds the original grant")
		}
		granted, grantedStr = requested, requested.String()
	}

	now := h.opts.Now()
	nextRaw := secret.TimedToken(now)
	_, err = h.opts.Tokens.RotateRefreshToken(ctx, hash, &storage.RefreshToken{
		Hash:      storage.RefreshTokenKey(nextRaw),
		FamilyID:  fam.ID,
		ClientID:  client.ID,
		UserID:    old.UserID,
		Scope:     fam.Scope,
		CreatedAt: now,
		ExpiresAt: h.refreshExpiry(now, fam.ExpiresAt),
	}, now, h.opts.RefreshRetryWindow)
	switch {
	case err == nil:
	case errors.Is(err, storage.ErrAlreadyUsed):
		// The store revoked the family in the same transaction.
		h.refreshReused(ctx, old, client, ev)
		return nil, oauth.Wrap(oauth.InvalidGrant, "refresh token already used", fmt.Errorf("%w: %w", ErrRefreshReuse, err))
	case errors.Is(err, storage.ErrRevoked):
		return nil, oauth.Wrap(oauth.InvalidGrant, "refresh token revoked", err)
	case errors.Is(err, storage.ErrExpired):
		return nil, oauth.Wrap(oauth.InvalidGrant, "refresh token expired", err)
	case errors.Is(err, storage.ErrNotFound):
		return nil, oauth.Wrap(oauth.InvalidGrant, "invalid refresh token", err)
	default:
		return nil, storeError("rotate refresh token", err)
	}

	resp, err := h.mint(ctx, grantInfo{
		client:   client,
		user:     user,
		scope:    grantedStr,
		granted:  granted,
		context:  fam.Context,
		familyID: fam.ID,
	}, ev)
	if err != nil {
		return nil, err
	}
	resp.RefreshToken = nextRaw
	return &result{resp: resp, familyID: fam.ID}, nil
}

// refreshReused records a refresh token replay; the store has already
// revoked the family.
func (h *Handler) refreshReused(ctx context.Context, old *storage.RefreshToken, client *storage.Client, ev *audit.Event) {
	ctx = context.WithoutCancel(ctx)
	if err := h.opts.Auditor.Record(ctx, audit.Event{
		Time:      h.opts.Now(),
		Action:    audit.ActionRefreshReuse,
		Outcome:   audit.Failure,
		Reason:    "refresh token reused; token family revoked",
		UserID:    old.UserID,
		ClientID:  client.ID,
		SourceIP:  ev.SourceIP,
		UserAgent: ev.UserAgent,
		Scope:     old.Scope,
	}); err != nil {
		h.opts.Logger.ErrorContext(ctx, "audit of refresh token reuse failed", "error", err)
	}
}
