package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// maxBatch bounds how many transaction bodies share one commit, so one
// leader's batch (and the write lock it holds) stays short.
const maxBatch = 64

// writeBatcher groups the hot single-use writes (code redemption, refresh
// rotation, replay keys) that arrive together into one write transaction:
// SQLite serialises writers, so each would otherwise wait for the others'
// BEGIN, commit and WAL write in turn. A body that fails rolls back only its
// own writes, and a body sees the writes of the bodies before it in the
// batch exactly as it would after their commits. The batch first runs its
// bodies one after another with nothing between them; if a body fails
// after writing (any error but a commitErr or a noWritesErr), the whole
// transaction is rolled back and the batch runs again with each body in a
// SAVEPOINT of its own. Most batches have no such failure, and the two
// statements a savepoint costs each body were a tenth of a code exchange's
// time in the single writer. No result is final before the commit that
// makes it durable; if that commit fails, every body in the batch gets the
// error. A txBatchedEarly caller hears of its body's success as the commit
// starts, and its durable reports the commit.
//
// There is no goroutine of its own: the first caller to find the batcher
// idle leads, running whatever has queued meanwhile, and hands the lead to
// the oldest waiter when it is done.
type writeBatcher struct {
	mu      sync.Mutex
	queue   []*batchItem
	leading bool

	reruns atomic.Int64 // batches run again with savepoints

	// testBeforeCommit, set only by tests before any batch runs, is called
	// after the early callers are released and before the commit.
	testBeforeCommit func()
}

func (s *Store) beforeCommit() {
	if f := s.batch.testBeforeCommit; f != nil {
		f()
	}
}

// batchItem is one transaction body waiting for a batch.
type batchItem struct {
	ctx  context.Context
	fn   func(ctx context.Context, tx *sql.Tx) error
	err  error
	pnc  any           // what fn panicked with, re-raised on its caller's goroutine
	lead bool          // woken to lead the next batch, not with a result
	wake chan struct{} // one signal: a result, or the lead
	// released, when not nil, is closed once fn has succeeded and the
	// batch's commit is about to start (see txBatchedEarly).
	released chan struct{}
}

// txBatched runs fn in a write transaction shared with other concurrent
// txBatched calls: fn's nil commits its writes, a commitErr commits them and
// returns its error, any other error discards them. fn may run twice (see
// writeBatcher): it must have no effect outside tx beyond its result. fn
// must run its statements with the ctx it is given: it runs on another caller's
// goroutine, and a statement interrupted by a cancelled caller would roll
// back the whole shared transaction. fn must not start a write of its own:
// the batch holds the only write connection.
func (s *Store) txBatched(ctx context.Context, op string, fn func(ctx context.Context, tx *sql.Tx) error) error {
	_, err := s.batched(ctx, op, fn, false)
	return err
}

// txBatchedEarly is txBatched for a caller that can use fn's success before
// it is durable: once fn has succeeded and the batch's commit has started,
// it returns with durable set, and durable waits for the commit and returns
// its error (nil: fn's writes are committed). The caller must see durable
// return nil before it acts on fn's writes outside this process. Otherwise
// (fn failed, or the caller's own goroutine ran the batch) it returns after
// the commit, as txBatched does, with durable nil.
func (s *Store) txBatchedEarly(ctx context.Context, op string, fn func(ctx context.Context, tx *sql.Tx) error) (durable func() error, err error) {
	return s.batched(ctx, op, fn, true)
}

func (s *Store) batched(ctx context.Context, op string, fn func(ctx context.Context, tx *sql.Tx) error, early bool) (func() error, error) {
	it := &batchItem{ctx: ctx, fn: fn, wake: make(chan struct{}, 1)}
	if early {
		it.released = make(chan struct{})
	}
	b := &s.batch
	b.mu.Lock()
	b.queue = append(b.queue, it)
	lead := !b.leading
	b.leading = true
	b.mu.Unlock()
	if !lead {
		select {
		case <-it.wake:
		case <-it.released: // never ready when nil
			return func() error {
				<-it.wake
				return it.result(op)
			}, nil
		}
		if !it.lead {
			return nil, it.result(op)
		}
	}
	b.mu.Lock()
	n := min(len(b.queue), maxBatch)
	items := append([]*batchItem(nil), b.queue[:n]...)
	b.queue = b.queue[n:]
	b.mu.Unlock()

	s.runBatch(items)

	b.mu.Lock()
	if len(b.queue) > 0 {
		next := b.queue[0]
		next.lead = true
		next.wake <- struct{}{}
	} else {
		b.leading = false
	}
	b.mu.Unlock()
	for _, other := range items {
		if other != it {
			other.wake <- struct{}{}
		}
	}
	return nil, it.result(op)
}

