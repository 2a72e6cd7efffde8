package app

import (
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/demoehr"
	"github.com/fhirgate/fhirgate/internal/metrics"
	"github.com/fhirgate/fhirgate/internal/token"
)

// TestGatewayAuditWithWrk measures what BenchmarkGatewayAudit measures, with
// wrk as the load generator: a separate process, as real clients are, and
// one that takes little CPU, where the benchmark's Go clients share the
// server's process, its scheduler and a good part of its CPU. It runs only
// when asked, and needs wrk (Debian: apt-get install wrk):
//
//	FHIRGATE_WRK_SECONDS=3 go test -run=TestGatewayAuditWithWrk -v -timeout=30m ./internal/app/
//
// At each connection count it starts four servers side by side: audit off,
// durable into SQLite, durable into files, and queued for SQLite
// (audit.mode: async, which tells the cost of waiting for the commit from
// the cost of writing). It then drives them in turn, one wrk run of
// FHIRGATE_WRK_SECONDS each, for FHIRGATE_WRK_ROUNDS rounds (default 6),
// starting each round with a different server, so that a change in the
// shared machine's load during the test falls on every mode alike instead
// of on whichever ran last. Each mode's rate is its requests over its
// seconds summed over the rounds; the test logs it, its ratio to audit
// off, and the median and range of the rounds' own ratios. It then compares
// capacities: each mode's rate at its best connection count, against audit
// off's best, with a 95% bootstrap interval over the rounds (the machine's
// noise makes single rounds scatter by 10-15%; the interval says how far
// the ratio from this many rounds can be trusted). FHIRGATE_WRK_CONNS (a
// comma list, default 128,256) changes
// the sweep; FHIRGATE_WRK_MODES (a comma list of mode names) keeps only
// those modes besides audit off. By default every request reads one
// Observation of one patient; FHIRGATE_WRK_PATIENTS=N (N > 1) seeds the
// demo EHR with N patients, gives each its own token and has wrk read a
// random one's Patient resource each time (a Lua script), as a hospital's
// traffic spreads over many patients' compartments. Each run also logs
// the process's CPU per request, how busy it kept the machine and the
// audit trail's commits;
// FHIRGATE_WRK_CPUPROFILE_DIR=DIR writes a CPU profile of each run there.
func TestGatewayAuditWithWrk(t *testing.T) {
	secs := envCount(t, "FHIRGATE_WRK_SECONDS", 0)
	if secs <= 0 {
		t.Skip("set FHIRGATE_WRK_SECONDS to measure gateway audit with wrk")
	}
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		t.Skip("wrk is not installed (apt-get install wrk)")
	}
	connCounts := envCounts(t, "FHIRGATE_WRK_CONNS", []int{128, 256})
	rounds := envCount(t, "FHIRGATE_WRK_ROUNDS", 6)
	patients := envCount(t, "FHIRGATE_WRK_PATIENTS", 1)
	ehrURL := startDemoEHRWith(t, max(patients, demoehr.DefaultPatients))
	modes := []wrkMode{{"audit-off", "log", "sync"}, {"audit-sync-sqlite", "store", "sync"},
		{"audit-sync-file", "file", "sync"}, {"audit-async-sqlite", "store", "async"}}
	if only := os.Getenv("FHIRGATE_WRK_MODES"); only != "" {
		keep := strings.Split(only, ",")
		modes = slices.DeleteFunc(modes, func(m wrkMode) bool { return m.name != "audit-off" && !slices.Contains(keep, m.name) })
	}
	best := map[string]float64{}
	var sweep []wrkRounds // each connection count's rounds, for the bootstrap
	for _, conns := range connCounts {
		// A subtest each, so the servers shut down before the next count starts.
		t.Run(fmt.Sprintf("c%d", conns), func(t *testing.T) {
			targets := make([]wrkTarget, len(modes))
			for i, m := range modes {
				targets[i] = startWrkTarget(t, ehrURL, m, patients)
			}
			reqs := make([]float64, len(modes))
			wall := make([]float64, len(modes))
			ratios := make([][]float64, len(modes))
			runs := make(wrkRounds, len(modes))
			for round := range rounds {
				rates := make([]float64, len(modes))
				for k := range modes {
					i := (round + k) % len(modes)
					r := targets[i].run(t, wrk, conns, secs, fmt.Sprintf("r%d-c%d", round+1, conns))
					reqs[i] += r.rate * r.wall.Seconds()
					wall[i] += r.wall.Seconds()
					rates[i] = r.rate
					runs[i] = append(runs[i], r)
				}
				for i := range modes {
					ratios[i] = append(ratios[i], rates[i]/rates[0])
				}
			}
			for i, m := range modes {
				rate := reqs[i] / wall[i]
				best[m.name] = max(best[m.name], rate)
				rs := slices.Clone(ratios[i])
				slices.Sort(rs)
				t.Logf("c%d %-18s %8.0f req/s  ratio %.3f  (rounds: median %.3f, %.3f-%.3f)", conns, m.name, rate,
					rate/(reqs[0]/wall[0]), median(rs), rs[0], rs[len(rs)-1])
			}
			sweep = append(sweep, runs)
		})
	}
	if len(connCounts) > 1 {
		for i, m := range modes {
			lo, hi := bootstrapCapacity(sweep, i, 4000)
			t.Logf("capacity %-18s %8.0f req/s  ratio %.3f  (95%% bootstrap over rounds %.3f-%.3f)", m.name, best[m.name],
				best[m.name]/best["audit-off"], lo, hi)
		}
	}
}

