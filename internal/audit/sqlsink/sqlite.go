package sqlsink

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/fhirgate/fhirgate/internal/audit/chain"
	"github.com/fhirgate/fhirgate/internal/sqlitefile"
)

const sqliteDDL = `
CREATE TABLE IF NOT EXISTS audit_events (
	id               INTEGER PRIMARY KEY,
	node             TEXT    NOT NULL,
	seq              INTEGER NOT NULL,
	prev             BLOB    NOT NULL,
	hash             BLOB    NOT NULL,
	time_us          INTEGER NOT NULL,
	action           TEXT    NOT NULL,
	outcome          TEXT    NOT NULL,
	reason           TEXT    NOT NULL,
	user_id          TEXT    NOT NULL,
	fhir_user        TEXT    NOT NULL,
	client_id        TEXT    NOT NULL,
	source_ip        TEXT    NOT NULL,
	user_agent       TEXT    NOT NULL,
	patient          TEXT    NOT NULL,
	scope            TEXT    NOT NULL,
	token_id         TEXT    NOT NULL,
	request_id       TEXT    NOT NULL,
	interaction      TEXT    NOT NULL,
	resource_type    TEXT    NOT NULL,
	resource_id      TEXT    NOT NULL,
	entries_filtered INTEGER NOT NULL,
	allowed_by       TEXT    NOT NULL,
	binding          TEXT    NOT NULL,
	UNIQUE (node, seq)
);
CREATE INDEX IF NOT EXISTS audit_events_time ON audit_events (time_us, node, seq);
CREATE INDEX IF NOT EXISTS audit_events_patient ON audit_events (patient, time_us) WHERE patient <> '';
CREATE TABLE IF NOT EXISTS audit_checkpoints (
	node      TEXT    NOT NULL,
	seq       INTEGER NOT NULL,
	hash      BLOB    NOT NULL,
	time_us   INTEGER NOT NULL,
	signature TEXT    NOT NULL,
	PRIMARY KEY (node, seq)
);`

// SQLite is a chain.Sink in the tables audit_events and audit_checkpoints of
// a SQLite database file. It is safe for concurrent use.
type SQLite struct {
	w, r *sql.DB
	ins  [insertChunk + 1]*sql.Stmt // ins[n] inserts n rows (n >= 1)

	ckpt *sqlitefile.Checkpointer // copies the WAL into the file off the commit path
}

// insertChunk is how many rows one multi-row INSERT carries.
const insertChunk = 32

func insertSQL(rows int) string {
	row := "(?" + repeat(", ?", len(columns)-1) + ")"
	return "INSERT INTO audit_events (" + columnList + ") VALUES " + row + repeat(", "+row, rows-1)
}

var _ chain.Sink = (*SQLite)(nil)

// OpenSQLite opens (creating if missing) the SQLite database at path — the
// main store's file, or a separate one — and creates the audit tables. Its
// write connection runs with synchronous=FULL: Append returns after the
// WAL is fsynced.
func OpenSQLite(ctx context.Context, path string) (*SQLite, error) {
	return openSQLiteEvery(ctx, path, checkpointInterval)
}

// openSQLiteEvery is OpenSQLite with the background checkpointer running every
// interval.
func openSQLiteEvery(ctx context.Context, path string, interval time.Duration) (*SQLite, error) {
	abs, err := sqlitefile.Create(path)
	if err != nil {
		return nil, errf("sqlite", "open", err)
	}
	base := sqlitefile.URI(abs, "_pragma=busy_timeout(10000)")
	// The writer never checkpoints inside a commit (wal_autocheckpoint 0):
	// that would stall every request waiting on the commit. A
	// sqlitefile.Checkpointer does it in the background, and Append lets
	// it catch up before each transaction.
	w, err := sql.Open("sqlite", base+"&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=wal_autocheckpoint(0)&_txlock=immediate")
	if err != nil {
		return nil, errf("sqlite", "open", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxIdleTime(0)
	w.SetConnMaxLifetime(0)
	s := &SQLite{w: w}
	if err := s.migrate(ctx); err != nil {
		w.Close()
		return nil, err
	}
	for n := 1; n <= insertChunk; n++ {
		if s.ins[n], err = w.PrepareContext(ctx, insertSQL(n)); err != nil {
			w.Close() // closes the statements prepared so far
			return nil, errf("sqlite", "prepare", err)
		}
	}
	r, err := sql.Open("sqlite", base+"&_pragma=query_only(1)")
	if err != nil {
		w.Close() // closes the statements
		return nil, errf("sqlite", "open", err)
	}
	n := max(2, runtime.GOMAXPROCS(0))
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	s.r = r
	cp, err := sql.Open("sqlite", base+"&_pragma=synchronous(FULL)")
	if err != nil {
		s.Close()
		return nil, errf("sqlite", "open", err)
	}
	cp.SetMaxOpenConns(1)
	s.ckpt = sqlitefile.StartCheckpointer(cp, interval)
	return s, nil
}

// checkpointInterval is how often the background checkpointer copies the
// WAL into the database file.
const checkpointInterval = time.Second

func repeat(s string, n int) string {
	out := ""
	for range n {
		out += s
	}
	return out
}

func (s *SQLite) migrate(ctx context.Context) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return errf("sqlite", "create tables", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, sqliteDDL); err != nil {
		return errf("sqlite", "create tables", err)
	}
	if err := tx.Commit(); err != nil {
		return errf("sqlite", "create tables", err)
	}
	return nil
}

// Close implements chain.Sink.
func (s *SQLite) Close() error {
	var errs []error
	if s.ckpt != nil {
		errs = append(errs, s.ckpt.Close())
	}
	for _, st := range s.ins {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	if s.r != nil {
		errs = append(errs, s.r.Close())
	}
	return errors.Join(append(errs, s.w.Close())...)
}

// Append implements chain.Sink: one IMMEDIATE transaction, fsynced on commit.
func (s *SQLite) Append(ctx context.Context, entries []chain.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	s.ckpt.CatchUp(ctx, s.w)
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return errf("sqlite", "append", err)
	}
	defer tx.Rollback()
	// Multi-row INSERTs of up to insertChunk rows: one statement per chunk
	// costs much less than one per row.
	args := make([]any, 0, min(len(entries), insertChunk)*len(columns))
	for len(entries) > 0 {
		n := min(len(entries), insertChunk)
		stmt := s.ins[n]
		args = args[:0]
		for _, e := range entries[:n] {
			args = append(args, entryArgs(e)...)
		}
		if _, err := tx.StmtContext(ctx, stmt).ExecContext(ctx, args...); err != nil {
			return sqliteErr("append", err)
		}
		entries = entries[n:]
	}
	if err := tx.Commit(); err != nil {
		return sqliteErr("append", err)
	}
	return nil
}

func sqliteErr(op string, err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return fmt.Errorf("audit sqlite: %s: %w", op, chain.ErrConflict)
		}
	}
	return errf("sqlite", op, err)
}

