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

// Causes of authorization_code refusals (wrapped in the *oauth.Error).
var (
	ErrCodeReuse        = errors.New("grant: authorization code used twice")
	ErrCodeClient       = errors.New("grant: code issued to another client")
	ErrRedirectMismatch = errors.New("grant: redirect_uri differs from the authorization request")
	ErrPKCEMismatch     = errors.New("grant: code_verifier does not match the code_challenge")
)

const reasonCodeReuse = "authorization code reused"

// authorizationCode exchanges a code (RFC 6749 §4.1.3 with PKCE, RFC 7636).
// The code is consumed before anything else is checked against it, so a
// failed attempt (wrong verifier, wrong client) burns it.
func (h *Handler) authorizationCode(ctx context.Context, client *storage.Client, form url.Values, ev *audit.Event) (*result, error) {
	code := form.Get("code")
	if code == "" {
		return nil, oauth.Errorf(oauth.InvalidRequest, "code missing")
	}
	redirectURI := form.Get("redirect_uri")
	if redirectURI == "" {
		return nil, oauth.Errorf(oauth.InvalidRequest, "redirect_uri missing")
	}
	verifier := form.Get("code_verifier")
	if verifier == "" {
		return nil, oauth.Errorf(oauth.InvalidRequest, "code_verifier missing (PKCE is required)")
	}
	if !validVerifier(verifier) {
		return nil, oauth.Errorf(oauth.InvalidRequest, "code_verifier must be 43-128 characters of [A-Za-z0-9-._~]")
	}

	now := h.opts.Now()
	ac, err := h.opts.Codes.ConsumeAuthCode(ctx, storage.HashSecret(code), now)
	switch {
	case err == nil:
	case errors.Is(err, storage.ErrAlreadyUsed):
		if ac != nil {
			h.codeReused(ctx, ac, client, ev)
		}
		return nil, oauth.Wrap(oauth.InvalidGrant, "authorization code already used", fmt.Errorf("%w: %w", ErrCodeReuse, err))
	case errors.Is(err, storage.ErrNotFound):
		return nil, oauth.Wrap(oauth.InvalidGrant, "invalid authorization code", err)
	case errors.Is(err, storage.ErrExpired):
		return nil, oauth.Wrap(oauth.InvalidGrant, "authorization code expired", err)
	default:
		return nil, storeError("consume code", err)
	}
	ev.UserID = ac.UserID
	if ac.ClientID != client.ID {
		return nil, oauth.Wrap(oauth.InvalidGrant, "invalid authorization code",
			fmt.Errorf("%w: issued to %q, presented by %q", ErrCodeClient, ac.ClientID, client.ID))
	}
	if ac.RedirectURI != redirectURI {
		return nil, oauth.Wrap(oauth.InvalidGrant, "redirect_uri does not match the authorization request", ErrRedirectMismatch)
	}
	if !s256Matches(verifier, ac.CodeChallenge) {
		return nil, oauth.Wrap(oauth.InvalidGrant, "code_verifier does not match the code_challenge", ErrPKCEMismatch)
	}
	bnd := bindingFrom(ctx)
	if err := checkCodeBinding(ac, bnd); err != nil {
		return nil, err
	}
	if ac.FamilyID == "" {
		return nil, oauth.Wrap(oauth.ServerError, "internal error", errors.New("grant: authorization code has no token family"))
	}

	user, err := h.opts.Users.GetUser(ctx, ac.UserID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, oauth.Wrap(oauth.InvalidGrant, "the authorizing user no longer exists", err)
	} else if err != nil {
		return nil, storeError("get user", err)
	}
	granted, _, err := scope.ParseSet(ac.Scope)
	if err != nil {
		return nil, oauth.Wrap(oauth.ServerError, "internal error", fmt.Errorf("grant: stored code scope: %w", err))
	}

	fam := &storage.TokenFamily{
		ID:        ac.FamilyID,
		ClientID:  client.ID,
		UserID:    user.ID,
		Scope:     ac.Scope,
		Context:   ac.Context,
		CreatedAt: now,
		ExpiresAt: now.Add(h.opts.RefreshAbsolute),
	}
	fam.DPoPJKT, fam.CertThumbprint = familyBinding(client, bnd)
	fam.SessionHash = onlineSession(granted, ac)
	if err := h.opts.Tokens.CreateFamily(ctx, fam); errors.Is(err, storage.ErrConflict) {
		// A concurrent reuse of this code got there first and created the
		// family revoked.
		return nil, oauth.Wrap(oauth.InvalidGrant, "authorization code already used", fmt.Errorf("%w: family exists: %w", ErrCodeReuse, err))
	} else if err != nil {
		return nil, storeError("create family", err)
	}

	resp, err := h.mint(ctx, grantInfo{
		client:   client,
		user:     user,
		scope:    ac.Scope,
		granted:  granted,
		context:  ac.Context,
		familyID: fam.ID,
		idToken:  true,
		nonce:    ac.Nonce,
		authTime: ac.AuthTime,
		amr:      ac.AMR,
		acr:      ac.ACR,
	}, ev)
	if err != nil {
		return nil, err
	}
	if wantsRefresh(client, granted) && refreshable(granted, fam) {
		rt := secret.Token()
		if err := h.opts.Tokens.CreateRefreshToken(ctx, &storage.RefreshToken{
			Hash:      storage.HashSecret(rt),
			FamilyID:  fam.ID,
			ClientID:  client.ID,
			UserID:    user.ID,
			Scope:     ac.Scope,
			CreatedAt: now,
			ExpiresAt: h.refreshExpiry(now, fam.ExpiresAt),
		}); err != nil {
			return nil, storeError("create refresh token", err)
		}
		resp.RefreshToken = rt
	}
	return &result{resp: resp, familyID: fam.ID}, nil
}

