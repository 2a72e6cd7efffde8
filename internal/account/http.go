package account

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/auditapi"
	"github.com/fhirgate/fhirgate/internal/httpx"
	"github.com/fhirgate/fhirgate/internal/mfa"
	"github.com/fhirgate/fhirgate/internal/session"
	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/web"
)

// Page paths.
const (
	PathLogin  = mfa.PathSignIn // "/account/login"
	PathLogout = "/account/logout"
	PathApps   = "/account/apps"
	PathRevoke = "/account/apps/revoke"
	PathAccess = "/account/access"
)

// Register adds the pages to mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /account", func(w http.ResponseWriter, r *http.Request) { see(w, r, PathApps) })
	mux.HandleFunc("GET "+PathLogin, h.loginPage)
	mux.HandleFunc("POST "+PathLogin, h.loginSubmit)
	mux.HandleFunc("POST "+PathLogout, h.logout)
	mux.HandleFunc("GET "+PathApps, h.appsPage)
	mux.HandleFunc("POST "+PathRevoke, h.revokeSubmit)
	mux.HandleFunc("GET "+PathAccess, h.accessPage)
}

func see(w http.ResponseWriter, r *http.Request, to string) {
	httpx.NoStore(w)
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, to, http.StatusSeeOther)
}

func (h *Handler) event(r *http.Request, action audit.Action) audit.Event {
	return audit.Event{Time: h.opts.Now(), Action: action, SourceIP: httpx.ClientIP(r), UserAgent: r.UserAgent()}
}

func (h *Handler) record(ctx context.Context, ev audit.Event) {
	if err := h.opts.Auditor.Record(ctx, ev); err != nil {
		h.opts.Logger.ErrorContext(ctx, "audit write failed", slog.String("action", string(ev.Action)), slog.Any("err", err))
	}
}

// ErrorPage renders an error page.
func (h *Handler) errorPage(w http.ResponseWriter, status int, title, msg string) {
	httpx.PageSecurityHeaders(w)
	h.pages.Write(w, status, web.PageError, web.ErrorPage{Title: title, Message: msg})
}

func (h *Handler) internal(w http.ResponseWriter, r *http.Request, err error) {
	h.opts.Logger.ErrorContext(r.Context(), "account page failed", slog.Any("err", err))
	h.errorPage(w, http.StatusInternalServerError, "Something went wrong", "The server could not complete this request. Please try again later.")
}

// Guard is the result of RequireUser.
type Guard struct {
	Session *storage.Session
	User    *storage.User
}

// RequireUser returns the signed-in user of r, having passed any second
// factor they need. Otherwise it sends the browser to sign in (no session)
// or to the second-factor pages, returning false. here is the page to come
// back to. A locked account's session is ended.
func RequireUser(w http.ResponseWriter, r *http.Request, sessions *session.Manager, users storage.Users,
	m MFAChecker, requireFor []storage.Role, here string, now time.Time) (Guard, bool) {
	sess, _, err := sessions.FromRequest(r)
	if err != nil {
		see(w, r, mfa.SignInURL(here))
		return Guard{}, false
	}
	u, err := users.GetUser(r.Context(), sess.UserID)
	if err != nil || now.Before(u.LockedUntil) { // a locked account keeps no session
		if err == nil {
			_, _ = sessions.Logout(w, r)
		}
		see(w, r, mfa.SignInURL(here))
		return Guard{}, false
	}
	if !session.HasMethod(sess, mfa.MethodOTP) {
		enrolled, needed, err := NeedsMFA(r.Context(), m, requireFor, u)
		if err != nil {
			httpx.PageSecurityHeaders(w)
			http.Error(w, "internal error", http.StatusInternalServerError)
			return Guard{}, false
		}
		if needed {
			if enrolled {
				see(w, r, mfa.VerifyURL(here))
			} else {
				see(w, r, mfa.EnrolURL(here))
			}
			return Guard{}, false
		}
	}
	return Guard{Session: sess, User: u}, true
}

func (h *Handler) require(w http.ResponseWriter, r *http.Request, here string) (Guard, bool) {
	return RequireUser(w, r, h.opts.Sessions, h.opts.Users, h.opts.MFA, h.opts.RequireMFAFor, here, h.opts.Now())
}

