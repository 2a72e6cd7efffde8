package ratelimit

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/httpx"
	"github.com/fhirgate/fhirgate/internal/oauth"
)

// SetHeaders sets Retry-After on a refusal and the RateLimit-Limit and
// RateLimit-Remaining informational headers when a budget applied.
func SetHeaders(w http.ResponseWriter, res Result) {
	h := w.Header()
	if res.Limit > 0 {
		h.Set("RateLimit-Limit", strconv.Itoa(res.Limit))
		h.Set("RateLimit-Remaining", strconv.Itoa(max(res.Remaining, 0)))
	}
	if !res.Allowed {
		h.Set("Retry-After", strconv.Itoa(res.RetryAfterSeconds()))
	}
}

// WriteOAuthRefusal answers a refused request at an OAuth endpoint: 429
// with Retry-After and {"error":"slow_down"} when a budget is spent, or 503
// temporarily_unavailable when the limiter backend failed closed.
func WriteOAuthRefusal(w http.ResponseWriter, r *http.Request, logger *slog.Logger, res Result, err error) {
	SetHeaders(w, res)
	if errors.Is(err, ErrUnavailable) {
		httpx.WriteOAuthError(w, r, logger, oauth.Wrap(oauth.TemporarilyUnavailable, "rate limiting is unavailable; retry later", err))
		return
	}
	httpx.WriteOAuthError(w, r, logger, oauth.Errorf(oauth.SlowDown, "too many requests; retry after %d seconds", res.RetryAfterSeconds()))
}

// WriteOutcomeRefusal answers a refused FHIR request: 429 with Retry-After
// and an OperationOutcome (issue code "throttled"), or 503 ("transient")
// when the limiter backend failed closed.
func WriteOutcomeRefusal(w http.ResponseWriter, res Result, err error) {
	SetHeaders(w, res)
	status, o := http.StatusTooManyRequests,
		fhir.Outcome(fhir.SeverityError, fhir.CodeThrottled, "Too many requests; retry after "+strconv.Itoa(res.RetryAfterSeconds())+" seconds")
	if errors.Is(err, ErrUnavailable) {
		status, o = http.StatusServiceUnavailable, fhir.Outcome(fhir.SeverityError, fhir.CodeTransient, "Rate limiting is unavailable; retry later")
	}
	body, _ := json.Marshal(o)
	h := w.Header()
	h.Set("Content-Type", "application/fhir+json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
