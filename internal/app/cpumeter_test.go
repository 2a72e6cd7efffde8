package app

import (
	"os"
	"runtime/pprof"
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

func processCPU(b *testing.B) time.Duration {
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