func (h *Handler) form(w http.ResponseWriter, r *http.Request, g Guard) bool {
	if err := session.CheckCSRF(g.Session, r.PostForm.Get("csrf")); err != nil {
		ev := h.event(r, audit.ActionAuthorize)
		ev.Outcome, ev.Reason, ev.UserID = audit.Failure, "CSRF token missing or invalid", g.User.ID
		h.record(r.Context(), ev)
		h.errorPage(w, http.StatusForbidden, "This form has expired", "Go back, reload the page and try again.")
		return false
	}
	return true
}

func (h *Handler) parse(w http.ResponseWriter, r *http.Request) bool {
	if err := httpx.ParseForm(w, r); err != nil {
		h.errorPage(w, http.StatusBadRequest, "This request cannot be completed", "The form could not be read.")
		return false
	}
	return true
}

func (h *Handler) nav(g Guard) web.Nav {
	return web.Nav{UserName: g.User.Username, CSRF: g.Session.CSRFToken, Admin: g.User.Role == storage.RoleAdmin,
		TwoStep: session.HasMethod(g.Session, mfa.MethodOTP)}
}

func (h *Handler) loginPage(w http.ResponseWriter, r *http.Request) {
	h.renderLogin(w, r, http.StatusOK, mfa.LocalNext(r.URL.Query().Get("next")), "", "")
}

func (h *Handler) renderLogin(w http.ResponseWriter, r *http.Request, status int, next, username, msg string) {
	httpx.PageSecurityHeaders(w)
	csrf := h.opts.Sessions.LoginCSRF(w, r)
	h.pages.Write(w, status, web.PageSignIn, web.SignInPage{Title: "Sign in", CSRF: csrf, Next: next, Username: username, Error: msg})
}

func (h *Handler) loginSubmit(w http.ResponseWriter, r *http.Request) {
	if !h.parse(w, r) {
		return
	}
	ctx := r.Context()
	next := mfa.LocalNext(r.PostForm.Get("next"))
	if err := h.opts.Sessions.CheckLoginCSRF(r, r.PostForm.Get("csrf")); err != nil {
		ev := h.event(r, audit.ActionLogin)
		ev.Outcome, ev.Reason = audit.Failure, "CSRF token missing or invalid"
		h.record(ctx, ev)
		h.errorPage(w, http.StatusForbidden, "This form has expired", "Go back, reload the page and try again.")
		return
	}
	username := r.PostForm.Get("username")
	user, err := h.opts.Authenticator.Authenticate(ctx, session.Attempt{Username: username,
		Password: r.PostForm.Get("password"), SourceIP: httpx.ClientIP(r), UserAgent: r.UserAgent()})
	if msg := session.Message(err); msg != "" {
		h.renderLogin(w, r, http.StatusOK, next, username, msg)
		return
	}
	if err != nil {
		h.internal(w, r, err)
		return
	}
	if _, old, oerr := h.opts.Sessions.FromRequest(r); oerr == nil {
		_ = h.opts.Sessions.End(ctx, old) // a fresh session on every sign-in
	}
	value, _, err := h.opts.Sessions.Start(ctx, user.ID)
	if err != nil {
		h.internal(w, r, err)
		return
	}
	h.opts.Sessions.SetCookie(w, value)
	enrolled, needed, err := NeedsMFA(ctx, h.opts.MFA, h.opts.RequireMFAFor, user)
	switch {
	case err != nil:
		h.internal(w, r, err)
	case needed && enrolled:
		see(w, r, mfa.VerifyURL(next))
	case needed:
		see(w, r, mfa.EnrolURL(next))
	default:
		see(w, r, next)
	}
}

func (h *Handler) logout(w http.ResponseWriter, r *http.Request) {
	if !h.parse(w, r) {
		return
	}
	sess, _, err := h.opts.Sessions.FromRequest(r)
	if err == nil {
		if cerr := session.CheckCSRF(sess, r.PostForm.Get("csrf")); cerr != nil {
			h.errorPage(w, http.StatusForbidden, "This form has expired", "Go back, reload the page and try again.")
			return
		}
	}
	ended, err := h.opts.Sessions.Logout(w, r)
	if err != nil {
		h.internal(w, r, err)
		return
	}
	if ended != nil {
		ev := h.event(r, audit.ActionLogout)
		ev.Outcome, ev.UserID = audit.Success, ended.UserID
		h.record(r.Context(), ev)
	}
	httpx.PageSecurityHeaders(w)
	h.pages.Write(w, http.StatusOK, web.PageMessage, web.MessagePage{Title: "Signed out", Message: "You have signed out."})
}

