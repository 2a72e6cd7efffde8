package revoke

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/storage"
)

// ConsentStore revokes a consent and its token families in one transaction.
type ConsentStore interface {
	RevokeConsent(ctx context.Context, userID, clientID string, now time.Time, reason string) error
}

// Consents revokes what a user approved for a client: the remembered
// consent is deleted and every token family of that user and client is
// revoked (refresh tokens stop rotating, access tokens reach the revocation
// list), then the act is audited as consent.revoked. The CLI
// (`fhirgate consents revoke`) and the account pages use it.
type Consents struct {
	Store   ConsentStore
	Auditor audit.Auditor
	Now     func() time.Time
}

// Revoke revokes userID's consent for clientID. by says who acted (for
// example "cli" or the signed-in user's id), recorded in the audit event's
// source. It returns storage.ErrNotFound (wrapped) when there was neither a
// consent nor a live token family to revoke; that attempt is audited too.
func (c Consents) Revoke(ctx context.Context, userID, clientID, by string) error {
	if c.Store == nil || c.Auditor == nil {
		return fmt.Errorf("%w: Consents needs Store and Auditor", ErrOptions)
	}
	if userID == "" || clientID == "" {
		return fmt.Errorf("revoke: consent: user and client are required")
	}
	now := time.Now()
	if c.Now != nil {
		now = c.Now()
	}
	ctx = context.WithoutCancel(ctx)
	err := c.Store.RevokeConsent(ctx, userID, clientID, now, ReasonConsentRevoked)
	ev := audit.Event{
		Time:     now,
		Action:   audit.ActionConsentRevoked,
		Outcome:  audit.Success,
		Reason:   "consent deleted and token families revoked by " + by,
		UserID:   userID,
		ClientID: clientID,
		SourceIP: by,
	}
	switch {
	case errors.Is(err, storage.ErrNotFound):
		ev.Outcome, ev.Reason = audit.Failure, "nothing to revoke (no consent, no live tokens); requested by "+by
	case err != nil:
		ev.Outcome, ev.Reason = audit.Failure, "revocation failed; requested by "+by
	}
	if aerr := c.Auditor.Record(ctx, ev); aerr != nil {
		return errors.Join(err, fmt.Errorf("revoke: audit consent revocation: %w", aerr))
	}
	if err != nil {
		return fmt.Errorf("revoke: consent: %w", err)
	}
	return nil
}
