package console

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sort"
	"strings"

	"github.com/fhirgate/fhirgate/internal/anomaly"
	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/audit/chain"
	"github.com/fhirgate/fhirgate/internal/httpx"
	"github.com/fhirgate/fhirgate/internal/mfa"
	"github.com/fhirgate/fhirgate/internal/oauth"
	"github.com/fhirgate/fhirgate/internal/session"
	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/web"
)

// Path is the console's root.
const Path = "/console"

// Register adds the console pages to mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET "+Path, func(w http.ResponseWriter, r *http.Request) {
		if _, ok := h.admin(w, r); ok {
			see(w, r, Path+"/clients")
		}
	})
	mux.HandleFunc("GET "+Path+"/clients", h.get("clients"))
	mux.HandleFunc("POST "+Path+"/clients", h.post(h.createClient))
	mux.HandleFunc("GET "+Path+"/clients/{id}", h.get("client"))
	mux.HandleFunc("POST "+Path+"/clients/{id}", h.post(h.editClient))
	mux.HandleFunc("POST "+Path+"/clients/{id}/disable", h.post(h.disableClient(true)))
	mux.HandleFunc("POST "+Path+"/clients/{id}/enable", h.post(h.disableClient(false)))
	mux.HandleFunc("POST "+Path+"/clients/{id}/rotate-secret", h.post(h.rotateSecret))
	mux.HandleFunc("GET "+Path+"/users", h.get("users"))
	mux.HandleFunc("POST "+Path+"/users", h.post(h.createUser))
	mux.HandleFunc("POST "+Path+"/users/{id}/lock", h.post(h.lockUser(true)))
	mux.HandleFunc("POST "+Path+"/users/{id}/unlock", h.post(h.lockUser(false)))
	mux.HandleFunc("POST "+Path+"/users/{id}/reset-mfa", h.post(h.resetMFA))
	mux.HandleFunc("GET "+Path+"/audit", h.get("audit"))
	mux.HandleFunc("GET "+Path+"/anomalies", h.get("anomalies"))
	mux.HandleFunc("POST "+Path+"/anomalies/{id}/clear", h.post(h.clearAnomaly))
	mux.HandleFunc("GET "+Path+"/keys", h.get("keys"))
	mux.HandleFunc("POST "+Path+"/keys/rotate", h.post(h.rotateKeys))
}

func see(w http.ResponseWriter, r *http.Request, to string) {
	httpx.NoStore(w)
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, to, http.StatusSeeOther)
}

type guard struct {
	sess *storage.Session
	user *storage.User
}

func (h *Handler) event(r *http.Request, g guard, action audit.Action) audit.Event {
	ev := audit.Event{Time: h.opts.Now(), Action: action, SourceIP: httpx.ClientIP(r), UserAgent: r.UserAgent()}
	if g.user != nil {
		ev.UserID, ev.FHIRUser = g.user.ID, g.user.FHIRUser
	}
	return ev
}

func (h *Handler) record(ctx context.Context, ev audit.Event) error {
	err := h.opts.Auditor.Record(ctx, ev)
	if err != nil {
		h.opts.Logger.ErrorContext(ctx, "audit write failed", slog.String("action", string(ev.Action)), slog.Any("err", err))
	}
	return err
}

func (h *Handler) errorPage(w http.ResponseWriter, status int, title, msg string) {
	httpx.PageSecurityHeaders(w)
	h.pages.Write(w, status, web.PageError, web.ErrorPage{Title: title, Message: msg})
}

func (h *Handler) internal(w http.ResponseWriter, r *http.Request, err error) {
	h.opts.Logger.ErrorContext(r.Context(), "console failed", slog.Any("err", err))
	h.errorPage(w, http.StatusInternalServerError, "Something went wrong", "The server could not complete this request.")
}

