// Command loadtest measures, in one run, the throughput and latency of a
// patient-compartment FHIR read served (1) by the upstream demo EHR
// directly, (2) through a plain httputil.ReverseProxy that injects the
// backend credentials, and (3) through the fhirgate gateway with a valid
// ES256 access token, all in this process on loopback, and reports the
// ratios. It is a benchmark, not a test:
//
//	go run ./cmd/loadtest -c 64 -d 10s
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"slices"
	"time"
)

// result is one measured target.
type result struct {
	Name     string  `json:"name"`
	Requests int     `json:"requests"`
	Errors   int     `json:"errors"`
	RPS      float64 `json:"rps"`
	P50us    float64 `json:"p50_us"`
	P99us    float64 `json:"p99_us"`
}

func main() {
	conc := flag.Int("c", 64, "concurrent clients")
	dur := flag.Duration("d", 10*time.Second, "measuring time per target")
	warm := flag.Duration("warmup", time.Second, "warm-up time per target")
	asJSON := flag.Bool("json", false, "print the results as JSON")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the gateway phase to this file")
	auditLog := flag.Bool("audit-log", true, "gateway audit events go through the structured-log auditor (to a discarded sink); false = no-op auditor")
	flag.Parse()
	if err := run(context.Background(), os.Stdout, *conc, *dur, *warm, *asJSON, *auditLog, *cpuProfile); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out io.Writer, conc int, dur, warm time.Duration, asJSON, auditLog bool, cpuProfile string) error {
	if conc < 1 || dur <= 0 {
		return fmt.Errorf("concurrency must be >= 1 and duration > 0")
	}
	env, err := startEnv(ctx, conc, auditLog)
	if err != nil {
		return err
	}
	defer env.close()
	var results []result
	for _, tgt := range env.targets() {
		if _, err := load(tgt, conc, warm); err != nil {
			return fmt.Errorf("%s warm-up: %w", tgt.name, err)
		}
		stop := func() {}
		if cpuProfile != "" && tgt.name == "gateway" {
			f, err := os.Create(cpuProfile)
			if err != nil {
				return err
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				return err
			}
			stop = func() { pprof.StopCPUProfile(); _ = f.Close() }
		}
		lat, err := load(tgt, conc, dur)
		stop()
		if err != nil {
			return fmt.Errorf("%s: %w", tgt.name, err)
		}
		results = append(results, summarize(tgt.name, lat, dur))
	}
	ratios := map[string]float64{
		"proxy_vs_upstream":   results[1].RPS / results[0].RPS,
		"gateway_vs_proxy":    results[2].RPS / results[1].RPS,
		"gateway_vs_upstream": results[2].RPS / results[0].RPS,
	}
	addedP50 := results[2].P50us - results[1].P50us
	if asJSON {
		return json.NewEncoder(out).Encode(map[string]any{
			"concurrency": conc, "duration": dur.String(), "results": results, "ratios": ratios,
			"gateway_added_p50_us": addedP50,
		})
	}
	fmt.Fprintf(out, "concurrency %d, %s per target, GET Observation/{id} of the token's patient\n\n", conc, dur)
	fmt.Fprintf(out, "%-10s %10s %8s %12s %10s %10s\n", "target", "requests", "errors", "req/s", "p50 µs", "p99 µs")
	for _, r := range results {
		fmt.Fprintf(out, "%-10s %10d %8d %12.0f %10.0f %10.0f\n", r.Name, r.Requests, r.Errors, r.RPS, r.P50us, r.P99us)
	}
	fmt.Fprintf(out, "\nplain proxy / upstream: %.2fx\ngateway / plain proxy: %.2fx (goal >= 0.85x)\ngateway / upstream:     %.2fx\ngateway adds %.0f µs at p50 over the plain proxy (goal < 150 µs)\n",
		ratios["proxy_vs_upstream"], ratios["gateway_vs_proxy"], ratios["gateway_vs_upstream"], addedP50)
	return nil
}

// latencies is what load measured.
type latencies struct {
	ok     []time.Duration
	errors int
}

func summarize(name string, l latencies, dur time.Duration) result {
	slices.Sort(l.ok)
	pct := func(p float64) float64 {
		if len(l.ok) == 0 {
			return 0
		}
		i := int(p * float64(len(l.ok)-1))
		return float64(l.ok[i].Microseconds())
	}
	return result{Name: name, Requests: len(l.ok), Errors: l.errors,
		RPS: float64(len(l.ok)) / dur.Seconds(), P50us: pct(0.50), P99us: pct(0.99)}
}
