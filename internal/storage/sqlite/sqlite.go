// Package sqlite is fhirgate's embedded storage backend: one SQLite file in
// WAL mode, opened with the pure-Go modernc.org/sqlite driver.
//
// Several processes may use one file at once (the CLI while the server
// runs): every write transaction starts with BEGIN IMMEDIATE, so single-use
// writes (ConsumeAuthCode, ConsumeLaunch, RotateRefreshToken) are serialised
// by SQLite's write lock, and a busy timeout makes a second writer wait
// instead of failing. Within a process, writes go through one connection and
// reads through a small read-only pool, and the hot single-use writes that
// arrive together share one transaction, each in its own savepoint
// (writeBatcher).
//
// Every write is durable when it returns: the write connection runs with
// synchronous=FULL, so each commit (a batch's included) fsyncs the WAL.
// SQLite's NORMAL would skip that fsync and keep the file consistent, but a
// power loss or kernel crash could then roll back the last commits: a
// revocation, a suspension or a consent withdrawal already confirmed to
// its caller, or a code redemption or refresh rotation whose single use
// the server relies on. PostgreSQL's default (synchronous_commit on) gives
// the same guarantee.
//
// Times are stored as integer unix microseconds in UTC (the zero time as
// NULL), so they round-trip at microsecond precision; slices and launch
// contexts are stored as JSON text.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/fhirgate/fhirgate/internal/sqlitefile"
	"github.com/fhirgate/fhirgate/internal/storage"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// BusyTimeout is how long a writer waits for another connection or process
// holding the write lock before it gives up, in milliseconds.
const BusyTimeout = 5000

// Store is a storage.Store on one SQLite file. It is safe for concurrent use.
type Store struct {
	w  *sql.DB // writes: one connection, transactions BEGIN IMMEDIATE
	r  *sql.DB // reads: read-only pool
	wc *stmtCache
	rc *stmtCache

	batch writeBatcher // groups concurrent single-use writes into one transaction

	replayCalls atomic.Uint64 // UseOnce calls, to purge expired keys now and then
}

var _ storage.Store = (*Store)(nil)

// Open opens (creating if missing) the SQLite database at path, creating its
// parent directory with mode 0700 and the file with mode 0600, and applies
// any pending schema migrations.
func Open(ctx context.Context, path string) (*Store, error) {
	abs, err := sqlitefile.Create(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	common := "_pragma=busy_timeout(" + strconv.Itoa(BusyTimeout) + ")&_pragma=foreign_keys(1)"
	w, err := sql.Open("sqlite", sqlitefile.URI(abs, common+"&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate"))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxIdleTime(0)
	w.SetConnMaxLifetime(0)
	s := &Store{w: w, wc: &stmtCache{db: w}}
	if err := s.migrateRetrying(ctx); err != nil {
		_ = w.Close()
		return nil, err
	}
	r, err := sql.Open("sqlite", sqlitefile.URI(abs, common+"&_pragma=query_only(1)"))
	if err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	s.r, s.rc = r, &stmtCache{db: r}
	if err := s.Ping(ctx); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

// migrateRetrying runs the migrations, retrying while the database is busy
// for up to BusyTimeout. Switching a new file to WAL needs an exclusive lock
// and SQLite reports SQLITE_BUSY at once, without its busy handler, when
// several processes open a new file together.
func (s *Store) migrateRetrying(ctx context.Context) error {
	deadline := time.Now().Add(BusyTimeout * time.Millisecond)
	for wait := 5 * time.Millisecond; ; wait = min(2*wait, 200*time.Millisecond) {
		err := s.migrate(ctx)
		if err == nil || !isBusy(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sqlite: migrate: %w", ctx.Err())
		case <-time.After(wait):
		}
	}
}

// isBusy reports whether err is SQLITE_BUSY or SQLITE_LOCKED (any extended code).
func isBusy(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	primary := se.Code() & 0xff
	return primary == 5 || primary == 6
}

// Ping checks that both pools answer.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.w.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlite: ping: %w", err)
	}
	if err := s.r.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlite: ping: %w", err)
	}
	return nil
}

// Close closes both pools.
func (s *Store) Close() error {
	var errs []error
	s.wc.close()
	if s.r != nil {
		s.rc.close()
		errs = append(errs, s.r.Close())
	}
	errs = append(errs, s.w.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sqlite: close: %w", err)
	}
	return nil
}

// migration is one numbered schema file.
type migration struct {
	version int
	name    string
	sql     string
}

func loadMigrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		if !ok || !strings.HasSuffix(e.Name(), ".sql") {
			return nil, fmt.Errorf("sqlite: bad migration name %q", e.Name())
		}
		v, err := strconv.Atoi(num)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("sqlite: bad migration name %q", e.Name())
		}
		b, err := migrationFS.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("sqlite: migration %s out of sequence", m.name)
		}
	}
	return ms, nil
}

// migrate applies pending migrations in one immediate transaction, so two
// processes opening a new file at once apply each migration exactly once.
func (s *Store) migrate(ctx context.Context) error {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	return s.tx(ctx, "migrate", func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`); err != nil {
			return err
		}
		var cur int
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&cur); err != nil {
			return err
		}
		if cur > len(ms) {
			return fmt.Errorf("database schema version %d is newer than this binary (%d)", cur, len(ms))
		}
		for _, m := range ms[cur:] {
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return fmt.Errorf("apply %s: %w", m.name, err)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at)
				VALUES (?, ?, CAST(unixepoch('subsec') * 1000000 AS INTEGER))`, m.version, m.name); err != nil {
				return err
			}
		}
		return nil
	})
}

// tx runs fn in one write transaction (BEGIN IMMEDIATE), committing when fn
// returns nil. Errors are translated by wrap.
func (s *Store) tx(ctx context.Context, op string, fn func(*sql.Tx) error) error {
	defer s.wc.preparePending(context.WithoutCancel(ctx))
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return wrap(op, err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return wrap(op, err)
	}
	if err := tx.Commit(); err != nil {
		return wrap(op, err)
	}
	return nil
}

// commitErr is returned by a transaction body to commit the transaction and
// still report err to the caller (reuse detection writes, then fails).
type commitErr struct{ err error }

func (c commitErr) Error() string { return c.err.Error() }
func (c commitErr) Unwrap() error { return c.err }

// noWritesErr is returned by a batched transaction body (txBatched) that
// fails before any of its statements wrote: nothing needs rolling back, so
// the batch goes on without one. Use it only for outcomes the body decides
// from what it read (no rows, a used or expired record, a conflict that
// changed nothing), never for a driver error: SQLite may have rolled back
// the whole transaction on one of those.
type noWritesErr struct{ err error }

func (n noWritesErr) Error() string { return n.err.Error() }
func (n noWritesErr) Unwrap() error { return n.err }

// wrap is the one place driver errors become storage errors: no rows is
// ErrNotFound, a unique or primary key violation ErrConflict, a foreign key
// violation ErrNotFound (the referenced record is missing). Sentinels and
// the caller's own errors pass through with the operation name.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("sqlite: %s: %w", op, storage.ErrNotFound)
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return fmt.Errorf("sqlite: %s: %w", op, storage.ErrConflict)
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			return fmt.Errorf("sqlite: %s: referenced record: %w", op, storage.ErrNotFound)
		}
	}
	return fmt.Errorf("sqlite: %s: %w", op, err)
}
