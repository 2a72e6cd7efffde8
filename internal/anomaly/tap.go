package anomaly

import (
	"context"
	"strings"

	"github.com/fhirgate/fhirgate/internal/audit"
)

// Audit actions of other features the tap understands (named here by value
// so the detector does not depend on the features).
const (
	auditFHIRRequest audit.Action = "fhir.request" // gateway.ActionFHIRRequest
	auditTokenLeaked audit.Action = "token.leaked" // gateway.ActionTokenLeaked
)

// Tap is an audit.Auditor that passes every event to Next and feeds the
// detector what the event shows. Wrapping the auditor the features already
// report to lets the detector see every request without hooks in each.
type Tap struct {
	Next     audit.Auditor
	Detector *Detector
}

// Record implements audit.Auditor: Next's answer is returned unchanged.
func (t Tap) Record(ctx context.Context, e audit.Event) error {
	err := t.Next.Record(ctx, e)
	if t.Detector != nil {
		for _, o := range Observations(e) {
			t.Detector.Observe(o)
		}
	}
	return err
}

// Observations maps an audit event to what the detector should see:
//   - a gateway request: a Request (a refusal counts as a 403, a
//     success touches the event's patient);
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
	case auditFHIRRequest:
		o := base
		o.Kind, o.Status = Request, 200
		if failed {
			o.Status = 403
		} else {
			o.Patient = e.Patient
		}
		out = append(out, o)
	case audit.ActionTokenIssued, audit.ActionTokenRefreshed, audit.ActionTokenRefused:
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
	case auditTokenLeaked:
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
