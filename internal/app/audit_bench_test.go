package app

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/demoehr"
	"github.com/fhirgate/fhirgate/internal/token"
)

// BenchmarkGatewayAudit measures gateway reads over loopback HTTP with the
// audit trail off (log sink, discarded), durable (sync, SQLite, the default)
// and async, in one run so the ratios hold on a noisy machine:
//
//	go test -run=^$ -bench=GatewayAudit -benchtime=3s ./internal/app/
//
// The goal (issue 5) is under 10% throughput lost to durable audit.
func BenchmarkGatewayAudit(b *testing.B) {
	ehr, err := demoehr.New(demoehr.Options{Username: "gw", Password: "ehr-secret"})
	if err != nil {
		b.Fatal(err)
	}
	ehrSrv := httptest.NewServer(ehr)
	defer ehrSrv.Close()
	for _, mode := range []struct{ name, sink, mode string }{
		{"audit-off", "log", "sync"},
		{"audit-sync-sqlite", "store", "sync"},
		{"audit-sync-file", "file", "sync"},
		{"audit-async-sqlite", "store", "async"},
	} {
		b.Run(mode.name, func(b *testing.B) {
			srv := startServer(b, map[string]string{"gateway.upstream": ehrSrv.URL, "gateway.upstream_auth": "basic:gw:ehr-secret",
				"audit.sink": mode.sink, "audit.mode": mode.mode,
				// One client at full speed is the load here, not an attack:
				// no rate limits, and the detector's record-only default.
				"ratelimit.gateway_per_ip": "off", "ratelimit.gateway_per_client": "off", "ratelimit.gateway_per_user": "off",
				"anomaly.rate_spike_action": "record"})
			tok, _, err := srv.app.tokens.AccessToken(token.AccessClaims{Subject: "bench-user", Audience: srv.app.FHIRBase(),
				ClientID: "bench-client", Scope: "patient/*.rs", Patient: "pt-001", FHIRUser: "Patient/pt-001"})
			if err != nil {
				b.Fatal(err)
			}
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512}}
			url := srv.app.FHIRBase() + "/Observation/obs-001-01"
			b.SetParallelism(32)
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest("GET", url, nil)
					req.Header.Set("Authorization", "Bearer "+tok)
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
		})
	}
}
