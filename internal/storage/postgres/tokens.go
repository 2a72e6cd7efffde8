package postgres

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/fhirgate/fhirgate/internal/storage"
)

// ReasonReuse is the revocation reason RotateRefreshToken records when it
// detects a rotated refresh token presented again.
const ReasonReuse = "refresh token reuse"

const familyCols = `id, client_id, user_id, scope, context, created_at, expires_at, revoked_at, reason,
	dpop_jkt, cert_thumbprint, session_hash`

func scanFamily(row pgx.Row) (*storage.TokenFamily, error) {
	var f storage.TokenFamily
	if err := row.Scan(familyDest(&f)...); err != nil {
		return nil, err
	}
	return &f, nil
}

// familyDest is where the columns of familyCols scan into f.
func familyDest(f *storage.TokenFamily) []any {
	return []any{&f.ID, &f.ClientID, &f.UserID, &f.Scope, &f.Context, ts(&f.CreatedAt),
		ts(&f.ExpiresAt), ts(&f.RevokedAt), &f.Reason, &f.DPoPJKT, &f.CertThumbprint, &f.SessionHash}
}

// CreateFamily inserts f; ErrConflict if its id exists.
func (s *Store) CreateFamily(ctx context.Context, f *storage.TokenFamily) error {
	return wrap("create family", insertFamily(ctx, s.pool, f))
}