// codeReused revokes every token issued from the code (RFC 6749 §4.1.2,
// RFC 9700 §4.2.4) and records the event. If the first exchange has not yet
// created the family, it is created already revoked, so that exchange fails.
func (h *Handler) codeReused(ctx context.Context, ac *storage.AuthCode, client *storage.Client, ev *audit.Event) {
	ctx = context.WithoutCancel(ctx)
	now := h.opts.Now()
	ev.UserID = ac.UserID
	err := h.revokeOrTombstone(ctx, ac, now)
	if err != nil {
		h.opts.Logger.ErrorContext(ctx, "revoking the family of a reused code failed", "family", ac.FamilyID, "error", err)
	}
	reason := reasonCodeReuse
	if err != nil {
		reason += "; revocation failed"
	}
	if aerr := h.opts.Auditor.Record(ctx, audit.Event{
		Time:      now,
		Action:    audit.ActionCodeReuse,
		Outcome:   audit.Failure,
		Reason:    reason,
		UserID:    ac.UserID,
		ClientID:  client.ID,
		SourceIP:  ev.SourceIP,
		UserAgent: ev.UserAgent,
		Patient:   ac.Context.Patient,
		Scope:     ac.Scope,
	}); aerr != nil {
		h.opts.Logger.ErrorContext(ctx, "audit of code reuse failed", "error", aerr)
	}
}

// Waiting for a concurrent first exchange to create the family of a reused
// code: at most reuseWaitAttempts polls reuseWaitStep apart, and only while
// the code was consumed less than reuseWaitWindow ago.
const (
	reuseWaitAttempts = 20
	reuseWaitStep     = 25 * time.Millisecond
	reuseWaitWindow   = 5 * time.Second
)

// revokeOrTombstone revokes the family of a reused code. The first exchange
// may still be between consuming the code and creating the family; if the
// family does not appear within a short wait, it is created already revoked
// (a tombstone), so that exchange then fails instead of issuing live tokens.
func (h *Handler) revokeOrTombstone(ctx context.Context, ac *storage.AuthCode, now time.Time) error {
	if ac.FamilyID == "" {
		return errors.New("grant: reused code has no token family")
	}
	recent := ac.UsedAt.IsZero() || now.Sub(ac.UsedAt) < reuseWaitWindow
	for attempt := 0; ; attempt++ {
		_, err := h.opts.Tokens.GetFamily(ctx, ac.FamilyID)
		if err == nil {
			return h.opts.Tokens.RevokeFamily(ctx, ac.FamilyID, now, reasonCodeReuse)
		}
		if !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		if !recent || attempt >= reuseWaitAttempts {
			break
		}
		time.Sleep(reuseWaitStep)
	}
	tomb := &storage.TokenFamily{
		ID:        ac.FamilyID,
		ClientID:  ac.ClientID,
		UserID:    ac.UserID,
		Scope:     ac.Scope,
		Context:   ac.Context,
		CreatedAt: now,
		ExpiresAt: now.Add(h.opts.RefreshAbsolute),
		RevokedAt: now,
		Reason:    reasonCodeReuse,
	}
	if err := h.opts.Tokens.CreateFamily(ctx, tomb); err != nil && !errors.Is(err, storage.ErrConflict) {
		return err
	}
	// Revoke explicitly: the first exchange may have created the family
	// meanwhile (ErrConflict above), or the backend may ignore RevokedAt.
	return h.opts.Tokens.RevokeFamily(ctx, ac.FamilyID, now, reasonCodeReuse)
}
