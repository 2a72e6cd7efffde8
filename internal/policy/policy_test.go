package policy

import (
	"net/url"
	"slices"
	"testing"

	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/scope"
)

func principal(scopes, patient string) Principal {
	return Principal{Scopes: scope.MustParseSet(scopes), Patient: patient, ClientID: "app", Subject: "u1"}
}

func req(t testing.TB, method, path, rawQuery string) fhir.Request {
	t.Helper()
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		t.Fatal(err)
	}
	r, err := fhir.Classify(method, path, q)
	if err != nil {
		t.Fatalf("Classify(%s %s): %v", method, path, err)
	}
	return r
}

// outcome is what a test expects of a Decision.
type outcome struct {
	allow    bool
	notFound bool
	patient  string   // Constraints.Patient
	params   []string // Constraints.PatientParams
	queries  int      // len(Constraints.Queries)
	missing  string   // MissingScope
	ctx      scope.Context
}

var (
	allowUser   = outcome{allow: true, ctx: scope.User}
	allowSystem = outcome{allow: true, ctx: scope.System}
	allowPublic = outcome{allow: true}
	allowPat    = outcome{allow: true, patient: "123", ctx: scope.Patient}
	notFound    = outcome{notFound: true}
	denied      = outcome{}
)

func withParams(o outcome, p ...string) outcome { o.params = p; return o }
func missingScope(s string) outcome             { return outcome{missing: s} }

