package sqlsink

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit/audittest"
	"github.com/fhirgate/fhirgate/internal/audit/chain"
	"github.com/fhirgate/fhirgate/internal/audit/trail"
	"github.com/fhirgate/fhirgate/internal/sqlitefile"
)

func openSQLite(t *testing.T, path string) *SQLite {
	t.Helper()
	s, err := OpenSQLite(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSQLiteConformance(t *testing.T) {
	paths := map[chain.Sink]string{}
	audittest.RunSinkSuite(t, audittest.SinkHarness{
		Open: func(t *testing.T) chain.Sink {
			p := filepath.Join(t.TempDir(), "fhirgate.db")
			s := openSQLite(t, p)
			paths[s] = p
			return s
		},
		Rewrite: func(t *testing.T, s chain.Sink, node string, es []chain.Entry) {
			rewrite(t, s.(*SQLite), node, es)
		},
		Reopen: func(t *testing.T, s chain.Sink) chain.Sink {
			p := paths[s]
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			return openSQLite(t, p)
		},
	})
}

// rewrite replaces node's records with es, bypassing every check.
func rewrite(t *testing.T, s *SQLite, node string, es []chain.Entry) {
	t.Helper()
	ctx := context.Background()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.Exec("DELETE FROM audit_block_patients WHERE block IN (SELECT id FROM audit_blocks WHERE "+nodeRange+")", node); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec("DELETE FROM audit_blocks WHERE "+nodeRange, node); err != nil {
		t.Fatal(err)
	}
	num, err := assignNode(ctx, tx, "main", node)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if _, err := appendBlocks(ctx, tx, nil, num, []chain.Entry{e}, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

func TestSQLiteOpenTwiceIsIdempotent(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.db")
	a := openSQLite(t, p)
	b := openSQLite(t, p)
	a.Close()
	b.Close()
}

func TestSQLiteBesideMainStore(t *testing.T) {
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), "fhirgate.db")
	// The main store's own connection: WAL, synchronous FULL, its own table.
	s := openSQLite(t, p)
	st, err := sql.Open("sqlite", "file:"+p+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Exec("CREATE TABLE clients (id INTEGER PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tr, err := trail.New(ctx, trail.Options{Sink: s, Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if err := tr.Record(ctx, audittest.SampleEvent(i, time.Now())); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Exec("INSERT INTO clients (id) VALUES (?)", i); err != nil {
			t.Fatal(err)
		}
	}
	tr.Close(ctx)
	rep, err := chain.Verify(ctx, s, chain.VerifyOptions{})
	if err != nil || !rep.OK() || rep.Nodes[0].Records != 20 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}

// A trail kept in the main store's file by an earlier version moves to its
// own file unchanged: its chains still verify and new events extend them.
func TestAdoptSQLite(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	legacy, path := filepath.Join(dir, "fhirgate.db"), filepath.Join(dir, "audit.db")
	if n, err := AdoptSQLite(ctx, legacy, path); n != 0 || err != nil {
		t.Fatalf("no legacy file: %d %v", n, err)
	}
	writeV1(t, legacy, "n1", 7, 3)
	n, err := AdoptSQLite(ctx, legacy, path)
	if err != nil || n != 7 {
		t.Fatalf("adopted %d, %v", n, err)
	}
	s := openSQLite(t, path)
	defer s.Close()
	rep, err := chain.Verify(ctx, s, chain.VerifyOptions{})
	if err != nil || !rep.OK() {
		t.Fatalf("verify after adoption: %+v %v", rep, err)
	}
	cps, err := s.Checkpoints(ctx, "n1")
	if err != nil || len(cps) == 0 {
		t.Fatalf("checkpoints %v %v", cps, err)
	}
	tr, err := trail.New(ctx, trail.Options{Sink: s, Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Record(ctx, audittest.SampleEvent(8, time.Now())); err != nil {
		t.Fatal(err)
	}
	if err := tr.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if h, ok, err := s.Head(ctx, "n1"); err != nil || !ok || h.Seq != 8 {
		t.Fatalf("head after adoption %+v %v %v", h, ok, err)
	}
	// Adoption happens once: a second call finds the new file and copies nothing.
	if n, err := AdoptSQLite(ctx, legacy, path); n != 0 || err != nil {
		t.Fatalf("second adoption %d %v", n, err)
	}
}

// The writer never checkpoints inside a commit; the background checkpointer
// copies the WAL into the database file while the sink is open, and after
// Close no WAL is left.
func TestSQLiteBackgroundCheckpoint(t *testing.T) {
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), "audit.db")
	s := openSQLite(t, p)
	size := func(path string) int64 {
		fi, err := os.Stat(path)
		if err != nil {
			return -1
		}
		return fi.Size()
	}
	before := size(p)
	var prev *chain.Entry
	for i := range 200 {
		e := chain.Link("n1", prev, audittest.SampleEvent(i, time.Now()))
		if err := s.Append(ctx, []chain.Entry{e}); err != nil {
			t.Fatal(err)
		}
		prev = &e
	}
	if size(p+"-wal") <= 0 {
		t.Fatal("appends did not go to the WAL")
	}
	deadline := time.Now().Add(checkpointInterval + 3*time.Second)
	for size(p) <= before {
		if time.Now().After(deadline) {
			t.Fatalf("database file still %d bytes: no background checkpoint", size(p))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n := size(p + "-wal"); n > 0 {
		t.Fatalf("WAL holds %d bytes after Close", n)
	}
	s = openSQLite(t, p)
	defer s.Close()
	if h, ok, err := s.Head(ctx, "n1"); err != nil || !ok || h.Seq != 200 {
		t.Fatalf("head after reopen: %+v %v %v", h, ok, err)
	}
}

// Under steady load the WAL starts over after background checkpoints
// instead of growing without end: its header's checkpoint sequence number,
// which SQLite increments at each restart, moves, and the file stops
// growing once it holds what one checkpoint interval brings.
func TestSQLiteWALRestartsUnderLoad(t *testing.T) {
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), "audit.db")
	s, err := openSQLiteEvery(ctx, p, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var (
		prev    *chain.Entry
		written int64
	)
	deadline := time.Now().Add(time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		batch := make([]chain.Entry, 0, 8)
		for range 8 {
			e := chain.Link("n1", prev, audittest.SampleEvent(i, time.Now()))
			batch = append(batch, e)
			prev = &e
		}
		if err := s.Append(ctx, batch); err != nil {
			t.Fatal(err)
		}
		written++
	}
	if n, err := sqlitefile.WALRestarts(p); err != nil || n < 2 {
		t.Fatalf("WAL restarted %d times in %d commits under load (%v)", n, written, err)
	}
	fi, err := os.Stat(p + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	// Every commit writes at least one 4 KB page to the WAL.
	if all := written * 4096; fi.Size() >= all {
		t.Fatalf("WAL %d bytes after %d commits (%d bytes): it never started over", fi.Size(), written, all)
	}
	if h, ok, err := s.Head(ctx, "n1"); err != nil || !ok || h.Seq != prev.Seq {
		t.Fatalf("head %+v %v %v, want seq %d", h, ok, err, prev.Seq)
	}
}

// Paging through the trail reads the candidate blocks in the order of an
// index, the time index or, for a patient, the patient index: no query the
// admin API makes sorts the whole table.
func TestSQLiteQueryNeedsNoSort(t *testing.T) {
	s := openSQLite(t, filepath.Join(t.TempDir(), "audit.db"))
	defer s.Close()
	for _, q := range []struct{ sql, index string }{
		{blocksByTimeSQL, "audit_blocks_time"},
		{blocksOfPatientSQL, "SEARCH p USING PRIMARY KEY (patient=?"},
	} {
		args := []any{int64(0), int64(1 << 60)}
		if strings.Contains(q.sql, "patient = ?") {
			args = append([]any{"p1"}, args...)
		}
		rows, err := s.r.Query("EXPLAIN QUERY PLAN "+q.sql, args...)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		joined := strings.Join(plan, "; ")
		if strings.Contains(joined, "TEMP B-TREE") || !strings.Contains(joined, q.index) {
			t.Fatalf("%s: plan %q sorts or skips %s", q.sql, joined, q.index)
		}
	}
}

// TestSQLiteWriterKeepsTempInMemory: the write connection's statement
// journals (one per multi-row INSERT inside Append's transaction) stay in
// memory instead of being spilled to temporary files, page by page (see
// OpenSQLite; BenchmarkSQLiteAppend measures the difference).
func TestSQLiteWriterKeepsTempInMemory(t *testing.T) {
	s := openSQLite(t, filepath.Join(t.TempDir(), "audit.db"))
	defer s.Close()
	var store int
	if err := s.w.QueryRow("PRAGMA temp_store").Scan(&store); err != nil {
		t.Fatal(err)
	}
	if store != 2 {
		t.Fatalf("writer temp_store = %d, want 2 (MEMORY)", store)
	}
}

// The patient index is written in batches (patientindex.go): between
// flushes a patient query still finds every entry, by decoding the blocks
// after the marks, without duplicates once some are indexed; a flush writes
// the rows; opening the file writes those a stopped process left pending.
func TestSQLitePatientIndexDeferred(t *testing.T) {
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), "audit.db")
	s := openSQLite(t, p)
	defer s.Close()
	s.idx.every = time.Hour
	var (
		prev *chain.Entry
		all  []chain.Entry
	)
	appendN := func(n int) {
		t.Helper()
		var b []chain.Entry
		for range n {
			ev := audittest.SampleEvent(len(all), time.Now())
			ev.Patient = []string{"p1", "p2", "p3"}[len(all)%3]
			e := chain.Link("n1", prev, ev)
			all = append(all, e)
			prev = &all[len(all)-1]
			b = append(b, e)
		}
		if err := s.Append(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	indexRows := func() (n int) {
		t.Helper()
		if err := s.w.QueryRow("SELECT count(*) FROM audit_block_patients").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// pages reads every entry of patient p3 two at a time and checks them
	// against what was appended.
	pages := func(when string) {
		t.Helper()
		var want []chain.Entry
		for _, e := range all {
			if e.Event.Patient == "p3" {
				want = append(want, e)
			}
		}
		var got []chain.Entry
		f := chain.Filter{Patient: "p3", Limit: 2}
		for range 100 {
			pg, err := s.Query(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, pg.Entries...)
			if pg.Next == "" {
				break
			}
			f.After = pg.Next
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d entries of p3, want %d", when, len(got), len(want))
		}
		for i := range got {
			if got[i].Seq != want[i].Seq || !got[i].Valid() {
				t.Fatalf("%s: entry %d is record %d, want %d", when, i, got[i].Seq, want[i].Seq)
			}
		}
	}
	for range 3 {
		appendN(7)
	}
	if n := indexRows(); n != 0 {
		t.Fatalf("%d index rows written before a flush was due", n)
	}
	pages("nothing indexed")
	s.idx.every = 0
	appendN(5) // flushes all four commits' rows
	if n := indexRows(); n != 4*3 {
		t.Fatalf("%d index rows after the flush, want 12 (4 blocks, 3 patients)", n)
	}
	s.idx.every = time.Hour
	appendN(6)
	pages("some indexed")
	s.idx.rows = 3
	appendN(1) // three pending rows and this one's: a flush
	if n := indexRows(); n != 6*3-2 {
		t.Fatalf("%d index rows after the flush by count, want 16", n)
	}
	s.idx.rows = indexFlushRows
	appendN(8)
	// Another process opening the file (as after a crash of this one,
	// which never flushed) writes the pending rows.
	again := openSQLite(t, p)
	defer again.Close()
	if n := indexRows(); n != 7*3-2 {
		t.Fatalf("%d index rows after reopening, want 19", n)
	}
	pages("all indexed")
	// Rows written beyond a node's mark (rewrite writes each block's at
	// once) are not read twice.
	rewrite(t, s, "n1", all)
	pages("rewritten")
}

// A flush of more rows than one multi-row INSERT carries writes them all.
func TestSQLitePatientIndexChunks(t *testing.T) {
	ctx := context.Background()
	s := openSQLite(t, filepath.Join(t.TempDir(), "audit.db"))
	defer s.Close()
	s.idx.every = 0
	const n = 2*patientChunk + 5
	var (
		prev *chain.Entry
		b    []chain.Entry
	)
	for i := range n {
		ev := audittest.SampleEvent(i, time.Now())
		ev.Patient = fmt.Sprintf("p-%d", i)
		e := chain.Link("n1", prev, ev)
		b = append(b, e)
		prev = &b[len(b)-1]
	}
	if err := s.Append(ctx, b[:n/2]); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(ctx, b[n/2:]); err != nil {
		t.Fatal(err)
	}
	var rows int
	if err := s.w.QueryRow("SELECT count(*) FROM audit_block_patients").Scan(&rows); err != nil || rows != n {
		t.Fatalf("%d index rows (%v), want %d", rows, err, n)
	}
	for _, i := range []int{0, patientChunk - 1, patientChunk, n - 1} {
		pg, err := s.Query(ctx, chain.Filter{Patient: fmt.Sprintf("p-%d", i)})
		if err != nil || len(pg.Entries) != 1 || pg.Entries[0].Seq != uint64(i+1) {
			t.Fatalf("patient p-%d: %+v %v", i, pg.Entries, err)
		}
	}
}
