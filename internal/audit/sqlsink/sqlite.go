package sqlsink

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/fhirgate/fhirgate/internal/audit/chain"
	"github.com/fhirgate/fhirgate/internal/sqlitefile"
)

// sqliteDDL creates the tables of the SQLite sink (see block.go for the
// layout of a block).
const sqliteDDL = `
CREATE TABLE IF NOT EXISTS audit_nodes (
	node_no INTEGER PRIMARY KEY,
	node    TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS audit_blocks (
	id    INTEGER PRIMARY KEY, -- node_no << 44 | seq of the block's first entry
	last  INTEGER NOT NULL,    -- seq of its last entry
	t_min INTEGER NOT NULL,    -- its earliest entry time, unix microseconds
	body  BLOB    NOT NULL     -- its entries
);
CREATE INDEX IF NOT EXISTS audit_blocks_time ON audit_blocks (t_min);
CREATE TABLE IF NOT EXISTS audit_block_patients (
	patient TEXT    NOT NULL,
	t_min   INTEGER NOT NULL, -- the block's
	block   INTEGER NOT NULL,
	PRIMARY KEY (patient, t_min, block)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit_index_marks (
	node_no INTEGER PRIMARY KEY,
	block   INTEGER NOT NULL -- the node's last block in audit_block_patients
);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
	node      TEXT    NOT NULL,
	seq       INTEGER NOT NULL,
	hash      BLOB    NOT NULL,
	time_us   INTEGER NOT NULL,
	signature TEXT    NOT NULL,
	PRIMARY KEY (node, seq)
);`

// Statements of the block layout.
const (
	insertBlockSQL = "INSERT INTO audit_blocks (id, last, t_min, body) VALUES (?, ?, ?, ?)"
	lastSeqSQL     = "SELECT last FROM audit_blocks WHERE id >= ? AND id < ? ORDER BY id DESC LIMIT 1"
)

// blockStmts are the writer's prepared statements (nil inside migrations,
// which run before they are prepared).
type blockStmts struct {
	insBlock, insPatient, insPatients, lastSeq *sql.Stmt
}

// SQLite is a chain.Sink in the tables audit_nodes, audit_blocks,
// audit_block_patients and audit_checkpoints of a SQLite database file. It is
// safe for concurrent use.
type SQLite struct {
	w, r *sql.DB
	st   *blockStmts

	ckpt *sqlitefile.Checkpointer // copies the WAL into the file off the commit path

	mu    sync.Mutex
	nodes map[string]int64 // node numbers known to be committed

	converted int64 // entries converted from an earlier layout when opened

	idx *patientIndex // patient-index rows not yet written
}

var _ chain.Sink = (*SQLite)(nil)

// OpenSQLite opens (creating if missing) the SQLite database at path — the
// main store's file, or a separate one — and creates the audit tables. Its
// write connection runs with synchronous=FULL: Append returns after the
// WAL is fsynced.
func OpenSQLite(ctx context.Context, path string) (*SQLite, error) {
	return openSQLiteEvery(ctx, path, checkpointInterval)
}

