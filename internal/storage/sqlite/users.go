package sqlite

import (
	"context"
	"time"

	"github.com/fhirgate/fhirgate/internal/storage"
)

const userCols = `id, username, password_hash, role, fhir_user, created_at, failed_logins, locked_until`

func scanUser(sc scanner) (*storage.User, error) {
	var u storage.User
	var role string
	if err := sc.Scan(&u.ID, &u.Username, &u.PasswordHash, &role, &u.FHIRUser,
		ts(&u.CreatedAt), &u.FailedLogins, ts(&u.LockedUntil)); err != nil {
		return nil, err
	}
	u.Role = storage.Role(role)
	return &u, nil
}

// CreateUser inserts u; ErrConflict if its id or username is taken.
func (s *Store) CreateUser(ctx context.Context, u *storage.User) error {
	_, err := s.wexec(ctx, nil, `INSERT INTO users (`+userCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		u.ID, u.Username, u.PasswordHash, string(u.Role), u.FHIRUser,
		micros(u.CreatedAt), u.FailedLogins, micros(u.LockedUntil))
	return wrap("create user", err)
}

// GetUser returns the user with that id.
func (s *Store) GetUser(ctx context.Context, id string) (*storage.User, error) {
	u, err := scanUser(s.rrow(ctx, `SELECT `+userCols+` FROM users WHERE id = ?`, id))
	return u, wrap("get user", err)
}

// GetUserByUsername returns the user with that exact username.
func (s *Store) GetUserByUsername(ctx context.Context, username string) (*storage.User, error) {
	u, err := scanUser(s.rrow(ctx, `SELECT `+userCols+` FROM users WHERE username = ?`, username))
	return u, wrap("get user", err)
}

// ListUsers returns every user ordered by username.
func (s *Store) ListUsers(ctx context.Context) ([]storage.User, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+userCols+` FROM users ORDER BY username`)
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
	return wrap("delete user", execOne(s.wexec(ctx, nil, `DELETE FROM users WHERE id = ?`, id)))
}

// RecordLoginFailure increments the failure count in one statement and, once
// it reaches maxFailures (if positive), locks the account until now+lockFor.
func (s *Store) RecordLoginFailure(ctx context.Context, id string, now time.Time, maxFailures int, lockFor time.Duration) (*storage.User, error) {
	lock := maxFailures > 0
	u, err := scanUser(s.wrow(ctx, nil, `UPDATE users SET
		failed_logins = failed_logins + 1,
		locked_until = CASE WHEN ? AND failed_logins + 1 >= ? THEN ? ELSE locked_until END
		WHERE id = ? RETURNING `+userCols,
		lock, maxFailures, micros(now.Add(lockFor)), id))
	return u, wrap("record login failure", err)
}

// RecordLoginSuccess resets the failure count and the lock.
func (s *Store) RecordLoginSuccess(ctx context.Context, id string) error {
	return wrap("record login success", execOne(s.wexec(ctx, nil,
		`UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = ?`, id)))
}
