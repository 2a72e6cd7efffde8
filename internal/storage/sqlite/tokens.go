package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/internal/storage"
)

// ReasonReuse is the revocation reason RotateRefreshToken records when it
// detects a rotated refresh token presented again.
const ReasonReuse = "refresh token reuse"

const familyCols = `id, client_id, user_id, scope, context, created_at, expires_at, revoked_at, reason,
	dpop_jkt, cert_thumbprint, session_hash`

func scanFamily(sc scanner) (*storage.TokenFamily, error) {
	var f storage.TokenFamily
	if err := sc.Scan(familyDest(&f)...); err != nil {
		return nil, err
	}
	return &f, nil
}

// familyDest is where the columns of familyCols scan into f.
func familyDest(f *storage.TokenFamily) []any {
	return []any{&f.ID, &f.ClientID, &f.UserID, &f.Scope, js(&f.Context), ts(&f.CreatedAt),
		ts(&f.ExpiresAt), ts(&f.RevokedAt), &f.Reason, &f.DPoPJKT, &f.CertThumbprint, bs(&f.SessionHash)}
}

// CreateFamily inserts f; ErrConflict if its id exists.
func (s *Store) CreateFamily(ctx context.Context, f *storage.TokenFamily) error {
	return wrap("create family", s.insertFamily(ctx, nil, f))
}

func (s *Store) insertFamily(ctx context.Context, tx *sql.Tx, f *storage.TokenFamily) error {
	lc, err := jsonText(f.Context)
	if err != nil {
		return err
	}
	_, err = s.wexec(ctx, tx, `INSERT INTO token_families (`+familyCols+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, f.ID, f.ClientID, f.UserID, f.Scope, lc,
		micros(f.CreatedAt), micros(f.ExpiresAt), micros(f.RevokedAt), f.Reason, f.DPoPJKT, f.CertThumbprint,
		blob(f.SessionHash))
	return err
}

// GetFamily returns the family with that id.
func (s *Store) GetFamily(ctx context.Context, id string) (*storage.TokenFamily, error) {
	f, err := scanFamily(s.rrow(ctx, `SELECT `+familyCols+` FROM token_families WHERE id = ?`, id))
	return f, wrap("get family", err)
}

// RevokeFamily revokes the family (and so all its refresh tokens). An
// already revoked family keeps its first revocation time and reason.
func (s *Store) RevokeFamily(ctx context.Context, id string, now time.Time, reason string) error {
	return s.tx(ctx, "revoke family", func(tx *sql.Tx) error {
		return s.revokeFamily(ctx, tx, id, now, reason)
	})
}

func (s *Store) revokeFamily(ctx context.Context, tx *sql.Tx, id string, now time.Time, reason string) error {
	res, err := s.wexec(ctx, tx, `UPDATE token_families SET revoked_at = ?, reason = ?
		WHERE id = ? AND revoked_at IS NULL`, micros(now), reason, id)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n == 1 {
		return err
	}
	var one int
	return s.wrow(ctx, tx, `SELECT 1 FROM token_families WHERE id = ?`, id).Scan(&one)
}

// RevokeFamiliesFor revokes every unrevoked family of userID and clientID.
func (s *Store) RevokeFamiliesFor(ctx context.Context, userID, clientID string, now time.Time, reason string) error {
	_, err := s.wexec(ctx, nil, `UPDATE token_families SET revoked_at = ?, reason = ?
		WHERE user_id = ? AND client_id = ? AND revoked_at IS NULL`, micros(now), reason, userID, clientID)
	return wrap("revoke families", err)
}

// RevokeClientFamilies revokes every unrevoked family of clientID.
func (s *Store) RevokeClientFamilies(ctx context.Context, clientID string, now time.Time, reason string) error {
	_, err := s.wexec(ctx, nil, `UPDATE token_families SET revoked_at = ?, reason = ?
		WHERE client_id = ? AND revoked_at IS NULL`, micros(now), reason, clientID)
	return wrap("revoke client families", err)
}

// RevokeUserFamilies revokes every unrevoked family of userID.
func (s *Store) RevokeUserFamilies(ctx context.Context, userID string, now time.Time, reason string) error {
	_, err := s.wexec(ctx, nil, `UPDATE token_families SET revoked_at = ?, reason = ?
		WHERE user_id = ? AND revoked_at IS NULL`, micros(now), reason, userID)
	return wrap("revoke user families", err)
}

