package gateway

import (
	"bytes"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/internal/audit"
)

func TestAnotherPatientsObservationIsNotFound(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	tok, _ := f.token(patientAll, patientA)
	own := f.do("GET", "/Observation/obs-001-01", bearer(tok), "")
	if own.status != 200 {
		t.Fatalf("own observation: %d %s", own.status, own.body)
	}
	if f.subjectOf("Observation", "obs-002-01") != "Patient/"+patientB {
		t.Fatal("fixture: obs-002-01 should belong to pt-002")
	}
	foreign := f.do("GET", "/Observation/obs-002-01", bearer(tok), "")
	missing := f.do("GET", "/Observation/does-not-exist", bearer(tok), "")
	if foreign.status != http.StatusNotFound || missing.status != http.StatusNotFound {
		t.Fatalf("foreign %d, missing %d", foreign.status, missing.status)
	}
	if !bytes.Equal(foreign.body, missing.body) || foreign.header.Get("Content-Type") != missing.header.Get("Content-Type") {
		t.Fatalf("foreign and missing differ:\n%s\n%s", foreign.body, missing.body)
	}
	if bytes.Contains(foreign.body, []byte(patientB)) {
		t.Fatal("foreign data leaked")
	}
	// HEAD must not reveal existence either.
	if h := f.do("HEAD", "/Observation/obs-002-01", bearer(tok), ""); h.status != http.StatusNotFound {
		t.Fatalf("HEAD foreign: %d", h.status)
	}
	// The other Patient resource itself, and a compartment search of it.
	if r := f.do("GET", "/Patient/"+patientB, bearer(tok), ""); r.status != http.StatusNotFound || !bytes.Equal(r.body, missing.body) {
		t.Fatalf("foreign Patient: %d %s", r.status, r.body)
	}
	if r := f.do("GET", "/Patient/"+patientB+"/Observation", bearer(tok), ""); r.status != http.StatusNotFound {
		t.Fatalf("foreign compartment search: %d", r.status)
	}
	var denied int
	for _, e := range f.audit.Events() {
		if e.Outcome == audit.Failure && (e.Action == ActionFHIRRequest || e.Action == ActionFHIRFiltered) && e.Reason != "" {
			denied++
		}
	}
	if denied < 3 {
		t.Fatalf("denials not audited with reasons (%d)", denied)
	}
}

func TestSearchGetsPatientParameter(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	tok, _ := f.token(patientAll, patientA)
	r := f.do("GET", "/Observation?code=8867-4", bearer(tok), "")
	if r.status != 200 {
		t.Fatalf("search: %d %s", r.status, r.body)
	}
	got := entries(t, r)
	if len(got) == 0 {
		t.Fatal("no own observations")
	}
	for _, e := range got {
		id := strings.TrimPrefix(e, "Observation/")
		if f.subjectOf("Observation", id) != "Patient/"+patientA {
			t.Fatalf("foreign entry %s", e)
		}
	}
	if q := f.spy.last().URL.Query(); q.Get("subject") != "Patient/"+patientA || q.Get("code") != "8867-4" {
		t.Fatalf("upstream query %v", q)
	}
	// A client asking for another patient gets nothing of theirs.
	r = f.do("GET", "/Observation?patient="+patientB, bearer(tok), "")
	if r.status != 200 || len(entries(t, r)) != 0 {
		t.Fatalf("search for other patient: %d %v", r.status, entries(t, r))
	}
	// POST _search: the constraint goes into the form body.
	r = f.do("POST", "/Observation/_search", bearer(tok), "code=8867-4", "Content-Type", "application/x-www-form-urlencoded")
	if r.status != 200 || len(entries(t, r)) == 0 {
		t.Fatalf("POST _search: %d %s", r.status, r.body)
	}
	// Fullurls and links point at the public base, never the upstream.
	if bytes.Contains(r.body, []byte(f.ehrSrv.URL)) || !bytes.Contains(r.body, []byte(baseURL+"/Observation/")) {
		t.Fatalf("upstream URL leaked or public URL missing: %s", r.body[:min(400, len(r.body))])
	}
}

