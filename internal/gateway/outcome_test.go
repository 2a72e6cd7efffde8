package gateway

import (
	"net/http"
	"strings"
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

// With user/ scopes the outcome is audited per patient the answer discloses.
func TestOutcomeAuditedPerPatient(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	tok, _ := f.token("user/*.rs", "")
	if r := f.do("GET", "/Observation/obs-002-01", bearer(tok), ""); r.status != http.StatusOK {
		t.Fatalf("user read: %d", r.status)
	}
	got := f.outcomes()
	if len(got) != 1 || got[0].Patient != patientB || got[0].Reason != "HTTP 200" {
		t.Fatalf("outcome events %+v", got)
	}
	// A search over several patients: one event per patient in the answer.
	r := f.do("GET", "/Observation?code=8867-4&_count=100", bearer(tok), "")
	if r.status != http.StatusOK {
		t.Fatalf("user search: %d", r.status)
	}
	want := map[string]bool{}
	for _, e := range entries(t, r) {
		want[strings.TrimPrefix(f.subjectOf("Observation", strings.TrimPrefix(e, "Observation/")), "Patient/")] = true
	}
	got = f.outcomes()[1:]
	seen := map[string]bool{}
	for _, e := range got {
		seen[e.Patient] = true
	}
	if len(want) < 2 || len(seen) != len(want) || len(got) != len(want) {
		t.Fatalf("patients in the answer %v, audited %v", want, seen)
	}
	for p := range want {
		if !seen[p] {
			t.Fatalf("patient %s not audited", p)
		}
	}
	// A patient-context token is audited once, under its patient.
	tok2, _ := f.token(patientAll, patientA)
	f.do("GET", "/Observation?code=8867-4", bearer(tok2), "")
	last := f.outcomes()[len(f.outcomes())-1]
	if last.Patient != patientA || len(f.outcomes()) != 1+len(got)+1 {
		t.Fatalf("patient token outcome %+v", last)
	}
}

// Gateway events say what was accessed, and how the token was bound.
func TestEventsNameTheInteraction(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	tok, _ := f.token(patientAll, patientA)
	f.do("GET", "/Observation/obs-001-01", bearer(tok), "")
	for _, e := range f.audit.Events() {
		if e.Action != ActionFHIRRequest && e.Action != ActionFHIRResponse {
			continue
		}
		if e.Interaction != "read" || e.ResourceType != "Observation" || e.ResourceID != "obs-001-01" || e.Binding != audit.BindingNone {
			t.Fatalf("event %+v", e)
		}
	}
}