const refreshCols = `hash, family_id, client_id, user_id, scope, created_at, expires_at, used_at, successor_hash`

func scanRefresh(sc scanner) (*storage.RefreshToken, error) {
	var t storage.RefreshToken
	if err := sc.Scan(refreshDest(&t)...); err != nil {
		return nil, err
	}
	return &t, nil
}

// refreshDest is where the columns of refreshCols scan into t.
func refreshDest(t *storage.RefreshToken) []any {
	return []any{bs(&t.Hash), &t.FamilyID, &t.ClientID, &t.UserID, &t.Scope, ts(&t.CreatedAt),
		ts(&t.ExpiresAt), ts(&t.UsedAt), bs(&t.SuccessorHash)}
}

// refreshGrantQuery selects a refresh token (by hash) with its family.
var refreshGrantQuery = `SELECT ` + qualified("r", refreshCols) + `, ` + qualified("f", familyCols) + `
	FROM refresh_tokens r JOIN token_families f ON f.id = r.family_id WHERE r.hash = ?`

// qualified prefixes each column of the comma-separated cols with alias.
func qualified(alias, cols string) string {
	parts := strings.Split(cols, ",")
	for i, c := range parts {
		parts[i] = alias + "." + strings.TrimSpace(c)
	}
	return strings.Join(parts, ", ")
}

func scanRefreshGrant(sc scanner) (*storage.RefreshToken, *storage.TokenFamily, error) {
	var (
		t storage.RefreshToken
		f storage.TokenFamily
	)
	if err := sc.Scan(append(refreshDest(&t), familyDest(&f)...)...); err != nil {
		return nil, nil, err
	}
	return &t, &f, nil
}

// refreshGrantUserQuery is refreshGrantQuery with the token's user.
var refreshGrantUserQuery = `SELECT ` + qualified("r", refreshCols) + `, ` + qualified("f", familyCols) + `, ` +
	storage.OptionalUserColumns("u") + `
	FROM refresh_tokens r JOIN token_families f ON f.id = r.family_id LEFT JOIN users u ON u.id = r.user_id
	WHERE r.hash = ?`

// GetRefreshGrant returns the refresh token stored under hash, its family
// and its user, in one read.
func (s *Store) GetRefreshGrant(ctx context.Context, hash []byte) (*storage.RefreshToken, *storage.TokenFamily, *storage.User, error) {
	var (
		t storage.RefreshToken
		f storage.TokenFamily
		u storage.OptionalUser
	)
	dest := append(refreshDest(&t), familyDest(&f)...)
	dest = append(dest, u.Dest(func(p *time.Time) any { return ts(p) })...)
	if err := s.rrow(ctx, refreshGrantUserQuery, hash).Scan(dest...); err != nil {
		return nil, nil, nil, wrap("get refresh grant", err)
	}
	return &t, &f, u.User(), nil
}

func (s *Store) insertRefresh(ctx context.Context, tx *sql.Tx, t *storage.RefreshToken) error {
	_, err := s.wexec(ctx, tx, `INSERT INTO refresh_tokens (`+refreshCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		t.Hash, t.FamilyID, t.ClientID, t.UserID, t.Scope, micros(t.CreatedAt), micros(t.ExpiresAt),
		micros(t.UsedAt), blob(t.SuccessorHash))
	return err
}

// CreateRefreshToken inserts t; ErrConflict if its hash exists, ErrNotFound
// if its family does not.
func (s *Store) CreateRefreshToken(ctx context.Context, t *storage.RefreshToken) error {
	return wrap("create refresh token", s.insertRefresh(ctx, nil, t))
}

// GetRefreshToken returns the refresh token stored under hash.
func (s *Store) GetRefreshToken(ctx context.Context, hash []byte) (*storage.RefreshToken, error) {
	t, err := scanRefresh(s.rrow(ctx, `SELECT `+refreshCols+` FROM refresh_tokens WHERE hash = ?`, hash))
	return t, wrap("get refresh token", err)
}

// errFamilyMismatch is returned when next does not belong to the old token's family.
var errFamilyMismatch = errors.New("next refresh token belongs to another family")