// lenientEHR ignores the patient parameters, like a careless legacy API.
func TestUpstreamIgnoringPatientParamIsFiltered(t *testing.T) {
	var f *fixture
	f = newFixture(t, fixtureOpts{upstream: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		q.Del("subject")
		r.URL.RawQuery = q.Encode()
		f.ehr.ServeHTTP(w, r)
	})})
	tok, _ := f.token(patientAll, patientA)
	r := f.do("GET", "/Observation?code=8867-4&_count=100", bearer(tok), "")
	got := entries(t, r)
	if len(got) != 2 {
		t.Fatalf("want 2 own heart rates, got %v", got)
	}
	if strings.Contains(string(r.body), `"total"`) {
		t.Fatal("total of the unfiltered result still shown")
	}
	if !f.audit.Has(ActionFHIRFiltered, audit.Failure) {
		t.Fatal("removal not audited")
	}
	for _, e := range f.audit.Events() {
		if e.Action == ActionFHIRFiltered {
			if e.EntriesFiltered == 0 || !strings.HasPrefix(e.Reason, fmt.Sprintf("removed %d Bundle entries", e.EntriesFiltered)) {
				t.Fatalf("EntriesFiltered %d, reason %q", e.EntriesFiltered, e.Reason)
			}
		}
	}
}

func TestIncludeDraggingAnotherPatientIsFiltered(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	// A panel of patient A mistakenly linking an observation of patient B.
	panel := fmt.Sprintf(`{"resourceType":"Observation","id":"panel-a","status":"final","code":{"text":"panel"},
		"subject":{"reference":"Patient/%s"},"hasMember":[{"reference":"Observation/obs-001-01"},{"reference":"Observation/obs-002-01"}]}`, patientA)
	if _, err := f.ehr.Store().Put([]byte(panel)); err != nil {
		t.Fatal(err)
	}
	tok, _ := f.token(patientAll, patientA)
	r := f.do("GET", "/Observation?_id=panel-a&_include=Observation:has-member&_include=Observation:performer", bearer(tok), "")
	got := entries(t, r)
	if !slices.Contains(got, "Observation/panel-a") || !slices.Contains(got, "Observation/obs-001-01") {
		t.Fatalf("own entries missing: %v", got)
	}
	if slices.Contains(got, "Observation/obs-002-01") || bytes.Contains(r.body, []byte(`"Patient/`+patientB)) {
		t.Fatalf("another patient's observation leaked through _include: %v", got)
	}
	// The Practitioner is outside the patient compartment: patient/ scopes do not reach it.
	for _, e := range got {
		if strings.HasPrefix(e, "Practitioner/") {
			t.Fatalf("practitioner leaked to patient/ token: %v", got)
		}
	}
	var filtered bool
	for _, e := range f.audit.Events() {
		if e.Action == ActionFHIRFiltered && strings.Contains(e.Reason, "Observation/obs-002-01") && e.Patient == patientA && e.EntriesFiltered >= 1 {
			filtered = true
		}
	}
	if !filtered {
		t.Fatalf("removal not audited: %+v", f.audit.Events())
	}
	// _revinclude on Patient: only own resources.
	r = f.do("GET", "/Patient?_revinclude=Immunization:patient", bearer(tok), "")
	for _, e := range entries(t, r) {
		if e != "Patient/"+patientA && !strings.HasPrefix(e, "Immunization/imm-001-") {
			t.Fatalf("revinclude leaked %s", e)
		}
	}
}

