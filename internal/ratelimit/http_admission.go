package ratelimit

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/httpx"
	"github.com/fhirgate/fhirgate/internal/metrics"
	"github.com/fhirgate/fhirgate/internal/oauth"
)

// StatusFunc reports what the suspicious-activity detector has in force
// against a client, user or source address (anomaly.Detector.Check).
type StatusFunc func(clientID, userID, ip string) (suspended, throttled bool)

// Admission puts rate limits and suspensions in front of fhirgate's
// endpoints: a Middleware for the authorization server's endpoints and a
// Gateway check once the gateway has verified a token.
type Admission struct {
	// Guard enforces the budgets (nil: no rate limits).
	Guard *Guard
	// Status, when set, reports suspensions and throttles.
	Status StatusFunc
	// Metrics counts refusals (optional).
	Metrics *metrics.Registry
	// Auditor records the refusals Middleware answers itself (optional;
	// the gateway audits its own).
	Auditor audit.Auditor
	// Logger receives refusal causes.
	Logger *slog.Logger
	// Now is the clock of audit events; time.Now when nil.
	Now func() time.Time
}

// Audit actions of the refusals Middleware answers.
const (
	ActionRateLimited audit.Action = "ratelimit.refused"
	ActionSuspended   audit.Action = "access.suspended"
)

// Refusal reasons, also the rate-limited metric's dimension for suspensions.
const (
	ReasonRateLimited = "rate limited"
	ReasonSuspended   = "suspended pending review"
	ReasonUnavailable = "rate limiting unavailable"
)

func (a *Admission) check(ctx context.Context, e Endpoint, s Subject) (res Result, suspended bool, err error) {
	if a.Status != nil {
		suspended, throttled := a.Status(s.ClientID, s.UserID, s.IP)
		if suspended {
			return Result{}, true, nil
		}
		s.Throttled = throttled
	}
	if a.Guard == nil {
		return Result{Decision: Decision{Allowed: true}}, false, nil
	}
	res, err = a.Guard.Check(ctx, e, s)
	if !res.Allowed || err != nil {
		a.Metrics.RateLimited(string(e), string(res.Dimension))
	}
	return res, false, err
}

// Gateway is the gateway's admission hook: asked with the verified token's
// client and user, it returns nil to proceed, or a function that writes
// the refusal (429 with Retry-After, 403 for a suspension, 503 when the
// limiter failed closed; each an OperationOutcome) and the reason to audit.
func (a *Admission) Gateway(r *http.Request, clientID, userID string) (refuse func(http.ResponseWriter), reason string) {
	if a == nil {
		return nil, ""
	}
	res, suspended, err := a.check(r.Context(), EndpointGateway, Subject{IP: httpx.ClientIP(r), ClientID: clientID, UserID: userID})
	switch {
	case suspended:
		return func(w http.ResponseWriter) {
			writeOutcome(w, http.StatusForbidden, fhir.Outcome(fhir.SeverityError, "suspended",
				"Access by this application or user is suspended pending review"))
		}, ReasonSuspended
	case err != nil && !res.Allowed:
		a.log().ErrorContext(r.Context(), "gateway: rate limiter failed closed", "err", err)
		return func(w http.ResponseWriter) { WriteOutcomeRefusal(w, res, err) }, ReasonUnavailable
	case !res.Allowed && a.Guard != nil:
		return func(w http.ResponseWriter) { WriteOutcomeRefusal(w, res, nil) }, ReasonRateLimited + " (" + string(res.Dimension) + ")"
	}
	if err != nil {
		a.log().WarnContext(r.Context(), "gateway: rate limiter error", "err", err)
	}
	return nil, ""
}

// Middleware limits an authorization-server endpoint by source address and
// by the client_id the request names (refusing only suspended clients by
// it: an unauthenticated client_id never spends a client's budget).
// Refusals are OAuth errors: 429 slow_down with Retry-After,
// unauthorized_client for a suspended client, 503 when failing closed.
func (a *Admission) Middleware(e Endpoint) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if a == nil {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodOptions {
				next.ServeHTTP(w, r)
				return
			}
			ip := httpx.ClientIP(r)
			client := claimedClient(w, r)
			if a.Status != nil {
				if suspended, _ := a.Status(client, "", ip); suspended {
					a.refused(r, e, ActionSuspended, client, "suspended", string(oauth.UnauthorizedClient)+": client "+ReasonSuspended)
					httpx.WriteOAuthError(w, r, a.Logger, oauth.Errorf(oauth.UnauthorizedClient, "this client is suspended pending review"))
					return
				}
			}
			if a.Guard == nil {
				next.ServeHTTP(w, r)
				return
			}
			res, err := a.Guard.Check(r.Context(), e, Subject{IP: ip})
			if !res.Allowed {
				a.Metrics.RateLimited(string(e), string(res.Dimension))
				reason := string(oauth.SlowDown) + ": " + ReasonRateLimited + " (" + string(res.Dimension) + ")"
				if err != nil {
					reason = string(oauth.TemporarilyUnavailable) + ": " + ReasonUnavailable
				}
				a.refused(r, e, ActionRateLimited, client, "rate_limited", reason)
				WriteOAuthRefusal(w, r, a.Logger, res, err)
				return
			}
			if err != nil {
				a.log().WarnContext(r.Context(), "rate limiter error", "endpoint", string(e), "err", err)
			}
			SetHeaders(w, res)
			next.ServeHTTP(w, r)
		})
	}
}

// claimedClient is the client_id a request names (HTTP Basic user, or the
// form or query parameter), unauthenticated. The form is parsed with the
// same size limit the handlers use.
func claimedClient(w http.ResponseWriter, r *http.Request) string {
	if u, _, ok := r.BasicAuth(); ok {
		if id, err := url.QueryUnescape(u); err == nil {
			return id
		}
		return u
	}
	if r.Method == http.MethodPost {
		if err := httpx.ParseForm(w, r); err != nil {
			return ""
		}
		return r.PostForm.Get("client_id")
	}
	return r.URL.Query().Get("client_id")
}

// refused audits and counts a refusal the middleware answers. At the token
// endpoint it is a token.refused event like any other refused token request
// (its reason starts with the OAuth error code); elsewhere action.
func (a *Admission) refused(r *http.Request, e Endpoint, action audit.Action, clientID, metric, reason string) {
	if e == EndpointToken {
		a.audit(r, audit.ActionTokenRefused, clientID, reason) // counted from the audit event
		return
	}
	a.Metrics.Refused(string(e), metric)
	a.audit(r, action, clientID, string(e)+": "+reason)
}

func (a *Admission) audit(r *http.Request, action audit.Action, clientID, reason string) {
	if a.Auditor == nil {
		return
	}
	now := time.Now
	if a.Now != nil {
		now = a.Now
	}
	ev := audit.Event{Time: now(), Action: action, Outcome: audit.Failure, Reason: reason, ClientID: clientID,
		SourceIP: httpx.ClientIP(r), UserAgent: r.UserAgent()}
	if err := a.Auditor.Record(context.WithoutCancel(r.Context()), ev); err != nil {
		a.log().ErrorContext(r.Context(), "audit of a rate-limit refusal failed", "err", err)
	}
}

func (a *Admission) log() *slog.Logger {
	if a.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return a.Logger
}

func writeOutcome(w http.ResponseWriter, status int, o fhir.OperationOutcome) {
	body, _ := json.Marshal(o)
	h := w.Header()
	h.Set("Content-Type", "application/fhir+json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
