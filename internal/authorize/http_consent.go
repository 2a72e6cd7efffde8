package authorize

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/httpx"
	"github.com/fhirgate/fhirgate/internal/oauth"
	"github.com/fhirgate/fhirgate/internal/scope"
	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/web"
)

// scopeGroups arranges scopes for the consent page: one group per data
// type, in request order, then sign-in and access scopes.
func scopeGroups(set scope.Set, aud scope.Audience) []web.ScopeGroup {
	var groups []web.ScopeGroup
	index := map[string]int{}
	var general []web.ScopeItem
	for i, sc := range set {
		item := web.ScopeItem{ID: "scope-" + strconv.Itoa(i), Value: sc.String(), Description: scope.DescribeFor(sc, aud), Checked: true}
		if sc.Kind != scope.Resource {
			general = append(general, item)
			continue
		}
		label := typeLabel(sc.Type)
		j, ok := index[label]
		if !ok {
			j = len(groups)
			index[label] = j
			groups = append(groups, web.ScopeGroup{Label: label})
		}
		groups[j].Scopes = append(groups[j].Scopes, item)
	}
	if len(general) > 0 {
		groups = append(groups, web.ScopeGroup{Label: "Sign-in and access", Scopes: general})
	}
	return groups
}

// typeLabel names a FHIR resource type in plain language for a group
// heading, with the wording scope.Describe uses ("Observations (such as lab
// results and vital signs)"); the type name when there is none.
func typeLabel(t string) string {
	if t == "*" {
		return "All health data"
	}
	d := scope.DescribeFor(scope.Scope{Kind: scope.Resource, Context: scope.Patient, Type: t, Perms: scope.Read}, scope.ForPatient)
	noun, ok := strings.CutPrefix(d, "Read your ")
	if !ok || noun == "" {
		return t
	}
	return strings.ToUpper(noun[:1]) + noun[1:]
}

// consentPage asks the user to approve the scopes the request may get.
func (h *Handler) consentPage(w http.ResponseWriter, r *http.Request) {
	ar, err := h.loadRequest(r, r.URL.Query().Get("req"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	sess, user, ok := h.signedIn(w, r, ar)
	if !ok {
		return
	}
	p, err := h.makePlan(r.Context(), ar, user, true)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if p.step == stepPatient {
		redirect(w, r, pageURL(PathPatient, ar.ID))
		return
	}
	aud := scope.ForClinician
	if user.Role == storage.RolePatient {
		aud = scope.ForPatient
	}
	page := web.ConsentPage{Title: "Allow access", ReqID: ar.ID, CSRF: sess.CSRFToken, ClientName: p.client.Name,
		LogoURL: web.SafeLogoURL(p.client.LogoURI), UserName: user.Username, Groups: scopeGroups(p.candidate, aud),
		Offline: p.candidate.Has(scope.OfflineAccess)}
	if page.ClientName == "" {
		page.ClientName = p.client.ID
	}
	if p.patient != "" {
		page.PatientName = "Patient/" + p.patient
		if pt, err := h.opts.Patients.GetPatient(r.Context(), p.patient); err == nil && pt.Name != "" {
			page.PatientName = pt.Name
		}
		if user.Role == storage.RolePatient {
			page.PatientName = "you"
		}
	}
	// form-action must admit the client's origin: browsers apply it to the
	// redirect that follows the form submission.
	httpx.PageSecurityHeaders(w, cspOrigin(ar.RedirectURI))
	h.pages.Write(w, http.StatusOK, web.PageConsent, page)
}

// consentSubmit records the decision, then issues a code or reports access_denied.
func (h *Handler) consentSubmit(w http.ResponseWriter, r *http.Request) {
	if !h.parsePost(w, r) {
		return
	}
	ar, err := h.loadRequest(r, r.PostForm.Get("req"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	sess, user, ok := h.signedIn(w, r, ar)
	if !ok || !h.checkCSRF(w, r, sess) {
		return
	}
	ctx := r.Context()
	p, err := h.makePlan(ctx, ar, user, true)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if p.step == stepPatient {
		redirect(w, r, pageURL(PathPatient, ar.ID))
		return
	}
	ev := h.event(r, audit.ActionConsentDenied)
	ev.UserID, ev.FHIRUser, ev.ClientID, ev.Patient = user.ID, user.FHIRUser, ar.ClientID, p.patient
	granted := Checked(p.candidate, r.PostForm["scope"])
	decision := r.PostForm.Get("decision")
	if decision != "approve" || len(granted) == 0 {
		if _, err := h.consumeAuthRequest(ctx, ar.ID, user.ID, h.opts.Now()); err != nil {
			h.fail(w, r, err)
			return
		}
		ev.Outcome, ev.Reason = audit.Failure, "user denied access"
		if decision == "approve" {
			ev.Reason = "user approved no scopes"
		}
		h.record(ctx, ev)
		h.fail(w, r, redirectErr(ar, oauth.AccessDenied, "the user denied access"))
		return
	}
	now := h.opts.Now()
	c := &storage.Consent{UserID: user.ID, ClientID: ar.ClientID, Scope: granted.String(), CreatedAt: now, UpdatedAt: now}
	if old, err := h.opts.Consents.GetConsent(ctx, user.ID, ar.ClientID); err == nil {
		c.CreatedAt = old.CreatedAt
	}
	if err := h.opts.Consents.PutConsent(ctx, c); err != nil {
		h.fail(w, r, err)
		return
	}
	ev.Action, ev.Outcome, ev.Scope = audit.ActionConsentGranted, audit.Success, c.Scope
	if err := h.opts.Auditor.Record(ctx, ev); err != nil {
		h.fail(w, r, err) // fail closed
		return
	}
	ev.Time = h.opts.Now()
	to, err := h.issueCode(ctx, ev, ar, user, sess, granted, p.patient)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	redirect(w, r, to)
}
