package main

import (
	"bytes"
	"encoding/json"
	"os"
	"slices"
	"testing"
)

// TestGeneratedUpToDate fails when internal/fhir/compartment_gen.go is not
// what the generator makes of the committed input: run go generate ./internal/fhir.
func TestGeneratedUpToDate(t *testing.T) {
	raw, err := os.ReadFile("patient-compartment-r4.json")
	if err != nil {
		t.Fatal(err)
	}
	var in Input
	if err := json.Unmarshal(raw, &in); err != nil {
		t.Fatal(err)
	}
	want, dropped, err := Generate(in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../../internal/fhir/compartment_gen.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("internal/fhir/compartment_gen.go is stale: run go generate ./internal/fhir")
	}
	if len(dropped) != 0 {
		t.Errorf("R4 expressions dropped: %v", dropped)
	}
	if len(in.ResourceTypes) != 145 || len(in.Compartment) < 60 {
		t.Errorf("input has %d types, %d compartment types", len(in.ResourceTypes), len(in.Compartment))
	}
}

func TestReduce(t *testing.T) {
	tests := []struct {
		typ, expr string
		want      []string
	}{
		{"Observation", "Observation.subject", []string{"subject"}},
		{"Observation", "Observation.subject.where(resolve() is Patient)", []string{"subject"}},
		{"Appointment", "Appointment.participant.actor", []string{"participant", "actor"}},
		{"Person", "Person.link.target.where(resolve() is Patient)", []string{"link", "target"}},
		{"Observation", "(Observation.value as Reference)", []string{"valueReference"}},
		{"Observation", "Observation.value.as(Reference)", []string{"valueReference"}},
		{"Observation", " ( Observation.focus ) ", []string{"focus"}},
		{"Observation", "Encounter.subject", nil},
		{"Observation", "Observation", nil},
		{"Observation", "Observation.subject.where(resolve() is Group)", nil},
		{"Observation", "Observation.extension('http://x').value", nil},
		{"Observation", "Observation.component[0].value", nil},
		{"Observation", "Observation.value as Reference | Observation.x", nil},
	}
	for _, tt := range tests {
		got, ok := Reduce(tt.typ, tt.expr)
		if ok != (tt.want != nil) || !slices.Equal(got, tt.want) {
			t.Errorf("Reduce(%q) = %v, %v; want %v", tt.expr, got, ok, tt.want)
		}
	}
}

func TestGenerateRecordsDropped(t *testing.T) {
	in := Input{
		Source: "test", FHIRVersion: "4.0.1",
		ResourceTypes: []string{"Observation", "Patient"},
		Compartment: []Resource{{Type: "Observation", Params: []Param{
			{Code: "subject", Expressions: []string{"Observation.subject", "Observation.extension('x').value"}},
		}}},
	}
	src, dropped, err := Generate(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(dropped) != 1 || !bytes.Contains(src, []byte("Dropped")) || !bytes.Contains(src, []byte("DO NOT EDIT.")) {
		t.Errorf("dropped %v; source:\n%s", dropped, src)
	}
	in.Compartment[0].Type = "Zzz"
	if _, _, err := Generate(in); err == nil {
		t.Error("compartment type outside resource types accepted")
	}
	if _, _, err := Generate(Input{}); err == nil {
		t.Error("empty input accepted")
	}
}
