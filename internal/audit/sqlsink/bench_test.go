package sqlsink

import (
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/audit/audittest"
	"github.com/fhirgate/fhirgate/internal/audit/chain"
)

// go test -run XXX -bench . ./internal/audit/sqlsink
func BenchmarkDurableSQLite(b *testing.B) {
	s, err := OpenSQLite(b.Context(), filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	audittest.BenchmarkTrail(b, s, 64)
}

func BenchmarkDurablePostgres(b *testing.B) {
	s, _ := openPostgres(b)
	audittest.BenchmarkTrail(b, s, 64)
}

// BenchmarkSQLiteAppend measures one durable Append of a batch of linked
// gateway-like events (the writer's work per commit, without the trail),
// reported per event, for batch sizes the gateway sees under load.
func BenchmarkSQLiteAppend(b *testing.B) {
	for _, bc := range []struct{ batch, patients int }{{1, 1}, {25, 1}, {25, 1000}, {100, 1}, {100, 1000}} {
		batch := bc.batch
		b.Run(fmt.Sprintf("batch=%d/patients=%d", batch, bc.patients), func(b *testing.B) {
			s, err := OpenSQLite(b.Context(), filepath.Join(b.TempDir(), "bench.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			var head *chain.Entry
			at := time.Now()
			entries := make([]chain.Entry, batch)
			events := make([][]audit.Event, 64)
			for i := range events {
				events[i] = make([]audit.Event, batch)
				for j := range events[i] {
					n := i*batch + j
					events[i][j] = audittest.SampleEvent(n, at.Add(time.Duration(n)*time.Microsecond))
					events[i][j].Patient = fmt.Sprintf("pat-%d", n*7919%bc.patients)
				}
			}
			cpu0 := processCPU(b)
			b.ResetTimer()
			for i := range b.N {
				for j := range entries {
					// Times rise as in a live trail (reused events would
					// otherwise send each index insert back into the tree).
					ev := events[i%len(events)][j]
					ev.Time = at.Add(time.Duration(i*batch+j) * time.Microsecond)
					entries[j] = chain.Link("bench", head, ev)
					head = &entries[j]
				}
				if err := s.Append(b.Context(), entries); err != nil {
					b.Fatal(err)
				}
				last := entries[batch-1]
				head = &last
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/event")
			b.ReportMetric(float64((processCPU(b)-cpu0).Nanoseconds())/float64(b.N*batch), "cpu-ns/event")
		})
	}
}

// processCPU is the CPU time (user and system) this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
