package fhir

import (
	"errors"
	"slices"
	"testing"
)

const (
	obsOwn = `{"resourceType":"Observation","id":"o1","status":"final",
		"code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},
		"subject":{"reference":"Patient/123","display":"Amy"},
		"performer":[{"reference":"Practitioner/p9"}],
		"valueQuantity":{"value":72,"unit":"/min"}}`
	obsForeign = `{"resourceType":"Observation","id":"o2","status":"final",
		"subject":{"reference":"Patient/456"},
		"performer":[{"reference":"Practitioner/p9"}],
		"contained":[{"resourceType":"Patient","id":"c","link":[{"other":{"reference":"Patient/123"}}]}],
		"note":[{"text":"Patient/123 was mentioned here"}],
		"derivedFrom":[{"reference":"Patient/123"}]}`
	obsPerformer = `{"resourceType":"Observation","subject":{"reference":"Patient/456"},
		"performer":[{"reference":"Practitioner/p9"},{"reference":"Patient/123"}]}`
	encounter = `{"resourceType":"Encounter","id":"e1","status":"finished",
		"class":{"code":"AMB"},"subject":{"reference":"Patient/123/_history/3"},
		"participant":[{"individual":{"reference":"Practitioner/p1"}}]}`
	allergy = `{"resourceType":"AllergyIntolerance","id":"a1",
		"patient":{"reference":"https://ehr.example/fhir/Patient/123"},
		"recorder":{"reference":"Practitioner/p1"},"asserter":{"reference":"Patient/789"}}`
	appointment = `{"resourceType":"Appointment","status":"booked","participant":[
		{"actor":{"reference":"Practitioner/p1"},"status":"accepted"},
		{"actor":{"reference":"Patient/123"},"status":"accepted"}]}`
	patient123   = `{"resourceType":"Patient","id":"123","link":[{"other":{"reference":"Patient/456"},"type":"seealso"}]}`
	practitioner = `{"resourceType":"Practitioner","id":"p1"}`
)

func TestInPatientCompartment(t *testing.T) {
	tests := []struct {
		name, json, patient string
		want                bool
	}{
		{"own observation", obsOwn, "123", true},
		{"own observation, other patient", obsOwn, "456", false},
		{"foreign observation", obsForeign, "123", false},
		{"foreign observation, its patient", obsForeign, "456", true},
		{"observation performed by patient", obsPerformer, "123", true},
		{"encounter subject versioned", encounter, "123", true},
		{"encounter practitioner", encounter, "p1", false},
		{"allergy absolute patient", allergy, "123", true},
		{"allergy asserter", allergy, "789", true},
		{"allergy recorder practitioner id", allergy, "p1", false},
		{"appointment participant actor", appointment, "123", true},
		{"patient itself", patient123, "123", true},
		{"patient link does not count", patient123, "456", false},
		{"practitioner outside compartment", practitioner, "p1", false},
		{"invalid patient id", obsOwn, "", false},
		{"contained reference", `{"resourceType":"Observation","subject":{"reference":"#p"},"contained":[{"resourceType":"Patient","id":"p"}]}`, "p", false},
		{"urn reference", `{"resourceType":"Observation","subject":{"reference":"urn:uuid:123"}}`, "123", false},
		{"prefix relative", `{"resourceType":"Observation","subject":{"reference":"x/Patient/123"}}`, "123", false},
		{"group subject", `{"resourceType":"Observation","subject":{"reference":"Group/123"}}`, "123", false},
		{"identifier only", `{"resourceType":"Observation","subject":{"identifier":{"value":"123"}}}`, "123", false},
		{"escaped key", `{"resourceType":"Observation","subj\u0065ct":{"reference":"Patient/123"}}`, "123", true},
		{"query in absolute", `{"resourceType":"Observation","subject":{"reference":"https://x/Patient/123?a=b"}}`, "123", false},
		{"absolute no base", `{"resourceType":"Observation","subject":{"reference":"https://Patient/123"}}`, "123", false},
		{"reference not string", `{"resourceType":"Observation","subject":{"reference":123}}`, "123", false},
		{"subject array of objects", `{"resourceType":"Observation","subject":[{"reference":"Patient/123"}]}`, "123", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := InPatientCompartment([]byte(tt.json), tt.patient)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("InPatientCompartment = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestInPatientCompartmentMalformed(t *testing.T) {
	for name, body := range map[string]string{
		"not json":             `{"resourceType":`,
		"array":                `[{"resourceType":"Observation"}]`,
		"no type":              `{"subject":{"reference":"Patient/123"}}`,
		"type not string":      `{"resourceType":1}`,
		"duplicate type":       `{"resourceType":"Practitioner","resourceType":"Observation"}`,
		"duplicate subject":    `{"resourceType":"Observation","subject":{"reference":"Patient/123"},"subject":{"reference":"Patient/456"}}`,
		"escaped duplicate":    `{"resourceType":"Observation","subject":{"reference":"Patient/123"},"subj\u0065ct":{"reference":"Patient/456"}}`,
		"duplicate ref":        `{"resourceType":"Observation","subject":{"reference":"Patient/123","reference":"Patient/456"}}`,
		"duplicate patient id": `{"resourceType":"Patient","id":"123","id":"456"}`,
		"empty":                ``,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := InPatientCompartment([]byte(body), "123"); !errors.Is(err, ErrMalformed) {
				t.Errorf("InPatientCompartment err = %v, want ErrMalformed", err)
			}
			if _, err := ReferencesPatient([]byte(body)); !errors.Is(err, ErrMalformed) {
				t.Errorf("ReferencesPatient err = %v, want ErrMalformed", err)
			}
		})
	}
}

func TestReferencesPatient(t *testing.T) {
	tests := map[string][]string{
		obsOwn:       {"123"},
		obsForeign:   {"456"},
		obsPerformer: {"123", "456"},
		allergy:      {"123", "789"},
		patient123:   {"123"},
		practitioner: nil,
		`{"resourceType":"Observation","subject":{"reference":"Patient/1"},"performer":[{"reference":"Patient/1"}]}`: {"1"},
	}
	for body, want := range tests {
		got, err := ReferencesPatient([]byte(body))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("ReferencesPatient(%.60s) = %v, want %v", body, got, want)
		}
	}
}

