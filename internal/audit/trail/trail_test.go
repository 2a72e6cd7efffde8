package trail_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/audit/audittest"
	"github.com/fhirgate/fhirgate/internal/audit/chain"
	"github.com/fhirgate/fhirgate/internal/audit/trail"
)

func count(t *testing.T, s chain.Sink, node string) int {
	n := 0
	if err := s.Scan(context.Background(), node, func(chain.Entry) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestOptionsValidated(t *testing.T) {
	ctx := context.Background()
	for _, o := range []trail.Options{{}, {Sink: audittest.NewMemorySink()}, {Sink: audittest.NewMemorySink(), Node: "n", Mode: "later"}} {
		if _, err := trail.New(ctx, o); !errors.Is(err, trail.ErrOptions) {
			t.Errorf("New(%+v) = %v", o, err)
		}
	}
}

// A failed write fails every Record of its batch (the caller must then
// refuse), and the trail recovers once the sink does.
func TestSyncFailureFailsClosed(t *testing.T) {
	ctx := context.Background()
	s := audittest.NewMemorySink()
	tr, err := trail.New(ctx, trail.Options{Sink: s, Node: "n"})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close(ctx)
	s.Fail = errors.New("disk full")
	if err := tr.Record(ctx, audittest.SampleEvent(1, time.Now())); !errors.Is(err, trail.ErrUnavailable) {
		t.Fatalf("record on failing sink: %v", err)
	}
	s.Fail = nil
	if err := tr.Record(ctx, audittest.SampleEvent(2, time.Now())); err != nil {
		t.Fatal(err)
	}
	rep, _ := chain.Verify(ctx, s, chain.VerifyOptions{})
	if !rep.OK() || rep.Nodes[0].Records != 1 {
		t.Fatalf("after recovery: %+v", rep)
	}
}

func TestContextCancelReturnsError(t *testing.T) {
	s := &slowSink{MemorySink: audittest.NewMemorySink(), delay: 200 * time.Millisecond}
	tr, _ := trail.New(context.Background(), trail.Options{Sink: s, Node: "n"})
	defer tr.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := tr.Record(ctx, audit.Event{Action: audit.ActionLogin}); !errors.Is(err, trail.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled record: %v", err)
	}
}

type slowSink struct {
	*audittest.MemorySink
	delay   time.Duration
	mu      sync.Mutex
	batches []int
}

func (s *slowSink) Append(ctx context.Context, es []chain.Entry) error {
	time.Sleep(s.delay)
	s.mu.Lock()
	s.batches = append(s.batches, len(es))
	s.mu.Unlock()
	return s.MemorySink.Append(ctx, es)
}

// Concurrent callers share commits: far fewer sink writes than events.
func TestGroupCommitBatches(t *testing.T) {
	ctx := context.Background()
	s := &slowSink{MemorySink: audittest.NewMemorySink(), delay: 5 * time.Millisecond}
	tr, _ := trail.New(ctx, trail.Options{Sink: s, Node: "n"})
	recordConcurrently(t, tr, 200)
	tr.Close(ctx)
	if len(s.batches) > 50 {
		t.Fatalf("200 concurrent events took %d commits", len(s.batches))
	}
}

func TestAsyncReturnsBeforeDurableAndCloseFlushes(t *testing.T) {
	ctx := context.Background()
	s := &slowSink{MemorySink: audittest.NewMemorySink(), delay: 50 * time.Millisecond}
	tr, _ := trail.New(ctx, trail.Options{Sink: s, Node: "n", Mode: trail.ModeAsync})
	start := time.Now()
	for i := range 10 {
		if err := tr.Record(ctx, audittest.SampleEvent(i, time.Now())); err != nil {
			t.Fatal(err)
		}
	}
	if time.Since(start) > 40*time.Millisecond {
		t.Fatalf("async Record waited for the sink (%v)", time.Since(start))
	}
	if err := tr.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(t, s, "n"); n != 10 {
		t.Fatalf("after Flush: %d events", n)
	}
	for i := range 5 {
		tr.Record(ctx, audittest.SampleEvent(i, time.Now()))
	}
	if err := tr.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(t, s, "n"); n != 15 {
		t.Fatalf("after Close: %d events, want 15", n)
	}
}

func TestRecordRedactsAndStamps(t *testing.T) {
	ctx := context.Background()
	s := audittest.NewMemorySink()
	at := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	tr, _ := trail.New(ctx, trail.Options{Sink: s, Node: "n", Now: func() time.Time { return at }})
	tr.Record(ctx, audit.Event{Action: audit.ActionTokenRefused, Reason: "bad token eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.sig"})
	tr.Close(ctx)
	e, _, _ := s.Head(ctx, "n")
	if strings.Contains(e.Event.Reason, "eyJ") || !e.Event.Time.Equal(at) {
		t.Fatalf("stored event %+v", e.Event)
	}
}

// Checkpoints are signed, stored, and their hash written to the log.
func TestCheckpointsSignedAndLogged(t *testing.T) {
	ctx := context.Background()
	s := audittest.NewMemorySink()
	var logs bytes.Buffer
	sig := audittest.Signer{Key: []byte("key")}
	tr, _ := trail.New(ctx, trail.Options{Sink: s, Node: "n", Signer: sig, CheckpointEvery: 10,
		Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	for i := range 25 {
		tr.Record(ctx, audittest.SampleEvent(i, time.Now()))
	}
	tr.Close(ctx)
	cps, _ := s.Checkpoints(ctx, "n")
	if len(cps) != 3 || cps[0].Seq != 10 || cps[1].Seq != 20 || cps[2].Seq != 25 {
		t.Fatalf("checkpoints: %+v", cps)
	}
	for _, cp := range cps {
		if err := sig.Check(cp); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(logs.String(), `"hash":"`+hexs(cp.Hash)+`"`) {
			t.Fatalf("checkpoint %d hash not in the log:\n%s", cp.Seq, logs.String())
		}
	}
	// A forged signature is caught by Verify.
	cps[1].Signature = strings.Replace(cps[1].Signature, "a", "b", 1)
	s.RewriteCheckpoints("n", cps)
	rep, _ := chain.Verify(ctx, s, chain.VerifyOptions{CheckSignature: sig.Check})
	if p := rep.Problems(); len(p) != 1 || p[0].Kind != chain.BadCheckpoint {
		t.Fatalf("forged checkpoint: %v", p)
	}
}

func TestCheckpointInterval(t *testing.T) {
	ctx := context.Background()
	s := audittest.NewMemorySink()
	tr, _ := trail.New(ctx, trail.Options{Sink: s, Node: "n", CheckpointEvery: -1, CheckpointInterval: 20 * time.Millisecond})
	defer tr.Close(ctx)
	tr.Record(ctx, audittest.SampleEvent(1, time.Now()))
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if cps, _ := s.Checkpoints(ctx, "n"); len(cps) == 1 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no checkpoint after the interval")
}

func hexs(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

func TestSetSignerLater(t *testing.T) {
	ctx := context.Background()
	s := audittest.NewMemorySink()
	tr, _ := trail.New(ctx, trail.Options{Sink: s, Node: "n", CheckpointEvery: 2})
	sig := audittest.Signer{Key: []byte("late")}
	tr.Record(ctx, audittest.SampleEvent(1, time.Now()))
	tr.SetSigner(sig)
	tr.Record(ctx, audittest.SampleEvent(2, time.Now()))
	tr.Close(ctx)
	cps, _ := s.Checkpoints(ctx, "n")
	if len(cps) != 1 || sig.Check(cps[0]) != nil {
		t.Fatalf("checkpoint not signed by the late signer: %+v", cps)
	}
}

func TestSetObserve(t *testing.T) {
	ctx := context.Background()
	tr, _ := trail.New(ctx, trail.Options{Sink: audittest.NewMemorySink(), Node: "n"})
	var mu sync.Mutex
	total := 0
	tr.SetObserve(func(batch int, d time.Duration, err error) {
		mu.Lock()
		total += batch
		mu.Unlock()
	})
	for i := range 7 {
		tr.Record(ctx, audittest.SampleEvent(i, time.Now()))
	}
	tr.Close(ctx)
	if total != 7 {
		t.Fatalf("observed %d events, want 7", total)
	}
}

// In sync mode Enqueue (events after disclosure) does not wait for the sink,
// Record does, and both end up in the chain.
func TestEnqueueDoesNotWaitInSyncMode(t *testing.T) {
	ctx := context.Background()
	s := &slowSink{MemorySink: audittest.NewMemorySink(), delay: 100 * time.Millisecond}
	tr, _ := trail.New(ctx, trail.Options{Sink: s, Node: "n"})
	var a audit.Auditor = tr
	start := time.Now()
	if err := audit.Enqueue(ctx, a, audittest.SampleEvent(0, time.Now())); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 60*time.Millisecond {
		t.Fatalf("Enqueue waited for the sink (%v)", d)
	}
	start = time.Now()
	if err := tr.Record(ctx, audittest.SampleEvent(1, time.Now())); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 90*time.Millisecond {
		t.Fatalf("sync Record returned before its batch was durable (%v)", d)
	}
	if err := tr.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(t, s, "n"); n != 2 {
		t.Fatalf("%d events in the chain, want 2", n)
	}
}

// While QueueSize events wait for the writer, Record waits for room and
// gives up when its context ends; nothing queued is lost.
func TestFullQueueWaitsThenRefuses(t *testing.T) {
	ctx := context.Background()
	s := &slowSink{MemorySink: audittest.NewMemorySink(), delay: 300 * time.Millisecond}
	tr, _ := trail.New(ctx, trail.Options{Sink: s, Node: "n", QueueSize: 2})
	// The first event keeps the writer in a slow commit; two more fill the queue.
	for i := range 3 {
		if err := tr.Enqueue(ctx, audittest.SampleEvent(i, time.Now())); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	if err := tr.Record(short, audittest.SampleEvent(3, time.Now())); !errors.Is(err, trail.ErrUnavailable) || !strings.Contains(err.Error(), "queue full") {
		t.Fatalf("record into a full queue: %v", err)
	}
	// Once the writer takes the queue there is room again.
	if err := tr.Record(ctx, audittest.SampleEvent(4, time.Now())); err != nil {
		t.Fatal(err)
	}
	if err := tr.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(t, s, "n"); n != 4 {
		t.Fatalf("%d events stored, want 4", n)
	}
	if tr.QueueDepth() != 0 {
		t.Fatalf("queue depth %d after close", tr.QueueDepth())
	}
}

// A large backlog is written in appends of at most MaxBatch events, and
// every event lands on one valid chain.
func TestBacklogCutIntoMaxBatch(t *testing.T) {
	ctx := context.Background()
	s := &slowSink{MemorySink: audittest.NewMemorySink(), delay: 50 * time.Millisecond}
	tr, _ := trail.New(ctx, trail.Options{Sink: s, Node: "n", MaxBatch: 3})
	recordConcurrently(t, tr, 40)
	if err := tr.Close(ctx); err != nil {
		t.Fatal(err)
	}
	big := 0
	for _, n := range s.batches {
		if n > 3 {
			t.Fatalf("an append of %d events, MaxBatch 3", n)
		}
		if n == 3 {
			big++
		}
	}
	rep, err := chain.Verify(ctx, s, chain.VerifyOptions{})
	if err != nil || !rep.OK() || rep.Nodes[0].Records != 40 || big < 5 {
		t.Fatalf("after a backlog: %d full appends, %+v, %v", big, rep, err)
	}
}

// Record after Close is refused, and Close returns once everything queued
// is written.
func TestRecordAfterCloseRefused(t *testing.T) {
	ctx := context.Background()
	s := audittest.NewMemorySink()
	tr, _ := trail.New(ctx, trail.Options{Sink: s, Node: "n", Mode: trail.ModeAsync})
	for i := range 50 {
		tr.Record(ctx, audittest.SampleEvent(i, time.Now()))
	}
	if err := tr.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tr.Record(ctx, audittest.SampleEvent(9, time.Now())); !errors.Is(err, trail.ErrClosed) {
		t.Fatalf("record after close: %v", err)
	}
	if err := tr.Flush(ctx); !errors.Is(err, trail.ErrClosed) {
		t.Fatalf("flush after close: %v", err)
	}
	if n := count(t, s, "n"); n != 50 {
		t.Fatalf("%d events stored, want 50", n)
	}
}

// recordConcurrently records n events from n goroutines at once and waits
// for every Record to return nil.
func recordConcurrently(t *testing.T, tr *trail.Trail, n int) {
	t.Helper()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if err := tr.Record(context.Background(), audittest.SampleEvent(i, time.Now())); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
}