// openSQLiteEvery is OpenSQLite with the background checkpointer running every
// interval.
func openSQLiteEvery(ctx context.Context, path string, interval time.Duration) (*SQLite, error) {
	abs, err := sqlitefile.Create(path)
	if err != nil {
		return nil, errf("sqlite", "open", err)
	}
	base := sqlitefile.URI(abs, "_pragma=busy_timeout(10000)")
	// The writer never checkpoints inside a commit (wal_autocheckpoint 0):
	// that would stall every request waiting on the commit. A
	// sqlitefile.Checkpointer does it in the background, and Append lets
	// it catch up before each transaction. Its temporary files stay in
	// memory (temp_store 2): a multi-row INSERT inside a transaction keeps
	// a statement journal (the pages it changes, to undo that statement
	// alone), which SQLite otherwise spills to a temporary file, a write
	// system call per page; with many patients each commit changes many
	// pages of the patient index (BenchmarkSQLiteAppend: a quarter less
	// CPU per event at 1,000 patients).
	w, err := sql.Open("sqlite", base+"&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=wal_autocheckpoint(0)&_pragma=temp_store(2)&_txlock=immediate")
	if err != nil {
		return nil, errf("sqlite", "open", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxIdleTime(0)
	w.SetConnMaxLifetime(0)
	s := &SQLite{w: w, nodes: map[string]int64{}, idx: newPatientIndex()}
	if err := s.migrate(ctx); err != nil {
		w.Close()
		return nil, err
	}
	s.st = &blockStmts{}
	for _, p := range []struct {
		st  **sql.Stmt
		sql string
	}{{&s.st.insBlock, insertBlockSQL}, {&s.st.insPatient, insertPatientSQL}, {&s.st.insPatients, insertPatientChunkSQL}, {&s.st.lastSeq, lastSeqSQL}} {
		if *p.st, err = w.PrepareContext(ctx, p.sql); err != nil {
			w.Close() // closes the statements prepared so far
			return nil, errf("sqlite", "prepare", err)
		}
	}
	r, err := sql.Open("sqlite", base+"&_pragma=query_only(1)")
	if err != nil {
		w.Close() // closes the statements
		return nil, errf("sqlite", "open", err)
	}
	n := max(2, runtime.GOMAXPROCS(0))
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	s.r = r
	cp, err := sql.Open("sqlite", base+"&_pragma=synchronous(FULL)")
	if err != nil {
		s.Close()
		return nil, errf("sqlite", "open", err)
	}
	cp.SetMaxOpenConns(1)
	s.ckpt = sqlitefile.StartCheckpointer(cp, interval)
	return s, nil
}

// checkpointInterval is how often the background checkpointer copies the
// WAL into the database file.
const checkpointInterval = time.Second

func repeat(s string, n int) string {
	out := ""
	for range n {
		out += s
	}
	return out
}

func (s *SQLite) migrate(ctx context.Context) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return errf("sqlite", "create tables", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, sqliteDDL); err != nil {
		return errf("sqlite", "create tables", err)
	}
	n, err := convertV1(ctx, tx, "main", true)
	if err != nil {
		return err
	}
	n2, err := convertV2(ctx, tx)
	if err != nil {
		return err
	}
	n += n2
	if err := indexTail(ctx, tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return errf("sqlite", "create tables", err)
	}
	s.converted = n
	return nil
}

// Converted reports how many entries opening the file converted from an
// earlier layout (one column per field in audit_events, or a row per entry
// in audit_records) into blocks; 0 when the file was already in the current
// layout.
func (s *SQLite) Converted() int64 { return s.converted }

// Close implements chain.Sink.
func (s *SQLite) Close() error {
	var errs []error
	if s.idx != nil {
		errs = append(errs, s.flushIndex(context.Background()))
	}
	if s.ckpt != nil {
		errs = append(errs, s.ckpt.Close())
	}
	if s.st != nil {
		for _, st := range []*sql.Stmt{s.st.insBlock, s.st.insPatient, s.st.insPatients, s.st.lastSeq} {
			if st != nil {
				errs = append(errs, st.Close())
			}
		}
	}
	if s.r != nil {
		errs = append(errs, s.r.Close())
	}
	return errors.Join(append(errs, s.w.Close())...)
}

// Append implements chain.Sink: one IMMEDIATE transaction, fsynced on
// commit, writing the entries as blocks.
func (s *SQLite) Append(ctx context.Context, entries []chain.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	s.ckpt.CatchUp(ctx, s.w)
	// The index lock before the connection, as flushIndex takes them.
	s.idx.Lock()
	defer s.idx.Unlock()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return errf("sqlite", "append", err)
	}
	defer tx.Rollback()
	node := entries[0].Node
	num, known, err := s.nodeNum(ctx, tx, node)
	if err != nil {
		return err
	}
	var rows []patientRow
	lastID, err := appendBlocks(ctx, tx, s.st, num, entries, true, &rows)
	if err != nil {
		return err
	}
	flushed, err := s.idx.flushWith(ctx, tx, s.st, num, lastID, rows)
	if err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return sqliteErr("append", err)
	}
	s.idx.committed(flushed, num, lastID, rows)
	if !known {
		s.mu.Lock()
		s.nodes[node] = num
		s.mu.Unlock()
	}
	return nil
}

