package sqlsink

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fhirgate/fhirgate/internal/audit/chain"
	"github.com/fhirgate/fhirgate/internal/pgpool"
)

const postgresDDL = `
CREATE TABLE IF NOT EXISTS audit_events (
	id               bigserial PRIMARY KEY,
	node             text     NOT NULL,
	seq              bigint   NOT NULL,
	prev             bytea    NOT NULL,
	hash             bytea    NOT NULL,
	time_us          bigint   NOT NULL,
	action           text     NOT NULL,
	outcome          text     NOT NULL,
	reason           text     NOT NULL,
	user_id          text     NOT NULL,
	fhir_user        text     NOT NULL,
	client_id        text     NOT NULL,
	source_ip        text     NOT NULL,
	user_agent       text     NOT NULL,
	patient          text     NOT NULL,
	scope            text     NOT NULL,
	token_id         text     NOT NULL,
	request_id       text     NOT NULL,
	interaction      text     NOT NULL,
	resource_type    text     NOT NULL,
	resource_id      text     NOT NULL,
	entries_filtered bigint   NOT NULL,
	allowed_by       text     NOT NULL,
	binding          text     NOT NULL,
	UNIQUE (node, seq)
);
CREATE INDEX IF NOT EXISTS audit_events_time ON audit_events (time_us, node, seq);
CREATE INDEX IF NOT EXISTS audit_events_patient ON audit_events (patient, time_us) WHERE patient <> '';
CREATE TABLE IF NOT EXISTS audit_checkpoints (
	node      text   NOT NULL,
	seq       bigint NOT NULL,
	hash      bytea  NOT NULL,
	time_us   bigint NOT NULL,
	signature text   NOT NULL,
	PRIMARY KEY (node, seq)
);`

// ddlLock is the advisory lock key serialising concurrent table creation.
const ddlLock = 0x66686761756474 // "fhgaudt"

// Postgres is a chain.Sink in the tables audit_events and audit_checkpoints
// of a PostgreSQL database. It is safe for concurrent use; several nodes may
// share the tables, each appending to its own chain.
type Postgres struct {
	pool *pgxpool.Pool
	own  bool
}

var _ chain.Sink = (*Postgres)(nil)

// OpenPostgres connects to dsn, with every table in schema when it is not
// empty (created if missing), and creates the audit tables.
func OpenPostgres(ctx context.Context, dsn, schema string) (*Postgres, error) {
	cfg, err := pgpool.Config(dsn, schema)
	if err != nil {
		return nil, errf("postgres", "configure", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, errf("postgres", "connect", err)
	}
	if schema != "" {
		if _, err := pool.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+schema); err != nil {
			pool.Close()
			return nil, errf("postgres", "create schema", err)
		}
	}
	s, err := NewPostgres(ctx, pool)
	if err != nil {
		pool.Close()
		return nil, err
	}
	s.own = true
	return s, nil
}

// NewPostgres uses an existing pool (for example the main store's) and
// creates the audit tables. Close does not close a pool passed in.
func NewPostgres(ctx context.Context, pool *pgxpool.Pool) (*Postgres, error) {
	s := &Postgres{pool: pool}
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(ddlLock)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, postgresDDL)
		return err
	})
	if err != nil {
		return nil, errf("postgres", "create tables", err)
	}
	return s, nil
}

// Close implements chain.Sink.
func (s *Postgres) Close() error {
	if s.own {
		s.pool.Close()
	}
	return nil
}

func pgErr(op string, err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" {
		return fmt.Errorf("audit postgres: %s: %w", op, chain.ErrConflict)
	}
	return errf("postgres", op, err)
}

// Append implements chain.Sink: one COPY in one transaction; the commit
// waits for the WAL flush (synchronous_commit on, PostgreSQL's default).
func (s *Postgres) Append(ctx context.Context, entries []chain.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL synchronous_commit = on"); err != nil {
			return err
		}
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"audit_events"}, columns, pgx.CopyFromSlice(len(entries), func(i int) ([]any, error) {
			return entryArgs(entries[i]), nil
		}))
		return err
	})
	if err != nil {
		return pgErr("append", err)
	}
	return nil
}

// SaveCheckpoint implements chain.Sink.
func (s *Postgres) SaveCheckpoint(ctx context.Context, cp chain.Checkpoint) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO audit_checkpoints (node, seq, hash, time_us, signature) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (node, seq) DO UPDATE SET hash = excluded.hash, time_us = excluded.time_us, signature = excluded.signature`,
		cp.Node, int64(cp.Seq), cp.Hash, cp.Time.UnixMicro(), cp.Signature)
	if err != nil {
		return pgErr("save checkpoint", err)
	}
	return nil
}

// Head implements chain.Sink.
func (s *Postgres) Head(ctx context.Context, node string) (chain.Entry, bool, error) {
	e, err := scanEntry(s.pool.QueryRow(ctx, "SELECT "+columnList+" FROM audit_events WHERE node = $1 ORDER BY seq DESC LIMIT 1", node))
	if errors.Is(err, pgx.ErrNoRows) {
		return chain.Entry{}, false, nil
	}
	if err != nil {
		return e, false, errf("postgres", "head", err)
	}
	return e, true, nil
}

// Nodes implements chain.Source.
func (s *Postgres) Nodes(ctx context.Context) ([]string, error) {
	rows, err := s.pool.Query(ctx, "SELECT DISTINCT node FROM audit_events UNION SELECT DISTINCT node FROM audit_checkpoints ORDER BY 1")
	if err != nil {
		return nil, errf("postgres", "nodes", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, errf("postgres", "nodes", err)
	}
	return out, nil
}

// Scan implements chain.Source, in sequence order.
func (s *Postgres) Scan(ctx context.Context, node string, fn func(chain.Entry) error) error {
	rows, err := s.pool.Query(ctx, "SELECT "+columnList+" FROM audit_events WHERE node = $1 ORDER BY seq", node)
	if err != nil {
		return errf("postgres", "scan", err)
	}
	defer rows.Close()
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return errf("postgres", "scan", err)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return errf("postgres", "scan", err)
	}
	return nil
}

// Checkpoints implements chain.Source.
func (s *Postgres) Checkpoints(ctx context.Context, node string) ([]chain.Checkpoint, error) {
	rows, err := s.pool.Query(ctx, "SELECT node, seq, hash, time_us, signature FROM audit_checkpoints WHERE node = $1 ORDER BY seq", node)
	if err != nil {
		return nil, errf("postgres", "checkpoints", err)
	}
	defer rows.Close()
	var out []chain.Checkpoint
	for rows.Next() {
		var cp chain.Checkpoint
		var seq, us int64
		if err := rows.Scan(&cp.Node, &seq, &cp.Hash, &us, &cp.Signature); err != nil {
			return nil, errf("postgres", "checkpoints", err)
		}
		cp.Seq, cp.Time = uint64(seq), microsTime(us)
		out = append(out, cp)
	}
	if err := rows.Err(); err != nil {
		return nil, errf("postgres", "checkpoints", err)
	}
	return out, nil
}

// Query implements chain.Sink.
func (s *Postgres) Query(ctx context.Context, f chain.Filter) (chain.Page, error) {
	f = f.Normalized()
	q, args, err := querySQL(f, func(n int) string { return fmt.Sprintf("$%d", n) })
	if err != nil {
		return chain.Page{}, err
	}
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return chain.Page{}, errf("postgres", "query", err)
	}
	defer rows.Close()
	var out []chain.Entry
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return chain.Page{}, errf("postgres", "query", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return chain.Page{}, errf("postgres", "query", err)
	}
	return page(out, f.Limit), nil
}
