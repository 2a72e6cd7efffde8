package sqlite

import (
	"context"
	"database/sql"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/internal/storage"
)

const keyCols = `kid, alg, public_jwk, encrypted_private, created_at, active, retired_at`

// CreateSigningKey inserts k; ErrConflict if its kid exists or k is active
// while another key of its alg is.
func (s *Store) CreateSigningKey(ctx context.Context, k *storage.SigningKey) error {
	_, err := s.wexec(ctx, nil, `INSERT INTO signing_keys (`+keyCols+`) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		k.KID, k.Alg, blob(k.PublicJWK), blob(k.EncryptedPrivate), micros(k.CreatedAt), k.Active,
		micros(k.RetiredAt))
	return wrap("create signing key", err)
}

// ListSigningKeys returns every key, oldest first (by CreatedAt, then insertion).
func (s *Store) ListSigningKeys(ctx context.Context) ([]storage.SigningKey, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+keyCols+` FROM signing_keys ORDER BY created_at, seq`)
	if err != nil {
		return nil, wrap("list signing keys", err)
	}
	defer rows.Close()
	var out []storage.SigningKey
	for rows.Next() {
		var k storage.SigningKey
		if err := rows.Scan(&k.KID, &k.Alg, bs(&k.PublicJWK), bs(&k.EncryptedPrivate), ts(&k.CreatedAt),
			&k.Active, ts(&k.RetiredAt)); err != nil {
			return nil, wrap("list signing keys", err)
		}
		out = append(out, k)
	}
	return out, wrap("list signing keys", rows.Err())
}

// ActivateSigningKey makes kid the active key of its alg, retiring (at now)
// the previously active key of the same alg only, in one write transaction.
func (s *Store) ActivateSigningKey(ctx context.Context, kid string, now time.Time) error {
	return s.tx(ctx, "activate signing key", func(tx *sql.Tx) error {
		var alg string
		if err := s.wrow(ctx, tx, `SELECT alg FROM signing_keys WHERE kid = ?`, kid).Scan(&alg); err != nil {
			return err
		}
		if _, err := s.wexec(ctx, tx, `UPDATE signing_keys SET active = 0, retired_at = ?
			WHERE alg = ? AND active = 1 AND kid <> ?`, micros(now), alg, kid); err != nil {
			return err
		}
		return execOne(s.wexec(ctx, tx, `UPDATE signing_keys SET active = 1, retired_at = NULL WHERE kid = ?`, kid))
	})
}

// CreateRegistrationToken inserts t; ErrConflict if its hash exists.
func (s *Store) CreateRegistrationToken(ctx context.Context, t *storage.RegistrationToken) error {
	_, err := s.wexec(ctx, nil, `INSERT INTO registration_tokens (hash, created_at, expires_at) VALUES (?, ?, ?)`,
		t.Hash, micros(t.CreatedAt), micros(t.ExpiresAt))
	return wrap("create registration token", err)
}

// GetRegistrationToken returns the token; ErrExpired (and no token) if past ExpiresAt.
func (s *Store) GetRegistrationToken(ctx context.Context, hash []byte, now time.Time) (*storage.RegistrationToken, error) {
	t := storage.RegistrationToken{Hash: append([]byte(nil), hash...)}
	err := s.rrow(ctx, `SELECT created_at, expires_at FROM registration_tokens WHERE hash = ?`, hash).
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
	_, err := s.wexec(ctx, nil, `INSERT INTO patients (id, name, name_folded, birth_date) VALUES (?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET name = excluded.name, name_folded = excluded.name_folded,
		birth_date = excluded.birth_date`, p.ID, p.Name, strings.ToLower(p.Name), p.BirthDate)
	return wrap("put patient", err)
}

// GetPatient returns the patient with that id.
func (s *Store) GetPatient(ctx context.Context, id string) (*storage.Patient, error) {
	p := storage.Patient{ID: id}
	err := s.rrow(ctx, `SELECT name, birth_date FROM patients WHERE id = ?`, id).Scan(&p.Name, &p.BirthDate)
	if err != nil {
		return nil, wrap("get patient", err)
	}
	return &p, nil
}

// SearchPatients returns patients whose name contains name (compared after
// strings.ToLower on both sides), ordered by lower-cased name, then name,
// then id. limit <= 0 means no limit.
func (s *Store) SearchPatients(ctx context.Context, name string, limit int) ([]storage.Patient, error) {
	if limit <= 0 {
		limit = -1
	}
	rows, err := s.r.QueryContext(ctx, `SELECT id, name, birth_date FROM patients
		WHERE instr(name_folded, ?) > 0 ORDER BY name_folded, name, id LIMIT ?`, strings.ToLower(name), limit)
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
