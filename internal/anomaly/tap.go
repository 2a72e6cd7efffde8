package anomaly

import (
	"context"
	"strings"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/metrics"
)

// Tap is an audit.Auditor that passes every event to Next and feeds the
// detector (and the token and refusal counters) what the event shows.
// Wrapping the auditor the features already report to lets the detector
// see every request without hooks in each. Give the Detector itself the
// unwrapped auditor.
type Tap struct {
	Next     audit.Auditor
	Detector *Detector
	Metrics  *metrics.Registry
}

// Record implements audit.Auditor: Next's answer is returned unchanged.
func (t Tap) Record(ctx context.Context, e audit.Event) error {
	err := t.Next.Record(ctx, e)
	t.observe(e)
	return err
}

// Enqueue implements audit.Enqueuer: it passes e on without waiting when Next
// can, and feeds the detector as Record does.
func (t Tap) Enqueue(ctx context.Context, e audit.Event) error {
	err := audit.Enqueue(ctx, t.Next, e)
	t.observe(e)
	return err
}

var _ audit.Enqueuer = Tap{}

func (t Tap) observe(e audit.Event) {
	if t.Detector != nil {
		for _, o := range Observations(e) {
			t.Detector.Observe(o)
		}
	}
	if t.Metrics != nil {
		count(t.Metrics, e)
	}
}

// count feeds the tokens-issued and refusals counters. Label values come
// from a closed set: grant types, OAuth error codes (the part of a token
// refusal's reason before the colon, when it looks like one), fixed words.
func count(m *metrics.Registry, e audit.Event) {
	switch e.Action {
	case audit.ActionTokenIssued:
		if e.Outcome == audit.Success {
			if e.UserID != "" {
				m.TokenIssued("authorization_code")
			} else {
				m.TokenIssued("client_credentials")
			}
		}
	case audit.ActionTokenRefreshed:
		if e.Outcome == audit.Success {
			m.TokenIssued("refresh_token")
		}
	case audit.ActionTokenRefused:
		code, _, _ := strings.Cut(e.Reason, ":")
		if !isCode(code) {
			code = "other"
		}
		m.Refused("token", code)
	case audit.ActionFHIRRequest:
		// An answered request (reason ending in its HTTP status) was
		// allowed; only the gateway's own refusals count here.
		if _, answered := audit.ResponseStatus(e.Reason); e.Outcome == audit.Failure && !answered {
			m.Refused("gateway", gatewayReason(e.Reason))
		}
	case audit.ActionLogin:
		if e.Outcome == audit.Failure {
			m.Refused("login", "failure")
		}
	case audit.ActionLockout:
		m.Refused("login", "lockout")
	case audit.ActionTokenLeaked:
		m.Refused("gateway", "token_in_url")
	}
}

// isCode reports whether s looks like an OAuth error code.
func isCode(s string) bool {
	if s == "" || len(s) > 40 {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && r != '_' {
			return false
		}
	}
	return true
}

// gatewayReason buckets a gateway refusal's free-text reason.
func gatewayReason(reason string) string {
	r := strings.ToLower(reason)
	switch {
	case strings.HasPrefix(r, "rate limit"):
		return "rate_limited"
	case strings.HasPrefix(r, "suspended"):
		return "suspended"
	case strings.Contains(r, "token"):
		return "invalid_token"
	case strings.Contains(r, "scope"):
		return "insufficient_scope"
	default:
		return "denied"
	}
}

// ownTokenRefusal reports a token request refused by the rate limiter or a
// suspension (not an authentication failure).
func ownTokenRefusal(reason string) bool {
	return strings.HasPrefix(reason, "slow_down:") || strings.HasPrefix(reason, "temporarily_unavailable: rate limit") ||
		strings.Contains(reason, "suspended pending review")
}

// ownRefusal reports a refusal by the rate limiter or a suspension, which
// must not count as an authentication failure.
func ownRefusal(reason string) bool {
	r := strings.ToLower(reason)
	return strings.HasPrefix(r, "rate limit") || strings.HasPrefix(r, "suspended")
}

// Observations maps an audit event to what the detector should see:
//   - a gateway request: a Request (a refusal counts as a 403, an
//     answered request as the status its reason ends in, and one answered
//     below 400 touches the event's patient);
//   - a refused or issued token: a Request at the token endpoint (refusals
//     count as 401s);
//   - a failed login: a 401 from the source address;
//   - a reused refresh token or authorization code, a replayed DPoP proof
//     or client assertion (a refusal whose reason says "replay"), and a
//     token seen in a URL: the matching event rule.
func Observations(e audit.Event) []Observation {
	base := Observation{Time: e.Time, ClientID: e.ClientID, UserID: e.UserID, IP: e.SourceIP}
	var out []Observation
	failed := e.Outcome == audit.Failure
	replay := failed && strings.Contains(strings.ToLower(e.Reason), "replay")
	switch e.Action {
	case audit.ActionFHIRRequest:
		if failed && ownRefusal(e.Reason) {
			return nil
		}
		o := base
		o.Kind, o.Status = Request, 200
		if status, answered := audit.ResponseStatus(e.Reason); answered {
			// Allowed and answered: the status the client got.
			o.Status = status
		} else if failed {
			o.Status = 403
		}
		if o.Status < 400 {
			o.Patient = e.Patient
		}
		out = append(out, o)
	case audit.ActionTokenIssued, audit.ActionTokenRefreshed, audit.ActionTokenRefused:
		if failed && ownTokenRefusal(e.Reason) {
			return nil
		}
		o := base
		o.Kind, o.Status = Request, 200
		if failed {
			o.Status = 401
		}
		out = append(out, o)
	case audit.ActionLogin:
		if failed {
			o := base
			o.Kind, o.Status, o.ClientID, o.UserID = Request, 401, "", ""
			out = append(out, o)
		}
	case audit.ActionRefreshReuse:
		o := base
		o.Kind = RefreshReuse
		out = append(out, o)
	case audit.ActionCodeReuse:
		o := base
		o.Kind, o.Detail = Replay, "an authorization code"
		out = append(out, o)
	case audit.ActionTokenLeaked:
		o := base
		o.Kind, o.Detail = TokenInURL, "a URL query or form body"
		out = append(out, o)
	}
	if replay {
		o := base
		o.Kind, o.Detail = Replay, "a DPoP proof or client assertion"
		out = append(out, o)
	}
	return out
}
