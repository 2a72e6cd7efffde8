package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/storage"
)

// TestWriteBatchIsolatesBodies queues bodies behind a leader that is still
// running, so they share the next transaction, and checks that each body's
// outcome is its own: a failed body's writes are rolled back and the
// others' kept, a commitErr keeps its writes and still fails, a caller
// that gave up while queued never runs, and a body that panics loses its
// writes and panics on its own caller's goroutine, not the leader's.
func TestWriteBatchIsolatesBodies(t *testing.T) {
	ctx := context.Background()
	s := openBatchStore(t)

	insert := func(key string) func(context.Context, *sql.Tx) error { return insertReplay(s, key) }
	errBody := errors.New("body failed")
	errKept := errors.New("failed after writing on purpose")

	release := make(chan struct{})
	leaderRunning := make(chan struct{})
	results := make(map[string]chan error)
	start := func(name string, ctx context.Context, fn func(context.Context, *sql.Tx) error) {
		ch := make(chan error, 1)
		results[name] = ch
		go func() { ch <- s.txBatched(ctx, name, fn) }()
	}
	start("leader", ctx, func(ctx context.Context, tx *sql.Tx) error {
		close(leaderRunning)
		<-release
		return insert("leader")(ctx, tx)
	})
	<-leaderRunning
	cancelled, cancel := context.WithCancel(ctx)
	start("ok", ctx, insert("ok"))
	start("fails", ctx, func(ctx context.Context, tx *sql.Tx) error {
		if err := insert("fails")(ctx, tx); err != nil {
			return err
		}
		return errBody
	})
	start("kept", ctx, func(ctx context.Context, tx *sql.Tx) error {
		if err := insert("kept")(ctx, tx); err != nil {
			return err
		}
		return commitErr{errKept}
	})
	start("gave-up", cancelled, insert("gave-up"))
	start("after-failure", ctx, insert("after-failure"))
	panicked := make(chan any, 1)
	go func() {
		defer func() { panicked <- recover() }()
		_ = s.txBatched(ctx, "panics", func(ctx context.Context, tx *sql.Tx) error {
			if err := insert("panics")(ctx, tx); err != nil {
				return err
			}
			panic("body bug")
		})
	}()
	waitQueued(t, s, 6)
	cancel()
	close(release)

	want := map[string]struct {
		err    error
		stored bool
	}{
		"leader":        {nil, true},
		"ok":            {nil, true},
		"fails":         {errBody, false},
		"kept":          {errKept, true},
		"gave-up":       {context.Canceled, false},
		"after-failure": {nil, true},
	}
	if p := <-panicked; p != "body bug" {
		t.Errorf("a panicking body's caller recovered %v, want its panic", p)
	}
	want["panics"] = struct {
		err    error
		stored bool
	}{nil, false}
	for name, w := range want {
		if name == "panics" {
			var n int
			if err := s.w.QueryRowContext(ctx, `SELECT COUNT(*) FROM replays WHERE key = ?`, name).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 0 {
				t.Errorf("a panicking body's write was kept")
			}
			continue
		}
		err := <-results[name]
		if w.err == nil && err != nil || w.err != nil && !errors.Is(err, w.err) {
			t.Errorf("%s: err = %v, want %v", name, err, w.err)
		}
		var n int
		if err := s.w.QueryRowContext(ctx, `SELECT COUNT(*) FROM replays WHERE key = ?`, name).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if got := n == 1; got != w.stored {
			t.Errorf("%s: stored = %v, want %v", name, got, w.stored)
		}
	}
	// Bodies that failed after writing made the batch run again with
	// savepoints.
	if n := s.batch.reruns.Load(); n != 1 {
		t.Errorf("batches run again: %d, want 1", n)
	}
	// The batcher still works after the panic: its lead was released.
	done := make(chan error, 1)
	go func() { done <- s.txBatched(ctx, "later", insert("later")) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("a batch after the panic: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the batcher is stuck after a panicking body")
	}
}