func TestTransactionWithForeignEntryDenied(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	tok, _ := f.token("patient/*.cruds", patientA)
	before := f.spy.count()
	bundle := `{"resourceType":"Bundle","type":"transaction","entry":[
		{"request":{"method":"GET","url":"Observation/obs-001-01"}},
		{"request":{"method":"GET","url":"Patient/` + patientB + `"}}]}`
	r := f.do("POST", "", bearer(tok), bundle)
	if r.status != http.StatusForbidden || !strings.Contains(outcomeText(r), "Bundle.entry[1]") {
		t.Fatalf("foreign read entry: %d %s", r.status, r.body)
	}
	obs := func(p string) string {
		return `{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/` + p + `"}}`
	}
	bundle = `{"resourceType":"Bundle","type":"transaction","entry":[
		{"request":{"method":"POST","url":"Observation"},"resource":` + obs(patientA) + `},
		{"request":{"method":"POST","url":"Observation"},"resource":` + obs(patientB) + `}]}`
	r = f.do("POST", "", bearer(tok), bundle)
	if r.status != http.StatusForbidden || !strings.Contains(outcomeText(r), "Bundle.entry[1]") {
		t.Fatalf("foreign write entry: %d %s", r.status, r.body)
	}
	if f.spy.count() != before {
		t.Fatal("denied Bundle reached the upstream")
	}
	// Scope missing for one entry: 403 naming the entry and the scope.
	tok2, _ := f.token("patient/Observation.rs", patientA)
	bundle = `{"resourceType":"Bundle","type":"batch","entry":[
		{"request":{"method":"GET","url":"Observation/obs-001-01"}},
		{"request":{"method":"GET","url":"Condition?code=x"}}]}`
	r = f.do("POST", "", bearer(tok2), bundle)
	if r.status != http.StatusForbidden || !strings.Contains(outcomeText(r), "Bundle.entry[1]") || !strings.Contains(outcomeText(r), "Condition") {
		t.Fatalf("entry without scope: %d %s", r.status, r.body)
	}
}

func TestGranularCategoryConstraint(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	tok, _ := f.token("patient/Observation.rs?category=laboratory", patientA)
	r := f.do("GET", "/Observation", bearer(tok), "")
	got := entries(t, r)
	if len(got) != 3 {
		t.Fatalf("want the 3 labs, got %v", got)
	}
	if q := f.spy.last().URL.Query(); q.Get("category") != "laboratory" || q.Get("subject") != "Patient/"+patientA {
		t.Fatalf("upstream query %v", q)
	}
	// A vital sign by id is hidden like a missing resource; a lab is shown.
	if r := f.do("GET", "/Observation/obs-001-01", bearer(tok), ""); r.status != http.StatusNotFound {
		t.Fatalf("vital sign under lab-only scope: %d", r.status)
	}
	if r := f.do("GET", "/Observation/obs-001-09", bearer(tok), ""); r.status != http.StatusOK {
		t.Fatalf("own lab: %d %s", r.status, r.body)
	}
	// Asking for vital signs yields nothing.
	if r := f.do("GET", "/Observation?category=vital-signs", bearer(tok), ""); len(entries(t, r)) != 0 {
		t.Fatalf("vital signs returned: %v", entries(t, r))
	}
	// No scope for Condition: 403 naming the missing scope.
	r = f.do("GET", "/Condition", bearer(tok), "")
	if r.status != http.StatusForbidden || !strings.Contains(r.header.Get("WWW-Authenticate"), `error="insufficient_scope"`) ||
		!strings.Contains(outcomeText(r), "Condition") {
		t.Fatalf("missing scope: %d %v %s", r.status, r.header, r.body)
	}
}

