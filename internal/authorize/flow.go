package authorize

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/launch"
	"github.com/fhirgate/fhirgate/internal/oauth"
	"github.com/fhirgate/fhirgate/internal/scope"
	"github.com/fhirgate/fhirgate/internal/secret"
	"github.com/fhirgate/fhirgate/internal/storage"
)

// step is what the browser must do next for an authorization request.
type step int

const (
	stepPatient step = iota + 1 // pick a patient
	stepConsent                 // approve scopes
	stepIssue                   // nothing left: issue the code
)

// plan is the state of an authorization request for a signed-in user.
type plan struct {
	step      step
	client    *storage.Client
	candidate scope.Set // what may be granted before the user's choice
	patient   string    // bare patient id of the context ("" if none)
}

// redirectErr builds a RedirectError for ar.
func redirectErr(ar *storage.AuthRequest, code oauth.ErrorCode, desc string) *RedirectError {
	return &RedirectError{ClientID: ar.ClientID, RedirectURI: ar.RedirectURI, State: ar.State, Err: oauth.Errorf(code, "%s", desc)}
}

// ownPatient is the bare Patient id of a patient user's fhirUser, or "".
func ownPatient(u *storage.User) string {
	id, err := launch.BareID(u.FHIRUser, "Patient")
	if err != nil || id == "" || u.FHIRUser == id { // must be a Patient/ reference
		return ""
	}
	return id
}

// makePlan decides the next step of ar for user. forceConsent shows the
// consent page even when a remembered consent covers the request.
func (h *Handler) makePlan(ctx context.Context, ar *storage.AuthRequest, user *storage.User, forceConsent bool) (*plan, error) {
	client, err := h.opts.Clients.GetClient(ctx, ar.ClientID)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && client.Disabled) {
		return nil, &PageError{Message: "The application is no longer registered with this server."}
	}
	if err != nil {
		return nil, fmt.Errorf("authorize: get client: %w", err)
	}
	requested, _, err := scope.ParseSet(ar.Scope)
	if err != nil {
		return nil, fmt.Errorf("authorize: stored scope: %w", err)
	}
	p := &plan{client: client}
	p.candidate = Grant(requested, clientScopes(client), h.roleScopes[user.Role], ar.Launch != nil)
	if ar.Launch == nil || ar.Launch.Encounter == "" {
		p.candidate = without(p.candidate, scope.LaunchEncounter)
	}
	if len(p.candidate) == 0 {
		return nil, redirectErr(ar, oauth.AccessDenied, "none of the requested scopes may be granted to this user")
	}
	needPatient := p.candidate.Has(scope.LaunchPatient) || hasPatientResource(p.candidate)
	if ar.Launch != nil {
		p.patient = ar.Launch.Patient
	}
	if user.Role == storage.RolePatient {
		own := ownPatient(user)
		switch {
		case p.patient != "" && p.patient != own:
			return nil, redirectErr(ar, oauth.AccessDenied, "the launch names another patient's record")
		case needPatient && own == "":
			return nil, redirectErr(ar, oauth.AccessDenied, "this account is not linked to a patient record")
		case needPatient:
			p.patient = own
		}
	} else if needPatient && p.patient == "" {
		p.patient = ar.Patient
		if p.patient == "" {
			p.step = stepPatient
			return p, nil
		}
	}
	p.step = stepConsent
	if !forceConsent {
		c, err := h.opts.Consents.GetConsent(ctx, user.ID, client.ID)
		switch {
		case err == nil:
			if approved, _, perr := scope.ParseSet(c.Scope); perr == nil && scope.Covers(approved, p.candidate) {
				p.step = stepIssue
			}
		case !errors.Is(err, storage.ErrNotFound):
			return nil, fmt.Errorf("authorize: get consent: %w", err)
		}
	}
	return p, nil
}

// launchContext is the context bound to a code: the EHR launch's, reduced
// to what the granted scopes call for, or the standalone patient.
func launchContext(ar *storage.AuthRequest, granted scope.Set, patient string) storage.LaunchContext {
	var lc storage.LaunchContext
	ehr := ar.Launch != nil
	if ehr {
		lc = *ar.Launch
	} else {
		lc.NeedPatientBanner = true // standalone: no EHR banner around the app
	}
	wantPatient := granted.Has(scope.LaunchPatient) || hasPatientResource(granted) || (ehr && granted.Has(scope.Launch))
	wantEncounter := granted.Has(scope.LaunchEncounter) || (ehr && granted.Has(scope.Launch))
	lc.Patient = ""
	if wantPatient {
		lc.Patient = patient
	}
	if !wantEncounter {
		lc.Encounter = ""
	}
	if !ehr || !granted.Has(scope.Launch) {
		lc.FHIRContext = nil
	}
	return lc
}

// consumeAuthRequest ends ar atomically so that one request yields at most
// one code (or one error redirect), even if a form is submitted twice.
func (h *Handler) consumeAuthRequest(ctx context.Context, id, userID string, now time.Time) (*storage.AuthRequest, error) {
	ar, err := h.opts.AuthRequests.UpdateAuthRequest(ctx, id, func(r *storage.AuthRequest) error {
		if !now.Before(r.ExpiresAt) {
			return storage.ErrExpired
		}
		if userID != "" && r.UserID != userID {
			return errWrongUser
		}
		r.ExpiresAt = now // no further GetAuthRequest succeeds
		return nil
	})
	if err != nil {
		return nil, err
	}
	_ = h.opts.AuthRequests.DeleteAuthRequest(ctx, id)
	return ar, nil
}

var errWrongUser = errors.New("authorize: request belongs to another user")

// issueCode stores a code for ar and returns the redirect carrying it. The
// code remembers sess (its auth_time, and its hash: online_access token
// families end with that login session).
func (h *Handler) issueCode(ctx context.Context, ev audit.Event, ar *storage.AuthRequest, user *storage.User,
	sess *storage.Session, granted scope.Set, patient string) (string, error) {
	now := h.opts.Now()
	ar, err := h.consumeAuthRequest(ctx, ar.ID, user.ID, now)
	if err != nil {
		return "", err
	}
	code := secret.Token()
	lc := launchContext(ar, granted, patient)
	ac := &storage.AuthCode{
		Hash:          storage.HashSecret(code),
		ClientID:      ar.ClientID,
		RedirectURI:   ar.RedirectURI,
		CodeChallenge: ar.CodeChallenge,
		Scope:         granted.String(),
		UserID:        user.ID,
		Nonce:         ar.Nonce,
		DPoPJKT:       ar.DPoPJKT,
		AuthTime:      sess.AuthTime,
		SessionHash:   sess.Hash,
		AMR:           sess.AMR,
		ACR:           sess.ACR,
		Context:       lc,
		FamilyID:      secret.TimeID(now),
		CreatedAt:     now,
		ExpiresAt:     now.Add(h.opts.CodeTTL),
	}
	if err := h.opts.AuthCodes.CreateAuthCode(ctx, ac); err != nil {
		return "", fmt.Errorf("authorize: store code: %w", err)
	}
	ev.Action, ev.Outcome, ev.Scope, ev.Patient = audit.ActionCodeIssued, audit.Success, ac.Scope, lc.Patient
	if err := h.opts.Auditor.Record(ctx, ev); err != nil {
		// Fail closed: the code exists but is never handed out.
		return "", fmt.Errorf("authorize: audit code issued: %w", err)
	}
	return h.successURL(ar.RedirectURI, code, ar.State), nil
}
