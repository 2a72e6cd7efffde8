package sqlsink

import (
	"encoding/binary"
	"fmt"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/audit/chain"
)

// The SQLite sink stores a node's chain in blocks: one row of audit_blocks
// holds a run of consecutive entries of one node, usually what one commit
// brought. A row per entry cost the writer a row insert, two index inserts
// and eleven bound parameters per event; a block costs one row and one
// patient-index row per distinct patient in it (BenchmarkSQLiteAppend). A
// block's rowid packs the node's number (audit_nodes) above the sequence
// number of its first entry; the entries' own sequence numbers follow from
// their position. Every entry keeps its own hash, which covers every field,
// so editing, removing or reordering anything inside a block breaks the
// chain just as it would across rows.

// Block limits: at most blockEntries entries, all with times in
// [t_min, t_min+blockSpanUS). The span bound lets a time-range query start
// at the blocks whose t_min is at most blockSpanUS before its range.
const (
	blockEntries = 128
	blockSpanUS  = 1_000_000
)

// blockVersion is the first byte of every block body; damagedBlock marks a
// block that holds a record which was already altered before conversion
// (its original body follows) and never decodes.
const (
	blockVersion = 1
	damagedBlock = 0xff
)

// micros is an event time as stored: unix microseconds, 0 for no time.
func micros(e *chain.Entry) int64 {
	if e.Event.Time.IsZero() {
		return 0
	}
	return e.Event.Time.UnixMicro()
}

// splitBlocks cuts entries into runs that each fit one block: consecutive
// sequence numbers, at most blockEntries, times within blockSpanUS.
func splitBlocks(entries []chain.Entry) [][]chain.Entry {
	var out [][]chain.Entry
	for len(entries) > 0 {
		lo, hi := micros(&entries[0]), micros(&entries[0])
		n := 1
		for ; n < len(entries) && n < blockEntries; n++ {
			e := &entries[n]
			if e.Seq != entries[n-1].Seq+1 {
				break
			}
			us := micros(e)
			nlo, nhi := min(lo, us), max(hi, us)
			if nhi-nlo >= blockSpanUS {
				break
			}
			lo, hi = nlo, nhi
		}
		out = append(out, entries[:n])
		entries = entries[n:]
	}
	return out
}

// blockMinTime is the earliest stored time of a block's entries.
func blockMinTime(entries []chain.Entry) int64 {
	lo := micros(&entries[0])
	for i := range entries[1:] {
		lo = min(lo, micros(&entries[i+1]))
	}
	return lo
}

// encodeBlock appends the body of a block of entries to dst: blockVersion,
// then per entry its time (varint microseconds), action, outcome, user,
// fhirUser, client and patient (uvarint length and bytes), its hash, and its
// entry body (encodeBody, length-prefixed).
func encodeBlock(dst []byte, entries []chain.Entry) []byte {
	dst = append(dst, blockVersion)
	var body []byte
	for i := range entries {
		e := &entries[i]
		ev := &e.Event
		dst = binary.AppendVarint(dst, micros(e))
		for _, s := range [...]string{string(ev.Action), string(ev.Outcome), ev.UserID, ev.FHIRUser, ev.ClientID, ev.Patient} {
			dst = appendString(dst, s)
		}
		dst = appendString(dst, string(e.Hash))
		body = encodeBody(body[:0], *e)
		dst = appendString(dst, string(body))
	}
	return dst
}

// decodeBlock returns the entries of node numbered first..last held in
// body, which must be exactly what encodeBlock makes of them; otherwise the
// error wraps errBody.
func decodeBlock(node string, first, last uint64, body []byte) ([]chain.Entry, error) {
	if last < first || last-first >= blockEntries || len(body) == 0 || body[0] != blockVersion {
		return nil, fmt.Errorf("node %q records %d to %d: %w", node, first, last, errBody)
	}
	d := bodyDecoder{b: body[1:]}
	out := make([]chain.Entry, last-first+1)
	for i := range out {
		e := &out[i]
		e.Node, e.Seq = node, first+uint64(i)
		us, n := binary.Varint(d.b)
		if n <= 0 {
			return nil, fmt.Errorf("node %q record %d: %w", node, e.Seq, errBody)
		}
		d.b = d.b[n:]
		ev := &e.Event
		ev.Time = microsTime(us)
		ev.Action = actionOf(d.bytes())
		ev.Outcome = outcomeOf(d.bytes())
		ev.UserID, ev.FHIRUser, ev.ClientID, ev.Patient = string(d.bytes()), string(d.bytes()), string(d.bytes()), string(d.bytes())
		e.Hash = append([]byte(nil), d.bytes()...)
		inner := d.bytes()
		if d.bad {
			return nil, fmt.Errorf("node %q record %d: %w", node, e.Seq, errBody)
		}
		if err := decodeBody(inner, e); err != nil {
			return nil, fmt.Errorf("node %q record %d: %w", node, e.Seq, err)
		}
	}
	// Only the canonical encoding is accepted, so a block is a function of
	// its entries.
	if len(d.b) != 0 || string(encodeBlock(nil, out)) != string(body) {
		return nil, fmt.Errorf("node %q records %d to %d: %w", node, first, last, errBody)
	}
	return out, nil
}

// actionOf and outcomeOf turn stored bytes into an event's action and
// outcome.
func actionOf(b []byte) audit.Action   { return audit.Action(b) }
func outcomeOf(b []byte) audit.Outcome { return audit.Outcome(b) }
