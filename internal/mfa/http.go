package mfa

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/httpx"
	"github.com/fhirgate/fhirgate/internal/session"
	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/web"
)

// Page paths.
const (
	PathVerify = "/mfa"
	PathEnrol  = "/mfa/enrol"
	PathQR     = "/mfa/qr.png"
	// PathSignIn is where a browser without a session is sent (package account serves it).
	PathSignIn = "/account/login"
	// DefaultNext is where pages go when no (valid) next path is given.
	DefaultNext = "/account/apps"
)

// Defaults for wrong-code lockout (shared with the password counter).
const (
	DefaultMaxFailures = 5
	DefaultLockFor     = 15 * time.Minute
)

// HandlerOptions configures the second-factor pages.
type HandlerOptions struct {
	Service  *Service
	Sessions *session.Manager
	Users    storage.Users
	// MaxFailures wrong codes in a row lock the account for LockFor, on the
	// same counter as wrong passwords (defaults 5 and 15 minutes).
	MaxFailures int
	LockFor     time.Duration
	// RequireFor lists the roles that must use a second factor (shown on the enrol page).
	RequireFor []storage.Role
	Auditor    audit.Auditor
	Logger     *slog.Logger
	Now        func() time.Time
}

// Handler serves the enrol and verify pages and the QR code image.
type Handler struct {
	opts  HandlerOptions
	pages *web.Pages
}

// NewHandler validates opts.
func NewHandler(opts HandlerOptions) (*Handler, error) {
	if opts.Service == nil || opts.Sessions == nil || opts.Users == nil || opts.Auditor == nil {
		return nil, errors.New("mfa: HandlerOptions.Service, Sessions, Users and Auditor are required")
	}
	if opts.MaxFailures <= 0 {
		opts.MaxFailures = DefaultMaxFailures
	}
	if opts.LockFor <= 0 {
		opts.LockFor = DefaultLockFor
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	pages, err := web.Load()
	if err != nil {
		return nil, err
	}
	return &Handler{opts: opts, pages: pages}, nil
}

// Register adds the pages to mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET "+PathVerify, h.verifyPage)
	mux.HandleFunc("POST "+PathVerify, h.verifySubmit)
	mux.HandleFunc("GET "+PathEnrol, h.enrolPage)
	mux.HandleFunc("POST "+PathEnrol, h.enrolSubmit)
	mux.HandleFunc("GET "+PathQR, h.qr)
}

// LocalNext returns next when it is a path on this server (not
// protocol-relative, no scheme, no backslash tricks), else DefaultNext.
func LocalNext(next string) string {
	if next == "" || len(next) > 2048 || next[0] != '/' || strings.HasPrefix(next, "//") ||
		strings.ContainsAny(next, "\\\r\n\t") {
		return DefaultNext
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return DefaultNext
	}
	return next
}

// VerifyURL is the verify page returning to next.
func VerifyURL(next string) string { return PathVerify + "?next=" + url.QueryEscape(LocalNext(next)) }

// EnrolURL is the enrol page returning to next.
func EnrolURL(next string) string { return PathEnrol + "?next=" + url.QueryEscape(LocalNext(next)) }

// SignInURL is the sign-in page returning to next.
func SignInURL(next string) string { return PathSignIn + "?next=" + url.QueryEscape(LocalNext(next)) }

func see(w http.ResponseWriter, r *http.Request, to string) {
	httpx.NoStore(w)
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, to, http.StatusSeeOther)
}

func (h *Handler) errorPage(w http.ResponseWriter, status int, title, msg string) {
	httpx.PageSecurityHeaders(w)
	h.pages.Write(w, status, web.PageError, web.ErrorPage{Title: title, Message: msg})
}

// signedIn returns the (password) session and its user, or sends the browser to sign in.
func (h *Handler) signedIn(w http.ResponseWriter, r *http.Request, next string) (*storage.Session, *storage.User, bool) {
	sess, _, err := h.opts.Sessions.FromRequest(r)
	if err != nil {
		see(w, r, SignInURL(next))
		return nil, nil, false
	}
	u, err := h.opts.Users.GetUser(r.Context(), sess.UserID)
	if err != nil {
		see(w, r, SignInURL(next))
		return nil, nil, false
	}
	return sess, u, true
}

func (h *Handler) required(role storage.Role) bool {
	for _, r := range h.opts.RequireFor {
		if r == role {
			return true
		}
	}
	return false
}

