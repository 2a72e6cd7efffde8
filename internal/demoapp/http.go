package demoapp

import (
	"crypto/subtle"
	"embed"
	"errors"
	"html/template"
	"net/http"
	"net/url"
)

//go:embed templates/*.html templates/style.css
var assets embed.FS

var pages = template.Must(template.ParseFS(assets, "templates/*.html"))

// Register mounts the app's routes on mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", h.home)
	mux.HandleFunc("POST /login", h.login)
	mux.HandleFunc("GET /callback", h.callback)
	mux.HandleFunc("POST /logout", h.logout)
	mux.HandleFunc("GET /style.css", h.style)
}

// securityHeaders: no scripts at all, styles only from the app, forms post
// only to the app (the sign-in redirect goes on to the authorization
// server, which form-action must also allow), no framing, no referrer (the
// callback URL carries the authorization code).
func (h *Handler) securityHeaders(w http.ResponseWriter) {
	hd := w.Header()
	fa := "'self'"
	if o := origin(h.opts.Issuer); o != "" {
		fa += " " + o
	}
	hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action "+fa+"; frame-ancestors 'none'; base-uri 'none'")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Cache-Control", "no-store")
}

func origin(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

// setCookie writes the session cookie (HTTP-only, SameSite=Lax so the
// top-level redirect back from the authorization server carries it).
func (h *Handler) setCookie(w http.ResponseWriter, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: value, Path: "/", HttpOnly: true, Secure: h.secure,
		SameSite: http.SameSiteLaxMode, MaxAge: maxAge,
	})
}

// current returns the request's session and cookie value, or nil.
func (h *Handler) current(r *http.Request) (*session, string) {
	c, err := r.Cookie(CookieName)
	if err != nil {
		return nil, ""
	}
	return h.lookup(c.Value), c.Value
}

// homeData feeds home.html.
type homeData struct {
	CSRF    string
	Record  *Record
	Message string
}

func (h *Handler) home(w http.ResponseWriter, r *http.Request) {
	h.securityHeaders(w)
	s, _ := h.current(r)
	if s == nil {
		s = &session{}
		h.setCookie(w, h.create(s), 0)
	}
	h.mu.Lock()
	tok, patient, csrf := s.token, s.patient, s.csrf
	h.mu.Unlock()
	data := homeData{CSRF: csrf}
	if tok != nil {
		rec, newTok, err := h.fetchRecord(r.Context(), tok, patient)
		h.mu.Lock()
		s.token = newTok
		h.mu.Unlock()
		switch {
		case errors.Is(err, errSignedOut):
			data.Message = "Your session with the authorization server ended. Please sign in again."
		case err != nil:
			h.opts.Logger.WarnContext(r.Context(), "demoapp: reading the record failed", "error", err)
			h.render(w, http.StatusBadGateway, "error.html", "The patient record could not be read right now.")
			return
		default:
			data.Record = rec
		}
	}
	h.render(w, http.StatusOK, "home.html", data)
}

// checkCSRF compares the form's csrf field with the session's.
func checkCSRF(r *http.Request, s *session) bool {
	got := r.PostFormValue("csrf")
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf)) == 1
}

func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	h.securityHeaders(w)
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	s, _ := h.current(r)
	if s == nil || !checkCSRF(r, s) {
		h.render(w, http.StatusForbidden, "error.html", "This form expired. Go back to the start page and try again.")
		return
	}
	u, err := h.beginSignIn(r.Context(), s)
	if err != nil {
		h.opts.Logger.WarnContext(r.Context(), "demoapp: discovery failed", "error", err)
		h.render(w, http.StatusBadGateway, "error.html", "The authorization server cannot be reached right now.")
		return
	}
	http.Redirect(w, r, u, http.StatusSeeOther)
}

func (h *Handler) callback(w http.ResponseWriter, r *http.Request) {
	h.securityHeaders(w)
	s, old := h.current(r)
	if s == nil {
		h.render(w, http.StatusBadRequest, "error.html", errNoPending.Error()+".")
		return
	}
	tok, err := h.finishSignIn(r.Context(), s, r.URL.Query())
	if err != nil {
		h.render(w, http.StatusBadRequest, "error.html", "Sign-in failed: "+err.Error()+".")
		return
	}
	patient, _ := tok.Extra("patient").(string)
	if patient == "" {
		h.render(w, http.StatusBadRequest, "error.html", "Sign-in failed: no patient was selected.")
		return
	}
	// A new session id after sign-in: a cookie planted before it is worthless.
	h.drop(old)
	h.setCookie(w, h.create(&session{token: tok, patient: patient}), 0)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (h *Handler) logout(w http.ResponseWriter, r *http.Request) {
	h.securityHeaders(w)
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	s, c := h.current(r)
	if s == nil || !checkCSRF(r, s) {
		h.render(w, http.StatusForbidden, "error.html", "This form expired. Go back to the start page and try again.")
		return
	}
	h.drop(c)
	h.setCookie(w, "", -1)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (h *Handler) style(w http.ResponseWriter, _ *http.Request) {
	b, err := assets.ReadFile("templates/style.css")
	if err != nil {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	_, _ = w.Write(b)
}

func (h *Handler) render(w http.ResponseWriter, status int, name string, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := pages.ExecuteTemplate(w, name, data); err != nil {
		h.opts.Logger.Warn("demoapp: render failed", "page", name, "error", err)
	}
}