func TestPatientCompartmentParams(t *testing.T) {
	tests := map[string][]string{
		"Observation":        {"subject", "performer"},
		"AllergyIntolerance": {"patient", "recorder", "asserter"},
		"Encounter":          {"subject"},
		"Patient":            {"link"},
		"Practitioner":       nil,
		"Medication":         nil,
		"Foo":                nil,
		"":                   nil,
	}
	for typ, want := range tests {
		if got := PatientCompartmentParams(typ); !slices.Equal(got, want) {
			t.Errorf("PatientCompartmentParams(%q) = %v, want %v", typ, got, want)
		}
	}
	// The caller owns the slice.
	p := PatientCompartmentParams("Observation")
	p[0] = "evil"
	if PatientCompartmentParams("Observation")[0] != "subject" {
		t.Error("table mutated through returned slice")
	}
}

func TestPatientReferenceID(t *testing.T) {
	tests := []struct {
		ref, id string
		ok      bool
	}{
		{"Patient/1", "1", true},
		{"Patient/1/_history/2", "1", true},
		{"https://ehr.example/fhir/Patient/1", "1", true},
		{"https://ehr.example/fhir/Patient/1/_history/2", "1", true},
		{"Patient/", "", false},
		{"Patient/1/_history/", "", false},
		{"Patient/..", "", false},
		{"Patient/1/x", "", false},
		{"Practitioner/1", "", false},
		{"https://ehr.example/fhir/Practitioner/1", "", false},
		{"https://ehr.example/fhir/Patient/1#x", "", false},
		{"#1", "", false},
		{"urn:uuid:1", "", false},
	}
	for _, tt := range tests {
		id, ok := PatientReferenceID(tt.ref)
		if id != tt.id || ok != tt.ok {
			t.Errorf("PatientReferenceID(%q) = %q, %v; want %q, %v", tt.ref, id, ok, tt.id, tt.ok)
		}
	}
	bases := []string{"https://ehr.example/fhir/"}
	for ref, want := range map[string]bool{
		"Patient/1":                            true,
		"https://ehr.example/fhir/Patient/1":   true,
		"https://other.example/fhir/Patient/1": false,
		"https://ehr.example/fhir/x/Patient/1": false,
	} {
		if _, ok := PatientReferenceIDIn(ref, bases); ok != want {
			t.Errorf("PatientReferenceIDIn(%q) = %v, want %v", ref, ok, want)
		}
	}
	if _, ok := PatientReferenceIDIn("https://ehr.example/fhir/Patient/1", nil); ok {
		t.Error("absolute reference accepted with no bases")
	}
}

func TestResourceIdentity(t *testing.T) {
	typ, id, err := ResourceIdentity([]byte(obsOwn))
	if err != nil || typ != "Observation" || id != "o1" {
		t.Errorf("ResourceIdentity = %q, %q, %v", typ, id, err)
	}
	if _, _, err := ResourceIdentity([]byte(`{"resourceType":"Observation","id":1}`)); !errors.Is(err, ErrMalformed) {
		t.Errorf("numeric id: err = %v", err)
	}
	if _, _, err := ResourceIdentity([]byte(`{"resourceType":"Observation","id":"a","id":"b"}`)); !errors.Is(err, ErrMalformed) {
		t.Errorf("duplicate id: err = %v", err)
	}
}

func TestOutcome(t *testing.T) {
	o := Outcome(SeverityError, CodeForbidden, "missing scope patient/Observation.rs").WithExpression("Bundle.entry[2]")
	if o.ResourceType != "OperationOutcome" || len(o.Issue) != 1 || o.Issue[0].Code != "forbidden" ||
		!slices.Equal(o.Issue[0].Expression, []string{"Bundle.entry[2]"}) {
		t.Errorf("Outcome = %+v", o)
	}
}

func FuzzInPatientCompartment(f *testing.F) {
	for _, s := range []string{obsOwn, obsForeign, obsPerformer, encounter, allergy, appointment, patient123, practitioner} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ids, err := ReferencesPatient(body)
		in, err2 := InPatientCompartment(body, "123")
		if (err == nil) != (err2 == nil) {
			t.Fatalf("errors disagree: %v / %v", err, err2)
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("unexpected error: %v", err)
			}
			return
		}
		if in != slices.Contains(ids, "123") {
			t.Fatalf("InPatientCompartment = %v but ReferencesPatient = %v", in, ids)
		}
	})
}

func BenchmarkInPatientCompartment(b *testing.B) {
	body := []byte(obsForeign)
	b.ReportAllocs()
	for b.Loop() {
		if in, err := InPatientCompartment(body, "123"); err != nil || in {
			b.Fatal(in, err)
		}
	}
}
