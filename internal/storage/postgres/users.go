package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fhirgate/fhirgate/internal/storage"
)

const userCols = `id, username, password_hash, role, fhir_user, created_at, failed_logins, locked_until`

func scanUser(row pgx.Row) (*storage.User, error) {
	var u storage.User
	var role string
	if err := row.Scan(&u.ID, &u.Username, &u.PasswordHash, &role, &u.FHIRUser,
		ts(&u.CreatedAt), &u.FailedLogins, ts(&u.LockedUntil)); err != nil {
		return nil, err
	}
	u.Role = storage.Role(role)
	return &u, nil
}

// CreateUser inserts u; ErrConflict if its id or username is taken.
func (s *Store) CreateUser(ctx context.Context, u *storage.User) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO users (`+userCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		u.ID, u.Username, u.PasswordHash, string(u.Role), u.FHIRUser,
		tz(u.CreatedAt), u.FailedLogins, tz(u.LockedUntil))
	return wrap("create user", err)
}

// GetUser returns the user with that id.
func (s *Store) GetUser(ctx context.Context, id string) (*storage.User, error) {
	u, err := scanUser(s.pool.QueryRow(ctx, `SELECT `+userCols+` FROM users WHERE id = $1`, id))
	return u, wrap("get user", err)
}

// GetUserByUsername returns the user with that exact username.
func (s *Store) GetUserByUsername(ctx context.Context, username string) (*storage.User, error) {
	u, err := scanUser(s.pool.QueryRow(ctx, `SELECT `+userCols+` FROM users WHERE username = $1`, username))
	return u, wrap("get user", err)
}

// ListUsers returns every user ordered by username (byte order).
func (s *Store) ListUsers(ctx context.Context) ([]storage.User, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+userCols+` FROM users ORDER BY username COLLATE "C"`)
	if err != nil {
		return nil, wrap("list users", err)
	}
	defer rows.Close()
	var out []storage.User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, wrap("list users", err)
		}
		out = append(out, *u)
	}
	return out, wrap("list users", rows.Err())
}

// DeleteUser deletes the user; ErrNotFound if there is none.
func (s *Store) DeleteUser(ctx context.Context, id string) error {
	return wrap("delete user", execOne(ctx, s.pool, `DELETE FROM users WHERE id = $1`, id))
}

// RecordLoginFailure increments the failure count in one statement and, once
// it reaches maxFailures (if positive), locks the account until now+lockFor.
func (s *Store) RecordLoginFailure(ctx context.Context, id string, now time.Time, maxFailures int, lockFor time.Duration) (*storage.User, error) {
	u, err := scanUser(s.pool.QueryRow(ctx, `UPDATE users SET
		failed_logins = failed_logins + 1,
		locked_until = CASE WHEN $1::boolean AND failed_logins + 1 >= $2::integer
			THEN $3::timestamptz ELSE locked_until END
		WHERE id = $4 RETURNING `+userCols,
		maxFailures > 0, maxFailures, now.Add(lockFor), id))
	return u, wrap("record login failure", err)
}

// RecordLoginSuccess resets the failure count and the lock.
func (s *Store) RecordLoginSuccess(ctx context.Context, id string) error {
	return wrap("record login success", execOne(ctx, s.pool,
		`UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = $1`, id))
}
