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
	db      *sql.DB
	m       sync.Map // query -> *sql.Stmt
	pending sync.Map // query run uncached inside a transaction -> struct{}
}

// lookup returns the cached statement for query, if any.
func (c *stmtCache) lookup(query string) (*sql.Stmt, bool) {
	v, ok := c.m.Load(query)
	if !ok {
		return nil, false
	}
	return v.(*sql.Stmt), true
}

// preparePending prepares the queries transactions ran uncached. It runs
// after a transaction has released the write pool's only connection.
func (c *stmtCache) preparePending(ctx context.Context) {
	c.pending.Range(func(k, _ any) bool {
		c.pending.Delete(k)
		_, _ = c.get(ctx, k.(string)) // a failure leaves the query uncached
		return true
	})
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
// Inside a transaction a statement is never prepared on the pool (that would
// wait for the pool's only connection, which the transaction holds): a
// cached one is reused on the transaction's connection (the same one, so
// database/sql does not prepare it again), and an uncached one runs
// unprepared and is queued for preparation once the transaction ends.
func (s *Store) wexec(ctx context.Context, tx *sql.Tx, query string, args ...any) (sql.Result, error) {
	if tx != nil {
		if st, ok := s.wc.lookup(query); ok {
			return tx.StmtContext(ctx, st).ExecContext(ctx, args...)
		}
		s.wc.pending.Store(query, struct{}{})
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
		if st, ok := s.wc.lookup(query); ok {
			return tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
		}
		s.wc.pending.Store(query, struct{}{})
		return tx.QueryRowContext(ctx, query, args...)
	}
	st, err := s.wc.get(ctx, query)
	if err != nil {
		return errRow{err}
	}
	return st.QueryRowContext(ctx, args...)
}

// rrow runs a one-row query on the read pool. Every such query is a lookup
// by key that takes microseconds, so it runs without watching ctx for
// cancellation: database/sql and the driver would each start a goroutine
// per query to do so, which costs more than the query. A ctx already done
// still fails it.
func (s *Store) rrow(ctx context.Context, query string, args ...any) scanner {
	if err := ctx.Err(); err != nil {
		return errRow{err}
	}
	ctx = context.WithoutCancel(ctx)
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
