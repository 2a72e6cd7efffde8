package authorize

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/httpx"
	"github.com/fhirgate/fhirgate/internal/oauth"
	"github.com/fhirgate/fhirgate/internal/session"
	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/web"
)

// Page paths.
const (
	PathAuthorize = "/authorize"
	PathLogin     = "/authorize/login"
	PathPatient   = "/authorize/patient"
	PathConsent   = "/authorize/consent"
	PathLogout    = "/logout"
	// PathContinue resumes a request after the second-factor pages.
	PathContinue = "/authorize/continue"
	// Second-factor pages (package mfa).
	pathMFAVerify = "/mfa"
	pathMFAEnrol  = "/mfa/enrol"
)

// Register adds the endpoint, the pages and the static assets to mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET "+PathAuthorize, h.authorize)
	mux.HandleFunc("POST "+PathAuthorize, h.authorize)
	mux.HandleFunc("GET "+PathLogin, h.loginPage)
	mux.HandleFunc("POST "+PathLogin, h.loginSubmit)
	mux.HandleFunc("GET "+PathPatient, h.pickerPage)
	mux.HandleFunc("POST "+PathPatient, h.pickerSubmit)
	mux.HandleFunc("GET "+PathConsent, h.consentPage)
	mux.HandleFunc("POST "+PathConsent, h.consentSubmit)
	mux.HandleFunc("POST "+PathLogout, h.logout)
	mux.HandleFunc("GET "+PathContinue, h.resume)
	web.Register(mux)
}

// event starts an audit event for r.
func (h *Handler) event(r *http.Request, action audit.Action) audit.Event {
	return audit.Event{Time: h.opts.Now(), Action: action, SourceIP: httpx.ClientIP(r), UserAgent: r.UserAgent()}
}

func (h *Handler) record(ctx context.Context, ev audit.Event) {
	if err := h.opts.Auditor.Record(ctx, ev); err != nil {
		h.opts.Logger.ErrorContext(ctx, "audit write failed", slog.String("action", string(ev.Action)), slog.Any("err", err))
	}
}

// redirect sends a 303: the browser follows it with GET, never re-posting
// the form (RFC 9700 §4.12).
func redirect(w http.ResponseWriter, r *http.Request, to string) {
	httpx.NoStore(w)
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, to, http.StatusSeeOther)
}

func pageURL(path, reqID string) string {
	return path + "?req=" + url.QueryEscape(reqID)
}

// errorPage renders an error page (never a redirect).
func (h *Handler) errorPage(w http.ResponseWriter, status int, title, msg string) {
	httpx.PageSecurityHeaders(w)
	h.pages.Write(w, status, web.PageError, web.ErrorPage{Title: title, Message: msg})
}

// fail answers err: a page for *PageError and unexpected errors, a redirect
// to the client for *RedirectError. Refusals are audited.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	ctx := r.Context()
	ev := h.event(r, audit.ActionAuthorize)
	ev.Outcome = audit.Failure
	var pe *PageError
	var re *RedirectError
	switch {
	case errors.As(err, &re):
		ev.ClientID, ev.Reason = re.ClientID, string(re.Err.Code)+": "+re.Err.Description
		h.record(ctx, ev)
		h.opts.Logger.InfoContext(ctx, "authorization refused", slog.String("client_id", re.ClientID),
			slog.String("error", string(re.Err.Code)), slog.String("description", re.Err.Description), slog.Any("cause", re.Err.Cause))
		redirect(w, r, h.errorURL(re.RedirectURI, re.State, re.Err))
	case errors.As(err, &pe):
		ev.Reason = "page: " + pe.Message
		h.record(ctx, ev)
		h.opts.Logger.InfoContext(ctx, "authorization refused", slog.String("reason", pe.Message), slog.Any("cause", pe.Cause))
		h.errorPage(w, http.StatusBadRequest, "This request cannot be completed", pe.Message)
	case errors.Is(err, storage.ErrExpired), errors.Is(err, storage.ErrNotFound):
		h.errorPage(w, http.StatusBadRequest, "This sign-in request has expired",
			"Return to the application and start again.")
	case errors.Is(err, errWrongUser):
		h.errorPage(w, http.StatusForbidden, "This request belongs to another sign-in",
			"Return to the application and start again.")
	default:
		h.opts.Logger.ErrorContext(ctx, "authorization failed", slog.Any("err", err))
		h.errorPage(w, http.StatusInternalServerError, "Something went wrong",
			"The server could not complete this request. Please try again later.")
	}
}