// admin lets through a signed-in administrator whose session passed a
// second factor. No session: sign in. Not an administrator: 403 (audited).
// No second factor yet: the verify or enrol page, returning here.
func (h *Handler) admin(w http.ResponseWriter, r *http.Request) (guard, bool) {
	here := r.URL.Path
	if r.Method != http.MethodGet {
		here = Path
	}
	sess, _, err := h.opts.Sessions.FromRequest(r)
	if err != nil {
		see(w, r, mfa.SignInURL(here))
		return guard{}, false
	}
	u, err := h.opts.Users.GetUser(r.Context(), sess.UserID)
	if err != nil || h.opts.Now().Before(u.LockedUntil) { // a locked account keeps no session
		if err == nil {
			_, _ = h.opts.Sessions.Logout(w, r)
		}
		see(w, r, mfa.SignInURL(here))
		return guard{}, false
	}
	if u.Role != storage.RoleAdmin {
		ev := h.event(r, guard{user: u}, audit.ActionAuthorize)
		ev.Outcome, ev.Reason = audit.Failure, "console: not an administrator"
		_ = h.record(r.Context(), ev)
		h.errorPage(w, http.StatusForbidden, "Administrators only", "The admin console is for administrators.")
		return guard{}, false
	}
	if !session.HasMethod(sess, mfa.MethodOTP) {
		enrolled, err := h.opts.MFA.Enrolled(r.Context(), u.ID)
		if err != nil {
			h.internal(w, r, err)
			return guard{}, false
		}
		if enrolled {
			see(w, r, mfa.VerifyURL(here))
		} else {
			see(w, r, mfa.EnrolURL(here))
		}
		return guard{}, false
	}
	return guard{sess: sess, user: u}, true
}

func (h *Handler) nav(g guard) web.Nav {
	return web.Nav{UserName: g.user.Username, CSRF: g.sess.CSRFToken, Admin: true, TwoStep: true}
}

// get serves a section page.
func (h *Handler) get(section string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		g, ok := h.admin(w, r)
		if !ok {
			return
		}
		page := web.ConsolePage{Title: "Admin console", Nav: h.nav(g), Section: section, Notice: notices[r.URL.Query().Get("done")]}
		h.render(w, r, g, http.StatusOK, page)
	}
}

var notices = map[string]string{
	"client-saved": "Client saved.", "client-disabled": "Client disabled.", "client-enabled": "Client enabled.",
	"user-locked": "User locked.", "user-unlocked": "User unlocked.", "mfa-reset": "Two-step sign-in reset: the user sets it up again at the next sign-in.",
	"anomaly-cleared": "Anomaly cleared.", "keys-rotated": "Signing keys rotated.", "user-created": "User created.",
}

// render fills the section's data and writes the page.
func (h *Handler) render(w http.ResponseWriter, r *http.Request, g guard, status int, page web.ConsolePage) {
	ctx := r.Context()
	page.AuditEnabled, page.AnomaliesEnabled = h.opts.Audit != nil, h.opts.Anomalies != nil
	switch page.Section {
	case "clients":
		list, err := h.opts.Clients.ListClients(ctx)
		if err != nil {
			h.internal(w, r, err)
			return
		}
		for _, c := range list {
			page.Clients = append(page.Clients, consoleClient(&c))
		}
	case "client":
		if page.Client == nil {
			c, err := h.opts.Clients.GetClient(ctx, r.PathValue("id"))
			if errors.Is(err, storage.ErrNotFound) {
				h.errorPage(w, http.StatusNotFound, "No such client", "That client does not exist.")
				return
			}
			if err != nil {
				h.internal(w, r, err)
				return
			}
			cc := consoleClient(c)
			page.Client = &cc
		}
	case "users":
		list, err := h.opts.Users.ListUsers(ctx)
		if err != nil {
			h.internal(w, r, err)
			return
		}
		now := h.opts.Now()
		for _, u := range list {
			enrolled, err := h.opts.MFA.Enrolled(ctx, u.ID)
			if err != nil {
				h.internal(w, r, err)
				return
			}
			page.Users = append(page.Users, web.ConsoleUser{ID: u.ID, Username: u.Username, Role: string(u.Role),
				FHIRUser: u.FHIRUser, Locked: now.Before(u.LockedUntil), MFA: enrolled})
		}
	case "audit":
		if !h.auditSearch(w, r, g, &page) {
			return
		}
	case "anomalies":
		if h.opts.Anomalies != nil {
			list, err := h.opts.Anomalies.List(ctx, anomaly.ListOptions{IncludeCleared: true, Limit: 200})
			if err != nil {
				h.internal(w, r, err)
				return
			}
			for _, a := range list {
				page.Anomalies = append(page.Anomalies, web.ConsoleAnomaly{ID: a.ID, Rule: string(a.Rule), Action: string(a.Action),
					Subject: a.Subject.String(), Detail: a.Detail, RaisedAt: a.RaisedAt, Cleared: !a.ClearedAt.IsZero()})
			}
		}
	case "keys":
		if h.opts.Keys != nil {
			ks := h.opts.Keys.Keys()
			sort.Slice(ks, func(i, j int) bool { return ks[i].CreatedAt.After(ks[j].CreatedAt) })
			for _, k := range ks {
				page.Keys = append(page.Keys, web.ConsoleKey{KID: k.KID, Alg: k.Alg, Active: k.Active, CreatedAt: k.CreatedAt, RetiredAt: k.RetiredAt})
			}
		}
	}
	httpx.PageSecurityHeaders(w)
	h.pages.Write(w, status, web.PageConsole, page)
}

