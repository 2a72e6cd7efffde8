package session

import (
	"context"
	"net/http"

	"github.com/fhirgate/fhirgate/internal/secret"
	"github.com/fhirgate/fhirgate/internal/storage"
)

// FromRequest returns the live session named by r's session cookie and the
// cookie value. It returns ErrNoSession when there is none.
func (m *Manager) FromRequest(r *http.Request) (*storage.Session, string, error) {
	c, err := r.Cookie(m.CookieName())
	if err != nil || c.Value == "" {
		return nil, "", ErrNoSession
	}
	s, err := m.Lookup(r.Context(), c.Value)
	if err != nil {
		return nil, "", err
	}
	return s, c.Value, nil
}

func (m *Manager) cookie(name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     "/",
		MaxAge:   maxAge,
		HttpOnly: true,
		Secure:   m.secure,
		SameSite: http.SameSiteLaxMode,
	}
}

// SetCookie sends the session cookie. It is a browser-session cookie; the
// server enforces the idle and absolute timeouts.
func (m *Manager) SetCookie(w http.ResponseWriter, value string) {
	http.SetCookie(w, m.cookie(m.CookieName(), value, 0))
}

// ClearCookie tells the browser to drop the session cookie.
func (m *Manager) ClearCookie(w http.ResponseWriter) {
	http.SetCookie(w, m.cookie(m.CookieName(), "", -1))
}

// Logout ends the session of r, if any, and clears its cookie. It returns
// the ended session (nil if there was none) for auditing.
func (m *Manager) Logout(w http.ResponseWriter, r *http.Request) (*storage.Session, error) {
	s, value, err := m.FromRequest(r)
	m.ClearCookie(w)
	if err != nil {
		return nil, nil
	}
	return s, m.End(context.WithoutCancel(r.Context()), value)
}

// LoginCSRF returns the pre-session CSRF token for a login form: the value
// of the CSRF cookie (double-submit pattern), setting a fresh cookie when r
// carries none. The cookie is HttpOnly; the form carries the same value.
func (m *Manager) LoginCSRF(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(m.csrfCookieName()); err == nil && len(c.Value) == len(secret.Token()) {
		return c.Value
	}
	v := secret.Token()
	http.SetCookie(w, m.cookie(m.csrfCookieName(), v, int(m.absolute.Seconds())))
	return v
}

// CheckLoginCSRF checks a login form's token against the CSRF cookie in
// constant time.
func (m *Manager) CheckLoginCSRF(r *http.Request, submitted string) error {
	c, err := r.Cookie(m.csrfCookieName())
	if err != nil || c.Value == "" || submitted == "" || !secret.Equal([]byte(c.Value), []byte(submitted)) {
		return ErrCSRF
	}
	return nil
}
