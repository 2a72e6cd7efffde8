package trail_test

import (
	"context"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit/audittest"
	"github.com/fhirgate/fhirgate/internal/audit/chain"
	"github.com/fhirgate/fhirgate/internal/audit/trail"
)

// headSink keeps only the chain head: a sink that costs next to nothing, so
// that a benchmark through it measures the trail itself (redaction, the
// hand-off to the writer, linking and waking the callers).
type headSink struct {
	mu   sync.Mutex
	head chain.Entry
	ok   bool
	n    int
	*audittest.MemorySink
}

func (h *headSink) Head(context.Context, string) (chain.Entry, bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.head, h.ok, nil
}

func (h *headSink) Append(_ context.Context, entries []chain.Entry) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.head, h.ok, h.n = entries[len(entries)-1], true, h.n+1
	return nil
}

// BenchmarkTrailOverhead measures the process CPU the trail spends per
// durable (ModeSync) event with 128 concurrent callers and a sink that
// does nothing, and the events per commit it reaches.
func BenchmarkTrailOverhead(b *testing.B) {
	ctx := context.Background()
	s := &headSink{MemorySink: audittest.NewMemorySink()}
	tr, err := trail.New(ctx, trail.Options{Sink: s, Node: "bench", CheckpointEvery: -1, CheckpointInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	ev := audittest.SampleEvent(1, time.Now())
	b.SetParallelism(64)
	b.ResetTimer()
	cpu0 := processCPU(b)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := tr.Record(ctx, ev); err != nil {
				b.Error(err)
				return
			}
		}
	})
	cpu := processCPU(b) - cpu0
	b.StopTimer()
	if err := tr.Close(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/event")
	b.ReportMetric(float64(b.N)/float64(max(s.n, 1)), "events/commit")
}

// processCPU is the user and system CPU time this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