func (h *Handler) appsPage(w http.ResponseWriter, r *http.Request) {
	g, ok := h.require(w, r, PathApps)
	if !ok {
		return
	}
	h.renderApps(w, r, g, http.StatusOK, noticeFor(r.URL.Query().Get("done")), "")
}

func noticeFor(done string) string {
	switch done {
	case "revoked":
		return "Access revoked. The app can no longer reach your record."
	case "none":
		return "That app had no access left to revoke."
	}
	return ""
}

func (h *Handler) renderApps(w http.ResponseWriter, r *http.Request, g Guard, status int, notice, msg string) {
	rows, err := h.apps(r.Context(), g.User)
	if err != nil {
		h.internal(w, r, err)
		return
	}
	httpx.PageSecurityHeaders(w)
	h.pages.Write(w, status, web.PageApps, web.AppsPage{Title: "Connected apps", Nav: h.nav(g), Apps: rows, Notice: notice, Error: msg})
}

func (h *Handler) revokeSubmit(w http.ResponseWriter, r *http.Request) {
	if !h.parse(w, r) {
		return
	}
	g, ok := h.require(w, r, PathApps)
	if !ok || !h.form(w, r, g) {
		return
	}
	clientID := strings.TrimSpace(r.PostForm.Get("client_id"))
	if clientID == "" || len(clientID) > 256 {
		h.renderApps(w, r, g, http.StatusBadRequest, "", "Choose an app to revoke.")
		return
	}
	err := h.revoke(r.Context(), h.event(r, audit.ActionConsentRevoked), g.User.ID, clientID)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		see(w, r, PathApps+"?done=none")
	case err != nil:
		h.internal(w, r, err)
	default:
		see(w, r, PathApps+"?done=revoked")
	}
}

// patientOf is the bare Patient id of a patient user, or "".
func patientOf(u *storage.User) string {
	if u.Role != storage.RolePatient {
		return ""
	}
	id, ok := strings.CutPrefix(u.FHIRUser, "Patient/")
	if !ok {
		return ""
	}
	return id
}

func (h *Handler) accessPage(w http.ResponseWriter, r *http.Request) {
	g, ok := h.require(w, r, PathAccess)
	if !ok {
		return
	}
	patient := patientOf(g.User)
	if patient == "" {
		h.errorPage(w, http.StatusForbidden, "Not available", "The access report is for patients: it lists who opened their own record.")
		return
	}
	page := web.AccessReportPage{Title: "Who accessed my record", Nav: h.nav(g), Enabled: h.opts.Audit != nil}
	status := http.StatusOK
	if h.opts.Audit != nil {
		ctx := r.Context()
		names := func(ctx context.Context, id string) string {
			if c, err := h.opts.Clients.GetClient(ctx, id); err == nil && c.Name != "" {
				return c.Name
			}
			return id
		}
		rep, err := auditapi.AccessReport(ctx, h.opts.Audit, patient, auditapi.ReportQuery{After: r.URL.Query().Get("after"), Limit: 100}, names)
		switch {
		case errors.Is(err, auditapi.ErrInvalid):
			page.Error, status = "That page of the report does not exist.", http.StatusBadRequest
		case err != nil:
			h.internal(w, r, err)
			return
		default:
			for _, a := range rep.Items {
				who := a.Who
				if who == g.User.FHIRUser || who == g.User.ID {
					who = "You"
				}
				page.Rows = append(page.Rows, web.AccessRow{Time: a.Time, Who: who, App: a.App, What: what(a.Action, a.Interaction),
					Resource: a.Resource, Allowed: a.Allowed, Reason: a.Reason})
			}
			page.Next = rep.Next
		}
		ev := h.event(r, audit.ActionAuditQuery)
		ev.Outcome, ev.UserID, ev.FHIRUser, ev.Patient = audit.Success, g.User.ID, g.User.FHIRUser, patient
		if err := h.opts.Auditor.Record(ctx, ev); err != nil {
			h.internal(w, r, err) // fail closed: reading the trail is itself audited
			return
		}
	}
	httpx.PageSecurityHeaders(w)
	h.pages.Write(w, status, web.PageAccessReport, page)
}
