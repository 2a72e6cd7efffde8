package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/fhirgate/fhirgate/internal/storage"
)

// GetMFA returns userID's TOTP credential with its unused recovery hashes.
func (s *Store) GetMFA(ctx context.Context, userID string) (*storage.MFACredential, error) {
	c := storage.MFACredential{UserID: userID}
	err := s.rrow(ctx, `SELECT sealed_secret, confirmed, provisioned, last_step, created_at, updated_at
		FROM mfa_credentials WHERE user_id = ?`, userID).Scan(bs(&c.SealedSecret), &c.Confirmed, &c.Provisioned, &c.LastStep,
		ts(&c.CreatedAt), ts(&c.UpdatedAt))
	if err != nil {
		return nil, wrap("get mfa", err)
	}
	rows, err := s.r.QueryContext(ctx, `SELECT hash FROM mfa_recovery_codes WHERE user_id = ? ORDER BY hash`, userID)
	if err != nil {
		return nil, wrap("get mfa", err)
	}
	defer rows.Close()
	for rows.Next() {
		var h []byte
		if err := rows.Scan(bs(&h)); err != nil {
			return nil, wrap("get mfa", err)
		}
		c.RecoveryHashes = append(c.RecoveryHashes, h)
	}
	return &c, wrap("get mfa", rows.Err())
}

// PutMFA inserts or replaces userID's credential and recovery codes in one transaction.
func (s *Store) PutMFA(ctx context.Context, c *storage.MFACredential) error {
	return s.tx(ctx, "put mfa", func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM mfa_credentials WHERE user_id = ?`, c.UserID); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO mfa_credentials
			(user_id, sealed_secret, confirmed, provisioned, last_step, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			c.UserID, c.SealedSecret, c.Confirmed, c.Provisioned, c.LastStep, micros(c.CreatedAt), micros(c.UpdatedAt)); err != nil {
			return err
		}
		for _, h := range c.RecoveryHashes {
			if _, err := tx.ExecContext(ctx, `INSERT INTO mfa_recovery_codes (user_id, hash) VALUES (?, ?)`,
				c.UserID, h); err != nil {
				return err
			}
		}
		return nil
	})
}

// UseTOTPStep records step if it is later than the last one, in one statement.
func (s *Store) UseTOTPStep(ctx context.Context, userID string, step int64, now time.Time) error {
	err := execOne(s.wexec(ctx, nil, `UPDATE mfa_credentials SET last_step = ?, updated_at = ?
		WHERE user_id = ? AND confirmed = 1 AND last_step < ?`, step, micros(now), userID, step))
	if !errors.Is(err, storage.ErrNotFound) {
		return wrap("use totp step", err)
	}
	var confirmed bool
	if qerr := s.rrow(ctx, `SELECT confirmed FROM mfa_credentials WHERE user_id = ?`, userID).Scan(&confirmed); qerr != nil || !confirmed {
		return wrap("use totp step", storage.ErrNotFound)
	}
	return wrap("use totp step", storage.ErrAlreadyUsed)
}

// UseRecoveryCode deletes one unused recovery code.
func (s *Store) UseRecoveryCode(ctx context.Context, userID string, hash []byte, now time.Time) error {
	return wrap("use recovery code", execOne(s.wexec(ctx, nil,
		`DELETE FROM mfa_recovery_codes WHERE user_id = ? AND hash = ?`, userID, hash)))
}

// DeleteMFA removes userID's credential and recovery codes.
func (s *Store) DeleteMFA(ctx context.Context, userID string) error {
	_, err := s.wexec(ctx, nil, `DELETE FROM mfa_credentials WHERE user_id = ?`, userID)
	return wrap("delete mfa", err)
}

// ListAppAccess returns userID's consents and live token families per client.
func (s *Store) ListAppAccess(ctx context.Context, userID string, now time.Time) ([]storage.AppAccess, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT client_id,
			COALESCE(MAX(CASE WHEN src = 0 THEN scope END), MAX(CASE WHEN src = 1 AND live = 1 THEN scope END), ''),
			MAX(consented), SUM(live), MAX(last)
		FROM (
			SELECT 0 AS src, client_id, scope, updated_at AS consented, 0 AS live, updated_at AS last
				FROM consents WHERE user_id = ?1
			UNION ALL
			SELECT 1, client_id, scope, NULL,
				CASE WHEN revoked_at IS NULL AND expires_at > ?2 THEN 1 ELSE 0 END, created_at
				FROM token_families WHERE user_id = ?1
			UNION ALL
			SELECT 2, client_id, '', NULL, 0, created_at FROM refresh_tokens WHERE user_id = ?1
		)
		GROUP BY client_id HAVING MAX(consented) IS NOT NULL OR SUM(live) > 0
		ORDER BY client_id`, userID, micros(now))
	if err != nil {
		return nil, wrap("list app access", err)
	}
	defer rows.Close()
	var out []storage.AppAccess
	for rows.Next() {
		var a storage.AppAccess
		if err := rows.Scan(&a.ClientID, &a.Scope, ts(&a.ConsentedAt), &a.LiveFamilies, ts(&a.LastIssued)); err != nil {
			return nil, wrap("list app access", err)
		}
		out = append(out, a)
	}
	return out, wrap("list app access", rows.Err())
}