func (h *Handler) verifyPage(w http.ResponseWriter, r *http.Request) {
	next := LocalNext(r.URL.Query().Get("next"))
	sess, u, ok := h.signedIn(w, r, r.URL.RequestURI())
	if !ok {
		return
	}
	if session.HasMethod(sess, MethodOTP) {
		see(w, r, next)
		return
	}
	enrolled, err := h.opts.Service.Enrolled(r.Context(), u.ID)
	if err != nil {
		h.internal(w, r, err)
		return
	}
	if !enrolled {
		see(w, r, EnrolURL(next))
		return
	}
	h.renderVerify(w, http.StatusOK, sess, next, "")
}

func (h *Handler) renderVerify(w http.ResponseWriter, status int, sess *storage.Session, next, msg string) {
	httpx.PageSecurityHeaders(w)
	h.pages.Write(w, status, web.PageMFA, web.MFAPage{Title: "Two-step sign-in", CSRF: sess.CSRFToken, Next: next, Error: msg})
}

// parse reads the form and checks its CSRF token against sess.
func (h *Handler) parse(w http.ResponseWriter, r *http.Request) (*storage.Session, *storage.User, string, bool) {
	if err := httpx.ParseForm(w, r); err != nil {
		h.errorPage(w, http.StatusBadRequest, "This request cannot be completed", "The form could not be read.")
		return nil, nil, "", false
	}
	next := LocalNext(r.PostForm.Get("next"))
	sess, u, ok := h.signedIn(w, r, next)
	if !ok {
		return nil, nil, "", false
	}
	if err := session.CheckCSRF(sess, r.PostForm.Get("csrf")); err != nil {
		h.record(r.Context(), audit.Event{Time: h.opts.Now(), Action: ActionVerified, Outcome: audit.Failure,
			UserID: u.ID, SourceIP: httpx.ClientIP(r), UserAgent: r.UserAgent(), Reason: "CSRF token missing or invalid"})
		h.errorPage(w, http.StatusForbidden, "This form has expired", "Go back, reload the page and try again.")
		return nil, nil, "", false
	}
	return sess, u, next, true
}

func (h *Handler) verifySubmit(w http.ResponseWriter, r *http.Request) {
	sess, u, next, ok := h.parse(w, r)
	if !ok {
		return
	}
	if session.HasMethod(sess, MethodOTP) {
		see(w, r, next)
		return
	}
	ctx := r.Context()
	now := h.opts.Now()
	if now.Before(u.LockedUntil) {
		h.lockedOut(w, r)
		return
	}
	err := h.opts.Service.Verify(ctx, u.ID, r.PostForm.Get("code"))
	if errors.Is(err, ErrNotEnrolled) {
		see(w, r, EnrolURL(next))
		return
	}
	if msg := Message(err); msg != "" {
		nu, ferr := h.opts.Users.RecordLoginFailure(ctx, u.ID, now, h.opts.MaxFailures, h.opts.LockFor)
		if ferr != nil {
			h.internal(w, r, ferr)
			return
		}
		if now.Before(nu.LockedUntil) {
			h.lockedOut(w, r)
			return
		}
		h.renderVerify(w, http.StatusOK, sess, next, msg)
		return
	}
	if err != nil {
		h.internal(w, r, err)
		return
	}
	if err := h.opts.Users.RecordLoginSuccess(ctx, u.ID); err != nil {
		h.internal(w, r, err)
		return
	}
	h.stepUp(w, r, sess, u, next)
}

// lockedOut ends the half-signed-in session and says why.
func (h *Handler) lockedOut(w http.ResponseWriter, r *http.Request) {
	_, _ = h.opts.Sessions.Logout(w, r)
	h.errorPage(w, http.StatusForbidden, "Too many attempts", session.MsgLocked)
}

// stepUp replaces the password session with a two-factor one (a new
// cookie) and continues to next.
func (h *Handler) stepUp(w http.ResponseWriter, r *http.Request, old *storage.Session, u *storage.User, next string) {
	ctx := r.Context()
	amr := strings.TrimSpace(old.AMR + " " + MethodOTP)
	if !session.HasMethod(old, MethodPassword) {
		amr = MethodPassword + " " + MethodOTP
	}
	value, _, err := h.opts.Sessions.StartAuth(ctx, u.ID, amr, ACRMultiFactor)
	if err != nil {
		h.internal(w, r, err)
		return
	}
	if _, oldValue, err := h.opts.Sessions.FromRequest(r); err == nil {
		_ = h.opts.Sessions.End(context.WithoutCancel(ctx), oldValue)
	}
	h.opts.Sessions.SetCookie(w, value)
	see(w, r, next)
}

func (h *Handler) enrolPage(w http.ResponseWriter, r *http.Request) {
	next := LocalNext(r.URL.Query().Get("next"))
	sess, u, ok := h.signedIn(w, r, r.URL.RequestURI())
	if !ok {
		return
	}
	h.renderEnrol(w, r, http.StatusOK, sess, u, next, "")
}

