// Package pgpool configures the pgx connection pools of fhirgate's
// PostgreSQL backends (the store, the audit trail, the anomaly store) with
// one policy: an optional schema as the connections' search_path, and
// commits that wait for the WAL flush.
package pgpool

import (
	"context"
	"fmt"
	"regexp"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// ValidSchema reports whether schema is a plain lower-case identifier, safe
// to splice into DDL.
func ValidSchema(schema string) bool { return schemaName.MatchString(schema) }

// Config parses dsn (a postgres:// URL or key=value string) into a pool
// configuration whose connections use schema as their search_path when it
// is not "" (schema must then pass ValidSchema) and commit durably
// (DurableCommits).
func Config(dsn, schema string) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse DSN: %w", err)
	}
	if schema != "" {
		if !ValidSchema(schema) {
			return nil, fmt.Errorf("invalid schema name %q", schema)
		}
		cfg.ConnConfig.RuntimeParams["search_path"] = schema
	}
	cfg.AfterConnect = DurableCommits
	return cfg, nil
}

// DurableCommits makes a connection's commits wait for the WAL flush. With
// synchronous_commit off (set on the server or in the DSN) PostgreSQL
// confirms a commit that a crash can still roll back: a revocation, a
// suspension or a single-use redemption the server already acted on. Every
// other setting (local, on, remote_write, remote_apply) waits for at least
// the local flush and is kept, so a stronger one is never weakened.
func DurableCommits(ctx context.Context, c *pgx.Conn) error {
	var v string
	if err := c.QueryRow(ctx, `SELECT current_setting('synchronous_commit')`).Scan(&v); err != nil {
		return fmt.Errorf("read synchronous_commit: %w", err)
	}
	if v != "off" {
		return nil
	}
	if _, err := c.Exec(ctx, `SET synchronous_commit = on`); err != nil {
		return fmt.Errorf("set synchronous_commit: %w", err)
	}
	return nil
}
