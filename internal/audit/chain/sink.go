package chain

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
)

// Source is the read side of a stored trail that Verify walks.
type Source interface {
	// Nodes lists the node ids that have entries or checkpoints, sorted.
	Nodes(ctx context.Context) ([]string, error)
	// Scan calls fn for every entry of node's chain in stored order (by
	// sequence number for databases, by position for files); an error from
	// fn stops the scan and is returned.
	Scan(ctx context.Context, node string, fn func(Entry) error) error
	// Checkpoints lists node's checkpoints, oldest first.
	Checkpoints(ctx context.Context, node string) ([]Checkpoint, error)
}

// Sink is a durable store of audit entries.
type Sink interface {
	Source
	// Head returns the last entry of node's chain; ok is false when the
	// chain is empty.
	Head(ctx context.Context, node string) (e Entry, ok bool, err error)
	// Append stores entries (already linked, in order, all of one node) in
	// one atomic, durable write: when it returns nil they survive a crash.
	// An entry whose node and sequence number exist already is ErrConflict
	// and nothing of the batch is stored. Append must not keep the slice
	// after it returns: the caller reuses it.
	Append(ctx context.Context, entries []Entry) error
	// SaveCheckpoint durably stores a checkpoint.
	SaveCheckpoint(ctx context.Context, cp Checkpoint) error
	// Query returns entries matching f in (time, node, seq) order.
	Query(ctx context.Context, f Filter) (Page, error)
	// Close releases the sink.
	Close() error
}

// Filter selects entries. Zero fields match everything.
type Filter struct {
	Patient string         // Event.Patient, e.g. "123"
	User    string         // Event.UserID or Event.FHIRUser
	Client  string         // Event.ClientID
	Actions []audit.Action // any of these
	Outcome audit.Outcome
	Since   time.Time // inclusive
	Until   time.Time // exclusive
	After   string    // a Page.Next cursor
	Limit   int       // at most this many; DefaultLimit when 0, capped at MaxLimit
}

// Page limits.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// Page is one page of query results; Next is the cursor for the following
// page, "" at the end.
type Page struct {
	Entries []Entry
	Next    string
}

// ErrBadCursor is returned for a cursor not made by a Page.
var ErrBadCursor = errors.New("audit: malformed paging cursor")

// Cursor is a decoded paging position: results continue strictly after it
// in (time, node, seq) order.
type Cursor struct {
	Micros int64
	Node   string
	Seq    uint64
}

// EncodeCursor makes an opaque cursor pointing after e.
func EncodeCursor(e Entry) string {
	raw := strconv.FormatInt(Normalize(e.Event).Time.UnixMicro(), 10) + "~" + strconv.FormatUint(e.Seq, 10) + "~" + e.Node
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// DecodeCursor parses a cursor made by EncodeCursor.
func DecodeCursor(s string) (Cursor, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return Cursor{}, fmt.Errorf("%w: %w", ErrBadCursor, err)
	}
	parts := strings.SplitN(string(raw), "~", 3)
	if len(parts) != 3 {
		return Cursor{}, ErrBadCursor
	}
	us, err1 := strconv.ParseInt(parts[0], 10, 64)
	seq, err2 := strconv.ParseUint(parts[1], 10, 64)
	if err1 != nil || err2 != nil {
		return Cursor{}, ErrBadCursor
	}
	return Cursor{Micros: us, Node: parts[2], Seq: seq}, nil
}

// Less reports whether e sorts before c in (time, node, seq) order.
func (c Cursor) Less(e Entry) bool {
	us := Normalize(e.Event).Time.UnixMicro()
	if us != c.Micros {
		return c.Micros < us
	}
	if e.Node != c.Node {
		return c.Node < e.Node
	}
	return c.Seq < e.Seq
}

// Normalized returns f with its limit defaulted and capped.
func (f Filter) Normalized() Filter {
	if f.Limit <= 0 {
		f.Limit = DefaultLimit
	}
	if f.Limit > MaxLimit {
		f.Limit = MaxLimit
	}
	return f
}

// Match reports whether e satisfies f's field conditions (not the cursor or
// the limit). Sinks without an index use it.
func (f Filter) Match(e Entry) bool {
	ev := e.Event
	switch {
	case f.Patient != "" && ev.Patient != f.Patient:
		return false
	case f.User != "" && ev.UserID != f.User && ev.FHIRUser != f.User:
		return false
	case f.Client != "" && ev.ClientID != f.Client:
		return false
	case f.Outcome != "" && ev.Outcome != f.Outcome:
		return false
	case !f.Since.IsZero() && ev.Time.Before(f.Since.Truncate(time.Microsecond)):
		return false
	case !f.Until.IsZero() && !ev.Time.Before(f.Until.Truncate(time.Microsecond)):
		return false
	}
	if len(f.Actions) > 0 {
		for _, a := range f.Actions {
			if a == ev.Action {
				return true
			}
		}
		return false
	}
	return true
}

// SortEntries sorts entries in query order: time, node, seq.
func SortEntries(all []Entry) {
	sort.Slice(all, func(i, j int) bool {
		a, b := all[i], all[j]
		if !a.Event.Time.Equal(b.Event.Time) {
			return a.Event.Time.Before(b.Event.Time)
		}
		if a.Node != b.Node {
			return a.Node < b.Node
		}
		return a.Seq < b.Seq
	})
}

// PageOf cuts sorted matches to a page of at most limit entries.
func PageOf(all []Entry, limit int) Page {
	if len(all) <= limit {
		return Page{Entries: all}
	}
	page := Page{Entries: all[:limit]}
	page.Next = EncodeCursor(page.Entries[limit-1])
	return page
}