// authorize handles GET and form POST /authorize.
func (h *Handler) authorize(w http.ResponseWriter, r *http.Request) {
	var q url.Values
	if r.Method == http.MethodPost {
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
			h.errorPage(w, http.StatusUnsupportedMediaType, "This request cannot be completed",
				"Authorization requests must be sent as a form (application/x-www-form-urlencoded).")
			return
		}
		if err := httpx.ParseForm(w, r); err != nil {
			h.errorPage(w, http.StatusBadRequest, "This request cannot be completed", "The request could not be read.")
			return
		}
		q = r.PostForm
	} else {
		var err error
		if q, err = url.ParseQuery(r.URL.RawQuery); err != nil {
			h.errorPage(w, http.StatusBadRequest, "This request cannot be completed", "The request could not be read.")
			return
		}
	}
	ctx := r.Context()
	var v *validated
	var err error
	if q.Get("request_uri") != "" {
		v, err = h.pickup(ctx, q) // a pushed request (RFC 9126 §4)
	} else {
		v, err = h.validate(ctx, q)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	ar := v.ar
	var sess *storage.Session
	var user *storage.User
	if !strings.Contains(v.prompt, "login") {
		if s, val, serr := h.opts.Sessions.FromRequest(r); serr == nil {
			if u, uerr := h.opts.Users.GetUser(ctx, s.UserID); uerr == nil && !locked(u, h.opts.Now()) {
				sess, user = s, u
				ar.UserID = u.ID
			} else if uerr == nil { // a locked account keeps no session: sign in again
				_ = h.opts.Sessions.End(ctx, val)
			}
		}
	}
	if user == nil && v.prompt == "none" {
		h.fail(w, r, redirectErr(ar, oauth.LoginRequired, "the user is not signed in"))
		return
	}
	if err := h.opts.AuthRequests.CreateAuthRequest(ctx, ar); err != nil {
		h.fail(w, r, err)
		return
	}
	if user == nil {
		redirect(w, r, pageURL(PathLogin, ar.ID))
		return
	}
	h.proceed(w, r, ar, sess, user, v.prompt)
}

