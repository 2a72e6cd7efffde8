package sqlsink

import (
	"cmp"
	"context"
	"database/sql"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit/chain"
)

// The patient index (audit_block_patients, a row per distinct patient of a
// block) is written in batches: Append keeps the rows of the blocks it
// commits in memory and writes everything pending, sorted by patient, inside
// one commit about once a second. Written at each commit, a trail whose
// events spread over many patients dirtied a random index page per event,
// each written whole to the WAL; written sorted, once a second, each page
// takes a second's rows at once. audit_index_marks records, per node, the
// last block whose rows are written (every earlier one is too); a patient
// query decodes the blocks after the marks itself, and opening the file
// writes the rows of those a stopped process left pending.

// Patient index flushes: with the first commit indexFlushEvery or more
// after the last flush, or as soon as indexFlushRows rows are pending, and at
// Close.
const (
	indexFlushEvery = time.Second
	indexFlushRows  = 16384
)

// Statements of the patient index.
const (
	insertPatientSQL = "INSERT OR IGNORE INTO audit_block_patients (patient, t_min, block) VALUES (?, ?, ?)"
	upsertMarkSQL    = "INSERT INTO audit_index_marks (node_no, block) VALUES (?, ?) ON CONFLICT (node_no) DO UPDATE SET block = max(block, excluded.block)"
)

// patientRow is one row of audit_block_patients.
type patientRow struct {
	patient     string
	tmin, block int64
}

func comparePatientRows(a, b patientRow) int {
	return cmp.Or(cmp.Compare(a.patient, b.patient), cmp.Compare(a.tmin, b.tmin), cmp.Compare(a.block, b.block))
}

// appendPatientRows appends the index rows of block id (its entries b, its
// earliest time tmin): one per distinct patient.
func appendPatientRows(rows []patientRow, b []chain.Entry, tmin, id int64) []patientRow {
	start := len(rows)
	for i := range b {
		p := b[i].Event.Patient
		if p == "" || slices.ContainsFunc(rows[start:], func(r patientRow) bool { return r.patient == p }) {
			continue
		}
		rows = append(rows, patientRow{patient: p, tmin: tmin, block: id})
	}
	return rows
}

// patientChunk is how many index rows one multi-row INSERT carries (a
// statement per row costs several times more per row).
const patientChunk = 64

// insertPatientChunkSQL inserts patientChunk index rows.
var insertPatientChunkSQL = "INSERT OR IGNORE INTO audit_block_patients (patient, t_min, block) VALUES (?, ?, ?)" +
	strings.Repeat(", (?, ?, ?)", patientChunk-1)

// insertPatientRows writes rows in index order inside tx (st, when not
// nil, holds the prepared inserts).
func insertPatientRows(ctx context.Context, tx *sql.Tx, st *blockStmts, rows []patientRow) error {
	slices.SortFunc(rows, comparePatientRows)
	exec := func(stmt *sql.Stmt, query string, args ...any) error {
		if err := execIn(ctx, tx, stmt, query, args...); err != nil {
			return errf("sqlite", "write patient index", err)
		}
		return nil
	}
	var chunk, one *sql.Stmt
	if st != nil {
		chunk, one = st.insPatients, st.insPatient
	}
	args := make([]any, 0, 3*patientChunk)
	for len(rows) >= patientChunk {
		args = args[:0]
		for _, r := range rows[:patientChunk] {
			args = append(args, r.patient, r.tmin, r.block)
		}
		if err := exec(chunk, insertPatientChunkSQL, args...); err != nil {
			return err
		}
		rows = rows[patientChunk:]
	}
	for _, r := range rows {
		if err := exec(one, insertPatientSQL, r.patient, r.tmin, r.block); err != nil {
			return err
		}
	}
	return nil
}

// setMark records in tx that node num's blocks up to id are indexed.
func setMark(ctx context.Context, tx *sql.Tx, num, id int64) error {
	if _, err := tx.ExecContext(ctx, upsertMarkSQL, num, id); err != nil {
		return errf("sqlite", "write patient index mark", err)
	}
	return nil
}

// patientIndex holds the rows of committed blocks not yet in the index. Its
// lock is held across a commit so that a flush and the pending rows agree.
type patientIndex struct {
	sync.Mutex
	pending []patientRow
	marks   map[int64]int64 // node number: its last committed block
	last    time.Time       // of the last flush
	every   time.Duration
	rows    int
}

func newPatientIndex() *patientIndex {
	return &patientIndex{marks: map[int64]int64{}, last: time.Now(), every: indexFlushEvery, rows: indexFlushRows}
}

