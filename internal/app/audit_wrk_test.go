package app

import (
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/token"
)

// TestGatewayAuditWithWrk measures what BenchmarkGatewayAudit measures, with
// wrk as the load generator: a separate process, as real clients are, and
// one that takes little CPU, where the benchmark's Go clients share the
// server's process, its scheduler and a good part of its CPU. It runs only
// when asked, and needs wrk (Debian: apt-get install wrk):
//
//	FHIRGATE_WRK_SECONDS=8 go test -run=TestGatewayAuditWithWrk -v -timeout=30m ./internal/app/
//
// Each round runs at each connection count with audit off, durable into
// SQLite, durable into files and queued for SQLite (audit.mode: async,
// which tells the cost of waiting for the commit from the cost of
// writing), one server per run, and logs each run's
// requests/s and its ratio to audit off at the same connection count. It
// then compares capacities: each mode's best rate over the round's
// connection counts, against audit off's best. FHIRGATE_WRK_CONNS (a comma
// list, default 64,256) and FHIRGATE_WRK_ROUNDS (default 3) change the
// sweep. Each run also logs the server's CPU per request and how busy it
// kept the machine; FHIRGATE_WRK_CPUPROFILE_DIR=DIR writes a CPU profile of
// each run there.
func TestGatewayAuditWithWrk(t *testing.T) {
	secs := envCount(t, "FHIRGATE_WRK_SECONDS", 0)
	if secs <= 0 {
		t.Skip("set FHIRGATE_WRK_SECONDS to measure gateway audit with wrk")
	}
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		t.Skip("wrk is not installed (apt-get install wrk)")
	}
	connCounts := envCounts(t, "FHIRGATE_WRK_CONNS", []int{64, 256})
	rounds := envCount(t, "FHIRGATE_WRK_ROUNDS", 3)
	ehrURL := startDemoEHR(t)
	modes := []struct{ name, sink, mode string }{{"audit-off", "log", "sync"}, {"audit-sync-sqlite", "store", "sync"},
		{"audit-sync-file", "file", "sync"}, {"audit-async-sqlite", "store", "async"}}
	for round := 1; round <= rounds; round++ {
		best := map[string]float64{}
		for _, conns := range connCounts {
			var off float64
			for _, m := range modes {
				var rate float64
				// A subtest each, so each server shuts down before the next starts.
				t.Run(fmt.Sprintf("round%d/c%d/%s", round, conns, m.name), func(t *testing.T) {
					rate = wrkGatewayRead(t, wrk, ehrURL, m.sink, m.mode, conns, secs)
				})
				if m.sink == "log" {
					off = rate
				}
				best[m.name] = max(best[m.name], rate)
				t.Logf("round %d c%d %-18s %8.0f req/s  ratio %.3f", round, conns, m.name, rate, rate/off)
			}
		}
		if len(connCounts) > 1 {
			for _, m := range modes {
				t.Logf("round %d capacity %-18s %8.0f req/s  ratio %.3f", round, m.name, best[m.name], best[m.name]/best["audit-off"])
			}
		}
	}
}

var wrkRate = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)

// wrkGatewayRead starts a server whose audit trail goes to sink in mode
// (sync: durable before the answer; async: queued), drives
// patient-compartment reads through its gateway with wrk for secs seconds
// over conns connections, and returns requests/s.
func wrkGatewayRead(t *testing.T, wrk, upstream, sink, mode string, conns, secs int) float64 {
	t.Helper()
	ov := map[string]string{"gateway.upstream": upstream, "gateway.upstream_auth": "basic:gw:ehr-secret",
		"ratelimit.gateway_per_ip": "off", "ratelimit.gateway_per_client": "off", "ratelimit.gateway_per_user": "off",
		"anomaly.rate_spike_action": "record"}
	maps.Copy(ov, map[string]string{"audit.sink": sink, "audit.mode": mode})
	srv := startServer(t, ov)
	tok, _, err := srv.app.tokens.AccessToken(token.AccessClaims{Subject: "bench-user", Audience: srv.app.FHIRBase(),
		ClientID: "bench-client", Scope: "patient/*.rs", Patient: "pt-001", FHIRUser: "Patient/pt-001"})
	if err != nil {
		t.Fatal(err)
	}
	cpu0, wall0 := processCPU(t), time.Now()
	stopProfile := startWrkProfile(t, fmt.Sprintf("%s-%s-c%d", sink, mode, conns))
	out, err := exec.Command(wrk, "-t2", "-c"+strconv.Itoa(conns), "-d"+strconv.Itoa(secs)+"s", "--timeout", "10s",
		"-H", "Authorization: Bearer "+tok, srv.app.FHIRBase()+"/Observation/obs-001-01").CombinedOutput()
	stopProfile()
	cpu, wall := processCPU(t)-cpu0, time.Since(wall0)
	if err != nil {
		t.Fatalf("wrk: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "Non-2xx") {
		t.Fatalf("wrk saw refusals:\n%s", out)
	}
	m := wrkRate.FindSubmatch(out)
	if m == nil {
		t.Fatalf("no Requests/sec in wrk's output:\n%s", out)
	}
	rate, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	if rate > 0 {
		t.Logf("server CPU %.0f µs/request, %.0f%% busy", cpu.Seconds()*1e6/(rate*wall.Seconds()), 100*cpu.Seconds()/wall.Seconds())
	}
	return rate
}

// startWrkProfile writes a CPU profile of one wrk run to
// $FHIRGATE_WRK_CPUPROFILE_DIR/NAME.pprof when that variable is set; the
// returned function stops it.
func startWrkProfile(t *testing.T, name string) func() {
	dir := os.Getenv("FHIRGATE_WRK_CPUPROFILE_DIR")
	if dir == "" {
		return func() {}
	}
	f, err := os.Create(filepath.Join(dir, name+".pprof"))
	if err != nil {
		t.Fatalf("cpu profile: %v", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		t.Fatalf("cpu profile: %v", err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			t.Errorf("cpu profile: %v", err)
		}
	}
}
