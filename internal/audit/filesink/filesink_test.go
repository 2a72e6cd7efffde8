package filesink

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit/audittest"
	"github.com/fhirgate/fhirgate/internal/audit/chain"
	"github.com/fhirgate/fhirgate/internal/audit/trail"
)

func open(t *testing.T, dir string, maxBytes int64) *Sink {
	t.Helper()
	s, err := Open(Options{Dir: dir, MaxBytes: maxBytes})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// recordEvents records n sample events through a trail on s as node n1,
// checking each, then closes the trail and s.
func recordEvents(t *testing.T, s *Sink, n int) {
	t.Helper()
	ctx := context.Background()
	tr, err := trail.New(ctx, trail.Options{Sink: s, Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := tr.Record(ctx, audittest.SampleEvent(i, time.Now())); err != nil {
			t.Fatal(err)
		}
	}
	if err := tr.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestFileSinkConformance(t *testing.T) {
	audittest.RunSinkSuite(t, audittest.SinkHarness{
		Open: func(t *testing.T) chain.Sink { return open(t, t.TempDir(), 4096) },
		Rewrite: func(t *testing.T, s chain.Sink, node string, es []chain.Entry) {
			dir := filepath.Join(s.(*Sink).opts.Dir, node)
			segs, err := segments(dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, name := range segs {
				os.Remove(filepath.Join(dir, name))
			}
			var data []byte
			for _, e := range es {
				line, _ := json.Marshal(chain.ToJSON(e))
				data = append(append(data, line...), '\n')
			}
			if err := os.WriteFile(filepath.Join(dir, segmentName(1)), data, 0o600); err != nil {
				t.Fatal(err)
			}
		},
		Reopen: func(t *testing.T, s chain.Sink) chain.Sink {
			dir := s.(*Sink).opts.Dir
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			return open(t, dir, 4096)
		},
	})
}

func TestRotation(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	recordEvents(t, open(t, dir, 2048), 100)
	segs, _ := segments(filepath.Join(dir, "n1"))
	if len(segs) < 5 {
		t.Fatalf("%d segments after 100 events with 2 KiB segments", len(segs))
	}
	for _, name := range segs[:len(segs)-1] {
		fi, _ := os.Stat(filepath.Join(dir, "n1", name))
		if fi.Size() > 2048 {
			t.Fatalf("segment %s has %d bytes", name, fi.Size())
		}
	}
	// Removing a whole rotated segment is detected.
	os.Remove(filepath.Join(dir, "n1", segs[2]))
	s2 := open(t, dir, 2048)
	defer s2.Close()
	rep, err := chain.Verify(ctx, s2, chain.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p := rep.Problems(); len(p) != 1 || p[0].Kind != chain.Removed {
		t.Fatalf("segment removal: %v", p)
	}
}

func TestTornLineRepaired(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	recordEvents(t, open(t, dir, 0), 5)
	f, _ := os.OpenFile(filepath.Join(dir, "n1", segmentName(1)), os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"node":"n1","seq":6,"prev":"ab`) // a crash mid-write
	f.Close()

	s := open(t, dir, 0)
	defer s.Close()
	rep, _ := chain.Verify(ctx, s, chain.VerifyOptions{})
	if !rep.OK() || rep.Nodes[0].Records != 5 {
		t.Fatalf("torn line before repair: %+v", rep)
	}
	tr, err := trail.New(ctx, trail.Options{Sink: s, Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Record(ctx, audittest.SampleEvent(6, time.Now())); err != nil {
		t.Fatal(err)
	}
	tr.Close(ctx)
	rep, _ = chain.Verify(ctx, s, chain.VerifyOptions{})
	if !rep.OK() || rep.Nodes[0].Records != 6 {
		t.Fatalf("after repair and append: %+v", rep)
	}
}

func TestOneWriterPerNode(t *testing.T) {
	dir := t.TempDir()
	a := open(t, dir, 0)
	defer a.Close()
	if _, _, err := a.Head(context.Background(), "n1"); err != nil {
		t.Fatal(err)
	}
	b := open(t, dir, 0)
	defer b.Close()
	if _, _, err := b.Head(context.Background(), "n1"); err == nil {
		t.Fatal("a second sink took the lock of a node in use")
	}
}

func TestBadNodeNames(t *testing.T) {
	s := open(t, t.TempDir(), 0)
	defer s.Close()
	for _, n := range []string{"", "..", "../x", "a/b", ".hidden"} {
		if _, _, err := s.Head(context.Background(), n); !errors.Is(err, ErrBadNode) {
			t.Errorf("node %q: %v", n, err)
		}
	}
}

func TestGarbageLineIsAltered(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	recordEvents(t, open(t, dir, 0), 5)
	p := filepath.Join(dir, "n1", segmentName(1))
	data, _ := os.ReadFile(p)
	lines := splitLines(data)
	lines[2] = []byte("not json")
	os.WriteFile(p, joinLines(lines), 0o600)
	s := open(t, dir, 0)
	defer s.Close()
	rep, _ := chain.Verify(ctx, s, chain.VerifyOptions{})
	if pr := rep.Problems(); len(pr) != 1 || pr[0].Seq != 3 || pr[0].Kind != chain.Altered {
		t.Fatalf("garbage line: %v", pr)
	}
}

func splitLines(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		i := 0
		for i < len(b) && b[i] != '\n' {
			i++
		}
		out = append(out, b[:i])
		if i < len(b) {
			i++
		}
		b = b[i:]
	}
	return out
}

func joinLines(ls [][]byte) []byte {
	var out []byte
	for _, l := range ls {
		out = append(append(out, l...), '\n')
	}
	return out
}

// TestEmptySegmentAfterCrash: a crash right after a rotation created a new
// segment leaves it empty (or with only a torn line). The head must come
// from the previous segment; otherwise the chain restarts at 1 inside the
// old one and verification reports records stored again.
func TestEmptySegmentAfterCrash(t *testing.T) {
	for _, content := range []string{"", `{"node":"n1","seq":6,"pr`} {
		ctx := context.Background()
		dir := t.TempDir()
		recordEvents(t, open(t, dir, 0), 5)
		// The rotation's new segment, named for the next record, as a crash left it.
		if err := os.WriteFile(filepath.Join(dir, "n1", segmentName(6)), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}

		s := open(t, dir, 0)
		head, ok, err := s.Head(ctx, "n1")
		if err != nil || !ok || head.Seq != 5 {
			t.Fatalf("content %q: head after crash = %d, %v, %v; want 5", content, head.Seq, ok, err)
		}
		tr, err := trail.New(ctx, trail.Options{Sink: s, Node: "n1"})
		if err != nil {
			t.Fatal(err)
		}
		if err := tr.Record(ctx, audittest.SampleEvent(6, time.Now())); err != nil {
			t.Fatal(err)
		}
		tr.Close(ctx)
		rep, _ := chain.Verify(ctx, s, chain.VerifyOptions{})
		if !rep.OK() || rep.Nodes[0].Records != 6 {
			t.Fatalf("content %q: after restart and append: %v", content, rep.Problems())
		}
		s.Close()
	}
}
