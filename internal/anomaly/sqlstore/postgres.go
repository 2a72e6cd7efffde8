package sqlstore

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fhirgate/fhirgate/internal/anomaly"
	"github.com/fhirgate/fhirgate/internal/pgpool"
)

const postgresDDL = `
CREATE TABLE IF NOT EXISTS anomalies (
	seq          bigserial PRIMARY KEY,
	id           text   NOT NULL UNIQUE,
	rule         text   NOT NULL,
	action       text   NOT NULL,
	subject_kind text   NOT NULL,
	subject_id   text   NOT NULL,
	client_id    text   NOT NULL,
	user_id      text   NOT NULL,
	ip           text   NOT NULL,
	detail       text   NOT NULL,
	raised_us    bigint NOT NULL,
	until_us     bigint NOT NULL,
	cleared_us   bigint NOT NULL,
	cleared_by   text   NOT NULL
);
CREATE INDEX IF NOT EXISTS anomalies_raised ON anomalies (raised_us, seq);
CREATE INDEX IF NOT EXISTS anomalies_subject ON anomalies (subject_kind, subject_id, raised_us);
CREATE INDEX IF NOT EXISTS anomalies_open ON anomalies (until_us) WHERE cleared_us = 0 AND action <> 'record';`

// ddlLock is the advisory lock key serialising concurrent table creation
// by nodes starting together.
const ddlLock = 0x6668676e6f6d // "fhgnom"

// Postgres is an anomaly.Store in the table anomalies of a PostgreSQL
// database. It is safe for concurrent use; every node sharing the table
// sees the others' anomalies.
type Postgres struct {
	core
	pool *pgxpool.Pool
}

var _ anomaly.Store = (*Postgres)(nil)

// OpenPostgres connects to dsn, with the table in schema when it is not
// empty (created if missing; "" = the default search_path), and creates
// the anomalies table.
func OpenPostgres(ctx context.Context, dsn, schema string) (*Postgres, error) {
	cfg, err := pgpool.Config(dsn, schema)
	if err != nil {
		return nil, fmt.Errorf("anomaly postgres: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("anomaly postgres: connect: %w", err)
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(ddlLock)); err != nil {
			return err
		}
		if schema != "" {
			if _, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+schema); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, postgresDDL)
		return err
	})
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("anomaly postgres: create table: %w", err)
	}
	return &Postgres{core: core{db: pgDB{pool}, name: "postgres"}, pool: pool}, nil
}

// Close closes the connection pool.
func (s *Postgres) Close() error {
	s.pool.Close()
	return nil
}

// pgDB is the db of a pgx pool.
type pgDB struct{ pool *pgxpool.Pool }

// rebind turns the ? placeholders of q into $1, $2, ...
func rebind(q string) string {
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func (p pgDB) exec(ctx context.Context, q string, args ...any) (int64, error) {
	tag, err := p.pool.Exec(ctx, rebind(q), args...)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

func (p pgDB) query(ctx context.Context, q string, args []any, each func(scan func(...any) error) error) error {
	rows, err := p.pool.Query(ctx, rebind(q), args...)
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
