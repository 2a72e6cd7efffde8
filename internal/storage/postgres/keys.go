package postgres

import (
	"context"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fhirgate/fhirgate/internal/storage"
)

const keyCols = `kid, alg, public_jwk, encrypted_private, created_at, active, retired_at`

// CreateSigningKey inserts k; ErrConflict if its kid exists or k is active
// while another key of its alg is.
func (s *Store) CreateSigningKey(ctx context.Context, k *storage.SigningKey) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO signing_keys (`+keyCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		k.KID, k.Alg, k.PublicJWK, k.EncryptedPrivate, tz(k.CreatedAt), k.Active, tz(k.RetiredAt))
	return wrap("create signing key", err)
}

// ListSigningKeys returns every key, oldest first (by CreatedAt, then insertion).
func (s *Store) ListSigningKeys(ctx context.Context) ([]storage.SigningKey, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+keyCols+` FROM signing_keys ORDER BY created_at NULLS FIRST, seq`)
	if err != nil {
		return nil, wrap("list signing keys", err)
	}
	defer rows.Close()
	var out []storage.SigningKey
	for rows.Next() {
		var k storage.SigningKey
		if err := rows.Scan(&k.KID, &k.Alg, &k.PublicJWK, &k.EncryptedPrivate, ts(&k.CreatedAt),
			&k.Active, ts(&k.RetiredAt)); err != nil {
			return nil, wrap("list signing keys", err)
		}
		out = append(out, k)
	}
	return out, wrap("list signing keys", rows.Err())
}

// ActivateSigningKey makes kid the active key of its alg, retiring (at now)
// the previously active key of the same alg only. The transaction locks
// every key of that alg first, so concurrent activations serialise.
func (s *Store) ActivateSigningKey(ctx context.Context, kid string, now time.Time) error {
	return s.tx(ctx, "activate signing key", func(tx pgx.Tx) error {
		var alg string
		if err := tx.QueryRow(ctx, `SELECT alg FROM signing_keys WHERE kid = $1`, kid).Scan(&alg); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SELECT 1 FROM signing_keys WHERE alg = $1 ORDER BY seq FOR UPDATE`, alg); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE signing_keys SET active = false, retired_at = $1
			WHERE alg = $2 AND active AND kid <> $3`, now, alg, kid); err != nil {
			return err
		}
		return execOne(ctx, tx, `UPDATE signing_keys SET active = true, retired_at = NULL WHERE kid = $1`, kid)
	})
}

// CreateRegistrationToken inserts t; ErrConflict if its hash exists.
func (s *Store) CreateRegistrationToken(ctx context.Context, t *storage.RegistrationToken) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO registration_tokens (hash, created_at, expires_at) VALUES ($1, $2, $3)`,
		t.Hash, tz(t.CreatedAt), tz(t.ExpiresAt))
	return wrap("create registration token", err)
}

// GetRegistrationToken returns the token; ErrExpired (and no token) if past ExpiresAt.
func (s *Store) GetRegistrationToken(ctx context.Context, hash []byte, now time.Time) (*storage.RegistrationToken, error) {
	t := storage.RegistrationToken{Hash: append([]byte(nil), hash...)}
	err := s.pool.QueryRow(ctx, `SELECT created_at, expires_at FROM registration_tokens WHERE hash = $1`, hash).
		Scan(ts(&t.CreatedAt), ts(&t.ExpiresAt))
	if err != nil {
		return nil, wrap("get registration token", err)
	}
	if expired(now, t.ExpiresAt) {
		return nil, wrap("get registration token", storage.ErrExpired)
	}
	return &t, nil
}

// PutPatient inserts p or replaces the patient with its id.
func (s *Store) PutPatient(ctx context.Context, p *storage.Patient) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO patients (id, name, name_folded, birth_date) VALUES ($1, $2, $3, $4)
		ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, name_folded = EXCLUDED.name_folded,
		birth_date = EXCLUDED.birth_date`, p.ID, p.Name, strings.ToLower(p.Name), p.BirthDate)
	return wrap("put patient", err)
}

// GetPatient returns the patient with that id.
func (s *Store) GetPatient(ctx context.Context, id string) (*storage.Patient, error) {
	p := storage.Patient{ID: id}
	err := s.pool.QueryRow(ctx, `SELECT name, birth_date FROM patients WHERE id = $1`, id).Scan(&p.Name, &p.BirthDate)
	if err != nil {
		return nil, wrap("get patient", err)
	}
	return &p, nil
}

// SearchPatients returns patients whose name contains name (compared after
// strings.ToLower on both sides), ordered by lower-cased name, then name,
// then id, in byte order. limit <= 0 means no limit.
func (s *Store) SearchPatients(ctx context.Context, name string, limit int) ([]storage.Patient, error) {
	var lim any
	if limit > 0 {
		lim = limit
	}
	rows, err := s.pool.Query(ctx, `SELECT id, name, birth_date FROM patients
		WHERE strpos(name_folded, $1) > 0
		ORDER BY name_folded COLLATE "C", name COLLATE "C", id COLLATE "C" LIMIT $2`, strings.ToLower(name), lim)
	if err != nil {
		return nil, wrap("search patients", err)
	}
	defer rows.Close()
	var out []storage.Patient
	for rows.Next() {
		var p storage.Patient
		if err := rows.Scan(&p.ID, &p.Name, &p.BirthDate); err != nil {
			return nil, wrap("search patients", err)
		}
		out = append(out, p)
	}
	return out, wrap("search patients", rows.Err())
}