// waitQueued waits until n bodies are queued behind the running batch.
func waitQueued(t *testing.T, s *Store, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.batch.mu.Lock()
		queued := len(s.batch.queue)
		s.batch.mu.Unlock()
		if queued >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d bodies queued, want %d", queued, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestWriteBatchWithoutSavepoints checks the batch's first attempt, which
// runs its bodies with no savepoints: a body that fails with noWritesErr
// (here, a replay key already in use) does not make the batch run again,
// every body runs once, and the others' writes are committed.
func TestWriteBatchWithoutSavepoints(t *testing.T) {
	ctx := context.Background()
	s := openBatchStore(t)
	now := time.Now()
	if err := s.UseOnce(ctx, "taken", now.Add(time.Hour), now); err != nil {
		t.Fatal(err)
	}

	var runs sync.Map // body name -> *atomic.Int32
	counted := func(name string, fn func(context.Context, *sql.Tx) error) func(context.Context, *sql.Tx) error {
		n, _ := runs.LoadOrStore(name, new(atomic.Int32))
		return func(ctx context.Context, tx *sql.Tx) error {
			n.(*atomic.Int32).Add(1)
			return fn(ctx, tx)
		}
	}
	insert := func(key string) func(context.Context, *sql.Tx) error { return insertReplay(s, key) }
	release := make(chan struct{})
	leaderRunning := make(chan struct{})
	results := make(map[string]chan error)
	start := func(name string, fn func(context.Context, *sql.Tx) error) {
		ch := make(chan error, 1)
		results[name] = ch
		go func() { ch <- s.txBatched(ctx, name, counted(name, fn)) }()
	}
	start("leader", func(ctx context.Context, tx *sql.Tx) error {
		close(leaderRunning)
		<-release
		return insert("leader")(ctx, tx)
	})
	<-leaderRunning
	start("before", insert("before"))
	start("replayed", func(ctx context.Context, tx *sql.Tx) error {
		err := execOne(s.wexec(ctx, tx, `INSERT INTO replays (key, expires_at) VALUES ('taken', 0)
			ON CONFLICT (key) DO NOTHING`))
		if errors.Is(err, storage.ErrNotFound) {
			return noWritesErr{storage.ErrAlreadyUsed}
		}
		return err
	})
	start("after", insert("after"))
	waitQueued(t, s, 3)
	close(release)

	for name, want := range map[string]error{"leader": nil, "before": nil, "replayed": storage.ErrAlreadyUsed, "after": nil} {
		if err := <-results[name]; want == nil && err != nil || want != nil && !errors.Is(err, want) {
			t.Errorf("%s: err = %v, want %v", name, err, want)
		}
		n, _ := runs.Load(name)
		if got := n.(*atomic.Int32).Load(); got != 1 {
			t.Errorf("%s ran %d times, want 1", name, got)
		}
	}
	if n := s.batch.reruns.Load(); n != 0 {
		t.Errorf("batches run again: %d, want 0", n)
	}
	for _, key := range []string{"leader", "before", "after"} {
		var n int
		if err := s.w.QueryRowContext(ctx, `SELECT COUNT(*) FROM replays WHERE key = ?`, key).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Errorf("%s: %d rows, want 1", key, n)
		}
	}
	// A replay through the store's own path is refused the same way.
	if err := s.UseOnce(ctx, "taken", now.Add(time.Hour), now); !errors.Is(err, storage.ErrAlreadyUsed) {
		t.Errorf("UseOnce of a key in use: %v, want ErrAlreadyUsed", err)
	}
	if n := s.batch.reruns.Load(); n != 0 {
		t.Errorf("batches run again after a replay: %d, want 0", n)
	}
}

// TestWriteBatchEarlyRelease: a txBatchedEarly caller whose body succeeded
// goes on while the batch commits, and its durable waits for that commit;
// a caller whose body failed gets its error after the commit, with no
// durable.
func TestWriteBatchEarlyRelease(t *testing.T) {
	ctx := context.Background()
	s := openBatchStore(t)
	insert := func(key string) func(context.Context, *sql.Tx) error { return insertReplay(s, key) }
	committed := func(key string) bool {
		var n int
		if err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM replays WHERE key = ?`, key).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	// The first batch (the leader's) commits freely; the second (the two
	// early callers') waits at the gate before its commit.
	gate := make(chan struct{})
	var commits atomic.Int32
	s.batch.testBeforeCommit = func() {
		if commits.Add(1) == 2 {
			<-gate
		}
	}

	release := make(chan struct{})
	leaderRunning := make(chan struct{})
	leaderDone := make(chan error, 1)
	go func() {
		leaderDone <- s.txBatched(ctx, "leader", func(ctx context.Context, tx *sql.Tx) error {
			close(leaderRunning)
			<-release
			return insert("leader")(ctx, tx)
		})
	}()
	<-leaderRunning
	type early struct {
		durable func() error
		err     error
	}
	// The first in the queue leads the next batch on its own goroutine, so
	// the early callers queue behind it.
	nextLeader := make(chan error, 1)
	go func() { nextLeader <- s.txBatched(ctx, "next-leader", insert("next-leader")) }()
	waitQueued(t, s, 1)
	okCh, failCh := make(chan early, 1), make(chan early, 1)
	errBody := errors.New("body failed")
	go func() {
		d, err := s.txBatchedEarly(ctx, "early", insert("early"))
		okCh <- early{d, err}
	}()
	waitQueued(t, s, 2)
	go func() {
		d, err := s.txBatchedEarly(ctx, "early-fails", func(ctx context.Context, tx *sql.Tx) error { return noWritesErr{errBody} })
		failCh <- early{d, err}
	}()
	waitQueued(t, s, 3)
	close(release)
	if err := <-leaderDone; err != nil {
		t.Fatal(err)
	}
	var ok early
	select {
	case ok = <-okCh:
	case <-time.After(10 * time.Second):
		t.Fatal("the early caller was not released before the commit")
	}
	if ok.err != nil || ok.durable == nil {
		t.Fatalf("early caller: durable %v, err %v", ok.durable != nil, ok.err)
	}
	if committed("early") {
		t.Fatal("the early caller's write is visible before its commit")
	}
	select {
	case f := <-failCh:
		t.Fatalf("a failed body returned before the commit: %v", f.err)
	default:
	}
	done := make(chan error, 1)
	go func() { done <- ok.durable() }()
	select {
	case err := <-done:
		t.Fatalf("durable returned %v before the commit", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(gate)
	if err := <-done; err != nil {
		t.Fatalf("durable: %v", err)
	}
	if err := <-nextLeader; err != nil {
		t.Fatal(err)
	}
	if !committed("early") {
		t.Error("the early caller's write is not committed after durable returned nil")
	}
	f := <-failCh
	if f.durable != nil || !errors.Is(f.err, errBody) {
		t.Errorf("failed body: durable %v, err %v; want nil and %v", f.durable != nil, f.err, errBody)
	}
}

func openBatchStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "fhirgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// insertReplay is a batch body that inserts a replay key.
func insertReplay(s *Store, key string) func(context.Context, *sql.Tx) error {
	return func(ctx context.Context, tx *sql.Tx) error {
		_, err := s.wexec(ctx, tx, `INSERT INTO replays (key, expires_at) VALUES (?, 0)`, key)
		return err
	}
}
