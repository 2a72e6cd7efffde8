package sqlsink

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/audit/chain"
)

// Rowids of the SQLite sink (blocks now, and audit_records of the second
// layout) pack the node's number (audit_nodes) above a sequence number, so
// the primary key orders a node's chain with no separate index. An entry's
// body (encodeBody) holds its previous hash and the event fields the admin
// queries do not filter on; a block stores it beside the others.

// seqBits is how many low bits of a rowid hold the sequence number: 2^44
// entries per node (over 27 years at 20,000 events a second), and 2^19
// nodes per file.
const seqBits = 44

const (
	seqMask    = 1<<seqBits - 1
	maxNodeNum = 1<<(63-seqBits) - 1
)

// rowID packs a node number and a sequence number into a rowid.
func rowID(nodeNum int64, seq uint64) (int64, error) {
	if seq == 0 || seq > seqMask {
		return 0, fmt.Errorf("sequence number %d outside 1..%d", seq, uint64(seqMask))
	}
	return nodeNum<<seqBits | int64(seq), nil
}

// seqOf is the sequence number held by a rowid.
func seqOf(id int64) uint64 { return uint64(id & seqMask) }

// bodyVersion is the first byte of every body.
const bodyVersion = 1

// errBody reports a body that does not decode: the record was altered.
var errBody = errors.New("record body does not decode")

// encodeBody is the body of e: bodyVersion, then the previous hash and the
// event fields that have no column of their own, strings and byte strings
// as a uvarint length and the bytes, the filtered-entry count as a varint.
func encodeBody(dst []byte, e chain.Entry) []byte {
	ev := &e.Event
	dst = append(dst, bodyVersion)
	dst = appendString(dst, string(e.Prev))
	for _, s := range [...]string{
		ev.Reason, ev.SourceIP, ev.UserAgent, ev.Scope, ev.TokenID, ev.RequestID,
		ev.Interaction, ev.ResourceType, ev.ResourceID, ev.AllowedBy, string(ev.Binding),
	} {
		dst = appendString(dst, s)
	}
	return binary.AppendVarint(dst, int64(ev.EntriesFiltered))
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// decodeBody fills in e's previous hash and body fields from b, which must
// be exactly what encodeBody makes of them.
func decodeBody(b []byte, e *chain.Entry) error {
	if len(b) == 0 || b[0] != bodyVersion {
		return errBody
	}
	d := bodyDecoder{b: b[1:]}
	ev := &e.Event
	prev := d.bytes()
	var binding string
	for _, p := range [...]*string{
		&ev.Reason, &ev.SourceIP, &ev.UserAgent, &ev.Scope, &ev.TokenID, &ev.RequestID,
		&ev.Interaction, &ev.ResourceType, &ev.ResourceID, &ev.AllowedBy, &binding,
	} {
		*p = string(d.bytes())
	}
	filtered, n := binary.Varint(d.b)
	if d.bad || n <= 0 || n != len(d.b) || int64(int(filtered)) != filtered {
		return errBody
	}
	e.Prev = append([]byte(nil), prev...)
	ev.EntriesFiltered, ev.Binding = int(filtered), audit.Binding(binding)
	// Only the canonical encoding is accepted (no overlong varints), so a
	// record's body is a function of its content.
	if string(encodeBody(nil, *e)) != string(b) {
		return errBody
	}
	return nil
}

// bodyDecoder reads length-prefixed byte strings; bad records the first
// malformed one.
type bodyDecoder struct {
	b   []byte
	bad bool
}

func (d *bodyDecoder) bytes() []byte {
	if d.bad {
		return nil
	}
	n, k := binary.Uvarint(d.b)
	if k <= 0 || n > uint64(len(d.b)-k) {
		d.bad = true
		return nil
	}
	s := d.b[k : k+int(n)]
	d.b = d.b[k+int(n):]
	return s
}
