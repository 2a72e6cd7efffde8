// Package metrics holds fhirgate's Prometheus collectors on a registry of
// its own (never the global default registry), the HTTP middleware that
// measures requests by route and outcome, and the /metrics handler served
// on the admin listener.
//
// Every label takes values from a small closed set (route patterns, grant
// types, refusal codes, rule names), never from request data, so a client
// cannot blow up the number of series.
package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Namespace prefixes every metric name.
const Namespace = "fhirgate"

// Registry owns fhirgate's collectors. A nil *Registry is valid and
// records nothing, so features can take one optionally.
type Registry struct {
	reg *prometheus.Registry

	requests        *prometheus.CounterVec
	requestDuration *prometheus.HistogramVec
	inFlight        prometheus.Gauge
	tokensIssued    *prometheus.CounterVec
	refusals        *prometheus.CounterVec
	rateLimited     *prometheus.CounterVec
	anomalies       *prometheus.CounterVec
	auditQueue      prometheus.Gauge
	auditCommit     prometheus.Histogram
	auditBatch      prometheus.Histogram
	upstreamLatency *prometheus.HistogramVec
	upstreamErrors  *prometheus.CounterVec
}

// New returns a Registry with every fhirgate collector and the Go runtime
// and process collectors registered.
func New() *Registry {
	r := &Registry{reg: prometheus.NewRegistry()}
	r.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "http_requests_total",
		Help: "HTTP requests by route pattern and outcome (status class).",
	}, []string{"route", "outcome"})
	r.requestDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "http_request_duration_seconds",
		Help:    "HTTP request latency by route pattern and outcome.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"route", "outcome"})
	r.inFlight = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "http_requests_in_flight",
		Help: "HTTP requests being served.",
	})
	r.tokensIssued = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "tokens_issued_total",
		Help: "Access tokens issued by grant type.",
	}, []string{"grant_type"})
	r.refusals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "refusals_total",
		Help: "Refused requests by component and reason (an OAuth error code or a gateway reason).",
	}, []string{"component", "reason"})
	r.rateLimited = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "rate_limited_total",
		Help: "Requests refused by a rate limit, by endpoint and the budget that ran out.",
	}, []string{"endpoint", "dimension"})
	r.anomalies = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "anomalies_total",
		Help: "Anomalies raised by the suspicious-activity detector, by rule and action.",
	}, []string{"rule", "action"})
	r.auditQueue = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "audit_queue_depth",
		Help: "Audit events waiting to be committed.",
	})
	r.auditCommit = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "audit_commit_duration_seconds",
		Help:    "Time to commit one batch of audit events durably.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
	})
	r.auditBatch = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "audit_commit_batch_size",
		Help:    "Audit events per durable commit.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 12),
	})
	r.upstreamLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "upstream_request_duration_seconds",
		Help:    "Latency of requests to upstream FHIR servers, by upstream and outcome.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	}, []string{"upstream", "outcome"})
	r.upstreamErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "upstream_errors_total",
		Help: "Upstream requests that failed (transport error or 5xx), by upstream and kind.",
	}, []string{"upstream", "kind"})

	r.reg.MustRegister(
		r.requests, r.requestDuration, r.inFlight, r.tokensIssued, r.refusals, r.rateLimited,
		r.anomalies, r.auditQueue, r.auditCommit, r.auditBatch, r.upstreamLatency, r.upstreamErrors,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return r
}

// Prometheus returns the underlying registry (to register more collectors
// or to gather in tests).
func (r *Registry) Prometheus() *prometheus.Registry {
	if r == nil {
		return nil
	}
	return r.reg
}

// Outcome maps an HTTP status to its class: "2xx", "3xx", "4xx", "5xx".
func Outcome(status int) string {
	if status < 100 || status > 599 {
		return "other"
	}
	return strconv.Itoa(status/100) + "xx"
}

// ObserveRequest records one served request.
func (r *Registry) ObserveRequest(route string, status int, d time.Duration) {
	if r == nil {
		return
	}
	o := Outcome(status)
	r.requests.WithLabelValues(route, o).Inc()
	r.requestDuration.WithLabelValues(route, o).Observe(d.Seconds())
}

// TokenIssued counts an access token issued with grantType.
func (r *Registry) TokenIssued(grantType string) {
	if r == nil {
		return
	}
	r.tokensIssued.WithLabelValues(grantType).Inc()
}

// Refused counts a refusal by component ("token", "authorize", "gateway",
// ...) and reason (an OAuth error code or a fixed gateway reason).
func (r *Registry) Refused(component, reason string) {
	if r == nil {
		return
	}
	r.refusals.WithLabelValues(component, reason).Inc()
}

// RateLimited counts a request refused by the budget of dimension at endpoint.
func (r *Registry) RateLimited(endpoint, dimension string) {
	if r == nil {
		return
	}
	r.rateLimited.WithLabelValues(endpoint, dimension).Inc()
}

// Anomaly counts an anomaly raised by rule with action.
func (r *Registry) Anomaly(rule, action string) {
	if r == nil {
		return
	}
	r.anomalies.WithLabelValues(rule, action).Inc()
}

// SetAuditQueueDepth reports the audit events waiting to be committed.
func (r *Registry) SetAuditQueueDepth(n int) {
	if r == nil {
		return
	}
	r.auditQueue.Set(float64(n))
}

// ObserveAuditCommit records one durable commit of batch events taking d.
func (r *Registry) ObserveAuditCommit(batch int, d time.Duration) {
	if r == nil {
		return
	}
	r.auditCommit.Observe(d.Seconds())
	r.auditBatch.Observe(float64(batch))
}

// ObserveUpstream records one upstream call: status is the response status,
// or 0 with errKind set ("timeout", "connect", "canceled", "other") when
// the call failed. A 5xx also counts as an error of kind "5xx".
func (r *Registry) ObserveUpstream(upstream string, status int, errKind string, d time.Duration) {
	if r == nil {
		return
	}
	outcome := Outcome(status)
	if errKind != "" {
		outcome = "error"
		r.upstreamErrors.WithLabelValues(upstream, errKind).Inc()
	} else if status >= 500 {
		r.upstreamErrors.WithLabelValues(upstream, "5xx").Inc()
	}
	r.upstreamLatency.WithLabelValues(upstream, outcome).Observe(d.Seconds())
}