func TestDecide(t *testing.T) {
	const (
		patV1   = "launch/patient patient/Observation.read patient/Patient.read patient/Encounter.write"
		patV2   = "patient/Observation.rs patient/Patient.rs patient/Encounter.cud patient/Condition.cruds patient/Practitioner.rs"
		patAll  = "patient/*.cruds"
		userAll = "user/*.cruds"
		userV1  = "user/Observation.read user/Patient.*"
		sysAll  = "system/*.rs"
		sysObs  = "system/Observation.rs system/Condition.rs"
		granPat = "patient/Observation.rs?category=laboratory patient/Observation.rs?category=vital-signs"
		granUsr = "user/Observation.rs?category=laboratory"
		none    = "openid fhirUser"
	)
	tests := []struct {
		name, scopes, patient string
		method, path, query   string
		want                  outcome
	}{
		// capabilities: public for everyone.
		{"metadata none", none, "", "GET", "metadata", "", allowPublic},
		{"metadata no scopes", "", "", "GET", "metadata", "", allowPublic},

		// read / vread / history-instance.
		{"read obs patient v1", patV1, "123", "GET", "Observation/o1", "", allowPat},
		{"read obs patient v2", patV2, "123", "GET", "Observation/o1", "", allowPat},
		{"read obs patient no patient ctx", patV2, "", "GET", "Observation/o1", "", denied},
		{"read obs patient bad patient id", patV2, "../x", "GET", "Observation/o1", "", denied},
		{"read obs user", userV1, "", "GET", "Observation/o1", "", allowUser},
		{"read obs system", sysObs, "", "GET", "Observation/o1", "", allowSystem},
		{"read obs none", none, "123", "GET", "Observation/o1", "", missingScope("patient/Observation.r")},
		{"read condition patient v1 missing", patV1, "123", "GET", "Condition/c1", "", missingScope("patient/Condition.read")},
		{"read condition system wrong type", sysObs, "", "GET", "Patient/1", "", missingScope("system/Patient.r")},
		{"read own patient", patV2, "123", "GET", "Patient/123", "", allowPat},
		{"read other patient", patV2, "123", "GET", "Patient/456", "", notFound},
		{"read other patient v1", patV1, "123", "GET", "Patient/456", "", notFound},
		{"read other patient user", userV1, "123", "GET", "Patient/456", "", allowUser},
		{"vread obs patient", patV2, "123", "GET", "Observation/o1/_history/2", "", allowPat},
		{"vread other patient", patV2, "123", "GET", "Patient/456/_history/1", "", notFound},
		{"history instance own", patV2, "123", "GET", "Patient/123/_history", "", allowPat},
		{"history instance obs", patAll, "123", "GET", "Observation/o1/_history", "", allowPat},
		{"read practitioner patient scope", patV2, "123", "GET", "Practitioner/p1", "", denied},
		{"read practitioner user", userAll, "", "GET", "Practitioner/p1", "", allowUser},
		{"read only, no search", "patient/Observation.r", "123", "GET", "Observation", "", missingScope("patient/Observation.s")},

		// search-type.
		{"search obs patient v1", patV1, "123", "GET", "Observation", "code=x", withParams(allowPat, "subject", "performer")},
		{"search obs patient v2 post", patV2, "123", "POST", "Observation/_search", "", withParams(allowPat, "subject", "performer")},
		{"search patient patient", patV2, "123", "GET", "Patient", "name=x", withParams(allowPat, "_id")},
		{"search obs user", userAll, "", "GET", "Observation", "", allowUser},
		{"search obs system", sysAll, "", "GET", "Observation", "", allowSystem},
		{"search obs none", none, "", "GET", "Observation", "", missingScope("user/Observation.s")},
		{"search practitioner patient", patAll, "123", "GET", "Practitioner", "", denied},
		{"search obs s only", "patient/Observation.s", "123", "GET", "Observation", "", withParams(allowPat, "subject", "performer")},

		// search-compartment.
		{"compartment own", patV2, "123", "GET", "Patient/123/Observation", "", allowPat},
		{"compartment other", patV2, "123", "GET", "Patient/456/Observation", "", notFound},
		{"compartment user", userAll, "", "GET", "Patient/456/Observation", "", allowUser},
		{"compartment no search scope", "patient/Observation.r", "123", "GET", "Patient/123/Observation", "", missingScope("patient/Observation.s")},

		// search-system and history-system: wildcard user/system only.
		{"search system user", userAll, "", "GET", "", "_type=Observation", allowUser},
		{"search system system", sysAll, "", "POST", "_search", "", allowSystem},
		{"search system patient wildcard", patAll, "123", "GET", "", "", missingScope("user/*.s")},
		{"search system typed user", userV1, "", "GET", "", "", missingScope("user/*.read")},
		{"history system system", sysAll, "", "GET", "_history", "", allowSystem},
		{"history system none", none, "", "GET", "_history", "", missingScope("user/*.s")},

		// history-type.
		{"history type user", userAll, "", "GET", "Observation/_history", "", allowUser},
		{"history type patient", patAll, "123", "GET", "Observation/_history", "", denied},
		{"history type patient Patient", patAll, "123", "GET", "Patient/_history", "", denied},

		// create.
		{"create obs patient", patAll, "123", "POST", "Observation", "", allowPat},
		{"create encounter patient v1 write", patV1, "123", "POST", "Encounter", "", allowPat},
		{"create obs patient v1 read only", patV1, "123", "POST", "Observation", "", missingScope("patient/Observation.write")},
		{"create obs patient v2 rs", patV2, "123", "POST", "Observation", "", missingScope("patient/Observation.c")},
		{"create patient patient", patAll, "123", "POST", "Patient", "", denied},
		{"create obs user", userAll, "", "POST", "Observation", "", allowUser},
		{"create obs system rs", sysAll, "", "POST", "Observation", "", missingScope("system/Observation.c")},

		// update / patch / delete.
		{"update obs patient", patAll, "123", "PUT", "Observation/o1", "", allowPat},
		{"update own patient", patAll, "123", "PUT", "Patient/123", "", allowPat},
		{"update other patient", patAll, "123", "PUT", "Patient/456", "", notFound},
		{"update obs read-only", patV2, "123", "PUT", "Observation/o1", "", missingScope("patient/Observation.u")},
		{"patch obs patient", patAll, "123", "PATCH", "Observation/o1", "", denied},
		{"patch own patient", patAll, "123", "PATCH", "Patient/123", "", allowPat},
		{"patch obs user", userAll, "", "PATCH", "Observation/o1", "", allowUser},
		{"delete encounter patient v1", patV1, "123", "DELETE", "Encounter/e1", "", allowPat},
		{"delete other patient", patAll, "123", "DELETE", "Patient/456", "", notFound},
		{"delete obs no d", "patient/Observation.cru", "123", "DELETE", "Observation/o1", "", missingScope("patient/Observation.d")},
		{"delete obs user", userAll, "", "DELETE", "Observation/o1", "", allowUser},

		// granular scopes.
		{"granular patient search", granPat, "123", "GET", "Observation", "", outcome{allow: true, patient: "123", ctx: scope.Patient, params: []string{"subject", "performer"}, queries: 2}},
		{"granular patient read", granPat, "123", "GET", "Observation/o1", "", outcome{allow: true, patient: "123", ctx: scope.Patient, queries: 2}},
		{"granular patient other compartment", granPat, "123", "GET", "Patient/456/Observation", "", notFound},
		{"granular patient no patient", granPat, "", "GET", "Observation", "", denied},
		{"granular user search", granUsr, "", "GET", "Observation", "", outcome{allow: true, ctx: scope.User, queries: 1}},
		{"granular user wrong type", granUsr, "", "GET", "Condition", "", missingScope("user/Condition.s")},
		{"granular user create", granUsr, "", "POST", "Observation", "", missingScope("user/Observation.c")},
		{"granular not for system search", "user/*.rs?category=laboratory", "", "GET", "", "", missingScope("user/*.s")},
		{"unconditional beats granular", granPat + " user/Observation.rs", "123", "GET", "Observation", "", allowUser},

		// operations.
		{"everything own patient", patAll, "123", "GET", "Patient/123/$everything", "", allowPat},
		{"everything other patient", patAll, "123", "GET", "Patient/456/$everything", "", notFound},
		{"everything typed scopes", patV2, "123", "GET", "Patient/123/$everything", "", missingScope("patient/*.rs")},
		{"everything user", "user/*.rs", "", "GET", "Patient/456/$everything", "", allowUser},
		{"everything type level patient", patAll, "123", "GET", "Patient/$everything", "", denied},
		{"everything type level system", sysAll, "", "GET", "Patient/$everything", "", allowSystem},
		{"export system", sysAll, "", "GET", "$export", "", allowSystem},
		{"export group system", sysAll, "", "GET", "Group/g1/$export", "", allowSystem},
		{"export patient type user", userAll, "", "GET", "Patient/$export", "", allowUser},
		{"export typed system", sysObs, "", "GET", "$export", "_type=Observation,Condition", allowSystem},
		{"export typed system missing type", sysObs, "", "GET", "$export", "_type=Observation,Patient", missingScope("system/*.rs")},
		{"export typed no type param", sysObs, "", "GET", "$export", "", missingScope("system/*.rs")},
		{"export unknown type", sysAll, "", "GET", "$export", "_type=Foo", denied},
		{"export patient wildcard", patAll, "123", "GET", "$export", "", missingScope("user/*.rs")},
		{"export patient level patient scope", patAll, "123", "GET", "Patient/$export", "", missingScope("user/*.rs")},
		{"validate type patient", patAll, "123", "POST", "Observation/$validate", "", allowPat},
		{"validate type read-only", patV2, "123", "POST", "Observation/$validate", "", missingScope("patient/Observation.c")},
		{"validate instance user", userAll, "", "POST", "Observation/o1/$validate", "", allowUser},
		{"meta instance patient", patV2, "123", "GET", "Observation/o1/$meta", "", allowPat},
		{"meta type patient", patAll, "123", "GET", "Observation/$meta", "", denied},
		{"meta type user", userAll, "", "GET", "Observation/$meta", "", allowUser},
		{"meta system user", userAll, "", "GET", "$meta", "", allowUser},
		{"meta system patient", patAll, "123", "GET", "$meta", "", missingScope("user/*.s")},
		{"lastn patient", patV2, "123", "GET", "Observation/$lastn", "", withParams(allowPat, "subject", "performer")},
		{"lastn none", none, "", "GET", "Observation/$lastn", "", missingScope("user/Observation.s")},
		{"docref patient", "patient/DocumentReference.rs", "123", "GET", "DocumentReference/$docref", "", withParams(allowPat, "patient")},
		{"expand user", "user/ValueSet.r", "", "GET", "ValueSet/$expand", "", allowUser},
		{"expand patient", "patient/ValueSet.r", "123", "GET", "ValueSet/$expand", "", denied},
		{"lookup none", none, "", "GET", "CodeSystem/$lookup", "", missingScope("user/CodeSystem.r")},
		{"translate system", "system/ConceptMap.r", "", "GET", "ConceptMap/c1/$translate", "", allowSystem},

		// batch and transaction are never decided as a whole.
		{"batch direct", userAll, "", "POST", "", "", denied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(principal(tt.scopes, tt.patient), req(t, tt.method, tt.path, tt.query))
			check(t, d, tt.want)
		})
	}
}

