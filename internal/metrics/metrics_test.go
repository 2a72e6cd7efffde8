package metrics_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/metrics"
)

func scrape(t *testing.T, reg *metrics.Registry) string {
	t.Helper()
	w := httptest.NewRecorder()
	reg.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if w.Code != http.StatusOK {
		t.Fatalf("/metrics: %d", w.Code)
	}
	return w.Body.String()
}

func TestMiddlewareLabelsByPattern(t *testing.T) {
	reg := metrics.New()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /fhir/Patient/{id}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") == "missing" {
			http.NotFound(w, r)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	h := reg.Middleware(mux)
	for _, p := range []string{"/fhir/Patient/1", "/fhir/Patient/2", "/fhir/Patient/missing", "/nowhere/secret-id"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, p, nil))
	}
	body := scrape(t, reg)
	for _, want := range []string{
		`fhirgate_http_requests_total{outcome="2xx",route="GET /fhir/Patient/{id}"} 2`,
		`fhirgate_http_requests_total{outcome="4xx",route="GET /fhir/Patient/{id}"} 1`,
		`fhirgate_http_requests_total{outcome="4xx",route="unmatched"} 1`,
		`fhirgate_http_request_duration_seconds_count{outcome="2xx",route="GET /fhir/Patient/{id}"} 2`,
		"go_goroutines", "process_",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// Ids from the URL never become label values.
	for _, leak := range []string{"secret-id", "Patient/1\"", "missing"} {
		if strings.Contains(body, leak) {
			t.Errorf("/metrics leaks %q from a URL", leak)
		}
	}
}

func TestCounters(t *testing.T) {
	reg := metrics.New()
	reg.TokenIssued("authorization_code")
	reg.TokenIssued("authorization_code")
	reg.Refused("token", "invalid_grant")
	reg.RateLimited("token", "ip")
	reg.Anomaly("patient_scraping", "suspend")
	reg.SetAuditQueueDepth(7)
	reg.ObserveAuditCommit(64, 2*time.Millisecond)
	reg.ObserveUpstream("ehr", 200, "", 10*time.Millisecond)
	reg.ObserveUpstream("ehr", 502, "", 10*time.Millisecond)
	reg.ObserveUpstream("ehr", 0, "timeout", time.Second)
	body := scrape(t, reg)
	for _, want := range []string{
		`fhirgate_tokens_issued_total{grant_type="authorization_code"} 2`,
		`fhirgate_refusals_total{component="token",reason="invalid_grant"} 1`,
		`fhirgate_rate_limited_total{dimension="ip",endpoint="token"} 1`,
		`fhirgate_anomalies_total{action="suspend",rule="patient_scraping"} 1`,
		`fhirgate_audit_queue_depth 7`,
		`fhirgate_audit_commit_duration_seconds_count 1`,
		`fhirgate_audit_commit_batch_size_sum 64`,
		`fhirgate_upstream_errors_total{kind="5xx",upstream="ehr"} 1`,
		`fhirgate_upstream_errors_total{kind="timeout",upstream="ehr"} 1`,
		`fhirgate_upstream_request_duration_seconds_count{outcome="error",upstream="ehr"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestNilRegistryIsSafe(t *testing.T) {
	var reg *metrics.Registry
	reg.TokenIssued("x")
	reg.Refused("a", "b")
	reg.RateLimited("a", "b")
	reg.Anomaly("a", "b")
	reg.SetAuditQueueDepth(1)
	reg.ObserveAuditCommit(1, time.Millisecond)
	reg.ObserveUpstream("a", 200, "", time.Millisecond)
	h := reg.Middleware(http.NotFoundHandler())
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
	if reg.Transport("x", nil) == nil {
		t.Fatal("nil registry Transport returned nil")
	}
}

func TestRegistriesAreIndependent(t *testing.T) {
	a, b := metrics.New(), metrics.New()
	a.TokenIssued("refresh_token")
	if strings.Contains(scrape(t, b), "fhirgate_tokens_issued_total{") {
		t.Fatal("a second registry sees the series of the first")
	}
}

func TestTransport(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) }))
	defer up.Close()
	reg := metrics.New()
	c := &http.Client{Transport: reg.Transport("ehr", nil)}
	resp, err := c.Get(up.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	up.Close()
	if _, err := c.Get(up.URL); err == nil {
		t.Fatal("request to a closed server succeeded")
	}
	body := scrape(t, reg)
	for _, want := range []string{`kind="5xx",upstream="ehr"} 1`, `kind="connect",upstream="ehr"} 1`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, body)
		}
	}
}

func TestErrorKind(t *testing.T) {
	if k := metrics.ErrorKind(context.DeadlineExceeded); k != "timeout" {
		t.Fatalf("deadline: %s", k)
	}
	if k := metrics.ErrorKind(context.Canceled); k != "canceled" {
		t.Fatalf("canceled: %s", k)
	}
	if k := metrics.ErrorKind(errors.New("x")); k != "other" {
		t.Fatalf("other: %s", k)
	}
}

func TestMiddlewareKeepsFlusher(t *testing.T) {
	reg := metrics.New()
	h := reg.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("Flush through the middleware: %v", err)
		}
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
}

type closer struct{ closed bool }

func (c *closer) RoundTrip(*http.Request) (*http.Response, error) { return nil, errors.New("x") }
func (c *closer) CloseIdleConnections()                           { c.closed = true }

func TestTransportForwardsCloseIdle(t *testing.T) {
	c := &closer{}
	tr := metrics.New().Transport("u", c)
	tr.(interface{ CloseIdleConnections() }).CloseIdleConnections()
	if !c.closed {
		t.Fatal("CloseIdleConnections not forwarded")
	}
}