// flushWith writes, inside tx, the pending rows and rows (those of node
// num's blocks up to lastID, in tx too) with the marks, when a flush is due,
// and reports whether it did. The caller holds x's lock.
func (x *patientIndex) flushWith(ctx context.Context, tx *sql.Tx, st *blockStmts, num, lastID int64, rows []patientRow) (bool, error) {
	if len(x.pending)+len(rows) < x.rows && time.Since(x.last) < x.every {
		return false, nil
	}
	all := make([]patientRow, 0, len(x.pending)+len(rows))
	all = append(append(all, x.pending...), rows...)
	if err := insertPatientRows(ctx, tx, st, all); err != nil {
		return false, err
	}
	for n, id := range x.marks {
		if err := setMark(ctx, tx, n, id); err != nil {
			return false, err
		}
	}
	if lastID != 0 {
		if err := setMark(ctx, tx, num, lastID); err != nil {
			return false, err
		}
	}
	return true, nil
}

// committed records a committed transaction: after a flush nothing is
// pending; otherwise rows, of node num's blocks up to lastID, are.
func (x *patientIndex) committed(flushed bool, num, lastID int64, rows []patientRow) {
	if flushed {
		x.pending = x.pending[:0]
		clear(x.marks)
		x.last = time.Now()
		return
	}
	x.pending = append(x.pending, rows...)
	x.marks[num] = lastID
}

// flushIndex writes whatever is pending in a transaction of its own.
func (s *SQLite) flushIndex(ctx context.Context) error {
	s.idx.Lock()
	defer s.idx.Unlock()
	if len(s.idx.pending) == 0 && len(s.idx.marks) == 0 {
		return nil
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return errf("sqlite", "write patient index", err)
	}
	defer tx.Rollback()
	if _, err := s.idx.flushWith(ctx, tx, nil, 0, 0, nil); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return errf("sqlite", "write patient index", err)
	}
	s.idx.committed(true, 0, 0, nil)
	return nil
}

// indexMarks reads every node's mark; a node without one has none of its
// blocks indexed (its mark is the lowest rowid of its range).
func indexMarks(ctx context.Context, q querier) (map[int64]int64, error) {
	marks := map[int64]int64{}
	rows, err := q.QueryContext(ctx, "SELECT n.node_no, coalesce(m.block, n.node_no << "+strconv.Itoa(seqBits)+") FROM audit_nodes n LEFT JOIN audit_index_marks m ON m.node_no = n.node_no")
	if err != nil {
		return nil, errf("sqlite", "read patient index marks", err)
	}
	defer rows.Close()
	for rows.Next() {
		var num, mark int64
		if err := rows.Scan(&num, &mark); err != nil {
			return nil, errf("sqlite", "read patient index marks", err)
		}
		marks[num] = mark
	}
	return marks, rows.Err()
}

// querier is what a *sql.DB and a *sql.Tx share for reading.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// unindexedSQL selects a node's blocks after its mark, with t_min between
// two exclusive bounds.
const unindexedSQL = "SELECT id, last, t_min, body FROM audit_blocks WHERE id > ? AND id < ? AND t_min > ? AND t_min < ?"

// indexTail writes, inside tx, the index rows of every block after its
// node's mark (a process that stopped before its flush left them pending).
// A block that does not decode gets no rows; Verify reports it.
func indexTail(ctx context.Context, tx *sql.Tx) error {
	marks, err := indexMarks(ctx, tx)
	if err != nil {
		return err
	}
	for num, mark := range marks {
		rows, err := tx.QueryContext(ctx, unindexedSQL, mark, (num+1)<<seqBits, int64(math.MinInt64), int64(math.MaxInt64))
		if err != nil {
			return errf("sqlite", "index unindexed blocks", err)
		}
		var (
			out  []patientRow
			last int64
		)
		for rows.Next() {
			var id, end, tmin int64
			var body []byte
			if err := rows.Scan(&id, &end, &tmin, &body); err != nil {
				rows.Close()
				return errf("sqlite", "index unindexed blocks", err)
			}
			last = max(last, id)
			if es, err := decodeBlock("", seqOf(id), uint64(end), body); err == nil {
				out = appendPatientRows(out, es, tmin, id)
			}
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return errf("sqlite", "index unindexed blocks", err)
		}
		if last == 0 {
			continue
		}
		if err := insertPatientRows(ctx, tx, nil, out); err != nil {
			return err
		}
		if err := setMark(ctx, tx, num, last); err != nil {
			return err
		}
	}
	return nil
}
