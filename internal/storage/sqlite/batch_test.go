package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// TestWriteBatchIsolatesBodies queues bodies behind a leader that is still
// running, so they share the next transaction, and checks that each body's
// outcome is its own: a failed body's writes are rolled back and the
// others' kept, a commitErr keeps its writes and still fails, a caller
// that gave up while queued never runs, and a body that panics loses its
// writes and panics on its own caller's goroutine, not the leader's.
func TestWriteBatchIsolatesBodies(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "fhirgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	insert := func(key string) func(context.Context, *sql.Tx) error {
		return func(ctx context.Context, tx *sql.Tx) error {
			_, err := s.wexec(ctx, tx, `INSERT INTO replays (key, expires_at) VALUES (?, 0)`, key)
			return err
		}
	}
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