// proceed sends the browser to the next step of ar for a signed-in user.
func (h *Handler) proceed(w http.ResponseWriter, r *http.Request, ar *storage.AuthRequest, sess *storage.Session,
	user *storage.User, prompt string) {
	ctx := r.Context()
	if err := h.checkSuspended(ar, user); err != nil {
		h.fail(w, r, err)
		return
	}
	if to, err := h.mfaStep(ctx, ar, sess, user); err != nil || to != "" {
		switch {
		case err != nil:
			h.fail(w, r, err)
		case prompt == "none":
			h.fail(w, r, redirectErr(ar, oauth.LoginRequired, "a second sign-in factor is required"))
		default:
			redirect(w, r, to)
		}
		return
	}
	p, err := h.makePlan(ctx, ar, user, strings.Contains(prompt, "consent"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	switch p.step {
	case stepPatient:
		if prompt == "none" {
			h.fail(w, r, redirectErr(ar, oauth.InteractionRequired, "a patient must be chosen"))
			return
		}
		redirect(w, r, pageURL(PathPatient, ar.ID))
	case stepConsent:
		if prompt == "none" {
			h.fail(w, r, redirectErr(ar, oauth.ConsentRequired, "the user has not approved this application"))
			return
		}
		redirect(w, r, pageURL(PathConsent, ar.ID))
	default:
		ev := h.event(r, audit.ActionCodeIssued)
		ev.UserID, ev.FHIRUser, ev.ClientID = user.ID, user.FHIRUser, ar.ClientID
		to, err := h.issueCode(ctx, ev, ar, user, sess, p.candidate, p.patient)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		redirect(w, r, to)
	}
}

// locked reports whether the account is locked at now.
func locked(u *storage.User, now time.Time) bool { return now.Before(u.LockedUntil) }

// checkSuspended refuses (access_denied at the client) a request by a
// suspended client or user.
func (h *Handler) checkSuspended(ar *storage.AuthRequest, user *storage.User) error {
	if h.opts.Suspended == nil {
		return nil
	}
	userID := ""
	if user != nil {
		userID = user.ID
	}
	if h.opts.Suspended(ar.ClientID, userID) {
		return redirectErr(ar, oauth.AccessDenied, "access is suspended pending review")
	}
	return nil
}

// loadRequest returns the live authorization request named by the req parameter.
func (h *Handler) loadRequest(r *http.Request, id string) (*storage.AuthRequest, error) {
	if id == "" {
		return nil, &PageError{Message: "Start signing in from the application you want to use."}
	}
	return h.opts.AuthRequests.GetAuthRequest(r.Context(), id, h.opts.Now())
}

// signedIn returns the session and user that own ar, or false after
// sending the browser to sign in again.
func (h *Handler) signedIn(w http.ResponseWriter, r *http.Request, ar *storage.AuthRequest) (*storage.Session, *storage.User, bool) {
	sess, val, err := h.opts.Sessions.FromRequest(r)
	if err != nil || ar.UserID == "" || sess.UserID != ar.UserID {
		redirect(w, r, pageURL(PathLogin, ar.ID))
		return nil, nil, false
	}
	user, err := h.opts.Users.GetUser(r.Context(), sess.UserID)
	if err != nil {
		h.fail(w, r, err)
		return nil, nil, false
	}
	if locked(user, h.opts.Now()) { // a locked account keeps no session
		_ = h.opts.Sessions.End(r.Context(), val)
		redirect(w, r, pageURL(PathLogin, ar.ID))
		return nil, nil, false
	}
	if err := h.checkSuspended(ar, user); err != nil {
		h.fail(w, r, err)
		return nil, nil, false
	}
	if to, err := h.mfaStep(r.Context(), ar, sess, user); err != nil || to != "" {
		if err != nil {
			h.fail(w, r, err)
		} else {
			redirect(w, r, to)
		}
		return nil, nil, false
	}
	return sess, user, true
}

// mfaStep returns where to send the browser for a second factor ("" when
// the session has one or none is needed): the user has a confirmed factor,
// or their role requires one.
func (h *Handler) mfaStep(ctx context.Context, ar *storage.AuthRequest, sess *storage.Session, user *storage.User) (string, error) {
	if h.opts.MFA == nil || session.HasMethod(sess, "otp") {
		return "", nil
	}
	enrolled, err := h.opts.MFA.Enrolled(ctx, user.ID)
	if err != nil {
		return "", fmt.Errorf("authorize: second factor: %w", err)
	}
	back := url.QueryEscape(pageURL(PathContinue, ar.ID))
	if enrolled {
		return pathMFAVerify + "?next=" + back, nil
	}
	if slices.Contains(h.opts.RequireMFAFor, user.Role) {
		return pathMFAEnrol + "?next=" + back, nil
	}
	return "", nil
}

// resume continues a request once the second factor is done.
func (h *Handler) resume(w http.ResponseWriter, r *http.Request) {
	ar, err := h.loadRequest(r, r.URL.Query().Get("req"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	sess, user, ok := h.signedIn(w, r, ar)
	if !ok {
		return
	}
	h.proceed(w, r, ar, sess, user, "")
}

// checkCSRF verifies a page form's token against the session's.
func (h *Handler) checkCSRF(w http.ResponseWriter, r *http.Request, sess *storage.Session) bool {
	if err := session.CheckCSRF(sess, r.PostForm.Get("csrf")); err != nil {
		ev := h.event(r, audit.ActionAuthorize)
		ev.Outcome, ev.Reason, ev.UserID = audit.Failure, "CSRF token missing or invalid", sess.UserID
		h.record(r.Context(), ev)
		h.errorPage(w, http.StatusForbidden, "This form has expired", "Go back, reload the page and try again.")
		return false
	}
	return true
}

// parsePost parses a page form, answering 400 itself on failure.
func (h *Handler) parsePost(w http.ResponseWriter, r *http.Request) bool {
	if err := httpx.ParseForm(w, r); err != nil {
		h.errorPage(w, http.StatusBadRequest, "This request cannot be completed", "The form could not be read.")
		return false
	}
	return true
}
