package authorize

import (
	"context"
	"errors"
	"net/http"
	"regexp"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/httpx"
	"github.com/fhirgate/fhirgate/internal/launch"
	"github.com/fhirgate/fhirgate/internal/session"
	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/web"
)

// clientName is the display name of ar's client ("" if it is gone).
func (h *Handler) clientName(ctx context.Context, clientID string) string {
	c, err := h.opts.Clients.GetClient(ctx, clientID)
	if err != nil {
		return ""
	}
	if c.Name != "" {
		return c.Name
	}
	return c.ID
}

// loginPage shows the sign-in form for an authorization request.
func (h *Handler) loginPage(w http.ResponseWriter, r *http.Request) {
	ar, err := h.loadRequest(r, r.URL.Query().Get("req"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.renderLogin(w, r, ar, http.StatusOK, "", "")
}

func (h *Handler) renderLogin(w http.ResponseWriter, r *http.Request, ar *storage.AuthRequest, status int, username, msg string) {
	httpx.PageSecurityHeaders(w, cspOrigin(ar.RedirectURI))
	csrf := h.opts.Sessions.LoginCSRF(w, r)
	h.pages.Write(w, status, web.PageLogin, web.LoginPage{Title: "Sign in", ReqID: ar.ID, CSRF: csrf,
		ClientName: h.clientName(r.Context(), ar.ClientID), Username: username, Error: msg})
}

// loginSubmit checks the credentials, starts a session and moves the request on.
func (h *Handler) loginSubmit(w http.ResponseWriter, r *http.Request) {
	if !h.parsePost(w, r) {
		return
	}
	ctx := r.Context()
	if err := h.opts.Sessions.CheckLoginCSRF(r, r.PostForm.Get("csrf")); err != nil {
		ev := h.event(r, audit.ActionLogin)
		ev.Outcome, ev.Reason = audit.Failure, "CSRF token missing or invalid"
		h.record(ctx, ev)
		h.errorPage(w, http.StatusForbidden, "This form has expired", "Go back, reload the page and try again.")
		return
	}
	ar, err := h.loadRequest(r, r.PostForm.Get("req"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	username := r.PostForm.Get("username")
	user, err := h.opts.Authenticator.Authenticate(ctx, session.Attempt{Username: username,
		Password: r.PostForm.Get("password"), SourceIP: httpx.ClientIP(r), UserAgent: r.UserAgent(), ClientID: ar.ClientID})
	if msg := session.Message(err); msg != "" {
		h.renderLogin(w, r, ar, http.StatusOK, username, msg)
		return
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	// A fresh session on every sign-in (no fixation); the old one ends.
	if _, old, oerr := h.opts.Sessions.FromRequest(r); oerr == nil {
		_ = h.opts.Sessions.End(ctx, old)
	}
	value, sess, err := h.opts.Sessions.Start(ctx, user.ID)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.opts.Sessions.SetCookie(w, value)
	ar, err = h.opts.AuthRequests.UpdateAuthRequest(ctx, ar.ID, func(a *storage.AuthRequest) error {
		if !h.opts.Now().Before(a.ExpiresAt) {
			return storage.ErrExpired
		}
		if a.UserID != user.ID {
			a.Patient = "" // a patient chosen by someone else does not carry over
		}
		a.UserID = user.ID
		return nil
	})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.proceed(w, r, ar, sess, user, "")
}

var birthDate = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}$`)

// pickerPage lets a clinician search the directory for the patient to use.
func (h *Handler) pickerPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ar, err := h.loadRequest(r, q.Get("req"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	sess, user, ok := h.signedIn(w, r, ar)
	if !ok {
		return
	}
	if user.Role == storage.RolePatient {
		h.proceed(w, r, ar, sess, user, "")
		return
	}
	name, bd := q.Get("name"), q.Get("birthdate")
	page := web.PickerPage{Title: "Choose a patient", ReqID: ar.ID, CSRF: sess.CSRFToken,
		ClientName: h.clientName(r.Context(), ar.ClientID), Query: name, BirthDate: bd, Searched: true}
	status := http.StatusOK
	if bd != "" && !birthDate.MatchString(bd) {
		page.Error, status = "Enter the birth date as YYYY-MM-DD.", http.StatusBadRequest
	} else if len(name) > 200 {
		page.Error, status = "The name is too long.", http.StatusBadRequest
	} else {
		limit := pickerResultLimit
		if bd != "" {
			limit = pickerScanLimit // the birth date filters after the name search
		}
		found, err := h.opts.Patients.SearchPatients(r.Context(), name, limit)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		for _, p := range found {
			if bd != "" && p.BirthDate != bd {
				continue
			}
			if len(page.Patients) == pickerResultLimit {
				break
			}
			page.Patients = append(page.Patients, web.PatientOption{Ref: "Patient/" + p.ID, Name: p.Name, BirthDate: p.BirthDate})
		}
	}
	httpx.PageSecurityHeaders(w, cspOrigin(ar.RedirectURI))
	h.pages.Write(w, status, web.PagePicker, page)
}

// pickerSubmit records the chosen patient and moves the request on.
func (h *Handler) pickerSubmit(w http.ResponseWriter, r *http.Request) {
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
	if user.Role == storage.RolePatient {
		h.proceed(w, r, ar, sess, user, "") // a patient never picks; they get their own record
		return
	}
	ctx := r.Context()
	id, err := launch.BareID(r.PostForm.Get("patient"), "Patient")
	if err != nil || id == "" {
		redirect(w, r, pageURL(PathPatient, ar.ID)) // nothing (valid) chosen: show the picker again
		return
	}
	if _, err := h.opts.Patients.GetPatient(ctx, id); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			redirect(w, r, pageURL(PathPatient, ar.ID))
			return
		}
		h.fail(w, r, err)
		return
	}
	ar, err = h.opts.AuthRequests.UpdateAuthRequest(ctx, ar.ID, func(a *storage.AuthRequest) error {
		if !h.opts.Now().Before(a.ExpiresAt) {
			return storage.ErrExpired
		}
		if a.UserID != user.ID {
			return errWrongUser
		}
		a.Patient = id
		return nil
	})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.proceed(w, r, ar, sess, user, "")
}

// logout ends the session (POST only, CSRF-checked when a session exists).
func (h *Handler) logout(w http.ResponseWriter, r *http.Request) {
	if !h.parsePost(w, r) {
		return
	}
	sess, _, err := h.opts.Sessions.FromRequest(r)
	if err == nil && !h.checkCSRF(w, r, sess) {
		return
	}
	ended, err := h.opts.Sessions.Logout(w, r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if ended != nil {
		ev := h.event(r, audit.ActionLogout)
		ev.Outcome, ev.UserID = audit.Success, ended.UserID
		h.record(r.Context(), ev)
	}
	if id := r.PostForm.Get("req"); id != "" {
		if ar, err := h.loadRequest(r, id); err == nil {
			redirect(w, r, pageURL(PathLogin, ar.ID))
			return
		}
	}
	httpx.PageSecurityHeaders(w)
	h.pages.Write(w, http.StatusOK, web.PageMessage, web.MessagePage{Title: "Signed out", Message: "You have signed out."})
}
