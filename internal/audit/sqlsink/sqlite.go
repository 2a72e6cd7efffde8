package sqlsink

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/audit/chain"
	"github.com/fhirgate/fhirgate/internal/sqlitefile"
)

// sqliteDDL creates the tables of the SQLite sink (see record.go for the
// row layout).
const sqliteDDL = `
CREATE TABLE IF NOT EXISTS audit_nodes (
	node_no INTEGER PRIMARY KEY,
	node    TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS audit_records (
	id        INTEGER PRIMARY KEY, -- node_no << 44 | seq
	node      TEXT    NOT NULL,
	time_us   INTEGER NOT NULL,
	action    TEXT    NOT NULL,
	outcome   TEXT    NOT NULL,
	user_id   TEXT    NOT NULL,
	fhir_user TEXT    NOT NULL,
	client_id TEXT    NOT NULL,
	patient   TEXT    NOT NULL,
	hash      BLOB    NOT NULL,
	body      BLOB    NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_records_time ON audit_records (time_us, node);
CREATE INDEX IF NOT EXISTS audit_records_patient ON audit_records (patient, time_us) WHERE patient <> '';
CREATE TABLE IF NOT EXISTS audit_checkpoints (
	node      TEXT    NOT NULL,
	seq       INTEGER NOT NULL,
	hash      BLOB    NOT NULL,
	time_us   INTEGER NOT NULL,
	signature TEXT    NOT NULL,
	PRIMARY KEY (node, seq)
);`

// recordColumns of audit_records in insert and select order.
const recordColumns = "id, node, time_us, action, outcome, user_id, fhir_user, client_id, patient, hash, body"

// recordParams is the number of recordColumns.
const recordParams = 11

// SQLite is a chain.Sink in the tables audit_nodes, audit_records and
// audit_checkpoints of a SQLite database file. It is safe for concurrent use.
type SQLite struct {
	w, r *sql.DB
	ins  [insertChunk + 1]*sql.Stmt // ins[n] inserts n rows (n >= 1)

	ckpt *sqlitefile.Checkpointer // copies the WAL into the file off the commit path

	mu    sync.Mutex
	nodes map[string]int64 // node numbers known to be committed

	converted int64 // entries converted from the first layout when opened
}

// insertChunk is how many rows one multi-row INSERT carries.
const insertChunk = 32