// RotateRefreshToken checks the token under oldHash and replaces it with
// next, in one write transaction (shared with concurrent rotations: see
// writeBatcher). Checks run in this order: ErrNotFound; a
// used token is retried when storage.Tokens' retry-window rules allow it
// (within retryWindow of its first rotation, family live, successor never
// used), and otherwise is ErrAlreadyUsed (reuse: the family is revoked with
// reason ReasonReuse and that revocation is committed); ErrRevoked;
// ErrExpired (token or family). The old token is returned on success and
// alongside ErrAlreadyUsed, ErrRevoked and ErrExpired.
func (s *Store) RotateRefreshToken(ctx context.Context, oldHash []byte, next *storage.RefreshToken, now time.Time, retryWindow time.Duration) (*storage.RefreshToken, error) {
	var old *storage.RefreshToken
	err := s.txBatched(ctx, "rotate refresh token", func(ctx context.Context, tx *sql.Tx) error {
		// Every failure before the first UPDATE below has written nothing.
		t, f, err := scanRefreshGrant(s.wrow(ctx, tx, refreshGrantQuery, oldHash))
		if errors.Is(err, sql.ErrNoRows) {
			return noWritesErr{err}
		}
		if err != nil {
			return err
		}
		old = t
		if !t.UsedAt.IsZero() {
			retry, err := s.retryable(ctx, tx, t, f, now, retryWindow)
			if err != nil {
				return err
			}
			if !retry {
				if err := s.revokeFamily(ctx, tx, f.ID, now, ReasonReuse); err != nil {
					return err
				}
				return commitErr{storage.ErrAlreadyUsed}
			}
		}
		if !f.RevokedAt.IsZero() {
			return noWritesErr{storage.ErrRevoked}
		}
		if expired(now, t.ExpiresAt) || expired(now, f.ExpiresAt) {
			return noWritesErr{storage.ErrExpired}
		}
		if next == nil || next.FamilyID != t.FamilyID || bytes.Equal(next.Hash, oldHash) {
			return noWritesErr{errFamilyMismatch}
		}
		if t.UsedAt.IsZero() {
			if err := execOne(s.wexec(ctx, tx, `UPDATE refresh_tokens SET used_at = ?, successor_hash = ?
				WHERE hash = ? AND used_at IS NULL`, micros(now), next.Hash, oldHash)); err != nil {
				return err
			}
			t.UsedAt = time.UnixMicro(now.UnixMicro()).UTC()
		} else {
			// Retry: the unused successor is spent (presenting it later is
			// reuse) and next takes its place; UsedAt keeps the first rotation.
			if err := execOne(s.wexec(ctx, tx, `UPDATE refresh_tokens SET used_at = ?, successor_hash = NULL
				WHERE hash = ? AND used_at IS NULL`, micros(now), t.SuccessorHash)); err != nil {
				return err
			}
			if err := execOne(s.wexec(ctx, tx, `UPDATE refresh_tokens SET successor_hash = ? WHERE hash = ?`,
				next.Hash, oldHash)); err != nil {
				return err
			}
		}
		t.SuccessorHash = append([]byte(nil), next.Hash...)
		return s.insertRefresh(ctx, tx, next)
	})
	if err == nil || (old != nil && (errors.Is(err, storage.ErrAlreadyUsed) ||
		errors.Is(err, storage.ErrRevoked) || errors.Is(err, storage.ErrExpired))) {
		return old, err
	}
	return nil, err
}

// retryable reports whether the used token t may rotate again: within
// window of its first rotation, its family not revoked, and its successor
// never used.
func (s *Store) retryable(ctx context.Context, tx *sql.Tx, t *storage.RefreshToken, f *storage.TokenFamily,
	now time.Time, window time.Duration) (bool, error) {
	if window <= 0 || !f.RevokedAt.IsZero() || len(t.SuccessorHash) == 0 || !now.Before(t.UsedAt.Add(window)) {
		return false, nil
	}
	var used sql.NullInt64
	err := s.wrow(ctx, tx, `SELECT used_at FROM refresh_tokens WHERE hash = ?`, t.SuccessorHash).Scan(&used)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return !used.Valid, nil
}
