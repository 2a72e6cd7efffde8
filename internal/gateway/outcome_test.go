package gateway

import (
	"net/http"
	"testing"

	"github.com/fhirgate/fhirgate/internal/audit"
)

// outcomes returns the fhir.response events recorded so far.
func (f *fixture) outcomes() []audit.Event {
	var out []audit.Event
	for _, e := range f.audit.Events() {
		if e.Action == ActionFHIRResponse {
			out = append(out, e)
		}
	}
	return out
}

func TestOutcomeAudited(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	tok, claims := f.token(patientAll, patientA)
	if r := f.do("GET", "/Observation/obs-001-01", bearer(tok), ""); r.status != http.StatusOK {
		t.Fatalf("own read: %d", r.status)
	}
	got := f.outcomes()
	if len(got) != 1 || got[0].Outcome != audit.Success || got[0].Reason != "HTTP 200" ||
		got[0].TokenID != claims.JTI || got[0].Patient != patientA || got[0].ClientID != "app" {
		t.Fatalf("outcome events %+v", got)
	}
	// Another patient's observation: forwarded (and recorded as allowed
	// before forwarding), withheld on the way back; the outcome says 404.
	if r := f.do("GET", "/Observation/obs-002-01", bearer(tok), ""); r.status != http.StatusNotFound {
		t.Fatalf("foreign read: %d", r.status)
	}
	got = f.outcomes()
	if len(got) != 2 || got[1].Outcome != audit.Failure || got[1].Reason != "HTTP 404" {
		t.Fatalf("outcome events %+v", got)
	}
	// A refused request is audited once, as the refusal; nothing was forwarded.
	if r := f.do("GET", "/Patient", "", ""); r.status != http.StatusUnauthorized {
		t.Fatalf("no token: %d", r.status)
	}
	if len(f.outcomes()) != 2 {
		t.Fatal("a refused request got an outcome event")
	}
}

func TestSkipOutcomeAudit(t *testing.T) {
	f := newFixture(t, fixtureOpts{skipOutcome: true})
	tok, _ := f.token(patientAll, patientA)
	if r := f.do("GET", "/Observation/obs-001-01", bearer(tok), ""); r.status != http.StatusOK {
		t.Fatalf("own read: %d", r.status)
	}
	if len(f.outcomes()) != 0 || !f.audit.Has(ActionFHIRRequest, audit.Success) {
		t.Fatalf("events %+v", f.audit.Events())
	}
}
