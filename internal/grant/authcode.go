package grant

import (
	"context"
	"errors"
	"fmt"
	"net/url"

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
	bnd := bindingFrom(ctx)
	var (
		fam     *storage.TokenFamily
		granted scope.Set
		rt      string
		user    *storage.User
	)
	// The code is consumed before anything is checked against it, so a failed
	// attempt (wrong verifier, wrong client) burns it. Consumption, the token
	// family and the refresh token are written in one transaction, so a
	// reused code always finds the family of an earlier successful exchange.
	// The store reads the authorizing user with the code, so a user deleted
	// or suspended since the login gets no tokens and no token family.
	ac, durable, err := h.opts.Codes.RedeemAuthCode(ctx, storage.HashSecret(code), now, func(ac *storage.AuthCode, u *storage.User) (*storage.Redemption, error) {
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
		if err := checkCodeBinding(ac, bnd); err != nil {
			return nil, err
		}
		if u == nil {
			return nil, oauth.Wrap(oauth.InvalidGrant, "the authorizing user no longer exists",
				fmt.Errorf("grant: user %q: %w", ac.UserID, storage.ErrNotFound))
		}
		if h.suspended("", u.ID) {
			return nil, errUserSuspended()
		}
		user = u
		var err error
		if granted, _, err = scope.ParseSet(ac.Scope); err != nil {
			return nil, oauth.Wrap(oauth.ServerError, "internal error", fmt.Errorf("grant: stored code scope: %w", err))
		}
		fam = &storage.TokenFamily{
			ID:        ac.FamilyID,
			ClientID:  client.ID,
			UserID:    ac.UserID,
			Scope:     ac.Scope,
			Context:   ac.Context,
			CreatedAt: now,
			ExpiresAt: now.Add(h.opts.RefreshAbsolute),
		}
		fam.DPoPJKT, fam.CertThumbprint = familyBinding(client, bnd)
		fam.SessionHash = onlineSession(granted, ac)
		red := &storage.Redemption{Family: fam}
		if wantsRefresh(client, granted) && refreshable(granted, fam) {
			rt = secret.TimedToken(now)
			red.Refresh = &storage.RefreshToken{
				Hash:      storage.RefreshTokenKey(rt),
				FamilyID:  fam.ID,
				ClientID:  client.ID,
				UserID:    ac.UserID,
				Scope:     ac.Scope,
				CreatedAt: now,
				ExpiresAt: h.refreshExpiry(now, fam.ExpiresAt),
			}
		}
		return red, nil
	})
	if ac != nil {
		ev.UserID = ac.UserID
	}
	var oe *oauth.Error
	switch {
	case err == nil:
	case errors.As(err, &oe):
		return nil, oe
	case errors.Is(err, storage.ErrAlreadyUsed):
		if ac != nil {
			h.codeReused(ctx, ac, client, ev)
		}
		return nil, oauth.Wrap(oauth.InvalidGrant, "authorization code already used", fmt.Errorf("%w: %w", ErrCodeReuse, err))
	case errors.Is(err, storage.ErrNotFound):
		return nil, oauth.Wrap(oauth.InvalidGrant, "invalid authorization code", err)
	case errors.Is(err, storage.ErrExpired):
		return nil, oauth.Wrap(oauth.InvalidGrant, "authorization code expired", err)
	case errors.Is(err, storage.ErrBadRedemption):
		return nil, oauth.Wrap(oauth.ServerError, "internal error", fmt.Errorf("grant: authorization code has no token family: %w", err))
	default:
		return nil, storeError("redeem code", err)
	}

	// The tokens are signed while the store may still be committing the
	// redemption (durable); nothing leaves before that commit has succeeded.
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
	if durable != nil {
		if derr := durable(); derr != nil {
			return nil, storeError("redeem code", derr)
		}
	}
	if err != nil {
		return nil, err
	}
	resp.RefreshToken = rt
	return &result{resp: resp, familyID: fam.ID}, nil
}

// codeReused revokes every token issued from the code (RFC 6749 §4.1.2,
// RFC 9700 §4.2.4) and records the event. If the first exchange has not yet
// created the family, it is created already revoked, so that exchange fails.
func (h *Handler) codeReused(ctx context.Context, ac *storage.AuthCode, client *storage.Client, ev *audit.Event) {
	ctx = context.WithoutCancel(ctx)
	now := h.opts.Now()
	ev.UserID = ac.UserID
	// The family exists if an earlier exchange of this code succeeded (it was
	// written with the code's consumption); if none did, nothing was issued.
	err := h.opts.Tokens.RevokeFamily(ctx, ac.FamilyID, now, reasonCodeReuse)
	if errors.Is(err, storage.ErrNotFound) {
		err = nil
	}
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
