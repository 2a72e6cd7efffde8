package audittest

import (
	"context"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit/chain"
	"github.com/fhirgate/fhirgate/internal/audit/trail"
)

// BenchmarkTrail measures durable (ModeSync) events per second through a
// trail into s with many concurrent callers (parallelism × GOMAXPROCS
// goroutines), the way gateway requests record. It reports events/s.
func BenchmarkTrail(b *testing.B, s chain.Sink, parallelism int) {
	ctx := context.Background()
	tr, err := trail.New(ctx, trail.Options{Sink: s, Node: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	ev := SampleEvent(1, time.Now())
	b.SetParallelism(parallelism)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := tr.Record(ctx, ev); err != nil {
				b.Error(err)
				return
			}
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	if err := tr.Close(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
}