// appendBlocks writes entries, all of the node numbered num, as blocks
// (splitBlocks). With check set it refuses (chain.ErrConflict) an entry
// whose sequence number is not above every one the node already has: a
// second writer on the same chain. Each block's patient-index rows are
// inserted too, or, when deferred is not nil, appended to it instead (see
// patientindex.go). st, when not nil, holds the prepared statements. It
// returns the rowid of the last block.
func appendBlocks(ctx context.Context, tx *sql.Tx, st *blockStmts, num int64, entries []chain.Entry, check bool, deferred *[]patientRow) (int64, error) {
	node := entries[0].Node
	for i := range entries {
		if entries[i].Node != node {
			return 0, fmt.Errorf("audit sqlite: append: one batch holds nodes %q and %q", node, entries[i].Node)
		}
	}
	var last uint64
	if check {
		var row *sql.Row
		lo, hi := num<<seqBits, (num+1)<<seqBits
		if st != nil {
			row = tx.StmtContext(ctx, st.lastSeq).QueryRowContext(ctx, lo, hi)
		} else {
			row = tx.QueryRowContext(ctx, lastSeqSQL, lo, hi)
		}
		var l int64
		if err := row.Scan(&l); err != nil && !errors.Is(err, sql.ErrNoRows) {
			return 0, errf("sqlite", "append: read head", err)
		}
		last = uint64(l)
	}
	var (
		body   []byte
		rows   []patientRow
		lastID int64
	)
	var insBlock *sql.Stmt
	if st != nil {
		insBlock = st.insBlock
	}
	for _, b := range splitBlocks(entries) {
		first, end := b[0].Seq, b[len(b)-1].Seq
		if check && first <= last {
			return 0, fmt.Errorf("audit sqlite: append: node %q record %d: %w", node, first, chain.ErrConflict)
		}
		id, err := rowID(num, first)
		if err == nil {
			_, err = rowID(num, end)
		}
		if err != nil {
			return 0, fmt.Errorf("audit sqlite: append: node %q: %w", node, err)
		}
		tmin := blockMinTime(b)
		body = encodeBlock(body[:0], b)
		if err := execIn(ctx, tx, insBlock, insertBlockSQL, id, int64(end), tmin, body); err != nil {
			return 0, sqliteErr("append", err)
		}
		rows = appendPatientRows(rows, b, tmin, id)
		last, lastID = end, id
	}
	if deferred != nil {
		*deferred = append(*deferred, rows...)
		return lastID, nil
	}
	return lastID, insertPatientRows(ctx, tx, st, rows)
}

// execIn runs stmt inside tx, or query when stmt is nil (not prepared).
func execIn(ctx context.Context, tx *sql.Tx, stmt *sql.Stmt, query string, args ...any) error {
	var err error
	if stmt != nil {
		_, err = tx.StmtContext(ctx, stmt).ExecContext(ctx, args...)
	} else {
		_, err = tx.ExecContext(ctx, query, args...)
	}
	return err
}

// nodeNum returns the number of node, assigning one inside tx when the node
// is new (known reports whether it was already committed).
func (s *SQLite) nodeNum(ctx context.Context, tx *sql.Tx, node string) (num int64, known bool, err error) {
	s.mu.Lock()
	num, known = s.nodes[node]
	s.mu.Unlock()
	if known {
		return num, true, nil
	}
	num, err = assignNode(ctx, tx, "main", node)
	return num, false, err
}

