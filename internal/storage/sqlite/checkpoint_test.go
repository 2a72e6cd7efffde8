package sqlite

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/sqlitefile"
)

// Under steady writes, through both the single-statement path and the
// write batches, the store's WAL starts over after background checkpoints
// instead of growing without end, and every write is kept.
func TestWALRestartsUnderLoad(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "fhirgate.db")
	s, err := openEvery(ctx, path, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	var n int
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); n++ {
		key := "replay-" + strconv.Itoa(n)
		if err := s.UseOnce(ctx, key, now.Add(time.Hour), now); err != nil { // a write batch
			t.Fatal(err)
		}
		if _, err := s.wexec(ctx, nil, `UPDATE replays SET expires_at = expires_at + 1 WHERE key = ?`, key); err != nil {
			t.Fatal(err)
		}
	}
	if r, err := sqlitefile.WALRestarts(path); err != nil || r < 2 {
		t.Fatalf("WAL restarted %d times in %d rounds of writes (%v)", r, n, err)
	}
	var rows int
	if err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM replays WHERE expires_at = ?`, now.Add(time.Hour).UnixMicro()+1).Scan(&rows); err != nil || rows != n {
		t.Fatalf("%d replay keys written twice (%v), want %d", rows, err, n)
	}
}
