package app

import (
	"syscall"
	"testing"
	"time"
)

// cpuMeter measures the process's CPU time (user and system, all threads)
// over a benchmark's timed loop, so a throughput ratio can be split into
// CPU spent per request and how busy the machine was kept.
type cpuMeter struct {
	wall time.Time
	cpu  time.Duration
}

func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// startCPUMeter starts measuring; call it right after b.ResetTimer.
func startCPUMeter(b *testing.B) cpuMeter {
	return cpuMeter{wall: time.Now(), cpu: processCPU(b)}
}

// report adds cpu-µs/op (CPU of server and load generator together, per
// request) and cpu-% (100 per fully busy core).
func (m cpuMeter) report(b *testing.B) {
	cpu := processCPU(b) - m.cpu
	wall := time.Since(m.wall)
	if b.N > 0 {
		b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
	}
	if wall > 0 {
		b.ReportMetric(100*cpu.Seconds()/wall.Seconds(), "cpu-%")
	}
}
