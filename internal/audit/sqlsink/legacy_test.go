package sqlsink

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit/audittest"
	"github.com/fhirgate/fhirgate/internal/audit/chain"
)

// v1DDL is the first layout of the SQLite sink, as earlier versions created it.
const v1DDL = `
CREATE TABLE IF NOT EXISTS audit_events (
	id INTEGER PRIMARY KEY, node TEXT NOT NULL, seq INTEGER NOT NULL, prev BLOB NOT NULL, hash BLOB NOT NULL,
	time_us INTEGER NOT NULL, action TEXT NOT NULL, outcome TEXT NOT NULL, reason TEXT NOT NULL,
	user_id TEXT NOT NULL, fhir_user TEXT NOT NULL, client_id TEXT NOT NULL, source_ip TEXT NOT NULL,
	user_agent TEXT NOT NULL, patient TEXT NOT NULL, scope TEXT NOT NULL, token_id TEXT NOT NULL,
	request_id TEXT NOT NULL, interaction TEXT NOT NULL, resource_type TEXT NOT NULL, resource_id TEXT NOT NULL,
	entries_filtered INTEGER NOT NULL, allowed_by TEXT NOT NULL, binding TEXT NOT NULL,
	UNIQUE (node, seq)
);
CREATE INDEX IF NOT EXISTS audit_events_time ON audit_events (time_us, node, seq);
CREATE INDEX IF NOT EXISTS audit_events_patient ON audit_events (patient, time_us) WHERE patient <> '';
CREATE TABLE IF NOT EXISTS audit_checkpoints (
	node TEXT NOT NULL, seq INTEGER NOT NULL, hash BLOB NOT NULL, time_us INTEGER NOT NULL, signature TEXT NOT NULL,
	PRIMARY KEY (node, seq)
);`

// writeV1 appends n linked entries of node to the first-layout tables in
// the file at path, with an (unsigned) checkpoint every cpEvery entries, and
// returns them.
func writeV1(t *testing.T, path, node string, n, cpEvery int) []chain.Entry {
	t.Helper()
	return writeLayout(t, path, v1DDL, node, n, cpEvery, func(tx *sql.Tx) func(chain.Entry) error {
		return func(e chain.Entry) error {
			_, err := tx.Exec("INSERT INTO audit_events ("+columnList+") VALUES (?"+repeat(", ?", len(columns)-1)+")", entryArgs(e)...)
			return err
		}
	})
}

