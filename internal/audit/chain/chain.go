// Package chain is the tamper-evident form of the audit trail: each Entry
// carries the SHA-256 hash of the previous entry of its node's chain and its
// own hash over a canonical binary encoding, so editing, removing or
// reordering a stored record breaks the chain at that record. Checkpoints
// sign a chain head with the server's signing key. The package also defines
// the Sink every durable store implements and Verify, which re-walks chains.
package chain

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
)

// HashSize is the length of an entry hash.
const HashSize = sha256.Size

// Version names the canonical encoding hashed by Hash; it is part of every
// hash so a future encoding can never collide with this one.
const Version = "fhirgate-audit-chain/1"

// ErrConflict is returned by Sink.Append when an entry with the same node and
// sequence number already exists (another writer uses the same node id).
var ErrConflict = errors.New("audit chain: sequence number already used")

// Genesis is the previous hash of the first entry of every chain.
var Genesis = make([]byte, HashSize)

// Entry is one stored audit record: an event at position Seq (1, 2, ...) of
// the chain of node Node.
type Entry struct {
	Node  string
	Seq   uint64
	Prev  []byte // Hash of entry Seq-1; Genesis for Seq 1
	Hash  []byte // Hash(this entry)
	Event audit.Event
}

// Normalize brings an event to the precision every sink stores: time in UTC
// truncated to microseconds. Hashes are computed over normalized events.
func Normalize(e audit.Event) audit.Event {
	e.Time = e.Time.UTC().Truncate(time.Microsecond)
	return e
}

// Link fills in the chain fields of an entry that follows prev (nil for the
// first entry of a chain) and returns it.
func Link(node string, prev *Entry, ev audit.Event) Entry {
	e := Entry{Node: node, Seq: 1, Prev: Genesis, Event: Normalize(ev)}
	if prev != nil {
		e.Seq, e.Prev = prev.Seq+1, prev.Hash
	}
	e.Hash = Hash(e)
	return e
}

// Hash computes the SHA-256 hash of the canonical encoding of e's node,
// sequence number, previous hash and event (e.Hash itself is not covered).
func Hash(e Entry) []byte {
	sum := sha256.Sum256(Canonical(e))
	return sum[:]
}

// Valid reports whether e.Hash matches its content.
func (e Entry) Valid() bool { return bytes.Equal(e.Hash, Hash(e)) }

// Canonical is the byte string Hash covers: the Version string, then every
// field in a fixed order, strings and byte strings as a uvarint length and
// the bytes, integers as varints, the time as unix microseconds.
func Canonical(e Entry) []byte {
	ev := Normalize(e.Event)
	micros := int64(0)
	if !ev.Time.IsZero() {
		micros = ev.Time.UnixMicro()
	}
	fields := [...]string{
		string(ev.Action), string(ev.Outcome), ev.Reason,
		ev.UserID, ev.FHIRUser, ev.ClientID, ev.SourceIP, ev.UserAgent,
		ev.Patient, ev.Scope, ev.TokenID, ev.RequestID,
		ev.Interaction, ev.ResourceType, ev.ResourceID,
	}
	// One allocation: every length and integer fits in a 10-byte varint.
	size := len(Version) + len(e.Node) + len(e.Prev) + len(ev.AllowedBy) + len(ev.Binding) + 8*binary.MaxVarintLen64
	for _, s := range fields {
		size += len(s) + binary.MaxVarintLen64
	}
	b := make([]byte, 0, size)
	str := func(s string) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	str(Version)
	str(e.Node)
	b = binary.AppendUvarint(b, e.Seq)
	b = binary.AppendUvarint(b, uint64(len(e.Prev)))
	b = append(b, e.Prev...)
	b = binary.AppendVarint(b, micros)
	for _, s := range fields {
		str(s)
	}
	b = binary.AppendVarint(b, int64(ev.EntriesFiltered))
	str(ev.AllowedBy)
	str(string(ev.Binding))
	return b
}

// Checkpoint is a signed statement of a chain head: the entry Seq of Node has
// hash Hash. Signature is a compact JWS over CheckpointClaims made with the
// server's signing key.
type Checkpoint struct {
	Node      string
	Seq       uint64
	Hash      []byte
	Time      time.Time
	Signature string
}

// CheckpointClaims is the signed payload of a checkpoint.
type CheckpointClaims struct {
	Node     string `json:"node"`
	Seq      uint64 `json:"seq"`
	Hash     string `json:"hash"` // lower-case hex
	IssuedAt int64  `json:"iat"`
}

// CheckpointType is the JWS typ header of checkpoint signatures.
const CheckpointType = "audit-checkpoint+jwt"

// Claims returns the payload to sign for cp.
func (cp Checkpoint) Claims() CheckpointClaims {
	return CheckpointClaims{Node: cp.Node, Seq: cp.Seq, Hash: fmt.Sprintf("%x", cp.Hash), IssuedAt: cp.Time.Unix()}
}
