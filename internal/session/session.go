// Package session manages browser login sessions for the authorization
// server's pages: a random cookie value whose SHA-256 hash keys a
// server-side record, idle and absolute timeouts, a per-session CSRF token,
// a pre-session CSRF token for the login form, and password sign-in with
// per-account and per-IP throttling that does not reveal whether a username
// exists.
package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/internal/secret"
	"github.com/fhirgate/fhirgate/internal/storage"
)

// Default timeouts.
const (
	DefaultIdleTimeout     = 30 * time.Minute
	DefaultAbsoluteTimeout = 12 * time.Hour
)

// Cookie names. The __Host- prefix makes browsers insist on Secure, Path=/
// and no Domain attribute; it can only be used when cookies are Secure.
const (
	SecureCookieName   = "__Host-fhirgate"
	InsecureCookieName = "fhirgate"
	secureCSRFCookie   = "__Host-fhirgate-csrf"
	insecureCSRFCookie = "fhirgate-csrf"
)

// Authentication method references (RFC 8176) and the context classes a
// session records, reported in the id_token's amr and acr.
const (
	MethodPassword = "pwd"
	MethodOTP      = "otp"
	// ACRPassword: signed in with a password only.
	ACRPassword = "urn:fhirgate:acr:1fa"
	// ACRMultiFactor: signed in with a password and a one-time code.
	ACRMultiFactor = "urn:fhirgate:acr:2fa"
)

// ErrNoSession is returned when a request carries no valid session: no
// cookie, an unknown value, or a session past its idle or absolute timeout.
var ErrNoSession = errors.New("session: no valid session")

// ErrCSRF is returned when a form's CSRF token is missing or wrong.
var ErrCSRF = errors.New("session: CSRF token missing or invalid")

// Options configures a Manager.
type Options struct {
	Store storage.Sessions
	// SecureCookies marks cookies Secure and uses the __Host- name. Turn it
	// off only when the issuer is plain http on a loopback address.
	SecureCookies   bool
	IdleTimeout     time.Duration // default 30 min
	AbsoluteTimeout time.Duration // default 12 h
	Logger          *slog.Logger
	Now             func() time.Time
}

// Manager creates, looks up and ends login sessions.
type Manager struct {
	store    storage.Sessions
	secure   bool
	idle     time.Duration
	absolute time.Duration
	logger   *slog.Logger
	now      func() time.Time
}

// New returns a Manager.
func New(opts Options) (*Manager, error) {
	if opts.Store == nil {
		return nil, errors.New("session: Options.Store is required")
	}
	m := &Manager{store: opts.Store, secure: opts.SecureCookies, idle: opts.IdleTimeout,
		absolute: opts.AbsoluteTimeout, logger: opts.Logger, now: opts.Now}
	if m.idle <= 0 {
		m.idle = DefaultIdleTimeout
	}
	if m.absolute <= 0 {
		m.absolute = DefaultAbsoluteTimeout
	}
	if m.idle > m.absolute {
		return nil, fmt.Errorf("session: idle timeout %v exceeds absolute timeout %v", m.idle, m.absolute)
	}
	if m.logger == nil {
		m.logger = slog.New(slog.DiscardHandler)
	}
	if m.now == nil {
		m.now = time.Now
	}
	return m, nil
}

// CookieName is the session cookie's name under the configured security.
func (m *Manager) CookieName() string {
	if m.secure {
		return SecureCookieName
	}
	return InsecureCookieName
}

func (m *Manager) csrfCookieName() string {
	if m.secure {
		return secureCSRFCookie
	}
	return insecureCSRFCookie
}

// Start creates a password-authenticated session for userID and returns the
// cookie value (shown once; only its hash is stored) and the record.
func (m *Manager) Start(ctx context.Context, userID string) (string, *storage.Session, error) {
	return m.StartAuth(ctx, userID, MethodPassword, ACRPassword)
}

// StartAuth is Start recording the authentication methods used (amr,
// space-separated RFC 8176 values such as "pwd otp") and the context class
// reached (acr). A step-up (a second factor) starts a new session this way
// so the cookie changes whenever the session gains privilege.
func (m *Manager) StartAuth(ctx context.Context, userID, amr, acr string) (string, *storage.Session, error) {
	now := m.now()
	value := secret.Token()
	s := &storage.Session{
		Hash:      storage.HashSecret(value),
		UserID:    userID,
		CSRFToken: secret.Token(),
		AMR:       amr,
		ACR:       acr,
		AuthTime:  now,
		CreatedAt: now,
		LastSeen:  now,
		ExpiresAt: now.Add(m.absolute),
	}
	if err := m.store.CreateSession(ctx, s); err != nil {
		return "", nil, fmt.Errorf("session: create: %w", err)
	}
	return value, s, nil
}

// Lookup returns the live session for a cookie value and records activity.
// It returns ErrNoSession (wrapping the cause) when the value is unknown, the
// absolute lifetime has passed, or the session was idle too long; an idle or
// expired session is deleted.
func (m *Manager) Lookup(ctx context.Context, value string) (*storage.Session, error) {
	if value == "" {
		return nil, ErrNoSession
	}
	now := m.now()
	hash := storage.HashSecret(value)
	s, err := m.store.GetSession(ctx, hash, now)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return nil, ErrNoSession
	case errors.Is(err, storage.ErrExpired):
		_ = m.store.DeleteSession(ctx, hash)
		return nil, fmt.Errorf("%w: %w", ErrNoSession, err)
	case err != nil:
		return nil, fmt.Errorf("session: lookup: %w", err)
	}
	if !now.Before(s.ExpiresAt) || !now.Before(s.CreatedAt.Add(m.absolute)) || now.Sub(s.LastSeen) >= m.idle {
		_ = m.store.DeleteSession(ctx, hash)
		return nil, fmt.Errorf("%w: timed out", ErrNoSession)
	}
	if err := m.store.TouchSession(ctx, hash, now); err != nil {
		return nil, fmt.Errorf("session: touch: %w", err)
	}
	s.LastSeen = now
	return s, nil
}

// End deletes the session behind a cookie value. Ending an unknown session
// is not an error.
func (m *Manager) End(ctx context.Context, value string) error {
	if value == "" {
		return nil
	}
	err := m.store.DeleteSession(ctx, storage.HashSecret(value))
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("session: delete: %w", err)
	}
	return nil
}

// HasMethod reports whether s was authenticated with method (an RFC 8176
// amr value such as "otp").
func HasMethod(s *storage.Session, method string) bool {
	if s == nil {
		return false
	}
	for _, m := range strings.Fields(s.AMR) {
		if m == method {
			return true
		}
	}
	return false
}

// CheckCSRF compares a submitted form token with the session's in constant time.
func CheckCSRF(s *storage.Session, submitted string) error {
	if s == nil || s.CSRFToken == "" || submitted == "" || !secret.Equal([]byte(s.CSRFToken), []byte(submitted)) {
		return ErrCSRF
	}
	return nil
}
