// Package account serves the signed-in person's own pages: a sign-in page
// outside any authorization request, the connected-apps page (every app
// with standing access, its scopes in plain language, when it last used
// them, and a Revoke button that deletes the consent and revokes the
// app's token families, so the gateway refuses its tokens within the
// revocation polling bound), and for patients the access report from the
// audit trail.
package account

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/audit/chain"
	"github.com/fhirgate/fhirgate/internal/audit/export"
	"github.com/fhirgate/fhirgate/internal/scope"
	"github.com/fhirgate/fhirgate/internal/session"
	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/web"
)

// MFAChecker reports whether a user has a confirmed second factor.
type MFAChecker interface {
	Enrolled(ctx context.Context, userID string) (bool, error)
}

// Options configures the account pages.
type Options struct {
	Sessions      *session.Manager
	Authenticator *session.Authenticator
	Users         storage.Users
	Clients       storage.Clients
	Apps          storage.AppAccesses
	Consents      storage.Consents // RevokeConsent ends an app's access
	// MFA and RequireMFAFor: users with a second factor, and users of these
	// roles, must pass it before these pages (nil MFA: never asked).
	MFA           MFAChecker
	RequireMFAFor []storage.Role
	// Audit is the queryable trail for the access report and "last used";
	// optional (the report then says it is not available).
	Audit   export.Querier
	Auditor audit.Auditor
	Logger  *slog.Logger
	Now     func() time.Time
}

// Handler serves the account pages.
type Handler struct {
	opts  Options
	pages *web.Pages
}

// New validates opts and fills defaults.
func New(opts Options) (*Handler, error) {
	var errs []error
	need := func(ok bool, name string) {
		if !ok {
			errs = append(errs, fmt.Errorf("account: Options.%s is required", name))
		}
	}
	need(opts.Sessions != nil, "Sessions")
	need(opts.Authenticator != nil, "Authenticator")
	need(opts.Users != nil, "Users")
	need(opts.Clients != nil, "Clients")
	need(opts.Apps != nil, "Apps")
	need(opts.Consents != nil, "Consents")
	need(opts.Auditor != nil, "Auditor")
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	pages, err := web.Load()
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Handler{opts: opts, pages: pages}, nil
}

// NeedsMFA reports whether user must pass a second factor: they have one,
// or their role is in requireFor. A nil checker never asks.
func NeedsMFA(ctx context.Context, m MFAChecker, requireFor []storage.Role, user *storage.User) (enrolled, needed bool, err error) {
	if m == nil {
		return false, false, nil
	}
	enrolled, err = m.Enrolled(ctx, user.ID)
	if err != nil {
		return false, false, fmt.Errorf("account: second factor: %w", err)
	}
	return enrolled, enrolled || slices.Contains(requireFor, user.Role), nil
}

// lastUsedEvents are the events that show an app using its access.
var lastUsedEvents = []audit.Action{audit.ActionFHIRRequest, audit.ActionFHIRFiltered, audit.ActionTokenIssued,
	audit.ActionTokenRefreshed, audit.ActionUserinfo}

// accessTokenReach bounds how long after its newest token an app can still
// act: access tokens live at most an hour (plus skew).
const accessTokenReach = 2 * time.Hour

// lastUsed is the newest audited use of the app by userID, searched from
// the app's newest token on (its tokens cannot act later than
// accessTokenReach after that); it falls back to issued.
func (h *Handler) lastUsed(ctx context.Context, userID, clientID string, issued time.Time) time.Time {
	if h.opts.Audit == nil || issued.IsZero() {
		return issued
	}
	last := issued
	f := chain.Filter{User: userID, Client: clientID, Actions: lastUsedEvents, Since: issued,
		Until: issued.Add(accessTokenReach), Limit: chain.MaxLimit}
	for range 5 { // bounded: at most 5000 entries
		page, err := h.opts.Audit.Query(ctx, f)
		if err != nil {
			h.opts.Logger.WarnContext(ctx, "audit query for last use failed", slog.Any("err", err))
			return last
		}
		if n := len(page.Entries); n > 0 && page.Entries[n-1].Event.Time.After(last) {
			last = page.Entries[n-1].Event.Time
		}
		if page.Next == "" {
			break
		}
		f.After = page.Next
	}
	return last
}

// apps builds the connected-apps rows of user.
func (h *Handler) apps(ctx context.Context, user *storage.User) ([]web.AppRow, error) {
	list, err := h.opts.Apps.ListAppAccess(ctx, user.ID, h.opts.Now())
	if err != nil {
		return nil, fmt.Errorf("account: list apps: %w", err)
	}
	aud := scope.ForClinician
	if user.Role == storage.RolePatient {
		aud = scope.ForPatient
	}
	rows := make([]web.AppRow, 0, len(list))
	for _, a := range list {
		row := web.AppRow{ClientID: a.ClientID, Name: a.ClientID, Since: a.ConsentedAt, LiveCount: a.LiveFamilies,
			LastUsed: h.lastUsed(ctx, user.ID, a.ClientID, a.LastIssued)}
		if c, err := h.opts.Clients.GetClient(ctx, a.ClientID); err == nil {
			if c.Name != "" {
				row.Name = c.Name
			}
			row.LogoURL = web.SafeLogoURL(c.LogoURI)
		}
		set, _, _ := scope.ParseSet(a.Scope)
		for _, sc := range set {
			row.Scopes = append(row.Scopes, scope.DescribeFor(sc, aud))
		}
		row.Offline = set.Has(scope.OfflineAccess)
		rows = append(rows, row)
	}
	return rows, nil
}

// revoke ends clientID's access for userID: the consent goes and every
// token family is revoked (the gateway refuses the access tokens from its
// next revocation poll on).
func (h *Handler) revoke(ctx context.Context, ev audit.Event, userID, clientID string) error {
	err := h.opts.Consents.RevokeConsent(ctx, userID, clientID, h.opts.Now(), "revoked by the user on the connected apps page")
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("account: revoke: %w", err)
	}
	ev.Action, ev.ClientID, ev.UserID = audit.ActionConsentRevoked, clientID, userID
	ev.Outcome = audit.Success
	if errors.Is(err, storage.ErrNotFound) {
		ev.Outcome, ev.Reason = audit.Failure, "nothing to revoke"
	}
	if aerr := h.opts.Auditor.Record(ctx, ev); aerr != nil {
		h.opts.Logger.ErrorContext(ctx, "audit write failed", slog.Any("err", aerr))
	}
	return err
}

// what says an audited access in plain language.
func what(a string, interaction string) string {
	switch audit.Action(a) {
	case audit.ActionFHIRRequest, audit.ActionFHIRFiltered:
		switch interaction {
		case "read", "vread":
			return "Opened"
		case "search-type", "search-system", "search-compartment":
			return "Searched"
		case "create":
			return "Added"
		case "update", "patch":
			return "Changed"
		case "delete":
			return "Deleted"
		case "history-instance", "history-type":
			return "Looked at the history of"
		}
		return "Accessed"
	case audit.ActionTokenIssued:
		return "Was given access"
	case audit.ActionConsentGranted:
		return "Was allowed access"
	case audit.ActionConsentRevoked:
		return "Had its access revoked"
	}
	return a
}
