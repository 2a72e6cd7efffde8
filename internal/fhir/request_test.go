package fhir

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

func TestClassify(t *testing.T) {
	q := url.Values{"code": {"x"}}
	tests := []struct {
		method, path string
		want         Request
	}{
		{"GET", "metadata", Request{Interaction: Capabilities}},
		{"HEAD", "/metadata", Request{Interaction: Capabilities}},
		{"GET", "", Request{Interaction: SearchSystem}},
		{"POST", "_search", Request{Interaction: SearchSystem}},
		{"POST", "", Request{Interaction: Batch}},
		{"GET", "_history", Request{Interaction: HistorySystem}},
		{"GET", "Patient/123", Request{Interaction: Read, Type: "Patient", ID: "123"}},
		{"HEAD", "Patient/a-b.c", Request{Interaction: Read, Type: "Patient", ID: "a-b.c"}},
		{"GET", "Patient/123/_history/2", Request{Interaction: VRead, Type: "Patient", ID: "123", VersionID: "2"}},
		{"PUT", "Observation/o1", Request{Interaction: Update, Type: "Observation", ID: "o1"}},
		{"PATCH", "Observation/o1", Request{Interaction: Patch, Type: "Observation", ID: "o1"}},
		{"DELETE", "Observation/o1", Request{Interaction: Delete, Type: "Observation", ID: "o1"}},
		{"POST", "Observation", Request{Interaction: Create, Type: "Observation"}},
		{"GET", "Observation", Request{Interaction: SearchType, Type: "Observation"}},
		{"POST", "Observation/_search", Request{Interaction: SearchType, Type: "Observation"}},
		{"GET", "Patient/123/Observation", Request{Interaction: SearchCompartment, Type: "Observation", CompartmentType: "Patient", CompartmentID: "123"}},
		{"POST", "Patient/123/Observation/_search", Request{Interaction: SearchCompartment, Type: "Observation", CompartmentType: "Patient", CompartmentID: "123"}},
		{"GET", "Patient/123/_history", Request{Interaction: HistoryInstance, Type: "Patient", ID: "123"}},
		{"GET", "Observation/_history", Request{Interaction: HistoryType, Type: "Observation"}},
		{"GET", "Patient/123/$everything", Request{Interaction: Operation, Type: "Patient", ID: "123", Operation: "$everything"}},
		{"POST", "Patient/$everything", Request{Interaction: Operation, Type: "Patient", Operation: "$everything"}},
		{"GET", "$export", Request{Interaction: Operation, Operation: "$export"}},
		{"GET", "Patient/$export", Request{Interaction: Operation, Type: "Patient", Operation: "$export"}},
		{"GET", "Group/g1/$export", Request{Interaction: Operation, Type: "Group", ID: "g1", Operation: "$export"}},
		{"POST", "Observation/$validate", Request{Interaction: Operation, Type: "Observation", Operation: "$validate"}},
		{"POST", "Observation/o1/$validate", Request{Interaction: Operation, Type: "Observation", ID: "o1", Operation: "$validate"}},
		{"GET", "$meta", Request{Interaction: Operation, Operation: "$meta"}},
		{"GET", "Observation/$meta", Request{Interaction: Operation, Type: "Observation", Operation: "$meta"}},
		{"GET", "Observation/o1/$meta", Request{Interaction: Operation, Type: "Observation", ID: "o1", Operation: "$meta"}},
		{"GET", "Observation/$lastn", Request{Interaction: Operation, Type: "Observation", Operation: "$lastn"}},
		{"GET", "DocumentReference/$docref", Request{Interaction: Operation, Type: "DocumentReference", Operation: "$docref"}},
		{"GET", "ValueSet/$expand", Request{Interaction: Operation, Type: "ValueSet", Operation: "$expand"}},
		{"GET", "ValueSet/vs1/$expand", Request{Interaction: Operation, Type: "ValueSet", ID: "vs1", Operation: "$expand"}},
		{"GET", "CodeSystem/$lookup", Request{Interaction: Operation, Type: "CodeSystem", Operation: "$lookup"}},
		{"GET", "CodeSystem/$validate-code", Request{Interaction: Operation, Type: "CodeSystem", Operation: "$validate-code"}},
		{"POST", "ValueSet/vs1/$validate-code", Request{Interaction: Operation, Type: "ValueSet", ID: "vs1", Operation: "$validate-code"}},
		{"GET", "ConceptMap/$translate", Request{Interaction: Operation, Type: "ConceptMap", Operation: "$translate"}},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			got, err := Classify(tt.method, tt.path, q)
			if err != nil {
				t.Fatalf("Classify: %v", err)
			}
			if got.Query == nil || got.Query.Get("code") != "x" {
				t.Errorf("query not carried: %v", got.Query)
			}
			got.Query = nil
			if !sameRequest(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestClassifyRefusals(t *testing.T) {
	long := strings.Repeat("a", 65)
	tests := []struct {
		method, path string
		want         error
	}{
		{"GET", "Patient/../Observation", ErrMalformed},
		{"GET", "Patient/..", ErrMalformed},
		{"GET", "Patient/.", ErrMalformed},
		{"GET", "..", ErrMalformed},
		{"GET", "Patient//1", ErrMalformed},
		{"GET", "Patient/1/", ErrMalformed},
		{"GET", "//Patient", ErrMalformed},
		{"GET", "Patient/" + long, ErrMalformed},
		{"GET", "Patient/a_b", ErrMalformed},
		{"GET", "Patient/a%2Fb", ErrMalformed},
		{"GET", "Patient/a b", ErrMalformed},
		{"GET", "Patient/1/_history/x_y", ErrMalformed},
		{"GET", "Patient/1/_history/2/x", ErrMalformed},
		{"GET", "patient/1", ErrMalformed},
		{"GET", "Pat1ent/1", ErrMalformed},
		{"GET", "Patient/1/Observation/2", ErrMalformed},
		{"GET", "Patient/1/Observ@tion", ErrMalformed},
		{"GET", "Patient/$every thing", ErrMalformed},
		{"GET", "$export/x", ErrMalformed},
		{"GET", "Patient/_search/x", ErrMalformed},
		{"GET", "Foo/1", ErrUnsupported},
		{"GET", "Foo", ErrUnsupported},
		{"GET", "Parameters/1", ErrUnsupported},
		{"GET", "Resource/1", ErrUnsupported},
		{"GET", "Patient/1/Foo", ErrUnsupported},
		{"GET", "Patient/1/Organization", ErrUnsupported},
		{"GET", "Encounter/1/Observation", ErrUnsupported},
		{"GET", "Patient/1/*", ErrUnsupported},
		{"OPTIONS", "Patient/1", ErrUnsupported},
		{"TRACE", "metadata", ErrUnsupported},
		{"POST", "metadata", ErrUnsupported},
		{"PUT", "Patient", ErrUnsupported},
		{"DELETE", "Patient", ErrUnsupported},
		{"PATCH", "Observation", ErrUnsupported},
		{"POST", "Patient/1", ErrUnsupported},
		{"PUT", "", ErrUnsupported},
		{"GET", "Patient/_search", ErrUnsupported},
		{"GET", "_search", ErrUnsupported},
		{"DELETE", "_history", ErrUnsupported},
		{"DELETE", "Patient/1/_history/2", ErrUnsupported},
		{"POST", "Patient/_history", ErrUnsupported},
		{"GET", "Patient/1/Observation/_search", ErrUnsupported},
		{"DELETE", "Patient/1/Observation", ErrUnsupported},
		{"GET", "Observation/$everything", ErrUnsupported},
		{"GET", "Observation/$export", ErrUnsupported},
		{"GET", "Group/$export", ErrUnsupported},
		{"GET", "Patient/1/$export", ErrUnsupported},
		{"GET", "$everything", ErrUnsupported},
		{"GET", "Observation/$expand", ErrUnsupported},
		{"POST", "Patient/$purge", ErrUnsupported},
		{"GET", "$reindex", ErrUnsupported},
		{"DELETE", "Patient/1/$everything", ErrUnsupported},
		{"PUT", "Observation/$validate", ErrUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			got, err := Classify(tt.method, tt.path, nil)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Classify = %+v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestValidID(t *testing.T) {
	for _, ok := range []string{"1", "a", "A-b.C", strings.Repeat("x", 64), "..."} {
		if !ValidID(ok) {
			t.Errorf("ValidID(%q) = false", ok)
		}
	}
	for _, bad := range []string{"", ".", "..", strings.Repeat("x", 65), "a/b", "a b", "a_b", "é", "a%20"} {
		if ValidID(bad) {
			t.Errorf("ValidID(%q) = true", bad)
		}
	}
}

func TestRequestString(t *testing.T) {
	for path, want := range map[string]string{
		"Patient/1/_history/2":  "vread Patient/1/_history/2",
		"Patient/1/Observation": "search-compartment Patient/1/Observation",
		"Patient/1/$everything": "operation Patient/1/$everything",
		"$export":               "operation $export",
		"metadata":              "capabilities",
	} {
		r, err := Classify("GET", path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.String(); got != want {
			t.Errorf("%s: String() = %q, want %q", path, got, want)
		}
	}
}

func FuzzClassify(f *testing.F) {
	for _, s := range []string{"", "metadata", "Patient/1", "Patient/1/_history/2", "Patient/1/Observation",
		"Patient/1/Observation/_search", "Observation/_search", "$export", "Group/1/$export", "Patient/..", "Patient//1",
		"/Patient/1", "ValueSet/$expand", "Patient/1/$everything", "_history"} {
		for _, m := range []string{"GET", "POST", "PUT", "DELETE", "PATCH"} {
			f.Add(m, s)
		}
	}
	f.Fuzz(func(t *testing.T, method, path string) {
		r, err := Classify(method, path, nil)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		if r.Interaction == "" {
			t.Fatal("no interaction")
		}
		for _, seg := range strings.Split(strings.TrimPrefix(path, "/"), "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("dot segment accepted: %q", path)
			}
		}
		if r.Type != "" && !IsResourceType(r.Type) {
			t.Fatalf("unknown type accepted: %q", r.Type)
		}
		for _, id := range []string{r.ID, r.VersionID, r.CompartmentID} {
			if id != "" && !ValidID(id) {
				t.Fatalf("invalid id accepted: %q", id)
			}
		}
		if (r.Interaction == Operation) != (r.Operation != "") {
			t.Fatalf("operation mismatch: %+v", r)
		}
		if r.Interaction == SearchCompartment && (r.CompartmentType != "Patient" || PatientCompartmentParams(r.Type) == nil) {
			t.Fatalf("bad compartment search: %+v", r)
		}
		// Classification is a function of the path: rebuilding the path
		// from the Request must classify the same.
		again, err := Classify(method, rebuild(r, path), nil)
		if err != nil || !sameRequest(again, r) {
			t.Fatalf("rebuild of %q: %+v, %v; want %+v", path, again, err, r)
		}
	})
}

// rebuild renders r back into a path.
func rebuild(r Request, orig string) string {
	var parts []string
	if r.CompartmentType != "" {
		parts = append(parts, r.CompartmentType, r.CompartmentID)
	}
	if r.Type != "" {
		parts = append(parts, r.Type)
	}
	if r.ID != "" {
		parts = append(parts, r.ID)
	}
	switch r.Interaction {
	case VRead:
		parts = append(parts, "_history", r.VersionID)
	case HistoryInstance, HistoryType, HistorySystem:
		parts = append(parts, "_history")
	case Capabilities:
		parts = append(parts, "metadata")
	case Operation:
		parts = append(parts, r.Operation)
	case SearchType, SearchSystem, SearchCompartment:
		if strings.HasSuffix(orig, "_search") {
			parts = append(parts, "_search")
		}
	}
	return strings.Join(parts, "/")
}

func BenchmarkClassify(b *testing.B) {
	q := url.Values{"category": {"laboratory"}}
	paths := []string{"Observation/abc-123", "Patient/123/Observation", "Patient/123/_history/4", "Observation"}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := Classify("GET", paths[i%len(paths)], q); err != nil {
			b.Fatal(err)
		}
	}
}

// sameRequest compares two Requests, ignoring Query.
func sameRequest(a, b Request) bool {
	a.Query, b.Query = nil, nil
	type plain struct {
		I                     Interaction
		T, ID, V, Op, CT, CID string
	}
	pa := plain{a.Interaction, a.Type, a.ID, a.VersionID, a.Operation, a.CompartmentType, a.CompartmentID}
	pb := plain{b.Interaction, b.Type, b.ID, b.VersionID, b.Operation, b.CompartmentType, b.CompartmentID}
	return pa == pb
}