func consoleClient(c *storage.Client) web.ConsoleClient {
	name := c.Name
	if name == "" {
		name = c.ID
	}
	return web.ConsoleClient{ID: c.ID, Name: name, AuthMethod: c.AuthMethod, RedirectURIs: strings.Join(c.RedirectURIs, "\n"),
		Scope: c.Scope, LogoURI: c.LogoURI, Disabled: c.Disabled, Confidential: oauth.AuthMethod(c.AuthMethod).UsesSecret()}
}

// auditSearch runs the audit query of the form; the search itself is
// audited and refused if it cannot be (fail closed).
func (h *Handler) auditSearch(w http.ResponseWriter, r *http.Request, g guard, page *web.ConsolePage) bool {
	q := r.URL.Query()
	page.Query = map[string]string{}
	for _, k := range []string{"user", "client", "patient", "action", "outcome"} {
		v := strings.TrimSpace(q.Get(k))
		if len(v) > 200 {
			v = v[:200]
		}
		page.Query[k] = v
	}
	if h.opts.Audit == nil {
		return true
	}
	f := chain.Filter{User: page.Query["user"], Client: page.Query["client"], Patient: strings.TrimPrefix(page.Query["patient"], "Patient/"),
		After: q.Get("after"), Limit: 100}
	if a := page.Query["action"]; a != "" {
		f.Actions = []audit.Action{audit.Action(a)}
	}
	switch page.Query["outcome"] {
	case "success":
		f.Outcome = audit.Success
	case "failure":
		f.Outcome = audit.Failure
	}
	ev := h.event(r, g, audit.ActionAuditQuery)
	ev.Outcome, ev.Reason = audit.Success, "console search"
	if err := h.record(r.Context(), ev); err != nil {
		h.internal(w, r, err)
		return false
	}
	res, err := h.opts.Audit.Query(r.Context(), f)
	if errors.Is(err, chain.ErrBadCursor) {
		page.Error = "That page of results does not exist."
		return true
	}
	if err != nil {
		h.internal(w, r, err)
		return false
	}
	for _, e := range res.Entries {
		ev := e.Event
		user := ev.FHIRUser
		if user == "" {
			user = ev.UserID
		}
		page.Audit = append(page.Audit, web.ConsoleAuditRow{Time: ev.Time, Action: string(ev.Action), Outcome: string(ev.Outcome),
			User: user, Client: ev.ClientID, Patient: ev.Patient, SourceIP: ev.SourceIP, Reason: ev.Reason})
	}
	page.AuditNext = res.Next
	return true
}

// action is a console change: it returns where to go next (a redirect),
// or renders a page itself and returns "".
type action func(w http.ResponseWriter, r *http.Request, g guard) string

