package app

import (
	"os"
	"runtime/pprof"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
)

// cpuMeter measures the process's CPU time (user and system, all threads)
// over a benchmark's timed loop, so a throughput ratio can be split into
// CPU spent per request and how busy the machine was kept.
type cpuMeter struct {
	wall    time.Time
	cpu     time.Duration
	profile *os.File
}

// processCPU is the process's user and system CPU time so far.
func processCPU(b testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// startCPUMeter starts measuring; call it right after b.ResetTimer. With
// FHIRGATE_BENCH_CPUPROFILE=FILE it also writes a CPU profile of the timed
// loop alone (go test's -cpuprofile includes each benchmark's setup); the
// last benchmark that runs owns the file, so select one with -bench.
func startCPUMeter(b *testing.B) cpuMeter {
	m := cpuMeter{wall: time.Now(), cpu: processCPU(b)}
	if path := os.Getenv("FHIRGATE_BENCH_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			b.Fatalf("cpu profile: %v", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			b.Fatalf("cpu profile: %v", err)
		}
		m.profile = f
	}
	return m
}

// report adds cpu-µs/op (CPU of server and load generator together, per
// request) and cpu-% (100 per fully busy core).
func (m cpuMeter) report(b *testing.B) {
	if m.profile != nil {
		pprof.StopCPUProfile()
		if err := m.profile.Close(); err != nil {
			b.Errorf("cpu profile: %v", err)
		}
	}
	cpu := processCPU(b) - m.cpu
	wall := time.Since(m.wall)
	if b.N > 0 {
		b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
	}
	if wall > 0 {
		b.ReportMetric(100*cpu.Seconds()/wall.Seconds(), "cpu-%")
	}
}

// latencyLog gathers the request latencies of a benchmark's RunParallel
// goroutines and reports their median and 99th percentile, which show the
// waits (group commits, checkpoints) that throughput averages away.
type latencyLog struct {
	mu  sync.Mutex
	all []time.Duration
}

// add hands over one goroutine's latencies once it is done.
func (l *latencyLog) add(mine []time.Duration) {
	l.mu.Lock()
	l.all = append(l.all, mine...)
	l.mu.Unlock()
}

// report adds the p50-ms and p99-ms metrics to b.
func (l *latencyLog) report(b *testing.B) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.all) == 0 {
		return
	}
	slices.Sort(l.all)
	b.ReportMetric(float64(l.all[len(l.all)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(l.all[len(l.all)*99/100].Microseconds())/1000, "p99-ms")
}
