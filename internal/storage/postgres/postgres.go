// Package postgres is fhirgate's PostgreSQL storage backend (pgx v5), for
// deployments with several nodes sharing one database.
//
// Single-use writes are one statement (UPDATE ... WHERE used_at IS NULL
// RETURNING ...) or a READ COMMITTED transaction that locks the rows it
// decides on (SELECT ... FOR UPDATE), so concurrent callers are serialised
// by row locks and exactly one wins. Times are timestamptz (microsecond
// precision, the zero time as NULL), slices text[], launch contexts jsonb,
// hashes and key material bytea.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fhirgate/fhirgate/internal/pgpool"
	"github.com/fhirgate/fhirgate/internal/storage"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Store is a storage.Store on a PostgreSQL database. It is safe for concurrent use.
type Store struct {
	pool *pgxpool.Pool

	replayCalls atomic.Uint64 // UseOnce calls, to purge expired keys now and then
}

var _ storage.Store = (*Store)(nil)

// Open connects to the database at dsn (a postgres:// URL or key=value
// string) and applies pending migrations in the connection's default schema.
func Open(ctx context.Context, dsn string) (*Store, error) {
	return OpenSchema(ctx, dsn, "")
}

// OpenSchema is Open with every table in schema, which is created if
// missing and set as the connections' search_path. schema must be a plain
// lower-case identifier; "" means the server's default search_path.
// Connections commit durably (pgpool.DurableCommits).
func OpenSchema(ctx context.Context, dsn, schema string) (*Store, error) {
	cfg, err := pgpool.Config(dsn, schema)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	s := &Store{pool: pool}
	if err := s.migrate(ctx, schema); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// Ping checks the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgres: ping: %w", err)
	}
	return nil
}

// Close closes the connection pool.
func (s *Store) Close() error {
	s.pool.Close()
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
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 || !strings.HasSuffix(e.Name(), ".sql") {
			return nil, fmt.Errorf("postgres: bad migration name %q", e.Name())
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
			return nil, fmt.Errorf("postgres: migration %s out of sequence", m.name)
		}
	}
	return ms, nil
}

// migrateLock is the advisory lock key serialising migrations across nodes.
const migrateLock = 0x66686972676174 // "fhirgat"

// migrate applies pending migrations in one transaction holding an advisory
// lock, so nodes starting together apply each migration exactly once.
func (s *Store) migrate(ctx context.Context, schema string) error {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	return s.tx(ctx, "migrate", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrateLock)); err != nil {
			return err
		}
		if schema != "" {
			if _, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+pgx.Identifier{schema}.Sanitize()); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return err
		}
		var cur int
		if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&cur); err != nil {
			return err
		}
		if cur > len(ms) {
			return fmt.Errorf("database schema version %d is newer than this binary (%d)", cur, len(ms))
		}
		for _, m := range ms[cur:] {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return fmt.Errorf("apply %s: %w", m.name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.version, m.name); err != nil {
				return err
			}
		}
		return nil
	})
}

// commitErr is returned by a transaction body to commit the transaction and
// still report err (reuse detection revokes, then fails).
type commitErr struct{ err error }

func (c commitErr) Error() string { return c.err.Error() }
func (c commitErr) Unwrap() error { return c.err }

// tx runs fn in one READ COMMITTED transaction, committing when fn returns
// nil or a commitErr. Errors are translated by wrap.
func (s *Store) tx(ctx context.Context, op string, fn func(pgx.Tx) error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return wrap(op, err)
	}
	ferr := fn(tx)
	var ce commitErr
	if ferr != nil && !errors.As(ferr, &ce) {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return wrap(op, ferr)
	}
	if err := tx.Commit(ctx); err != nil {
		return wrap(op, err)
	}
	if ferr != nil {
		return wrap(op, ce.err)
	}
	return nil
}

// PostgreSQL error codes translated by wrap.
const (
	codeUniqueViolation     = "23505"
	codeForeignKeyViolation = "23503"
)

// wrap is the one place driver errors become storage errors: no rows is
// ErrNotFound, a unique violation ErrConflict, a foreign key violation
// ErrNotFound (the referenced record is missing). Other errors are wrapped
// with the operation name, never rewritten.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("postgres: %s: %w", op, storage.ErrNotFound)
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case codeUniqueViolation:
			return fmt.Errorf("postgres: %s: %w", op, storage.ErrConflict)
		case codeForeignKeyViolation:
			return fmt.Errorf("postgres: %s: referenced record: %w", op, storage.ErrNotFound)
		}
	}
	return fmt.Errorf("postgres: %s: %w", op, err)
}

// querier is the pool or a transaction.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// execOne runs a write that must touch exactly one row; none is ErrNotFound.
func execOne(ctx context.Context, q querier, sql string, args ...any) error {
	tag, err := q.Exec(ctx, sql, args...)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return storage.ErrNotFound
	}
	return nil
}

// tz binds t, the zero time as NULL.
func tz(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// timeDest scans a timestamptz (NULL as the zero time) into a UTC time.Time.
type timeDest struct{ p *time.Time }

func ts(p *time.Time) timeDest { return timeDest{p} }

// ScanTimestamptz implements pgtype.TimestamptzScanner.
func (d timeDest) ScanTimestamptz(v pgtype.Timestamptz) error {
	switch {
	case !v.Valid:
		*d.p = time.Time{}
	case v.InfinityModifier != pgtype.Finite:
		return errors.New("infinite timestamp")
	default:
		*d.p = v.Time.UTC()
	}
	return nil
}

// expired reports whether a record with lifetime ending at exp is past it at
// now: the lifetime is [created, exp), and a zero exp fails closed.
func expired(now, exp time.Time) bool {
	return exp.IsZero() || !now.Before(exp)
}

// micro truncates t to the stored precision, in UTC.
func micro(t time.Time) time.Time { return t.Truncate(time.Microsecond).UTC() }