// assignNode returns the number of node in schema's audit_nodes, adding the
// node when it has none.
func assignNode(ctx context.Context, tx *sql.Tx, schema, node string) (int64, error) {
	if _, err := tx.ExecContext(ctx, "INSERT INTO "+schema+".audit_nodes (node) VALUES (?) ON CONFLICT (node) DO NOTHING", node); err != nil {
		return 0, errf("sqlite", "add node", err)
	}
	var num int64
	if err := tx.QueryRowContext(ctx, "SELECT node_no FROM "+schema+".audit_nodes WHERE node = ?", node).Scan(&num); err != nil {
		return 0, errf("sqlite", "add node", err)
	}
	if num < 0 || num > maxNodeNum {
		return 0, fmt.Errorf("audit sqlite: node %q has number %d, above the limit of %d nodes per file", node, num, maxNodeNum)
	}
	return num, nil
}

func sqliteErr(op string, err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return fmt.Errorf("audit sqlite: %s: %w", op, chain.ErrConflict)
		}
	}
	return errf("sqlite", op, err)
}

// SaveCheckpoint implements chain.Sink.
func (s *SQLite) SaveCheckpoint(ctx context.Context, cp chain.Checkpoint) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO audit_checkpoints (node, seq, hash, time_us, signature) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (node, seq) DO UPDATE SET hash = excluded.hash, time_us = excluded.time_us, signature = excluded.signature`,
		cp.Node, int64(cp.Seq), cp.Hash, cp.Time.UnixMicro(), cp.Signature)
	if err != nil {
		return sqliteErr("save checkpoint", err)
	}
	return nil
}

// nodeRange selects the rowids of the node named by parameter ?1, and
// seqExpr is the sequence number of a row.
var (
	nodeRange = "id >= (SELECT node_no << " + strconv.Itoa(seqBits) + " FROM audit_nodes WHERE node = ?1)" +
		" AND id < (SELECT (node_no + 1) << " + strconv.Itoa(seqBits) + " FROM audit_nodes WHERE node = ?1)"
	seqExpr = "(id & " + strconv.Itoa(seqMask) + ")"
)

// Head implements chain.Sink. It reads through the write connection so it
// sees every commit of this process.
func (s *SQLite) Head(ctx context.Context, node string) (chain.Entry, bool, error) {
	var (
		id, last int64
		body     []byte
	)
	err := s.w.QueryRowContext(ctx, "SELECT id, last, body FROM audit_blocks WHERE "+nodeRange+" ORDER BY id DESC LIMIT 1", node).Scan(&id, &last, &body)
	if errors.Is(err, sql.ErrNoRows) {
		return chain.Entry{}, false, nil
	}
	if err != nil {
		return chain.Entry{}, false, errf("sqlite", "head", err)
	}
	es, err := decodeBlock(node, seqOf(id), uint64(last), body)
	if err != nil {
		return chain.Entry{}, false, errf("sqlite", "head", err)
	}
	return es[len(es)-1], true, nil
}

// Nodes implements chain.Source.
func (s *SQLite) Nodes(ctx context.Context) ([]string, error) {
	rows, err := s.r.QueryContext(ctx, "SELECT node FROM audit_nodes UNION SELECT DISTINCT node FROM audit_checkpoints ORDER BY 1")
	if err != nil {
		return nil, errf("sqlite", "nodes", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, errf("sqlite", "nodes", err)
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

// Scan implements chain.Source, in sequence order. A block that does not
// decode, or is not the canonical encoding of its entries, is passed on as
// its first entry without a hash, so that Verify reports that record as
// altered: fhirgate writes only canonical blocks.
func (s *SQLite) Scan(ctx context.Context, node string, fn func(chain.Entry) error) error {
	rows, err := s.r.QueryContext(ctx, "SELECT id, last, body FROM audit_blocks WHERE "+nodeRange+" ORDER BY id", node)
	if err != nil {
		return errf("sqlite", "scan", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id, last int64
			body     []byte
		)
		if err := rows.Scan(&id, &last, &body); err != nil {
			return errf("sqlite", "scan", err)
		}
		es, err := decodeBlock(node, seqOf(id), uint64(last), body)
		if err != nil {
			es = []chain.Entry{{Node: node, Seq: seqOf(id)}}
		}
		for _, e := range es {
			if err := fn(e); err != nil {
				return err
			}
		}
	}
	return rows.Err()
}

// Checkpoints implements chain.Source.
func (s *SQLite) Checkpoints(ctx context.Context, node string) ([]chain.Checkpoint, error) {
	rows, err := s.r.QueryContext(ctx, "SELECT node, seq, hash, time_us, signature FROM audit_checkpoints WHERE node = ? ORDER BY seq", node)
	if err != nil {
		return nil, errf("sqlite", "checkpoints", err)
	}
	defer rows.Close()
	var out []chain.Checkpoint
	for rows.Next() {
		var cp chain.Checkpoint
		var seq, us int64
		if err := rows.Scan(&cp.Node, &seq, &cp.Hash, &us, &cp.Signature); err != nil {
			return nil, errf("sqlite", "checkpoints", err)
		}
		cp.Seq, cp.Time = uint64(seq), microsTime(us)
		out = append(out, cp)
	}
	return out, rows.Err()
}

// Query implements chain.Sink. Candidate blocks come in order of their
// earliest time, from the patient index when the filter names a patient,
// else from the time index, starting blockSpanUS before the range; their
// entries are filtered here, and the reading stops once the page is full
// and the next block starts after its last entry. A patient query also
// decodes the blocks not yet in the patient index, all read in one
// transaction.
func (s *SQLite) Query(ctx context.Context, f chain.Filter) (chain.Page, error) {
	f = f.Normalized()
	m, err := newMatcher(f)
	if err != nil {
		return chain.Page{}, err
	}
	tx, err := s.r.BeginTx(ctx, nil)
	if err != nil {
		return chain.Page{}, errf("sqlite", "query", err)
	}
	defer tx.Rollback()
	names, err := nodeNames(ctx, tx)
	if err != nil {
		return chain.Page{}, err
	}
	lo, hi := int64(math.MinInt64), int64(math.MaxInt64) // exclusive bounds on t_min
	if !f.Since.IsZero() {
		lo = f.Since.UnixMicro() - blockSpanUS
	}
	if m.after != nil {
		lo = max(lo, m.after.Micros-blockSpanUS)
	}
	if !f.Until.IsZero() {
		hi = f.Until.UnixMicro()
	}
	want := f.Limit + 1
	var (
		out   []chain.Entry
		marks map[int64]int64
	)
	// add decodes a block and keeps its matching entries, the first want
	// in order once there are that many.
	add := func(id, last int64, body []byte) error {
		node, ok := names[id>>seqBits]
		if !ok {
			return fmt.Errorf("audit sqlite: query: block %d names no node: %w", id, errBody)
		}
		es, err := decodeBlock(node, seqOf(id), uint64(last), body)
		if err != nil {
			return errf("sqlite", "query", err)
		}
		for _, e := range es {
			if m.match(&e) {
				out = append(out, e)
			}
		}
		if len(out) >= want {
			slices.SortFunc(out, compareEntries)
			out = out[:want]
		}
		return nil
	}
	visit := func(id, last, tmin int64, body []byte) (bool, error) {
		if len(out) == want && micros(&out[want-1]) < tmin {
			return true, nil // every later entry comes after the page's last
		}
		if mark, ok := marks[id>>seqBits]; ok && id > mark {
			return false, nil // decoded already, with the unindexed blocks
		}
		return false, add(id, last, body)
	}
	if f.Patient != "" {
		if marks, err = indexMarks(ctx, tx); err != nil {
			return chain.Page{}, err
		}
		unindexed := func(id, last, _ int64, body []byte) (bool, error) { return false, add(id, last, body) }
		for num, mark := range marks {
			if err := scanBlocks(ctx, tx, unindexed, unindexedSQL, mark, (num+1)<<seqBits, lo, hi); err != nil {
				return chain.Page{}, err
			}
		}
		err = scanBlocks(ctx, tx, visit, blocksOfPatientSQL, f.Patient, lo, hi)
	} else {
		err = scanBlocks(ctx, tx, visit, blocksByTimeSQL, lo, hi)
	}
	if err != nil {
		return chain.Page{}, err
	}
	slices.SortFunc(out, compareEntries)
	return page(out, f.Limit), nil
}

// scanBlocks runs query (selecting id, last, t_min and body) in tx and
// passes each block to visit, until visit asks to stop.
func scanBlocks(ctx context.Context, tx *sql.Tx, visit func(id, last, tmin int64, body []byte) (stop bool, err error), query string, args ...any) error {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return errf("sqlite", "query", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id, last, tmin int64
			body           []byte
		)
		if err := rows.Scan(&id, &last, &tmin, &body); err != nil {
			return errf("sqlite", "query", err)
		}
		stop, err := visit(id, last, tmin, body)
		if stop || err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return errf("sqlite", "query", err)
	}
	return nil
}

// The candidate blocks of a query, with t_min between two exclusive bounds,
// in order of t_min.
const (
	blocksByTimeSQL    = "SELECT id, last, t_min, body FROM audit_blocks WHERE t_min > ? AND t_min < ? ORDER BY t_min"
	blocksOfPatientSQL = "SELECT b.id, b.last, b.t_min, b.body FROM audit_block_patients p JOIN audit_blocks b ON b.id = p.block" +
		" WHERE p.patient = ? AND p.t_min > ? AND p.t_min < ? ORDER BY p.t_min"
)

// nodeNames maps node numbers to names.
func nodeNames(ctx context.Context, q querier) (map[int64]string, error) {
	rows, err := q.QueryContext(ctx, "SELECT node_no, node FROM audit_nodes")
	if err != nil {
		return nil, errf("sqlite", "query nodes", err)
	}
	defer rows.Close()
	out := map[int64]string{}
	for rows.Next() {
		var num int64
		var node string
		if err := rows.Scan(&num, &node); err != nil {
			return nil, errf("sqlite", "query nodes", err)
		}
		out[num] = node
	}
	return out, rows.Err()
}

// compareEntries orders entries by stored time, node and sequence number,
// the order of query results.
func compareEntries(a, b chain.Entry) int {
	return cmp.Or(cmp.Compare(micros(&a), micros(&b)), cmp.Compare(a.Node, b.Node), cmp.Compare(a.Seq, b.Seq))
}

// matcher applies a query filter to entries (the same conditions as where).
type matcher struct {
	f     chain.Filter
	after *chain.Cursor
	since int64
	until int64
	hasLo bool
	hasHi bool
}

func newMatcher(f chain.Filter) (matcher, error) {
	m := matcher{f: f, hasLo: !f.Since.IsZero(), hasHi: !f.Until.IsZero()}
	if m.hasLo {
		m.since = f.Since.UnixMicro()
	}
	if m.hasHi {
		m.until = f.Until.UnixMicro()
	}
	if f.After != "" {
		c, err := chain.DecodeCursor(f.After)
		if err != nil {
			return m, err
		}
		m.after = &c
	}
	return m, nil
}

func (m matcher) match(e *chain.Entry) bool {
	ev, f := &e.Event, &m.f
	us := micros(e)
	switch {
	case f.Patient != "" && ev.Patient != f.Patient,
		f.User != "" && ev.UserID != f.User && ev.FHIRUser != f.User,
		f.Client != "" && ev.ClientID != f.Client,
		f.Outcome != "" && ev.Outcome != f.Outcome,
		len(f.Actions) > 0 && !slices.Contains(f.Actions, ev.Action),
		m.hasLo && us < m.since,
		m.hasHi && us >= m.until:
		return false
	}
	if c := m.after; c != nil {
		return us > c.Micros || us == c.Micros && (e.Node > c.Node || e.Node == c.Node && e.Seq > c.Seq)
	}
	return true
}