// insertSQL is an INSERT of rows records.
func insertSQL(rows int) string {
	row := "(?" + repeat(", ?", recordParams-1) + ")"
	return "INSERT INTO audit_records (" + recordColumns + ") VALUES " + row + repeat(", "+row, rows-1)
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
	s := &SQLite{w: w, nodes: map[string]int64{}}
	if err := s.migrate(ctx); err != nil {
		w.Close()
		return nil, err
	}
	for n := 1; n <= insertChunk; n++ {
		if s.ins[n], err = w.PrepareContext(ctx, insertSQL(n)); err != nil {
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
	if err := tx.Commit(); err != nil {
		return errf("sqlite", "create tables", err)
	}
	s.converted = n
	return nil
}

// Converted reports how many entries opening the file converted from the
// first layout (one column per field in audit_events) into audit_records;
// 0 when the file was already in the current layout.
func (s *SQLite) Converted() int64 { return s.converted }

// Close implements chain.Sink.
func (s *SQLite) Close() error {
	var errs []error
	if s.ckpt != nil {
		errs = append(errs, s.ckpt.Close())
	}
	for _, st := range s.ins {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	if s.r != nil {
		errs = append(errs, s.r.Close())
	}
	return errors.Join(append(errs, s.w.Close())...)
}

// Append implements chain.Sink: one IMMEDIATE transaction, fsynced on commit.
func (s *SQLite) Append(ctx context.Context, entries []chain.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	s.ckpt.CatchUp(ctx, s.w)
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
	if err := insertRecords(ctx, tx, s.ins[:], num, entries); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return sqliteErr("append", err)
	}
	if !known {
		s.mu.Lock()
		s.nodes[node] = num
		s.mu.Unlock()
	}
	return nil
}

// insertRecords inserts entries, all of the node numbered num, with
// multi-row INSERTs of up to insertChunk rows (one statement per chunk costs
// much less than one per row); ins[n], when set, is a prepared n-row INSERT.
func insertRecords(ctx context.Context, tx *sql.Tx, ins []*sql.Stmt, num int64, entries []chain.Entry) error {
	args := make([]any, 0, min(len(entries), insertChunk)*recordParams)
	var body []byte
	for len(entries) > 0 {
		n := min(len(entries), insertChunk)
		args = args[:0]
		for _, e := range entries[:n] {
			if e.Node != entries[0].Node {
				return fmt.Errorf("audit sqlite: append: one batch holds nodes %q and %q", entries[0].Node, e.Node)
			}
			id, err := rowID(num, e.Seq)
			if err != nil {
				return fmt.Errorf("audit sqlite: append: node %q: %w", e.Node, err)
			}
			ev := &e.Event
			us := int64(0)
			if !ev.Time.IsZero() {
				us = ev.Time.UnixMicro()
			}
			start := len(body)
			body = encodeBody(body, e)
			args = append(args, id, e.Node, us, string(ev.Action), string(ev.Outcome),
				ev.UserID, ev.FHIRUser, ev.ClientID, ev.Patient, e.Hash, body[start:len(body):len(body)])
		}
		var err error
		if n < len(ins) && ins[n] != nil {
			_, err = tx.StmtContext(ctx, ins[n]).ExecContext(ctx, args...)
		} else {
			_, err = tx.ExecContext(ctx, insertSQL(n), args...)
		}
		if err != nil {
			return sqliteErr("append", err)
		}
		entries = entries[n:]
	}
	return nil
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
	row := s.w.QueryRowContext(ctx, "SELECT "+recordColumns+" FROM audit_records WHERE "+nodeRange+" ORDER BY id DESC LIMIT 1", node)
	e, err := scanRecord(row)
	if errors.Is(err, sql.ErrNoRows) {
		return chain.Entry{}, false, nil
	}
	if err != nil {
		return e, false, errf("sqlite", "head", err)
	}
	return e, true, nil
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

// Scan implements chain.Source, in sequence order. A record whose body does
// not decode, or is not the canonical encoding of its content, is passed on
// without its hash, so that Verify reports it as altered: fhirgate writes
// only canonical bodies.
func (s *SQLite) Scan(ctx context.Context, node string, fn func(chain.Entry) error) error {
	rows, err := s.r.QueryContext(ctx, "SELECT "+recordColumns+" FROM audit_records WHERE "+nodeRange+" ORDER BY id", node)
	if err != nil {
		return errf("sqlite", "scan", err)
	}
	defer rows.Close()
	for rows.Next() {
		e, err := scanRecord(rows)
		if errors.Is(err, errBody) {
			e.Hash = nil
		} else if err != nil {
			return errf("sqlite", "scan", err)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return rows.Err()
}

// scanRecord reads one row of recordColumns. When the body does not decode
// it returns the entry without the body's fields and an error wrapping
// errBody.
func scanRecord(sc scanner) (chain.Entry, error) {
	var e chain.Entry
	var id, us int64
	var action, outcome string
	var body []byte
	ev := &e.Event
	if err := sc.Scan(&id, &e.Node, &us, &action, &outcome, &ev.UserID, &ev.FHIRUser, &ev.ClientID, &ev.Patient, &e.Hash, &body); err != nil {
		return e, err
	}
	e.Seq, ev.Time = seqOf(id), microsTime(us)
	ev.Action, ev.Outcome = audit.Action(action), audit.Outcome(outcome)
	if err := decodeBody(body, &e); err != nil {
		return e, fmt.Errorf("node %q record %d: %w", e.Node, e.Seq, err)
	}
	return e, nil
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

// Query implements chain.Sink.
func (s *SQLite) Query(ctx context.Context, f chain.Filter) (chain.Page, error) {
	f = f.Normalized()
	w, args, err := where(f, func(int) string { return "?" }, seqExpr)
	if err != nil {
		return chain.Page{}, err
	}
	q := "SELECT " + recordColumns + " FROM audit_records" + w +
		" ORDER BY time_us, node, id LIMIT " + strconv.Itoa(f.Limit+1)
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return chain.Page{}, errf("sqlite", "query", err)
	}
	defer rows.Close()
	var out []chain.Entry
	for rows.Next() {
		e, err := scanRecord(rows)
		if err != nil {
			return chain.Page{}, errf("sqlite", "query", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return chain.Page{}, errf("sqlite", "query", err)
	}
	return page(out, f.Limit), nil
}
