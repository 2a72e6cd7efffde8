package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fhirgate/fhirgate/internal/storage"
)

// RevokeConsent deletes the consent and revokes the user's families with
// the client in one transaction; ErrNotFound if neither existed.
func (s *Store) RevokeConsent(ctx context.Context, userID, clientID string, now time.Time, reason string) error {
	return s.tx(ctx, "revoke consent", func(tx pgx.Tx) error {
		del, err := tx.Exec(ctx, `DELETE FROM consents WHERE user_id = $1 AND client_id = $2`, userID, clientID)
		if err != nil {
			return err
		}
		rev, err := tx.Exec(ctx, `UPDATE token_families SET revoked_at = $1, reason = $2
			WHERE user_id = $3 AND client_id = $4 AND revoked_at IS NULL`, now, reason, userID, clientID)
		if err != nil {
			return err
		}
		if del.RowsAffected()+rev.RowsAffected() == 0 {
			return storage.ErrNotFound
		}
		return nil
	})
}

// RevokeAccessToken lists jti until expiresAt (a later expiry extends an
// existing entry; the first revocation time is kept) and purges entries
// that have expired.
func (s *Store) RevokeAccessToken(ctx context.Context, jti string, expiresAt, now time.Time) error {
	return s.tx(ctx, "revoke access token", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO revoked_access_tokens (jti, revoked_at, expires_at) VALUES ($1, $2, $3)
			ON CONFLICT (jti) DO UPDATE SET expires_at = GREATEST(revoked_access_tokens.expires_at, EXCLUDED.expires_at)`,
			jti, now, expiresAt); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM revoked_access_tokens WHERE expires_at <= $1`, now)
		return err
	})
}

// IsRevoked reports whether jti is listed or familyID is a revoked family.
func (s *Store) IsRevoked(ctx context.Context, jti, familyID string, _ time.Time) (bool, error) {
	var revoked bool
	err := s.pool.QueryRow(ctx, `SELECT
		EXISTS (SELECT 1 FROM revoked_access_tokens WHERE jti = $1 AND $1 <> '') OR
		EXISTS (SELECT 1 FROM token_families WHERE id = $2 AND $2 <> '' AND revoked_at IS NOT NULL)`,
		jti, familyID).Scan(&revoked)
	if err != nil {
		return false, wrap("is revoked", err)
	}
	return revoked, nil
}

// RevokedSince lists access tokens and families revoked at or after since
// whose entries have not expired at now.
func (s *Store) RevokedSince(ctx context.Context, since, now time.Time) ([]storage.RevokedToken, error) {
	ttl := storage.FamilyRevocationTTL
	rows, err := s.pool.Query(ctx, `
		SELECT 'jti', jti, revoked_at, expires_at FROM revoked_access_tokens
			WHERE revoked_at >= $1 AND expires_at > $2
		UNION ALL
		SELECT 'family', id, revoked_at, revoked_at + $3::interval FROM token_families
			WHERE revoked_at IS NOT NULL AND revoked_at >= $1 AND revoked_at + $3::interval > $2`,
		since, now, ttl)
	if err != nil {
		return nil, wrap("revoked since", err)
	}
	defer rows.Close()
	var out []storage.RevokedToken
	for rows.Next() {
		var e storage.RevokedToken
		var kind string
		if err := rows.Scan(&kind, &e.ID, ts(&e.RevokedAt), ts(&e.ExpiresAt)); err != nil {
			return nil, wrap("revoked since", err)
		}
		e.Kind = storage.RevokedAccessToken
		if kind == "family" {
			e.Kind = storage.RevokedFamily
		}
		out = append(out, e)
	}
	return out, wrap("revoked since", rows.Err())
}

// replayPurgeEvery is how many UseOnce calls pass between purges of expired keys.
const replayPurgeEvery = 256

// UseOnce records key until expiresAt in one statement (an upsert that
// overwrites only an expired key), so concurrent callers on any node are
// serialised by the key's row: exactly one succeeds. Expired keys are
// purged every replayPurgeEvery calls of this process.
func (s *Store) UseOnce(ctx context.Context, key string, expiresAt, now time.Time) error {
	tag, err := s.pool.Exec(ctx, `INSERT INTO replays (key, expires_at) VALUES ($1, $2)
		ON CONFLICT (key) DO UPDATE SET expires_at = EXCLUDED.expires_at WHERE replays.expires_at <= $3`,
		key, expiresAt, now)
	if err != nil {
		return wrap("use once", err)
	}
	if tag.RowsAffected() == 0 {
		return wrap("use once", storage.ErrAlreadyUsed)
	}
	if s.replayCalls.Add(1)%replayPurgeEvery == 0 {
		if _, err := s.pool.Exec(ctx, `DELETE FROM replays WHERE expires_at <= $1`, now); err != nil {
			return wrap("purge replays", err)
		}
	}
	return nil
}
