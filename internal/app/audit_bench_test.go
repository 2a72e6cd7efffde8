package app

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/demoehr"
	"github.com/fhirgate/fhirgate/internal/dpop"
	"github.com/fhirgate/fhirgate/internal/token"
)

// startDemoEHR serves the demo EHR (basic auth gw:ehr-secret) until t ends
// and returns its URL.
func startDemoEHR(t testing.TB) string {
	t.Helper()
	return startDemoEHRWith(t, 0)
}

// startDemoEHRWith serves the demo EHR seeded with patients synthetic
// patients (demoehr.DefaultPatients when 0) until t ends and returns its URL.
func startDemoEHRWith(t testing.TB, patients int) string {
	t.Helper()
	ehr, err := demoehr.New(demoehr.Options{Username: "gw", Password: "ehr-secret", Patients: patients})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(ehr)
	t.Cleanup(srv.Close)
	return srv.URL
}

// BenchmarkGatewayAudit measures gateway reads over loopback HTTP with the
// audit trail off (log sink, discarded), durable (sync, SQLite, the default;
// and the file sink) and async, in one run so the ratios hold on a noisy
// machine, at 64 and at 256 concurrent clients (durable audit adds latency,
// so a closed-loop client count that only just saturates the gateway without
// audit leaves it idle while requests wait for their commit; more clients
// show the throughput the gateway can sustain):
//
//	go test -run=^$ -bench=GatewayAudit -benchtime=3s ./internal/app/
//
// The goal (issue 5) is under 10% throughput lost to durable audit. Each
// result also reports the p50 and p99 request latency.
func BenchmarkGatewayAudit(b *testing.B) {
	ehrURL := startDemoEHR(b)
	for _, clients := range []int{64, 256} {
		for _, mode := range []struct{ name, sink, mode string }{
			{"audit-off", "log", "sync"},
			{"audit-sync-sqlite", "store", "sync"},
			{"audit-sync-file", "file", "sync"},
			{"audit-async-sqlite", "store", "async"},
		} {
			b.Run(fmt.Sprintf("c%d/%s", clients, mode.name), func(b *testing.B) {
				benchmarkGatewayRead(b, ehrURL, clients, nil, map[string]string{"audit.sink": mode.sink, "audit.mode": mode.mode})
			})
		}
	}
}

// BenchmarkGatewayDPoP measures gateway reads with a DPoP-bound token, a
// fresh proof per request (signed by the load generator, as a client
// would), durable audit, and each proof's jti remembered in the store (the
// default replay backend, whose writes are durable: one fsync per batch of
// concurrent proofs) or in memory, in one run:
//
//	go test -run=^$ -bench=GatewayDPoP -benchtime=3s ./internal/app/
func BenchmarkGatewayDPoP(b *testing.B) {
	ehrURL := startDemoEHR(b)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	for _, clients := range []int{64, 256} {
		for _, backend := range []string{"store", "memory"} {
			b.Run(fmt.Sprintf("c%d/replay-%s", clients, backend), func(b *testing.B) {
				benchmarkGatewayRead(b, ehrURL, clients, key, map[string]string{"replay.backend": backend})
			})
		}
	}
}

// benchmarkGatewayRead reads a patient-compartment Observation through the
// gateway from clients concurrent clients; with dpopKey, the token is bound
// to that key and every request carries a new DPoP proof.
func benchmarkGatewayRead(b *testing.B, upstream string, clients int, dpopKey *ecdsa.PrivateKey, overrides map[string]string) {
	ov := map[string]string{"gateway.upstream": upstream, "gateway.upstream_auth": "basic:gw:ehr-secret",
		// One client at full speed is the load here, not an attack:
		// no rate limits, and the detector's record-only default.
		"ratelimit.gateway_per_ip": "off", "ratelimit.gateway_per_client": "off", "ratelimit.gateway_per_user": "off",
		"anomaly.rate_spike_action": "record"}
	maps.Copy(ov, overrides)
	srv := startServer(b, ov)
	claims := token.AccessClaims{Subject: "bench-user", Audience: srv.app.FHIRBase(),
		ClientID: "bench-client", Scope: "patient/*.rs", Patient: "pt-001", FHIRUser: "Patient/pt-001"}
	var transport http.RoundTripper = &http.Transport{MaxIdleConnsPerHost: 1024}
	if dpopKey != nil {
		jkt, err := dpop.JKT(dpopKey.Public())
		if err != nil {
			b.Fatal(err)
		}
		claims.Cnf = map[string]string{"jkt": jkt}
		transport = &dpopTransport{key: dpopKey, next: transport}
	}
	tok, _, err := srv.app.tokens.AccessToken(claims)
	if err != nil {
		b.Fatal(err)
	}
	client := &http.Client{Transport: transport}
	// Connections the transport dialed but never used look new to the
	// server, which waits 5 s for them at shutdown: close them first.
	defer client.CloseIdleConnections()
	url := srv.app.FHIRBase() + "/Observation/obs-001-01"
	var latencies latencyLog
	b.SetParallelism(max(1, clients/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	meter := startCPUMeter(b)
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		defer func() { latencies.add(mine) }()
		for pb.Next() {
			t0 := time.Now()
			req, _ := http.NewRequest("GET", url, nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
			mine = append(mine, time.Since(t0))
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
	meter.report(b)
	latencies.report(b)
}
