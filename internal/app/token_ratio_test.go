package app

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestTokenExchangeRatio measures what BenchmarkTokenHTTP measures for the
// code exchange, the goal of issue 2 (at least half the throughput of a
// bare handler that only signs one ES256 JWT), in a way a drifting shared
// machine disturbs less: short slices of bare requests and of code
// exchanges alternate, each exchange slice is compared with the mean of
// the bare slices on either side of it, and the median of those ratios is
// logged with their range. It runs only when asked:
//
//	FHIRGATE_TOKEN_RATIO_SLICES=8 go test -run=TestTokenExchangeRatio -v -timeout=30m ./internal/app/
//
// FHIRGATE_TOKEN_RATIO_CLIENTS (a comma list, default 32,128) sets the
// concurrent clients, FHIRGATE_TOKEN_RATIO_REQUESTS (default 5000) the
// requests per slice. The durable audit trail and store are on, as by
// default; FHIRGATE_TOKEN_RATIO_AUDIT_SINK=log turns audit off and
// FHIRGATE_TOKEN_RATIO_AUDIT_MODE=async stops waiting for it, to measure
// what durable audit costs the exchange.
func TestTokenExchangeRatio(t *testing.T) {
	slicesN := envCount(t, "FHIRGATE_TOKEN_RATIO_SLICES", 0)
	if slicesN <= 0 {
		t.Skip("set FHIRGATE_TOKEN_RATIO_SLICES to measure the code exchange against bare signing")
	}
	perSlice := envCount(t, "FHIRGATE_TOKEN_RATIO_REQUESTS", 5000)
	clientCounts := envCounts(t, "FHIRGATE_TOKEN_RATIO_CLIENTS", []int{32, 128})
	overrides := map[string]string{"ratelimit.token_per_ip": "off"}
	if sink := os.Getenv("FHIRGATE_TOKEN_RATIO_AUDIT_SINK"); sink != "" {
		overrides["audit.sink"] = sink // log: audit off, to locate the gap
	}
	if mode := os.Getenv("FHIRGATE_TOKEN_RATIO_AUDIT_MODE"); mode != "" {
		overrides["audit.mode"] = mode
	}
	tb := newTokenBench(t, overrides)
	// Every client keeps its connection between requests: a pool smaller
	// than the clients would close and reopen connections all along.
	httpClient := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: slices.Max(clientCounts)}}
	t.Cleanup(httpClient.CloseIdleConnections) // runs before the server's shutdown
	tokenURL := tb.ts.app.Issuer() + "/token"
	for _, clients := range clientCounts {
		codes, verifier := tb.codes(t, slicesN*perSlice, "launch/patient patient/*.rs")
		bareForm := url.Values{"grant_type": {"authorization_code"}}
		bare := func() sliceResult {
			return runSlice(t, httpClient, clients, perSlice, func(int) (string, url.Values) { return tb.bare.URL, bareForm })
		}
		var ratios []float64
		bare() // warms up the connections and the scheduler
		before := bare()
		for s := range slicesN {
			offset := s * perSlice
			exchange := runSlice(t, httpClient, clients, perSlice, func(i int) (string, url.Values) {
				return tokenURL, tb.exchangeForm(codes[offset+i], verifier)
			})
			after := bare()
			ratio := exchange.rate / ((before.rate + after.rate) / 2)
			ratios = append(ratios, ratio)
			t.Logf("c%d slice %d: bare %.0f and %.0f req/s, code exchange %.0f req/s, ratio %.3f; CPU per request (server and clients) bare %.0f µs at %.0f%%, exchange %.0f µs at %.0f%%",
				clients, s+1, before.rate, after.rate, exchange.rate, ratio, after.cpuMicros, after.busy, exchange.cpuMicros, exchange.busy)
			before = after
		}
		slices.Sort(ratios)
		t.Logf("c%d: code exchange / bare ES256 over %d slices of %d requests: median %.3f, range %.3f-%.3f",
			clients, slicesN, perSlice, median(ratios), ratios[0], ratios[len(ratios)-1])
	}
}

// sliceResult is what one slice measured: requests per second, the
// process's CPU per request (server and load generator together) in µs,
// and how busy it kept the machine in percent of one core.
type sliceResult struct{ rate, cpuMicros, busy float64 }

// runSlice sends n form POSTs over httpClient from clients goroutines, the i-th to the URL
// and form that req(i) returns, each of which must be answered 200.
func runSlice(t *testing.T, httpClient *http.Client, clients, n int, req func(i int) (string, url.Values)) sliceResult {
	t.Helper()
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		mu       sync.Mutex
		failures int
		firstErr error // errors of any type: an atomic.Value would panic on a second type
	)
	start, cpu := time.Now(), processCPU(t)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				u, form := req(i)
				resp, err := httpClient.PostForm(u, form)
				if err == nil {
					// Read to the end, so the connection is reused.
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					mu.Lock()
					failures++
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	elapsed, used := time.Since(start), processCPU(t)-cpu
	if failures > 0 {
		t.Fatalf("%d of %d requests failed, the first: %v", failures, n, firstErr)
	}
	return sliceResult{
		rate:      float64(n) / elapsed.Seconds(),
		cpuMicros: float64(used.Microseconds()) / float64(n),
		busy:      100 * used.Seconds() / elapsed.Seconds(),
	}
}

// median of sorted values.
func median(sorted []float64) float64 {
	m := len(sorted) / 2
	if len(sorted)%2 == 1 {
		return sorted[m]
	}
	return (sorted[m-1] + sorted[m]) / 2
}

// envCount is the positive count in the environment variable name, or def
// when it is unset; anything else fails t.
func envCount(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n <= 0 {
		t.Fatalf("%s: %q is not a positive count", name, v)
	}
	return n
}

// envCounts is the comma list of positive counts in name, or def.
func envCounts(t *testing.T, name string, def []int) []int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			t.Fatalf("%s: %q is not a positive count", name, f)
		}
		out = append(out, n)
	}
	return out
}
