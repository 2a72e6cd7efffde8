package sqlite

import (
	"context"
	"database/sql"
	"sync"

	"github.com/fhirgate/fhirgate/internal/storage"
)

// stmtCache keeps one prepared statement per query text on a pool: parsing
// SQL costs about as much as running these small statements. The queries
// are the package's constants, so the cache is bounded.
type stmtCache struct {
	db *sql.DB
	m  sync.Map // query -> *sql.Stmt
}

func (c *stmtCache) get(ctx context.Context, query string) (*sql.Stmt, error) {
	if v, ok := c.m.Load(query); ok {
		return v.(*sql.Stmt), nil
	}
	st, err := c.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if v, loaded := c.m.LoadOrStore(query, st); loaded {
		_ = st.Close()
		return v.(*sql.Stmt), nil
	}
	return st, nil
}

func (c *stmtCache) close() {
	c.m.Range(func(k, v any) bool {
		_ = v.(*sql.Stmt).Close()
		c.m.Delete(k)
		return true
	})
}

// errRow is a scanner that fails with err (a statement that did not prepare).
type errRow struct{ err error }

func (e errRow) Scan(...any) error { return e.err }

// wexec runs a write statement on the write pool, or inside tx if not nil.
// Statements inside a transaction are not cached: preparing one on the pool
// would wait for the pool's only connection, which the transaction holds.
// The hot single-use writes are single statements outside transactions.
func (s *Store) wexec(ctx context.Context, tx *sql.Tx, query string, args ...any) (sql.Result, error) {
	if tx != nil {
		return tx.ExecContext(ctx, query, args...)
	}
	st, err := s.wc.get(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

// wrow runs a one-row statement on the write pool, or inside tx if not nil.
func (s *Store) wrow(ctx context.Context, tx *sql.Tx, query string, args ...any) scanner {
	if tx != nil {
		return tx.QueryRowContext(ctx, query, args...)
	}
	st, err := s.wc.get(ctx, query)
	if err != nil {
		return errRow{err}
	}
	return st.QueryRowContext(ctx, args...)
}

// rrow runs a one-row query on the read pool.
func (s *Store) rrow(ctx context.Context, query string, args ...any) scanner {
	st, err := s.rc.get(ctx, query)
	if err != nil {
		return errRow{err}
	}
	return st.QueryRowContext(ctx, args...)
}

// execOne checks that a write touched exactly one row; none is ErrNotFound.
func execOne(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return storage.ErrNotFound
	}
	return nil
}
