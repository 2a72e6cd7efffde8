package sqlsink

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/fhirgate/fhirgate/internal/sqlitefile"
)

// AdoptSQLite moves an audit trail that an earlier version kept in the
// main store's file (legacyPath) into its own file (path), before path is
// first opened: in one transaction it copies every event, converted into
// the current row layout with its content and hash unchanged, and every
// checkpoint, so the chains verify as before. It does nothing when path
// already exists or legacyPath holds no audit events, and reports how many
// events it copied. The legacy tables are left in place, unread.
func AdoptSQLite(ctx context.Context, legacyPath, path string) (int64, error) {
	if _, err := os.Stat(path); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return 0, nil // already adopted (or unreadable: OpenSQLite reports it)
	}
	n, err := legacyEvents(ctx, legacyPath)
	if err != nil || n == 0 {
		return 0, err
	}
	s, err := OpenSQLite(ctx, path)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	abs, err := filepath.Abs(legacyPath)
	if err != nil {
		return 0, errf("sqlite", "adopt", err)
	}
	conn, err := s.w.Conn(ctx)
	if err != nil {
		return 0, errf("sqlite", "adopt", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "ATTACH DATABASE ? AS legacy", sqlitefile.URI(abs, "mode=ro")); err != nil {
		return 0, errf("sqlite", "adopt: attach", err)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "DETACH DATABASE legacy") //nolint:errcheck // best effort
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return 0, errf("sqlite", "adopt", err)
	}
	defer tx.Rollback()
	copied, err := convertV1(ctx, tx, "legacy", false)
	if err != nil {
		return 0, fmt.Errorf("audit sqlite: adopt: %w", err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO main.audit_checkpoints (node, seq, hash, time_us, signature) SELECT node, seq, hash, time_us, signature FROM legacy.audit_checkpoints"); err != nil {
		return 0, errf("sqlite", "adopt: copy checkpoints", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, errf("sqlite", "adopt", err)
	}
	return copied, nil
}

// legacyEvents counts the audit events in the SQLite file at path; 0 when
// the file or its audit table does not exist.
func legacyEvents(ctx context.Context, path string) (int64, error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return 0, errf("sqlite", "adopt", err)
	}
	db, err := sql.Open("sqlite", sqlitefile.URI(abs, "mode=ro&_pragma=busy_timeout(10000)"))
	if err != nil {
		return 0, errf("sqlite", "adopt", err)
	}
	defer db.Close()
	var tables int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'audit_events'").Scan(&tables); err != nil {
		return 0, fmt.Errorf("audit sqlite: adopt: read %s: %w", path, err)
	}
	if tables == 0 {
		return 0, nil
	}
	var n int64
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM audit_events").Scan(&n); err != nil {
		return 0, fmt.Errorf("audit sqlite: adopt: count events in %s: %w", path, err)
	}
	return n, nil
}