// release lets the early callers (txBatchedEarly) whose bodies succeeded go
// on while the batch commits.
func release(items []*batchItem) {
	for _, it := range items {
		if it.released != nil && it.err == nil {
			close(it.released)
		}
	}
}

// result is wrap for the body's outcome, unwrapping a commitErr (its writes
// were committed). A body that panicked panics again here, on its own
// caller's goroutine, after the batch has been committed for the others.
func (it *batchItem) result(op string) error {
	if it.pnc != nil {
		panic(it.pnc)
	}
	err := it.err
	var (
		ce commitErr
		nw noWritesErr
	)
	if errors.As(err, &ce) {
		err = ce.err
	} else if errors.As(err, &nw) {
		err = nw.err
	}
	return wrap(op, err)
}

// run calls the body, turning a panic into an error (its writes are then
// rolled back) so that the batch, its transaction and the lead survive it.
func (it *batchItem) run(tx *sql.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			it.pnc = p
			err = fmt.Errorf("transaction body panicked: %v", p)
		}
	}()
	return it.fn(context.WithoutCancel(it.ctx), tx)
}

// runBatch runs items in one write transaction (see writeBatcher) and sets
// each item's err. A caller that gave up before its turn is skipped.
func (s *Store) runBatch(items []*batchItem) {
	defer s.wc.preparePending(context.Background())
	if s.runPlain(items) {
		return
	}
	s.batch.reruns.Add(1)
	for _, it := range items {
		it.err, it.pnc = nil, nil
	}
	s.runWithSavepoints(items)
}

// runPlain runs the batch's bodies with no savepoints and commits, unless a
// body fails after writing: then it rolls everything back and returns false
// so the batch can run again with savepoints.
func (s *Store) runPlain(items []*batchItem) bool {
	tx, err := s.w.BeginTx(context.Background(), nil)
	if err != nil {
		failAll(items, err)
		return true
	}
	for _, it := range items {
		if err := it.ctx.Err(); err != nil {
			it.err = err
			continue
		}
		it.err = it.run(tx)
		var (
			ce commitErr
			nw noWritesErr
		)
		if it.err != nil && !errors.As(it.err, &ce) && !errors.As(it.err, &nw) {
			_ = tx.Rollback()
			return false
		}
	}
	release(items)
	s.beforeCommit()
	if err := tx.Commit(); err != nil {
		failAll(items, err)
	}
	return true
}

// failAll gives every body of the batch err.
func failAll(items []*batchItem, err error) {
	for _, it := range items {
		it.err = err
	}
}

// runWithSavepoints runs each body in a SAVEPOINT of its own, so a body that
// fails rolls back its own writes and no one else's, and commits.
func (s *Store) runWithSavepoints(items []*batchItem) {
	bg := context.Background()
	tx, err := s.w.BeginTx(bg, nil)
	if err != nil {
		failAll(items, err)
		return
	}
	for _, it := range items {
		if err := it.ctx.Err(); err != nil {
			it.err = err
			continue
		}
		if _, err := s.wexec(bg, tx, `SAVEPOINT batch_item`); err != nil {
			_ = tx.Rollback()
			failAll(items, err)
			return
		}
		it.err = it.run(tx)
		var ce commitErr
		if it.err != nil && !errors.As(it.err, &ce) {
			if _, err := s.wexec(bg, tx, `ROLLBACK TO batch_item`); err != nil {
				// SQLite rolls a whole transaction back on some errors
				// (I/O, a full disk); then no body's writes survive.
				_ = tx.Rollback()
				failAll(items, errors.Join(it.err, err))
				return
			}
		}
		if _, err := s.wexec(bg, tx, `RELEASE batch_item`); err != nil {
			_ = tx.Rollback()
			failAll(items, err)
			return
		}
	}
	release(items)
	s.beforeCommit()
	if err := tx.Commit(); err != nil {
		failAll(items, err)
	}
}