func check(t *testing.T, d Decision, want outcome) {
	t.Helper()
	if d.Reason == "" {
		t.Error("empty Reason")
	}
	if d.Allow != want.allow || d.NotFound != want.notFound || d.Constraints.Patient != want.patient ||
		!slices.Equal(d.Constraints.PatientParams, want.params) || len(d.Constraints.Queries) != want.queries ||
		d.MissingScope != want.missing || d.Context != want.ctx {
		t.Errorf("Decide = %+v\n want %+v", d, want)
	}
	if d.Allow && (d.NotFound || d.MissingScope != "") {
		t.Error("allowed decision carries refusal fields")
	}
}

func TestDecideGranularQueries(t *testing.T) {
	d := Decide(principal("patient/Observation.rs?category=laboratory&status=final", "123"), req(t, "GET", "Observation", ""))
	if !d.Allow || len(d.Constraints.Queries) != 1 {
		t.Fatalf("Decide = %+v", d)
	}
	q := d.Constraints.Queries[0]
	if q.Get("category") != "laboratory" || q.Get("status") != "final" {
		t.Errorf("query = %v", q)
	}
}

// TestDecideHandBuiltRequests checks that requests not produced by
// fhir.Classify fail closed.
func TestDecideHandBuiltRequests(t *testing.T) {
	p := principal("user/*.cruds system/*.cruds patient/*.cruds", "123")
	for _, r := range []fhir.Request{
		{},
		{Interaction: "frobnicate", Type: "Observation"},
		{Interaction: fhir.Read},
		{Interaction: fhir.Read, Type: "Foo", ID: "1"},
		{Interaction: fhir.Transaction},
		{Interaction: fhir.Operation, Operation: "$purge", Type: "Patient"},
		{Interaction: fhir.Operation, Operation: "$lastn", Type: "Condition"},
		{Interaction: fhir.Operation, Operation: "$everything", Type: "Observation", ID: "1"},
		{Interaction: fhir.Operation, Operation: "$validate"},
		{Interaction: fhir.Operation, Operation: "$expand"},
		{Interaction: fhir.Operation, Operation: "$meta", Type: "Foo"},
	} {
		if d := Decide(p, r); d.Allow {
			t.Errorf("Decide(%+v) allowed: %s", r, d.Reason)
		}
	}
	// Patient-only scopes: hand-built compartment searches outside Patient are refused.
	pp := principal("patient/*.cruds", "123")
	for _, r := range []fhir.Request{
		{Interaction: fhir.SearchCompartment, Type: "Observation", CompartmentType: "Encounter", CompartmentID: "123"},
		{Interaction: fhir.SearchCompartment, Type: "Organization", CompartmentType: "Patient", CompartmentID: "123"},
	} {
		if d := Decide(pp, r); d.Allow {
			t.Errorf("Decide(%+v) allowed: %s", r, d.Reason)
		}
	}
}

