package storage

import (
	"strings"
	"time"
)

// OptionalUserColumns is the select list for a user row that a query
// LEFT JOINs under alias (the user a code or a refresh token was issued
// to): a presence flag, then the user's columns with NULLs turned into
// empty values, in the order OptionalUser.Dest scans them.
func OptionalUserColumns(alias string) string {
	return strings.NewReplacer("u.", alias+".").Replace(`u.id IS NOT NULL, COALESCE(u.id, ''),
	COALESCE(u.username, ''), COALESCE(u.password_hash, ''), COALESCE(u.role, ''),
	COALESCE(u.fhir_user, ''), u.created_at, COALESCE(u.failed_logins, 0), u.locked_until`)
}

// OptionalUser receives the columns of OptionalUserColumns.
type OptionalUser struct {
	present bool
	user    User
	role    string
}

// Dest returns where the columns scan to; timeDest wraps a time field in
// the backend's scanner for its time columns (NULL as the zero time).
func (o *OptionalUser) Dest(timeDest func(*time.Time) any) []any {
	u := &o.user
	return []any{&o.present, &u.ID, &u.Username, &u.PasswordHash, &o.role, &u.FHIRUser,
		timeDest(&u.CreatedAt), &u.FailedLogins, timeDest(&u.LockedUntil)}
}

// User returns the scanned user, or nil when the join found none.
func (o *OptionalUser) User() *User {
	if !o.present {
		return nil
	}
	u := o.user
	u.Role = Role(o.role)
	return &u
}