func TestWritesOutsideCompartmentRefused(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	tok, _ := f.token("patient/Observation.cruds", patientA)
	obs := func(id, p string) string {
		idPart := ""
		if id != "" {
			idPart = `"id":"` + id + `",`
		}
		return `{"resourceType":"Observation",` + idPart + `"status":"final","code":{"text":"x"},"subject":{"reference":"Patient/` + p + `"}}`
	}
	before := f.spy.count()
	if r := f.do("POST", "/Observation", bearer(tok), obs("", patientB)); r.status != http.StatusForbidden {
		t.Fatalf("create for other patient: %d %s", r.status, r.body)
	}
	if f.spy.count() != before {
		t.Fatal("refused create reached upstream")
	}
	if r := f.do("POST", "/Observation", bearer(tok), obs("", patientA)); r.status != http.StatusCreated {
		t.Fatalf("own create: %d %s", r.status, r.body)
	} else if loc := r.header.Get("Location"); !strings.HasPrefix(loc, baseURL+"/Observation/") {
		t.Fatalf("Location %q not rewritten", loc)
	}
	// Moving one's own observation to another patient.
	if r := f.do("PUT", "/Observation/obs-001-01", bearer(tok), obs("obs-001-01", patientB)); r.status != http.StatusForbidden {
		t.Fatalf("update moving out: %d", r.status)
	}
	// Taking over another patient's observation (body says mine, record is theirs).
	if r := f.do("PUT", "/Observation/obs-002-01", bearer(tok), obs("obs-002-01", patientA)); r.status != http.StatusNotFound {
		t.Fatalf("update of foreign: %d %s", r.status, r.body)
	}
	if f.subjectOf("Observation", "obs-002-01") != "Patient/"+patientB {
		t.Fatal("foreign observation was overwritten")
	}
	if r := f.do("PUT", "/Observation/obs-001-01", bearer(tok), obs("obs-001-01", patientA)); r.status != http.StatusOK {
		t.Fatalf("own update: %d %s", r.status, r.body)
	}
	// Body id differing from the URL.
	if r := f.do("PUT", "/Observation/obs-001-01", bearer(tok), obs("obs-001-02", patientA)); r.status != http.StatusBadRequest {
		t.Fatalf("id mismatch: %d", r.status)
	}
	// Patch is refused under a patient constraint.
	if r := f.do("PATCH", "/Observation/obs-001-01", bearer(tok), `[]`, "Content-Type", "application/json-patch+json"); r.status != http.StatusForbidden {
		t.Fatalf("patch: %d", r.status)
	}
	// Granular write scope: only matching resources may be written.
	tok2, _ := f.token("patient/Observation.c?category=survey", patientA)
	if r := f.do("POST", "/Observation", bearer(tok2), obs("", patientA)); r.status != http.StatusForbidden {
		t.Fatalf("write outside granular query: %d", r.status)
	}
}

func TestUserScopesStreamAnyPatient(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	tok, _ := f.token("user/*.rs", "")
	r := f.do("GET", "/Observation/obs-002-01", bearer(tok), "")
	if r.status != 200 {
		t.Fatalf("user scope read: %d", r.status)
	}
	var ev audit.Event
	for _, e := range f.audit.Events() {
		if e.Action == ActionFHIRRequest && e.Outcome == audit.Success {
			ev = e
		}
	}
	if ev.Reason != "read Observation/obs-002-01" {
		t.Fatalf("audit %+v", ev)
	}
	r = f.do("GET", "/Patient/"+patientB, bearer(tok), "")
	if r.status != 200 {
		t.Fatalf("user scope patient read: %d", r.status)
	}
	if evs := f.audit.Events(); evs[len(evs)-1].Patient != patientB {
		t.Fatalf("patient not audited: %+v", evs[len(evs)-1])
	}
	// _include with user scopes: types the scopes do not cover are removed.
	tok2, _ := f.token("user/Observation.rs", "")
	r = f.do("GET", "/Observation?subject=Patient/"+patientB+"&_include=Observation:patient&_include=Observation:performer", bearer(tok2), "")
	for _, e := range entries(t, r) {
		if !strings.HasPrefix(e, "Observation/") {
			t.Fatalf("%s returned without a scope for it", e)
		}
	}
}