func TestDecideBundle(t *testing.T) {
	p := principal("patient/Observation.cruds patient/Patient.rs", "123")
	own := []fhir.Request{
		req(t, "POST", "Observation", ""),
		req(t, "GET", "Patient/123", ""),
		req(t, "GET", "Observation", "code=x"),
	}
	d, i := DecideBundle(p, own)
	if !d.Allow || i != -1 || d.Constraints.Patient != "123" {
		t.Fatalf("own bundle: %+v, %d", d, i)
	}
	foreign := append(append([]fhir.Request(nil), own...), req(t, "GET", "Patient/456", ""), req(t, "DELETE", "Condition/c1", ""))
	d, i = DecideBundle(p, foreign)
	if d.Allow || i != 3 || !d.NotFound {
		t.Fatalf("foreign bundle: %+v, %d", d, i)
	}
	if want := "Bundle.entry[3]: "; len(d.Reason) < len(want) || d.Reason[:len(want)] != want {
		t.Errorf("Reason = %q", d.Reason)
	}
	d, i = DecideBundle(p, []fhir.Request{own[0], req(t, "DELETE", "Condition/c1", "")})
	if d.Allow || i != 1 || d.MissingScope != "patient/Condition.d" {
		t.Errorf("missing scope entry: %+v, %d", d, i)
	}
	d, i = DecideBundle(p, []fhir.Request{{Interaction: fhir.Batch}})
	if d.Allow || i != 0 {
		t.Errorf("nested batch: %+v, %d", d, i)
	}
	d, i = DecideBundle(p, nil)
	if !d.Allow || i != -1 {
		t.Errorf("empty bundle: %+v, %d", d, i)
	}
	mixed := principal("user/*.rs patient/*.rs", "123")
	d, _ = DecideBundle(mixed, []fhir.Request{req(t, "GET", "Patient/456", "")})
	if !d.Allow || d.Constraints.Patient != "" {
		t.Errorf("user bundle: %+v", d)
	}
	ds := DecideEach(p, own)
	if len(ds) != 3 || !slices.Equal(ds[2].Constraints.PatientParams, []string{"subject", "performer"}) {
		t.Errorf("DecideEach = %+v", ds)
	}
}

