package sqlstore

import (
	"context"
	"database/sql"
	"fmt"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver

	"github.com/fhirgate/fhirgate/internal/anomaly"
	"github.com/fhirgate/fhirgate/internal/sqlitefile"
)

const sqliteDDL = `
CREATE TABLE IF NOT EXISTS anomalies (
	seq          INTEGER PRIMARY KEY,
	id           TEXT    NOT NULL UNIQUE,
	rule         TEXT    NOT NULL,
	action       TEXT    NOT NULL,
	subject_kind TEXT    NOT NULL,
	subject_id   TEXT    NOT NULL,
	client_id    TEXT    NOT NULL,
	user_id      TEXT    NOT NULL,
	ip           TEXT    NOT NULL,
	detail       TEXT    NOT NULL,
	raised_us    INTEGER NOT NULL,
	until_us     INTEGER NOT NULL,
	cleared_us   INTEGER NOT NULL,
	cleared_by   TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS anomalies_raised ON anomalies (raised_us, seq);
CREATE INDEX IF NOT EXISTS anomalies_subject ON anomalies (subject_kind, subject_id, raised_us);
CREATE INDEX IF NOT EXISTS anomalies_open ON anomalies (until_us) WHERE cleared_us = 0 AND action <> 'record';`

// SQLite is an anomaly.Store in the table anomalies of a SQLite database
// file. It is safe for concurrent use.
type SQLite struct {
	core
	sql *sql.DB
}

var _ anomaly.Store = (*SQLite)(nil)

// OpenSQLite opens (creating if missing) the SQLite database at path — the
// main store's file — and creates the anomalies table. Writes are fsynced
// (synchronous=FULL) before they return: they are rare, and a suspension
// must not be lost by a crash.
func OpenSQLite(ctx context.Context, path string) (*SQLite, error) {
	abs, err := sqlitefile.Create(path)
	if err != nil {
		return nil, fmt.Errorf("anomaly sqlite: %w", err)
	}
	dsn := sqlitefile.URI(abs, "_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate")
	d, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("anomaly sqlite: open %s: %w", abs, err)
	}
	d.SetMaxOpenConns(4)
	d.SetMaxIdleConns(4)
	if _, err := d.ExecContext(ctx, sqliteDDL); err != nil {
		d.Close()
		return nil, fmt.Errorf("anomaly sqlite: create table in %s: %w", abs, err)
	}
	return &SQLite{core: core{db: sqliteDB{d}, name: "sqlite"}, sql: d}, nil
}

// Close closes the database connections.
func (s *SQLite) Close() error {
	if err := s.sql.Close(); err != nil {
		return fmt.Errorf("anomaly sqlite: close: %w", err)
	}
	return nil
}

// sqliteDB is the db of database/sql.
type sqliteDB struct{ d *sql.DB }

func (s sqliteDB) exec(ctx context.Context, q string, args ...any) (int64, error) {
	res, err := s.d.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (s sqliteDB) query(ctx context.Context, q string, args []any, each func(scan func(...any) error) error) error {
	rows, err := s.d.QueryContext(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := each(rows.Scan); err != nil {
			return err
		}
	}
	return rows.Err()
}
