package sqlite

import (
	"context"
	"time"

	"github.com/fhirgate/fhirgate/internal/storage"
)

// CreateSession inserts sess; ErrConflict if its hash exists.
func (s *Store) CreateSession(ctx context.Context, sess *storage.Session) error {
	_, err := s.wexec(ctx, nil, `INSERT INTO sessions
		(hash, user_id, csrf_token, auth_time, created_at, last_seen, expires_at, amr, acr)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, sess.Hash, sess.UserID, sess.CSRFToken, micros(sess.AuthTime),
		micros(sess.CreatedAt), micros(sess.LastSeen), micros(sess.ExpiresAt), sess.AMR, sess.ACR)
	return wrap("create session", err)
}

// GetSession returns the session; ErrExpired (and no session) if past ExpiresAt.
func (s *Store) GetSession(ctx context.Context, hash []byte, now time.Time) (*storage.Session, error) {
	sess := storage.Session{Hash: append([]byte(nil), hash...)}
	err := s.rrow(ctx, `SELECT user_id, csrf_token, auth_time, created_at, last_seen, expires_at, amr, acr
		FROM sessions WHERE hash = ?`, hash).Scan(&sess.UserID, &sess.CSRFToken, ts(&sess.AuthTime),
		ts(&sess.CreatedAt), ts(&sess.LastSeen), ts(&sess.ExpiresAt), &sess.AMR, &sess.ACR)
	if err != nil {
		return nil, wrap("get session", err)
	}
	if expired(now, sess.ExpiresAt) {
		return nil, wrap("get session", storage.ErrExpired)
	}
	return &sess, nil
}

// TouchSession sets LastSeen to now; ErrNotFound if there is no session.
func (s *Store) TouchSession(ctx context.Context, hash []byte, now time.Time) error {
	return wrap("touch session", execOne(s.wexec(ctx, nil, `UPDATE sessions SET last_seen = ? WHERE hash = ?`,
		micros(now), hash)))
}

// DeleteSession deletes the session; deleting a missing one is not an error.
func (s *Store) DeleteSession(ctx context.Context, hash []byte) error {
	_, err := s.wexec(ctx, nil, `DELETE FROM sessions WHERE hash = ?`, hash)
	return wrap("delete session", err)
}

// DeleteUserSessions deletes every session of userID.
func (s *Store) DeleteUserSessions(ctx context.Context, userID string) error {
	_, err := s.wexec(ctx, nil, `DELETE FROM sessions WHERE user_id = ?`, userID)
	return wrap("delete user sessions", err)
}

// GetConsent returns the consent of userID for clientID.
func (s *Store) GetConsent(ctx context.Context, userID, clientID string) (*storage.Consent, error) {
	c := storage.Consent{UserID: userID, ClientID: clientID}
	err := s.rrow(ctx, `SELECT scope, created_at, updated_at FROM consents
		WHERE user_id = ? AND client_id = ?`, userID, clientID).Scan(&c.Scope, ts(&c.CreatedAt), ts(&c.UpdatedAt))
	if err != nil {
		return nil, wrap("get consent", err)
	}
	return &c, nil
}

// PutConsent stores c, replacing every field of an existing consent.
func (s *Store) PutConsent(ctx context.Context, c *storage.Consent) error {
	_, err := s.wexec(ctx, nil, `INSERT INTO consents (user_id, client_id, scope, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id, client_id) DO UPDATE SET
		scope = excluded.scope, created_at = excluded.created_at, updated_at = excluded.updated_at`,
		c.UserID, c.ClientID, c.Scope, micros(c.CreatedAt), micros(c.UpdatedAt))
	return wrap("put consent", err)
}

// DeleteConsent deletes the consent; deleting a missing one is not an error.
func (s *Store) DeleteConsent(ctx context.Context, userID, clientID string) error {
	_, err := s.wexec(ctx, nil, `DELETE FROM consents WHERE user_id = ? AND client_id = ?`, userID, clientID)
	return wrap("delete consent", err)
}
