package sqlitefile

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"
)

// A writer that commits without pause, with checkpoints only in the
// background, sees its WAL start over after each background checkpoint
// when it lets the Checkpointer catch up before each transaction, and the
// WAL file stops growing.
func TestCheckpointerRestartsWAL(t *testing.T) {
	ctx := context.Background()
	abs, err := Create(filepath.Join(t.TempDir(), "x.db"))
	if err != nil {
		t.Fatal(err)
	}
	w, err := sql.Open("sqlite", URI(abs, "_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=wal_autocheckpoint(0)&_txlock=immediate"))
	if err != nil {
		t.Fatal(err)
	}
	w.SetMaxOpenConns(1)
	defer w.Close()
	if _, err := w.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"); err != nil {
		t.Fatal(err)
	}
	cp, err := sql.Open("sqlite", URI(abs, "_pragma=busy_timeout(5000)"))
	if err != nil {
		t.Fatal(err)
	}
	c := StartCheckpointer(cp, 20*time.Millisecond)
	row := strings.Repeat("x", 500)
	var commits int64
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); commits++ {
		c.CatchUp(ctx, w)
		tx, err := w.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		for range 8 {
			if _, err := tx.Exec("INSERT INTO t (v) VALUES (?)", row); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := WALRestarts(abs); err != nil || n < 2 {
		t.Fatalf("WAL restarted %d times in %d commits (%v)", n, commits, err)
	}
	fi, err := os.Stat(abs + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	// Each commit wrote at least one 4 KB page to the WAL.
	if fi.Size() >= commits*4096 {
		t.Fatalf("WAL is %d bytes after %d commits: it never started over", fi.Size(), commits)
	}
	var n int64
	if err := w.QueryRow("SELECT COUNT(*) FROM t").Scan(&n); err != nil || n != commits*8 {
		t.Fatalf("%d rows (%v), want %d", n, err, commits*8)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err == nil {
		t.Fatal("second Close succeeded")
	}
	var none *Checkpointer
	none.CatchUp(ctx, w) // does nothing
}

func TestWALRestartsWithoutWAL(t *testing.T) {
	if _, err := WALRestarts(filepath.Join(t.TempDir(), "none.db")); err == nil {
		t.Fatal("no error for a missing WAL")
	}
}