// post wraps a change: form parsing, the admin guard, the CSRF check.
func (h *Handler) post(fn action) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := httpx.ParseForm(w, r); err != nil {
			h.errorPage(w, http.StatusBadRequest, "This request cannot be completed", "The form could not be read.")
			return
		}
		g, ok := h.admin(w, r)
		if !ok {
			return
		}
		if err := session.CheckCSRF(g.sess, r.PostForm.Get("csrf")); err != nil {
			ev := h.event(r, g, audit.ActionAuthorize)
			ev.Outcome, ev.Reason = audit.Failure, "console: CSRF token missing or invalid"
			_ = h.record(r.Context(), ev)
			h.errorPage(w, http.StatusForbidden, "This form has expired", "Go back, reload the page and try again.")
			return
		}
		if to := fn(w, r, g); to != "" {
			see(w, r, to)
		}
	}
}

// fail shows a refused input on the section page, or a server error.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, g guard, section string, err error) string {
	switch {
	case errors.Is(err, ErrInvalid):
		h.render(w, r, g, http.StatusBadRequest, web.ConsolePage{Title: "Admin console", Nav: h.nav(g), Section: section, Error: Message(err)})
	case errors.Is(err, storage.ErrNotFound), errors.Is(err, anomaly.ErrNotFound):
		h.errorPage(w, http.StatusNotFound, "Not found", "That record does not exist.")
	default:
		h.internal(w, r, err)
	}
	return ""
}

func clientForm(r *http.Request) ClientForm {
	return ClientForm{Name: r.PostForm.Get("name"), Confidential: r.PostForm.Get("type") == "confidential",
		RedirectURIs: r.PostForm.Get("redirect_uris"), Scope: r.PostForm.Get("scope"), LogoURI: r.PostForm.Get("logo_uri")}
}

func (h *Handler) audited(r *http.Request, g guard, action audit.Action, clientID, reason string) error {
	ev := h.event(r, g, action)
	ev.Outcome, ev.ClientID, ev.Reason = audit.Success, clientID, reason
	return h.record(r.Context(), ev)
}

func (h *Handler) createClient(w http.ResponseWriter, r *http.Request, g guard) string {
	c, plain, err := h.CreateClient(r.Context(), clientForm(r))
	if err != nil {
		return h.fail(w, r, g, "clients", err)
	}
	if err := h.audited(r, g, audit.ActionClientRegistered, c.ID, "created in the console"); err != nil {
		return h.fail(w, r, g, "clients", err)
	}
	h.render(w, r, g, http.StatusOK, web.ConsolePage{Title: "Admin console", Nav: h.nav(g), Section: "clients",
		Notice: "Client " + c.Name + " created with id " + c.ID + ".", Secret: plain})
	return ""
}

func (h *Handler) editClient(w http.ResponseWriter, r *http.Request, g guard) string {
	id := r.PathValue("id")
	if _, err := h.UpdateClient(r.Context(), id, clientForm(r)); err != nil {
		if errors.Is(err, ErrInvalid) {
			c, gerr := h.opts.Clients.GetClient(r.Context(), id)
			if gerr != nil {
				return h.fail(w, r, g, "client", gerr)
			}
			cc := consoleClient(c)
			h.render(w, r, g, http.StatusBadRequest, web.ConsolePage{Title: "Admin console", Nav: h.nav(g), Section: "client", Client: &cc, Error: Message(err)})
			return ""
		}
		return h.fail(w, r, g, "client", err)
	}
	if err := h.audited(r, g, audit.ActionClientChanged, id, "edited in the console"); err != nil {
		return h.fail(w, r, g, "clients", err)
	}
	return Path + "/clients?done=client-saved"
}

func (h *Handler) disableClient(disabled bool) action {
	return func(w http.ResponseWriter, r *http.Request, g guard) string {
		id := r.PathValue("id")
		if err := h.SetDisabled(r.Context(), id, disabled); err != nil {
			return h.fail(w, r, g, "clients", err)
		}
		reason, done := "enabled in the console", "client-enabled"
		if disabled {
			reason, done = "disabled in the console", "client-disabled"
		}
		if err := h.audited(r, g, audit.ActionClientChanged, id, reason); err != nil {
			return h.fail(w, r, g, "clients", err)
		}
		return Path + "/clients?done=" + done
	}
}