// SaveCheckpoint implements chain.Sink.
func (s *SQLite) SaveCheckpoint(ctx context.Context, cp chain.Checkpoint) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO audit_checkpoints (node, seq, hash, time_us, signature) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (node, seq) DO UPDATE SET hash = excluded.hash, time_us = excluded.time_us, signature = excluded.signature`,
		cp.Node, int64(cp.Seq), cp.Hash, cp.Time.UnixMicro(), cp.Signature)
	if err != nil {
		return sqliteErr("save checkpoint", err)
	}
	return nil
}

// Head implements chain.Sink. It reads through the write connection so it
// sees every commit of this process.
func (s *SQLite) Head(ctx context.Context, node string) (chain.Entry, bool, error) {
	row := s.w.QueryRowContext(ctx, "SELECT "+columnList+" FROM audit_events WHERE node = ? ORDER BY seq DESC LIMIT 1", node)
	e, err := scanEntry(row)
	if errors.Is(err, sql.ErrNoRows) {
		return chain.Entry{}, false, nil
	}
	if err != nil {
		return e, false, errf("sqlite", "head", err)
	}
	return e, true, nil
}

// Nodes implements chain.Source.
func (s *SQLite) Nodes(ctx context.Context) ([]string, error) {
	rows, err := s.r.QueryContext(ctx, "SELECT DISTINCT node FROM audit_events UNION SELECT DISTINCT node FROM audit_checkpoints ORDER BY 1")
	if err != nil {
		return nil, errf("sqlite", "nodes", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, errf("sqlite", "nodes", err)
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

// Scan implements chain.Source, in sequence order.
func (s *SQLite) Scan(ctx context.Context, node string, fn func(chain.Entry) error) error {
	rows, err := s.r.QueryContext(ctx, "SELECT "+columnList+" FROM audit_events WHERE node = ? ORDER BY seq", node)
	if err != nil {
		return errf("sqlite", "scan", err)
	}
	defer rows.Close()
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return errf("sqlite", "scan", err)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return rows.Err()
}

// Checkpoints implements chain.Source.
func (s *SQLite) Checkpoints(ctx context.Context, node string) ([]chain.Checkpoint, error) {
	rows, err := s.r.QueryContext(ctx, "SELECT node, seq, hash, time_us, signature FROM audit_checkpoints WHERE node = ? ORDER BY seq", node)
	if err != nil {
		return nil, errf("sqlite", "checkpoints", err)
	}
	defer rows.Close()
	var out []chain.Checkpoint
	for rows.Next() {
		var cp chain.Checkpoint
		var seq, us int64
		if err := rows.Scan(&cp.Node, &seq, &cp.Hash, &us, &cp.Signature); err != nil {
			return nil, errf("sqlite", "checkpoints", err)
		}
		cp.Seq, cp.Time = uint64(seq), microsTime(us)
		out = append(out, cp)
	}
	return out, rows.Err()
}

// Query implements chain.Sink.
func (s *SQLite) Query(ctx context.Context, f chain.Filter) (chain.Page, error) {
	f = f.Normalized()
	q, args, err := querySQL(f, func(int) string { return "?" })
	if err != nil {
		return chain.Page{}, err
	}
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return chain.Page{}, errf("sqlite", "query", err)
	}
	defer rows.Close()
	var out []chain.Entry
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return chain.Page{}, errf("sqlite", "query", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return chain.Page{}, errf("sqlite", "query", err)
	}
	return page(out, f.Limit), nil
}
