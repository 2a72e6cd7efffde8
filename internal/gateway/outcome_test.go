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

// gatewayEvents returns the fhir.request and fhir.response events so far.
func (f *fixture) gatewayEvents() []audit.Event {
	var out []audit.Event
	for _, e := range f.audit.Events() {
		if e.Action == ActionFHIRRequest || e.Action == ActionFHIRResponse {
			out = append(out, e)
		}
	}
	return out
}

// A read about the token's patient is audited once, with the status its
// client got; a write is audited before it is forwarded and again with its
// outcome.
func TestOutcomeAudited(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	tok, claims := f.token("patient/*.cruds", patientA)
	if r := f.do("GET", "/Observation/obs-001-01", bearer(tok), ""); r.status != http.StatusOK {
		t.Fatalf("own read: %d", r.status)
	}
	got := f.gatewayEvents()
	if len(got) != 1 || got[0].Action != ActionFHIRRequest || got[0].Outcome != audit.Success ||
		got[0].Reason != "read Observation/obs-001-01; HTTP 200" ||
		got[0].TokenID != claims.JTI || got[0].Patient != patientA || got[0].ClientID != "app" {
		t.Fatalf("read events %+v", got)
	}
	// Another patient's observation: forwarded, withheld on the way back
	// (fhir.filtered), and the one request event says 404.
	if r := f.do("GET", "/Observation/obs-002-01", bearer(tok), ""); r.status != http.StatusNotFound {
		t.Fatalf("foreign read: %d", r.status)
	}
	got = f.gatewayEvents()
	if len(got) != 2 || got[1].Outcome != audit.Failure || got[1].Reason != "read Observation/obs-002-01; HTTP 404" ||
		!f.audit.Has(ActionFHIRFiltered, audit.Failure) {
		t.Fatalf("foreign read events %+v", got)
	}
	// A write: write-ahead fhir.request (no status), then fhir.response.
	obs := `{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/` + patientA + `"}}`
	if r := f.do("POST", "/Observation", bearer(tok), obs, "Content-Type", "application/fhir+json"); r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	got = f.gatewayEvents()[2:]
	if len(got) != 2 || got[0].Action != ActionFHIRRequest || got[0].Reason != "create Observation" ||
		got[1].Action != ActionFHIRResponse || got[1].Reason != "HTTP 201" || got[1].Outcome != audit.Success {
		t.Fatalf("write events %+v", got)
	}
	// A refused request is audited once, as the refusal; nothing was forwarded.
	if r := f.do("GET", "/Patient", "", ""); r.status != http.StatusUnauthorized {
		t.Fatalf("no token: %d", r.status)
	}
	if got := f.gatewayEvents(); len(got) != 5 || got[4].Outcome != audit.Failure || got[4].Reason == "" {
		t.Fatalf("refusal events %+v", got[4:])
	}
	if _, ok := audit.ResponseStatus(f.gatewayEvents()[4].Reason); ok {
		t.Fatal("a refusal was recorded as an answered request")
	}
}

// An upstream failure on a read audited at its answer still leaves its one
// event, with the status the client got.
func TestUnansweredReadAudited(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	tok, _ := f.token(patientAll, patientA)
	f.ehrSrv.Close()
	if r := f.do("GET", "/Observation/obs-001-01", bearer(tok), ""); r.status != http.StatusBadGateway {
		t.Fatalf("upstream down: %d", r.status)
	}
	got := f.gatewayEvents()
	if len(got) != 1 || got[0].Reason != "read Observation/obs-001-01; HTTP 502" || got[0].Outcome != audit.Failure {
		t.Fatalf("events %+v", got)
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
	// Reads are still audited once, at their answer.
	if got := f.gatewayEvents(); len(got) != 1 || got[0].Reason != "read Observation/obs-001-01; HTTP 200" {
		t.Fatalf("events %+v", got)
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
	// A patient-context token is audited once, under its patient, by its
	// request event.
	tok2, _ := f.token(patientAll, patientA)
	n := len(f.outcomes())
	f.do("GET", "/Observation?code=8867-4", bearer(tok2), "")
	all := f.gatewayEvents()
	last := all[len(all)-1]
	if last.Patient != patientA || last.Action != ActionFHIRRequest || len(f.outcomes()) != n ||
		!strings.HasSuffix(last.Reason, "; HTTP 200") {
		t.Fatalf("patient token event %+v", last)
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