func (h *Handler) rotateSecret(w http.ResponseWriter, r *http.Request, g guard) string {
	id := r.PathValue("id")
	plain, err := h.RotateSecret(r.Context(), id)
	if err != nil {
		return h.fail(w, r, g, "clients", err)
	}
	if err := h.audited(r, g, audit.ActionClientChanged, id, "secret rotated in the console"); err != nil {
		return h.fail(w, r, g, "clients", err)
	}
	h.render(w, r, g, http.StatusOK, web.ConsolePage{Title: "Admin console", Nav: h.nav(g), Section: "clients",
		Notice: "Secret of " + id + " rotated: the old secret no longer works.", Secret: plain})
	return ""
}

func (h *Handler) createUser(w http.ResponseWriter, r *http.Request, g guard) string {
	u, err := h.CreateUser(r.Context(), NewUser{Username: r.PostForm.Get("username"), Password: r.PostForm.Get("password"),
		Role: storage.Role(r.PostForm.Get("role")), FHIRUser: r.PostForm.Get("fhir_user")})
	if err != nil {
		return h.fail(w, r, g, "users", err)
	}
	ev := h.event(r, g, audit.Action("user.created"))
	ev.Outcome, ev.Reason = audit.Success, "created "+u.Username+" ("+u.ID+") in the console"
	if err := h.record(r.Context(), ev); err != nil {
		return h.fail(w, r, g, "users", err)
	}
	return Path + "/users?done=user-created"
}

func (h *Handler) lockUser(lock bool) action {
	return func(w http.ResponseWriter, r *http.Request, g guard) string {
		id := r.PathValue("id")
		var err error
		act, done := audit.Action("user.unlocked"), "user-unlocked"
		if lock {
			if id == g.user.ID {
				return h.fail(w, r, g, "users", invalid("you cannot lock your own account"))
			}
			err, act, done = h.Lock(r.Context(), id), audit.Action("user.locked"), "user-locked"
		} else {
			err = h.Unlock(r.Context(), id)
		}
		if err != nil {
			return h.fail(w, r, g, "users", err)
		}
		ev := h.event(r, g, act)
		ev.Outcome, ev.Reason = audit.Success, "user "+id+" by "+g.user.Username
		if err := h.record(r.Context(), ev); err != nil {
			return h.fail(w, r, g, "users", err)
		}
		return Path + "/users?done=" + done
	}
}

func (h *Handler) resetMFA(w http.ResponseWriter, r *http.Request, g guard) string {
	id := r.PathValue("id")
	if _, err := h.opts.Users.GetUser(r.Context(), id); err != nil {
		return h.fail(w, r, g, "users", err)
	}
	if err := h.opts.MFA.Reset(r.Context(), id, g.user.Username); err != nil {
		return h.fail(w, r, g, "users", err)
	}
	return Path + "/users?done=mfa-reset"
}

func (h *Handler) clearAnomaly(w http.ResponseWriter, r *http.Request, g guard) string {
	if h.opts.Anomalies == nil {
		return h.fail(w, r, g, "anomalies", storage.ErrNotFound)
	}
	a, err := h.opts.Anomalies.Clear(r.Context(), r.PathValue("id"), g.user.Username, h.opts.Now())
	if err != nil {
		return h.fail(w, r, g, "anomalies", err)
	}
	ev := h.event(r, g, anomaly.AuditCleared)
	ev.Outcome, ev.Reason, ev.ClientID = audit.Success, "anomaly "+a.ID+" ("+string(a.Rule)+") cleared in the console", a.ClientID
	if err := h.record(r.Context(), ev); err != nil {
		return h.fail(w, r, g, "anomalies", err)
	}
	return Path + "/anomalies?done=anomaly-cleared"
}

func (h *Handler) rotateKeys(w http.ResponseWriter, r *http.Request, g guard) string {
	if h.opts.Keys == nil {
		return h.fail(w, r, g, "keys", storage.ErrNotFound)
	}
	kids, err := h.opts.Keys.Rotate(r.Context())
	if err != nil {
		return h.fail(w, r, g, "keys", err)
	}
	ev := h.event(r, g, audit.ActionKeyRotated)
	ev.Outcome, ev.Reason = audit.Success, "rotated in the console: "+strings.Join(kids, ", ")
	if err := h.record(r.Context(), ev); err != nil {
		return h.fail(w, r, g, "keys", err)
	}
	return Path + "/keys?done=keys-rotated"
}
