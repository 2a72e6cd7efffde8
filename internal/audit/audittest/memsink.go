package audittest

import (
	"context"
	"slices"
	"sort"
	"sync"

	"github.com/fhirgate/fhirgate/internal/audit/chain"
)

// MemorySink is an in-memory chain.Sink for tests. Its entries can be
// rewritten directly to simulate tampering.
type MemorySink struct {
	mu      sync.Mutex
	entries map[string][]chain.Entry
	cps     map[string][]chain.Checkpoint
	// Fail, when set, makes Append and SaveCheckpoint fail.
	Fail error
}

// NewMemorySink returns an empty MemorySink.
func NewMemorySink() *MemorySink {
	return &MemorySink{entries: map[string][]chain.Entry{}, cps: map[string][]chain.Checkpoint{}}
}

var _ chain.Sink = (*MemorySink)(nil)

// Nodes implements chain.Source.
func (m *MemorySink) Nodes(context.Context) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	set := map[string]bool{}
	for n := range m.entries {
		set[n] = true
	}
	for n := range m.cps {
		set[n] = true
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}

// Scan implements chain.Source.
func (m *MemorySink) Scan(_ context.Context, node string, fn func(chain.Entry) error) error {
	m.mu.Lock()
	list := slices.Clone(m.entries[node])
	m.mu.Unlock()
	for _, e := range list {
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

// Checkpoints implements chain.Source.
func (m *MemorySink) Checkpoints(_ context.Context, node string) ([]chain.Checkpoint, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.cps[node]), nil
}

// Head implements chain.Sink.
func (m *MemorySink) Head(_ context.Context, node string) (chain.Entry, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var best chain.Entry
	found := false
	for _, e := range m.entries[node] {
		if !found || e.Seq > best.Seq {
			best, found = e, true
		}
	}
	return best, found, nil
}

// Append implements chain.Sink.
func (m *MemorySink) Append(_ context.Context, entries []chain.Entry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Fail != nil {
		return m.Fail
	}
	for _, e := range entries {
		for _, old := range m.entries[e.Node] {
			if old.Seq == e.Seq {
				return chain.ErrConflict
			}
		}
	}
	for _, e := range entries {
		m.entries[e.Node] = append(m.entries[e.Node], e)
	}
	return nil
}

// SaveCheckpoint implements chain.Sink.
func (m *MemorySink) SaveCheckpoint(_ context.Context, cp chain.Checkpoint) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Fail != nil {
		return m.Fail
	}
	m.cps[cp.Node] = append(m.cps[cp.Node], cp)
	return nil
}

// Query implements chain.Sink.
func (m *MemorySink) Query(_ context.Context, f chain.Filter) (chain.Page, error) {
	f = f.Normalized()
	var after *chain.Cursor
	if f.After != "" {
		c, err := chain.DecodeCursor(f.After)
		if err != nil {
			return chain.Page{}, err
		}
		after = &c
	}
	m.mu.Lock()
	var all []chain.Entry
	for _, list := range m.entries {
		for _, e := range list {
			if f.Match(e) && (after == nil || after.Less(e)) {
				all = append(all, e)
			}
		}
	}
	m.mu.Unlock()
	chain.SortEntries(all)
	return chain.PageOf(all, f.Limit), nil
}

// Close implements chain.Sink.
func (m *MemorySink) Close() error { return nil }

// Rewrite replaces node's stored entries with entries, in order (tampering).
func (m *MemorySink) Rewrite(node string, entries []chain.Entry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.entries[node] = slices.Clone(entries)
}

// RewriteCheckpoints replaces node's checkpoints.
func (m *MemorySink) RewriteCheckpoints(node string, cps []chain.Checkpoint) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cps[node] = slices.Clone(cps)
}