// wrkRounds is one connection count's wrk runs: per mode, one per round.
type wrkRounds [][]wrkResult

// capacity is mode's best rate over the connection counts against audit
// off's best (mode 0), counting at each count only the rounds in pick
// (indexes, repeats allowed); rates are requests over wall time.
func capacity(sweep []wrkRounds, mode int, pick func(c int) []int) float64 {
	var best, bestOff float64
	for c, runs := range sweep {
		idx := pick(c)
		rate := func(m int) float64 {
			var reqs, secs float64
			for _, i := range idx {
				reqs += runs[m][i].rate * runs[m][i].wall.Seconds()
				secs += runs[m][i].wall.Seconds()
			}
			return reqs / secs
		}
		best, bestOff = max(best, rate(mode)), max(bestOff, rate(0))
	}
	return best / bestOff
}

// bootstrapCapacity is a 95% percentile bootstrap interval for mode's
// capacity ratio: n times it redraws, at each connection count, as many
// rounds as were run, with replacement and the same rounds for every mode
// (a round's modes ran back to back, so they share the machine's load
// then), and recomputes the ratio.
func bootstrapCapacity(sweep []wrkRounds, mode, n int) (lo, hi float64) {
	rng := rand.New(rand.NewPCG(1, uint64(mode)))
	ratios := make([]float64, n)
	for b := range ratios {
		ratios[b] = capacity(sweep, mode, func(c int) []int {
			rounds := len(sweep[c][0])
			idx := make([]int, rounds)
			for i := range idx {
				idx[i] = rng.IntN(rounds)
			}
			return idx
		})
	}
	slices.Sort(ratios)
	return ratios[n*25/1000], ratios[n*975/1000-1]
}

// wrkMode is one audit configuration of TestGatewayAuditWithWrk.
type wrkMode struct{ name, sink, mode string }

// wrkTarget is a running server of one wrkMode and what wrk sends it.
type wrkTarget struct {
	mode wrkMode
	srv  *testServer
	args []string // wrk's arguments after its options: a token header and a URL, or a script and a URL
}

// wrkResult is one wrk run's rate and its wall time.
type wrkResult struct {
	rate float64
	wall time.Duration
}