func insertFamily(ctx context.Context, q querier, f *storage.TokenFamily) error {
	_, err := q.Exec(ctx, `INSERT INTO token_families (`+familyCols+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`, f.ID, f.ClientID, f.UserID, f.Scope, f.Context,
		tz(f.CreatedAt), tz(f.ExpiresAt), tz(f.RevokedAt), f.Reason, f.DPoPJKT, f.CertThumbprint, f.SessionHash)
	return err
}

// GetFamily returns the family with that id.
func (s *Store) GetFamily(ctx context.Context, id string) (*storage.TokenFamily, error) {
	f, err := scanFamily(s.pool.QueryRow(ctx, `SELECT `+familyCols+` FROM token_families WHERE id = $1`, id))
	return f, wrap("get family", err)
}

// RevokeFamily revokes the family (and so all its refresh tokens). An
// already revoked family keeps its first revocation time and reason.
func (s *Store) RevokeFamily(ctx context.Context, id string, now time.Time, reason string) error {
	return wrap("revoke family", revokeFamily(ctx, s.pool, id, now, reason))
}

func revokeFamily(ctx context.Context, q querier, id string, now time.Time, reason string) error {
	tag, err := q.Exec(ctx, `UPDATE token_families SET revoked_at = $1, reason = $2
		WHERE id = $3 AND revoked_at IS NULL`, now, reason, id)
	if err != nil || tag.RowsAffected() == 1 {
		return err
	}
	var one int
	return q.QueryRow(ctx, `SELECT 1 FROM token_families WHERE id = $1`, id).Scan(&one)
}

// RevokeFamiliesFor revokes every unrevoked family of userID and clientID.
func (s *Store) RevokeFamiliesFor(ctx context.Context, userID, clientID string, now time.Time, reason string) error {
	_, err := s.pool.Exec(ctx, `UPDATE token_families SET revoked_at = $1, reason = $2
		WHERE user_id = $3 AND client_id = $4 AND revoked_at IS NULL`, now, reason, userID, clientID)
	return wrap("revoke families", err)
}

// RevokeClientFamilies revokes every unrevoked family of clientID.
func (s *Store) RevokeClientFamilies(ctx context.Context, clientID string, now time.Time, reason string) error {
	_, err := s.pool.Exec(ctx, `UPDATE token_families SET revoked_at = $1, reason = $2
		WHERE client_id = $3 AND revoked_at IS NULL`, now, reason, clientID)
	return wrap("revoke client families", err)
}

// RevokeUserFamilies revokes every unrevoked family of userID.
func (s *Store) RevokeUserFamilies(ctx context.Context, userID string, now time.Time, reason string) error {
	_, err := s.pool.Exec(ctx, `UPDATE token_families SET revoked_at = $1, reason = $2
		WHERE user_id = $3 AND revoked_at IS NULL`, now, reason, userID)
	return wrap("revoke user families", err)
}

const refreshCols = `hash, family_id, client_id, user_id, scope, created_at, expires_at, used_at, successor_hash`

func scanRefresh(row pgx.Row) (*storage.RefreshToken, error) {
	var t storage.RefreshToken
	if err := row.Scan(refreshDest(&t)...); err != nil {
		return nil, err
	}
	return &t, nil
}

// refreshDest is where the columns of refreshCols scan into t.
func refreshDest(t *storage.RefreshToken) []any {
	return []any{&t.Hash, &t.FamilyID, &t.ClientID, &t.UserID, &t.Scope, ts(&t.CreatedAt),
		ts(&t.ExpiresAt), ts(&t.UsedAt), &t.SuccessorHash}
}

// qualified prefixes each column of the comma-separated cols with alias.
func qualified(alias, cols string) string {
	parts := strings.Split(cols, ",")
	for i, c := range parts {
		parts[i] = alias + "." + strings.TrimSpace(c)
	}
	return strings.Join(parts, ", ")
}

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
	err := s.pool.QueryRow(ctx, `SELECT `+qualified("r", refreshCols)+`, `+qualified("f", familyCols)+`, `+
		storage.OptionalUserColumns("u")+`
		FROM refresh_tokens r JOIN token_families f ON f.id = r.family_id LEFT JOIN users u ON u.id = r.user_id
		WHERE r.hash = $1`, hash).Scan(dest...)
	if err != nil {
		return nil, nil, nil, wrap("get refresh grant", err)
	}
	return &t, &f, u.User(), nil
}

func insertRefresh(ctx context.Context, q querier, t *storage.RefreshToken) error {
	_, err := q.Exec(ctx, `INSERT INTO refresh_tokens (`+refreshCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		t.Hash, t.FamilyID, t.ClientID, t.UserID, t.Scope, tz(t.CreatedAt), tz(t.ExpiresAt), tz(t.UsedAt), t.SuccessorHash)
	return err
}

// CreateRefreshToken inserts t; ErrConflict if its hash exists, ErrNotFound
// if its family does not.
func (s *Store) CreateRefreshToken(ctx context.Context, t *storage.RefreshToken) error {
	return wrap("create refresh token", insertRefresh(ctx, s.pool, t))
}

// GetRefreshToken returns the refresh token stored under hash.
func (s *Store) GetRefreshToken(ctx context.Context, hash []byte) (*storage.RefreshToken, error) {
	t, err := scanRefresh(s.pool.QueryRow(ctx, `SELECT `+refreshCols+` FROM refresh_tokens WHERE hash = $1`, hash))
	return t, wrap("get refresh token", err)
}

// errFamilyMismatch is returned when next does not belong to the old token's family.
var errFamilyMismatch = errors.New("next refresh token belongs to another family")

// RotateRefreshToken checks the token under oldHash and replaces it with
// next in one transaction that locks the token row, then its family row.
// Checks run in this order: ErrNotFound; a used token is retried when
// storage.Tokens' retry-window rules allow it (within retryWindow of its
// first rotation, family live, successor never used; the successor row is
// locked too), and otherwise is ErrAlreadyUsed (reuse: the family is
// revoked with reason ReasonReuse and that revocation is committed);
// ErrRevoked; ErrExpired (token or family). The old token is returned on
// success and alongside ErrAlreadyUsed, ErrRevoked and ErrExpired.
func (s *Store) RotateRefreshToken(ctx context.Context, oldHash []byte, next *storage.RefreshToken, now time.Time, retryWindow time.Duration) (*storage.RefreshToken, error) {
	var old *storage.RefreshToken
	err := s.tx(ctx, "rotate refresh token", func(tx pgx.Tx) error {
		t, err := scanRefresh(tx.QueryRow(ctx, `SELECT `+refreshCols+` FROM refresh_tokens WHERE hash = $1 FOR UPDATE`, oldHash))
		if err != nil {
			return err
		}
		old = t
		f, err := scanFamily(tx.QueryRow(ctx, `SELECT `+familyCols+` FROM token_families WHERE id = $1 FOR UPDATE`, t.FamilyID))
		if err != nil {
			return err
		}
		if !t.UsedAt.IsZero() {
			retry, err := retryable(ctx, tx, t, f, now, retryWindow)
			if err != nil {
				return err
			}
			if !retry {
				if err := revokeFamily(ctx, tx, f.ID, now, ReasonReuse); err != nil {
					return err
				}
				return commitErr{storage.ErrAlreadyUsed}
			}
		}
		if !f.RevokedAt.IsZero() {
			return storage.ErrRevoked
		}
		if expired(now, t.ExpiresAt) || expired(now, f.ExpiresAt) {
			return storage.ErrExpired
		}
		if next == nil || next.FamilyID != t.FamilyID || bytes.Equal(next.Hash, oldHash) {
			return errFamilyMismatch
		}
		if t.UsedAt.IsZero() {
			if err := execOne(ctx, tx, `UPDATE refresh_tokens SET used_at = $1, successor_hash = $2 WHERE hash = $3`,
				now, next.Hash, oldHash); err != nil {
				return err
			}
			t.UsedAt = micro(now)
		} else {
			// Retry: the unused successor is spent (presenting it later is
			// reuse) and next takes its place; UsedAt keeps the first rotation.
			if err := execOne(ctx, tx, `UPDATE refresh_tokens SET used_at = $1, successor_hash = NULL
				WHERE hash = $2 AND used_at IS NULL`, now, t.SuccessorHash); err != nil {
				return err
			}
			if err := execOne(ctx, tx, `UPDATE refresh_tokens SET successor_hash = $1 WHERE hash = $2`,
				next.Hash, oldHash); err != nil {
				return err
			}
		}
		t.SuccessorHash = append([]byte(nil), next.Hash...)
		return insertRefresh(ctx, tx, next)
	})
	if err == nil || (old != nil && (errors.Is(err, storage.ErrAlreadyUsed) ||
		errors.Is(err, storage.ErrRevoked) || errors.Is(err, storage.ErrExpired))) {
		return old, err
	}
	return nil, err
}

// retryable reports whether the used token t may rotate again: within
// window of its first rotation, its family not revoked, and its successor
// (locked here) never used.
func retryable(ctx context.Context, tx pgx.Tx, t *storage.RefreshToken, f *storage.TokenFamily,
	now time.Time, window time.Duration) (bool, error) {
	if window <= 0 || !f.RevokedAt.IsZero() || len(t.SuccessorHash) == 0 || !now.Before(t.UsedAt.Add(window)) {
		return false, nil
	}
	var used pgtype.Timestamptz
	err := tx.QueryRow(ctx, `SELECT used_at FROM refresh_tokens WHERE hash = $1 FOR UPDATE`, t.SuccessorHash).Scan(&used)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return !used.Valid, nil
}