func (h *Handler) renderEnrol(w http.ResponseWriter, r *http.Request, status int, sess *storage.Session, u *storage.User, next, msg string) {
	_, key, err := h.opts.Service.Pending(r.Context(), u.ID, u.Username)
	switch {
	case errors.Is(err, ErrAlreadyEnrolled):
		see(w, r, VerifyURL(next))
		return
	case errors.Is(err, ErrNotProvisioned):
		h.record(r.Context(), audit.Event{Time: h.opts.Now(), Action: ActionEnrolled, Outcome: audit.Failure,
			UserID: u.ID, SourceIP: httpx.ClientIP(r), UserAgent: r.UserAgent(), Reason: "no provisioned key (login.mfa_enrolment: provisioned)"})
		h.errorPage(w, http.StatusForbidden, "Two-step sign-in is not set up yet",
			"An administrator sets up two-step sign-in for this account and gives you its key. Ask your administrator, then sign in again.")
		return
	case err != nil:
		h.internal(w, r, err)
		return
	}
	page := web.MFAEnrolPage{Title: "Set up two-step sign-in", CSRF: sess.CSRFToken,
		Next: next, Required: h.required(u.Role), Error: msg}
	if key != "" { // not a provisioned key, which is never shown
		page.QRURL, page.Key = PathQR, group(key)
	}
	httpx.PageSecurityHeaders(w)
	h.pages.Write(w, status, web.PageMFAEnrol, page)
}

// group splits a base32 key into blocks of four for reading.
func group(key string) string {
	var b strings.Builder
	for i, r := range key {
		if i > 0 && i%4 == 0 {
			b.WriteByte(' ')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func (h *Handler) enrolSubmit(w http.ResponseWriter, r *http.Request) {
	sess, u, next, ok := h.parse(w, r)
	if !ok {
		return
	}
	codes, err := h.opts.Service.Confirm(r.Context(), u.ID, r.PostForm.Get("code"))
	switch {
	case errors.Is(err, ErrAlreadyEnrolled):
		see(w, r, VerifyURL(next))
		return
	case errors.Is(err, ErrNotEnrolled):
		see(w, r, EnrolURL(next))
		return
	case errors.Is(err, ErrInvalidCode), errors.Is(err, ErrNotProvisioned):
		h.renderEnrol(w, r, http.StatusOK, sess, u, next, Message(err))
		return
	case err != nil:
		h.internal(w, r, err)
		return
	}
	// The new factor was just proven: the session steps up now, and the
	// recovery codes page links on to next.
	ctx := r.Context()
	value, _, err := h.opts.Sessions.StartAuth(ctx, u.ID, MethodPassword+" "+MethodOTP, ACRMultiFactor)
	if err != nil {
		h.internal(w, r, err)
		return
	}
	if _, oldValue, err := h.opts.Sessions.FromRequest(r); err == nil {
		_ = h.opts.Sessions.End(context.WithoutCancel(ctx), oldValue)
	}
	h.opts.Sessions.SetCookie(w, value)
	httpx.PageSecurityHeaders(w)
	h.pages.Write(w, http.StatusOK, web.PageMFARecovery, web.MFARecoveryPage{Title: "Recovery codes", Codes: codes, Next: next})
}

// qr serves the pending enrolment's QR code as a PNG image.
func (h *Handler) qr(w http.ResponseWriter, r *http.Request) {
	sess, u, ok := h.signedIn(w, r, PathEnrol)
	if !ok {
		return
	}
	_ = sess
	uri, _, err := h.opts.Service.Pending(r.Context(), u.ID, u.Username)
	if errors.Is(err, ErrAlreadyEnrolled) || errors.Is(err, ErrNotProvisioned) || (err == nil && uri == "") {
		http.NotFound(w, r) // nothing to show: enrolled, or a key handed over out of band
		return
	}
	if err != nil {
		h.internal(w, r, err)
		return
	}
	png, err := QRCode(uri)
	if err != nil {
		h.internal(w, r, err)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "image/png")
	hd.Set("Cache-Control", "no-store")
	hd.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	_, _ = w.Write(png)
}

func (h *Handler) internal(w http.ResponseWriter, r *http.Request, err error) {
	h.opts.Logger.ErrorContext(r.Context(), "mfa page failed", slog.Any("err", err))
	h.errorPage(w, http.StatusInternalServerError, "Something went wrong", "The server could not complete this request. Please try again later.")
}

func (h *Handler) record(ctx context.Context, ev audit.Event) {
	if err := h.opts.Auditor.Record(ctx, ev); err != nil {
		h.opts.Logger.ErrorContext(ctx, "audit write failed", slog.String("action", string(ev.Action)), slog.Any("err", err))
	}
}
