package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/fhirgate/fhirgate/internal/storage"
)

// RevokeConsent deletes the consent and revokes the user's families with
// the client in one write transaction; ErrNotFound if neither existed.
func (s *Store) RevokeConsent(ctx context.Context, userID, clientID string, now time.Time, reason string) error {
	return s.tx(ctx, "revoke consent", func(tx *sql.Tx) error {
		res, err := s.wexec(ctx, tx, `DELETE FROM consents WHERE user_id = ? AND client_id = ?`, userID, clientID)
		if err != nil {
			return err
		}
		deleted, err := res.RowsAffected()
		if err != nil {
			return err
		}
		res, err = s.wexec(ctx, tx, `UPDATE token_families SET revoked_at = ?, reason = ?
			WHERE user_id = ? AND client_id = ? AND revoked_at IS NULL`, micros(now), reason, userID, clientID)
		if err != nil {
			return err
		}
		revoked, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if deleted+revoked == 0 {
			return storage.ErrNotFound
		}
		return nil
	})
}

// RevokeAccessToken lists jti until expiresAt (a later expiry extends an
// existing entry; the first revocation time is kept) and purges entries
// that have expired.
func (s *Store) RevokeAccessToken(ctx context.Context, jti string, expiresAt, now time.Time) error {
	return s.tx(ctx, "revoke access token", func(tx *sql.Tx) error {
		if _, err := s.wexec(ctx, tx, `INSERT INTO revoked_access_tokens (jti, revoked_at, expires_at) VALUES (?, ?, ?)
			ON CONFLICT (jti) DO UPDATE SET expires_at = max(expires_at, excluded.expires_at)`,
			jti, now.UnixMicro(), expiresAt.UnixMicro()); err != nil {
			return err
		}
		_, err := s.wexec(ctx, tx, `DELETE FROM revoked_access_tokens WHERE expires_at <= ?`, now.UnixMicro())
		return err
	})
}

// IsRevoked reports whether jti is listed or familyID is a revoked family.
func (s *Store) IsRevoked(ctx context.Context, jti, familyID string, _ time.Time) (bool, error) {
	var n int
	err := s.rrow(ctx, `SELECT
		(SELECT COUNT(*) FROM revoked_access_tokens WHERE jti = ?1 AND ?1 <> '') +
		(SELECT COUNT(*) FROM token_families WHERE id = ?2 AND ?2 <> '' AND revoked_at IS NOT NULL)`,
		jti, familyID).Scan(&n)
	if err != nil {
		return false, wrap("is revoked", err)
	}
	return n > 0, nil
}

// RevokedSince lists access tokens and families revoked at or after since
// whose entries have not expired at now. The zero since (year 1) is a valid
// micros value before every stored time, so it reads everything.
func (s *Store) RevokedSince(ctx context.Context, since, now time.Time) ([]storage.RevokedToken, error) {
	ttl := storage.FamilyRevocationTTL.Microseconds()
	rows, err := s.r.QueryContext(ctx, `
		SELECT 'jti', jti, revoked_at, expires_at FROM revoked_access_tokens
			WHERE revoked_at >= ?1 AND expires_at > ?2
		UNION ALL
		SELECT 'family', id, revoked_at, revoked_at + ?3 FROM token_families
			WHERE revoked_at IS NOT NULL AND revoked_at >= ?1 AND revoked_at + ?3 > ?2`,
		since.UnixMicro(), now.UnixMicro(), ttl)
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

// UseOnce records key until expiresAt in one statement: a key that is
// recorded and unexpired at now is ErrAlreadyUsed; an expired one is
// overwritten. Concurrent calls share a commit (see writeBatcher). Expired
// keys are purged every replayPurgeEvery calls.
func (s *Store) UseOnce(ctx context.Context, key string, expiresAt, now time.Time) error {
	err := s.txBatched(ctx, "use once", func(ctx context.Context, tx *sql.Tx) error {
		err := execOne(s.wexec(ctx, tx, `INSERT INTO replays (key, expires_at) VALUES (?1, ?2)
			ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at WHERE replays.expires_at <= ?3`,
			key, expiresAt.UnixMicro(), now.UnixMicro()))
		if errors.Is(err, storage.ErrNotFound) {
			return noWritesErr{err} // the key is in use: the statement changed nothing
		}
		return err
	})
	if errors.Is(err, storage.ErrNotFound) {
		return wrap("use once", storage.ErrAlreadyUsed)
	}
	if err != nil {
		return err
	}
	if s.replayCalls.Add(1)%replayPurgeEvery == 0 {
		if _, err := s.wexec(ctx, nil, `DELETE FROM replays WHERE expires_at <= ?`, now.UnixMicro()); err != nil {
			return wrap("purge replays", err)
		}
	}
	return nil
}