// writeLayout creates the tables of ddl in the file at path and writes n
// linked entries of node with the insert that newInsert makes for the
// transaction, and an (unsigned) checkpoint every cpEvery entries.
func writeLayout(t *testing.T, path, ddl, node string, n, cpEvery int, newInsert func(tx *sql.Tx) func(chain.Entry) error) []chain.Entry {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(ddl); err != nil {
		t.Fatal(err)
	}
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	insert := newInsert(tx)
	var prev *chain.Entry
	var out []chain.Entry
	base := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	for i := range n {
		e := chain.Link(node, prev, audittest.SampleEvent(i, base.Add(time.Duration(i)*time.Millisecond)))
		if err := insert(e); err != nil {
			t.Fatal(err)
		}
		if cpEvery > 0 && (i+1)%cpEvery == 0 {
			if _, err := tx.Exec("INSERT INTO audit_checkpoints (node, seq, hash, time_us, signature) VALUES (?, ?, ?, ?, '')", node, int64(e.Seq), e.Hash, base.UnixMicro()); err != nil {
				t.Fatal(err)
			}
		}
		out = append(out, e)
		prev = &out[len(out)-1]
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	return out
}

// v2DDL is the second layout of the SQLite sink (a row per entry in
// audit_records), as the eighth and ninth sessions' versions created it.
const v2DDL = `
CREATE TABLE IF NOT EXISTS audit_nodes (node_no INTEGER PRIMARY KEY, node TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS audit_records (
	id INTEGER PRIMARY KEY, node TEXT NOT NULL, time_us INTEGER NOT NULL, action TEXT NOT NULL,
	outcome TEXT NOT NULL, user_id TEXT NOT NULL, fhir_user TEXT NOT NULL, client_id TEXT NOT NULL,
	patient TEXT NOT NULL, hash BLOB NOT NULL, body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_records_time ON audit_records (time_us, node);
CREATE INDEX IF NOT EXISTS audit_records_patient ON audit_records (patient, time_us) WHERE patient <> '';
CREATE TABLE IF NOT EXISTS audit_checkpoints (
	node TEXT NOT NULL, seq INTEGER NOT NULL, hash BLOB NOT NULL, time_us INTEGER NOT NULL, signature TEXT NOT NULL,
	PRIMARY KEY (node, seq)
);`

// writeV2 is writeV1 for the second layout.
func writeV2(t *testing.T, path, node string, n, cpEvery int) []chain.Entry {
	t.Helper()
	return writeLayout(t, path, v2DDL, node, n, cpEvery, func(tx *sql.Tx) func(chain.Entry) error {
		var num int64
		return func(e chain.Entry) error {
			if num == 0 {
				if _, err := tx.Exec("INSERT INTO audit_nodes (node) VALUES (?) ON CONFLICT (node) DO NOTHING", node); err != nil {
					return err
				}
				if err := tx.QueryRow("SELECT node_no FROM audit_nodes WHERE node = ?", node).Scan(&num); err != nil {
					return err
				}
			}
			id, err := rowID(num, e.Seq)
			if err != nil {
				return err
			}
			ev := e.Event
			_, err = tx.Exec("INSERT INTO audit_records ("+recordColumns+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
				id, node, ev.Time.UnixMicro(), string(ev.Action), string(ev.Outcome), ev.UserID, ev.FHIRUser, ev.ClientID, ev.Patient, e.Hash, encodeBody(nil, e))
			return err
		}
	})
}

// A file in the first or the second layout is converted when opened: every
// entry keeps its content and hash, chains verify, the old table is gone,
// queries and new appends work on the converted records.
func TestSQLiteConvertsEarlierLayouts(t *testing.T) {
	for _, tc := range []struct {
		name, table string
		write       func(t *testing.T, path, node string, n, cpEvery int) []chain.Entry
	}{{"first", "audit_events", writeV1}, {"second", "audit_records", writeV2}} {
		t.Run(tc.name, func(t *testing.T) { testConversion(t, tc.table, tc.write) })
	}
}

func testConversion(t *testing.T, table string, write func(t *testing.T, path, node string, n, cpEvery int) []chain.Entry) {
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), "audit.db")
	a := write(t, p, "node-a", 2*convertChunk+7, 500) // several read chunks
	b := write(t, p, "node-b", 5, 0)
	s := openSQLite(t, p) // closed below, before reopening
	if n := s.Converted(); n != int64(len(a)+len(b)) {
		t.Fatalf("Converted() = %d, want %d", n, len(a)+len(b))
	}
	var tables int
	if err := s.r.QueryRow("SELECT count(*) FROM sqlite_master WHERE name = ?", table).Scan(&tables); err != nil || tables != 0 {
		t.Fatalf("old table still there (%d, %v)", tables, err)
	}
	rep, err := chain.Verify(ctx, s, chain.VerifyOptions{})
	if err != nil || !rep.OK() || len(rep.Nodes) != 2 || rep.Nodes[0].Records != uint64(len(a)) || rep.Nodes[1].Records != 5 || rep.Nodes[0].Checkpoints != 4 {
		t.Fatalf("verify after conversion: %+v %v", rep, err)
	}
	for _, want := range []chain.Entry{a[0], a[len(a)-1], b[4]} {
		var got chain.Entry
		if err := s.Scan(ctx, want.Node, func(e chain.Entry) error {
			if e.Seq == want.Seq {
				got = e
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if !got.Valid() || string(got.Hash) != string(want.Hash) || string(got.Prev) != string(want.Prev) || got.Event != want.Event {
			t.Fatalf("converted record %s/%d = %+v, want %+v", want.Node, want.Seq, got, want)
		}
	}
	pg, err := s.Query(ctx, chain.Filter{Patient: a[2].Event.Patient, Client: a[2].Event.ClientID, Limit: 3})
	if err != nil || len(pg.Entries) != 3 || pg.Entries[0].Event != a[2].Event || pg.Next == "" {
		t.Fatalf("query after conversion: %+v %v", pg, err)
	}
	next := chain.Link("node-b", &b[4], audittest.SampleEvent(9, time.Now()))
	if err := s.Append(ctx, []chain.Entry{next}); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(ctx, []chain.Entry{chain.Link("node-a", &a[2], audittest.SampleEvent(9, time.Now()))}); !errors.Is(err, chain.ErrConflict) {
		t.Fatalf("append over a converted record: %v, want ErrConflict", err)
	}
	if h, ok, err := s.Head(ctx, "node-b"); err != nil || !ok || h.Seq != 6 || h.Event.RequestID != next.Event.RequestID {
		t.Fatalf("head %+v %v %v", h, ok, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	again := openSQLite(t, p)
	defer again.Close()
	if n := again.Converted(); n != 0 {
		t.Fatalf("second open converted %d entries", n)
	}
}

// Tampering done to the old table before conversion is still found after it.
func TestSQLiteConversionKeepsTamperEvidence(t *testing.T) {
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), "audit.db")
	writeV1(t, p, "n1", 10, 0)
	db, err := sql.Open("sqlite", "file:"+p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("UPDATE audit_events SET scope = 'system/*.cruds' WHERE seq = 4"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s := openSQLite(t, p)
	defer s.Close()
	rep, err := chain.Verify(ctx, s, chain.VerifyOptions{})
	if err != nil || len(rep.Problems()) != 1 || rep.Problems()[0].Seq != 4 || rep.Problems()[0].Kind != chain.Altered {
		t.Fatalf("verify: %+v %v", rep.Problems(), err)
	}
}

// A block whose body was overwritten is reported by Verify as an altered
// record (its first), and a query that reaches it fails rather than
// returning partial fields. That includes a body that still decodes to the
// same content but is not its canonical encoding (an overlong length, in
// the block or in an entry's own body): fhirgate never writes one.
func TestSQLiteDamagedBlock(t *testing.T) {
	ctx := context.Background()
	s := openSQLite(t, filepath.Join(t.TempDir(), "audit.db"))
	defer s.Close()
	var prev *chain.Entry
	var all []chain.Entry
	for i := range 9 {
		e := chain.Link("n1", prev, audittest.SampleEvent(i, time.Now()))
		all = append(all, e)
		prev = &all[len(all)-1]
	}
	// Blocks [1..2], [3..5], [6..9].
	for _, b := range [][]chain.Entry{all[:2], all[2:5], all[5:]} {
		if err := s.Append(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	canonical := encodeBlock(nil, all[2:5])
	if _, err := decodeBlock("n1", 3, 5, canonical); err != nil {
		t.Fatalf("canonical block: %v", err)
	}
	// The first entry's time spelled with one byte more: its last byte
	// carries a continuation bit and a zero byte follows. The varint
	// decoder reads the same value from both; only the canonical check
	// tells them apart.
	tv, k := binary.Varint(canonical[1:])
	overlongTime := append(append([]byte{blockVersion}, canonical[1:k]...), canonical[k]|0x80, 0x00)
	overlongTime = append(overlongTime, canonical[1+k:]...)
	if v, n := binary.Varint(overlongTime[1:]); v != tv || n != k+1 {
		t.Fatalf("overlong time reads %d in %d bytes, want %d in %d", v, n, tv, k+1)
	}
	inner := encodeBody(nil, all[2])
	if inner[1] != 32 {
		t.Fatalf("entry body starts %x, want the 32-byte previous hash's length", inner[:2])
	}
	overlongInner := append([]byte{inner[0], 0x80 | 32, 0x00}, inner[2:]...)
	// Rebuild the block with the second spelling of entry 3's body, which
	// comes last in its encoding behind a length prefix.
	first := encodeBlock(nil, all[2:3])
	prefix := binary.AppendUvarint(nil, uint64(len(inner)))
	if !bytes.HasSuffix(first, append(prefix, inner...)) {
		t.Fatal("an entry's encoding does not end with its length-prefixed body")
	}
	innerBlock := first[:len(first)-len(prefix)-len(inner)]
	innerBlock = appendString(innerBlock, string(overlongInner))
	innerBlock = append(innerBlock, encodeBlock(nil, all[3:5])[1:]...)
	wrongCount := encodeBlock(nil, all[2:4]) // two entries where the row says three
	for _, body := range [][]byte{{}, {blockVersion}, {2}, {blockVersion, 0xff}, {damagedBlock, 1, 2}, overlongTime, innerBlock, wrongCount, append(canonical[:len(canonical):len(canonical)], 0)} {
		if _, err := s.w.Exec("UPDATE audit_blocks SET body = ? WHERE id & ? = 3", body, int64(seqMask)); err != nil {
			t.Fatal(err)
		}
		rep, err := chain.Verify(ctx, s, chain.VerifyOptions{})
		if err != nil || len(rep.Problems()) != 1 || rep.Problems()[0].Seq != 3 || rep.Problems()[0].Kind != chain.Altered {
			t.Fatalf("body %x: verify: %+v %v", body, rep.Problems(), err)
		}
		if _, err := s.Query(ctx, chain.Filter{}); !errors.Is(err, errBody) {
			t.Fatalf("body %x: query: %v, want errBody", body, err)
		}
	}
	if _, err := s.w.Exec("UPDATE audit_blocks SET body = ? WHERE id & ? = 3", canonical, int64(seqMask)); err != nil {
		t.Fatal(err)
	}
	if rep, err := chain.Verify(ctx, s, chain.VerifyOptions{}); err != nil || !rep.OK() || rep.Nodes[0].Records != 9 {
		t.Fatalf("restored block: verify %+v %v", rep, err)
	}
}

func TestRowIDBounds(t *testing.T) {
	for _, tc := range []struct {
		num int64
		seq uint64
		ok  bool
	}{{1, 1, true}, {maxNodeNum, seqMask, true}, {1, 0, false}, {1, seqMask + 1, false}} {
		id, err := rowID(tc.num, tc.seq)
		if (err == nil) != tc.ok {
			t.Fatalf("rowID(%d, %d) = %d, %v", tc.num, tc.seq, id, err)
		}
		if tc.ok && (seqOf(id) != tc.seq || id>>seqBits != tc.num || id < 0) {
			t.Fatalf("rowID(%d, %d) = %d does not unpack", tc.num, tc.seq, id)
		}
	}
}

// go test -run '^$' -fuzz FuzzDecodeBody ./internal/audit/sqlsink
func FuzzDecodeBody(f *testing.F) {
	e := chain.Link("n1", nil, audittest.SampleEvent(3, time.Now()))
	f.Add(encodeBody(nil, e))
	f.Add([]byte{bodyVersion})
	f.Add([]byte{bodyVersion, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		var got chain.Entry
		if err := decodeBody(b, &got); err != nil {
			if !errors.Is(err, errBody) {
				t.Fatalf("error %v does not wrap errBody", err)
			}
			return
		}
		// Whatever decodes encodes back to the same bytes.
		if again := encodeBody(nil, got); string(again) != string(b) {
			t.Fatalf("decode/encode changed %x into %x", b, again)
		}
	})
}

// go test -run '^$' -fuzz FuzzDecodeBlock ./internal/audit/sqlsink
func FuzzDecodeBlock(f *testing.F) {
	var es []chain.Entry
	var prev *chain.Entry
	for i := range 3 {
		e := chain.Link("n1", prev, audittest.SampleEvent(i, time.Now()))
		es = append(es, e)
		prev = &es[len(es)-1]
	}
	f.Add(uint8(3), encodeBlock(nil, es))
	f.Add(uint8(1), encodeBlock(nil, es[:1]))
	f.Add(uint8(1), []byte{blockVersion})
	f.Add(uint8(2), []byte{blockVersion, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, n uint8, b []byte) {
		got, err := decodeBlock("n1", 1, uint64(n), b)
		if err != nil {
			if !errors.Is(err, errBody) {
				t.Fatalf("error %v does not wrap errBody", err)
			}
			return
		}
		// Whatever decodes encodes back to the same bytes.
		if again := encodeBlock(nil, got); string(again) != string(b) || len(got) != int(n) {
			t.Fatalf("decode/encode changed %x into %x (%d entries)", b, again, len(got))
		}
	})
}
