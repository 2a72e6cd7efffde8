package trail

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/audit/chain"
)

// failNth keeps one chain in memory and fails its nth Append (1-based).
// (Package audittest's memory sink cannot be used here: it imports trail.)
type failNth struct {
	n, calls int
	sizes    []int
	entries  []chain.Entry
}

func (f *failNth) Append(_ context.Context, es []chain.Entry) error {
	f.calls++
	f.sizes = append(f.sizes, len(es))
	if f.calls == f.n {
		return errors.New("disk full")
	}
	f.entries = append(f.entries, es...)
	return nil
}

func (f *failNth) Head(context.Context, string) (chain.Entry, bool, error) {
	if len(f.entries) == 0 {
		return chain.Entry{}, false, nil
	}
	return f.entries[len(f.entries)-1], true, nil
}

func (f *failNth) Nodes(context.Context) ([]string, error) { return []string{"n"}, nil }

func (f *failNth) Scan(_ context.Context, _ string, fn func(chain.Entry) error) error {
	for _, e := range f.entries {
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

func (f *failNth) Checkpoints(context.Context, string) ([]chain.Checkpoint, error) { return nil, nil }
func (f *failNth) SaveCheckpoint(context.Context, chain.Checkpoint) error          { return nil }
func (f *failNth) Query(context.Context, chain.Filter) (chain.Page, error)         { return chain.Page{}, nil }
func (f *failNth) Close() error                                                    { return nil }

// A commit of several groups is cut into appends of at most MaxBatch
// events; a failed append fails exactly the groups with an event in it,
// and the appends after it still land on an intact chain.
func TestCommitCutsAndFailsByGroup(t *testing.T) {
	// Groups of 2, 1, 0 (a flush) and 2 events, MaxBatch 2: appends of
	// events [0 1] [2 3] [4]; the last group spans the second and third.
	for _, tc := range []struct {
		failAppend int
		failed     []bool // g1, g2, flush, g3
		stored     uint64
	}{
		{failAppend: 0, failed: []bool{false, false, false, false}, stored: 5},
		{failAppend: 1, failed: []bool{true, false, false, false}, stored: 3},
		{failAppend: 2, failed: []bool{false, true, false, true}, stored: 3},
		{failAppend: 3, failed: []bool{false, false, false, true}, stored: 4},
	} {
		s := &failNth{n: tc.failAppend}
		tr := &Trail{opts: Options{Sink: s, Node: "n", MaxBatch: 2, WriteTimeout: time.Second,
			CheckpointEvery: -1, Logger: slog.New(slog.DiscardHandler), Now: time.Now}}
		mk := func(n int) *group {
			g := newGroup(n)
			for i := range n {
				g.events = append(g.events, audit.Event{Time: time.Now(), Action: audit.ActionLogin, Patient: fmt.Sprint(i)})
			}
			return g
		}
		groups := []*group{mk(2), mk(1), mk(0), mk(2)}
		groups[2].flush = true
		tr.commit(groups)
		for i, g := range groups {
			select {
			case <-g.done:
			default:
				t.Fatalf("append %d failing: group %d not answered", tc.failAppend, i)
			}
			if failed := g.err != nil; failed != tc.failed[i] || failed && !errors.Is(g.err, ErrUnavailable) {
				t.Errorf("append %d failing: group %d: %v", tc.failAppend, i, g.err)
			}
		}
		if want := []int{2, 2, 1}; !slices.Equal(s.sizes, want) {
			t.Fatalf("append sizes %v, want %v", s.sizes, want)
		}
		rep, err := chain.Verify(context.Background(), s, chain.VerifyOptions{})
		if err != nil || !rep.OK() || rep.Nodes[0].Records != tc.stored {
			t.Fatalf("append %d failing: chain %+v, %v", tc.failAppend, rep, err)
		}
		if tr.depth.Load() != -5 { // five taken, none added through add
			t.Fatalf("depth %d", tr.depth.Load())
		}
	}
}