func BenchmarkDecide(b *testing.B) {
	p := principal("launch/patient openid fhirUser patient/Patient.rs patient/Observation.rs patient/Condition.rs patient/Encounter.rs", "123")
	reqs := []fhir.Request{req(b, "GET", "Observation/o1", ""), req(b, "GET", "Observation", "code=x"), req(b, "GET", "Patient/123", "")}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if d := Decide(p, reqs[i%len(reqs)]); !d.Allow {
			b.Fatal(d.Reason)
		}
	}
}

func TestPatientSearchParam(t *testing.T) {
	tests := []struct {
		c           Constraints
		name, value string
		ok          bool
	}{
		{Constraints{Patient: "123", PatientParams: []string{"subject", "performer"}}, "subject", "Patient/123", true},
		{Constraints{Patient: "123", PatientParams: []string{"_id"}}, "_id", "123", true},
		{Constraints{Patient: "123"}, "", "", false},
		{Constraints{PatientParams: []string{"subject"}}, "", "", false},
	}
	for _, tt := range tests {
		n, v, ok := tt.c.PatientSearchParam()
		if n != tt.name || v != tt.value || ok != tt.ok {
			t.Errorf("PatientSearchParam(%+v) = %q, %q, %v", tt.c, n, v, ok)
		}
	}
}