// startWrkTarget starts a server whose audit trail goes to m.sink in m.mode
// (sync: durable before the answer; async: queued), proxying upstream, and
// prepares wrk's requests: one patient's Observation, or with patients > 1
// a random patient's own record, each with that patient's token.
func startWrkTarget(t *testing.T, upstream string, m wrkMode, patients int) wrkTarget {
	t.Helper()
	ov := map[string]string{"gateway.upstream": upstream, "gateway.upstream_auth": "basic:gw:ehr-secret",
		"ratelimit.gateway_per_ip": "off", "ratelimit.gateway_per_client": "off", "ratelimit.gateway_per_user": "off",
		"anomaly.rate_spike_action": "record"}
	maps.Copy(ov, map[string]string{"audit.sink": m.sink, "audit.mode": m.mode})
	srv := startServer(t, ov)
	mint := func(patient string) string {
		tok, _, err := srv.app.tokens.AccessToken(token.AccessClaims{Subject: "bench-user-" + patient, Audience: srv.app.FHIRBase(),
			ClientID: "bench-client", Scope: "patient/*.rs", Patient: patient, FHIRUser: "Patient/" + patient})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	if patients <= 1 {
		return wrkTarget{mode: m, srv: srv, args: []string{"-H", "Authorization: Bearer " + mint("pt-001"),
			srv.app.FHIRBase() + "/Observation/obs-001-01"}}
	}
	base, err := url.Parse(srv.app.FHIRBase())
	if err != nil {
		t.Fatal(err)
	}
	var lua strings.Builder
	// wrk.format takes the Host header from the URL only once a thread is
	// set up: build the requests in init.
	lua.WriteString("local paths, tokens = {}, {}\n")
	for n := 1; n <= patients; n++ {
		id := demoehr.PatientID(n)
		tok := mint(id)
		if n == 1 {
			req, _ := http.NewRequest(http.MethodGet, srv.app.FHIRBase()+"/Patient/"+id, nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET Patient/%s: %d %s", id, resp.StatusCode, body)
			}
		}
		fmt.Fprintf(&lua, "paths[%d], tokens[%d] = %q, %q\n", n, n, base.Path+"/Patient/"+id, "Bearer "+tok)
	}
	lua.WriteString(`local reqs = {}
init = function(args)
  for i = 1, #paths do reqs[i] = wrk.format("GET", paths[i], {["Authorization"] = tokens[i]}) end
end
request = function() return reqs[math.random(#reqs)] end
`)
	script := filepath.Join(t.TempDir(), "patients.lua")
	if err := os.WriteFile(script, []byte(lua.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return wrkTarget{mode: m, srv: srv, args: []string{"-s", script, srv.app.FHIRBase()}}
}

// run drives patient-compartment reads through w's gateway with wrk for
// secs seconds over conns connections and returns requests/s.
func (w wrkTarget) run(t *testing.T, wrk string, conns, secs int, label string) wrkResult {
	t.Helper()
	commits0 := auditCommitStats(t, w.srv.app)
	cpu0, wall0 := processCPU(t), time.Now()
	stopProfile := startWrkProfile(t, w.mode.name+"-"+label)
	out, err := exec.Command(wrk, append([]string{"-t2", "-c" + strconv.Itoa(conns), "-d" + strconv.Itoa(secs) + "s",
		"--timeout", "10s"}, w.args...)...).CombinedOutput()
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
	if err != nil || rate <= 0 {
		t.Fatalf("wrk rate %q: %v", m[1], err)
	}
	msg := fmt.Sprintf("%s %-18s %8.0f req/s  server CPU %.0f µs/request, %.0f%% busy", label, w.mode.name, rate,
		cpu.Seconds()*1e6/(rate*wall.Seconds()), 100*cpu.Seconds()/wall.Seconds())
	if c := auditCommitStats(t, w.srv.app).minus(commits0); c.commits > 0 {
		msg += fmt.Sprintf("; audit %.0f commits/s, %.1f events/commit, %.2f ms/commit",
			c.commits/wall.Seconds(), c.events/c.commits, 1000*c.seconds/c.commits)
	}
	t.Log(msg)
	return wrkResult{rate: rate, wall: wall}
}

var wrkRate = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)

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

// commitStats sums the audit trail's commit histograms.
type commitStats struct{ commits, events, seconds float64 }

func (c commitStats) minus(o commitStats) commitStats {
	return commitStats{c.commits - o.commits, c.events - o.events, c.seconds - o.seconds}
}

// auditCommitStats reads the audit commit count, events and time from a's
// metrics registry.
func auditCommitStats(t *testing.T, a *App) commitStats {
	t.Helper()
	mfs, err := a.prot.metrics.Prometheus().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var c commitStats
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			h := m.GetHistogram()
			switch mf.GetName() {
			case metrics.Namespace + "_audit_commit_batch_size":
				c.commits, c.events = float64(h.GetSampleCount()), h.GetSampleSum()
			case metrics.Namespace + "_audit_commit_duration_seconds":
				c.seconds = h.GetSampleSum()
			}
		}
	}
	return c
}

// The bootstrap interval of TestGatewayAuditWithWrk: exact when every round
// has the same ratio, around the point estimate when rounds scatter, and
// taken at each mode's best connection count.
func TestBootstrapCapacity(t *testing.T) {
	round := func(rates ...float64) []wrkResult {
		out := make([]wrkResult, len(rates))
		for i, r := range rates {
			out[i] = wrkResult{rate: r, wall: 3 * time.Second}
		}
		return out
	}
	// Audit off peaks at 128 connections, the mode at 256.
	steady := []wrkRounds{
		{round(1000, 1000, 1000, 1000), round(800, 800, 800, 800)},
		{round(900, 900, 900, 900), round(850, 850, 850, 850)},
	}
	if got := capacity(steady, 1, func(int) []int { return []int{0, 1, 2, 3} }); got != 0.85 {
		t.Fatalf("capacity %v, want 0.85 (mode's best at 256 over audit off's best at 128)", got)
	}
	if lo, hi := bootstrapCapacity(steady, 1, 1000); lo != 0.85 || hi != 0.85 {
		t.Fatalf("steady rounds: interval %v-%v, want exactly 0.85", lo, hi)
	}
	noisy := []wrkRounds{{round(1000, 1100, 900, 1000, 1050, 950), round(800, 1000, 900, 700, 950, 850)}}
	point := capacity(noisy, 1, func(int) []int { return []int{0, 1, 2, 3, 4, 5} })
	lo, hi := bootstrapCapacity(noisy, 1, 2000)
	if !(lo < point && point < hi) || lo < 0.7 || hi > 1.0 {
		t.Fatalf("noisy rounds: interval %v-%v around %v", lo, hi, point)
	}
}
