package policy

import (
	"slices"
	"testing"

	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/scope"
)

// The scope parser and the gateway's classifier each carry the R4 resource
// type list (vocabulary packages import only the standard library, so they
// cannot share it). policy uses both: a type one of them knows and the other
// does not would be granted but never routable, or routable but never
// grantable. They must agree, apart from the documented Parameters
// exception (no REST endpoint).
func TestResourceTypeListsAgree(t *testing.T) {
	fromScope := slices.DeleteFunc(scope.ResourceTypes(), func(s string) bool { return s == "Parameters" })
	fromFHIR := fhir.ResourceTypes()
	if !slices.Equal(fromScope, fromFHIR) {
		for _, s := range fromScope {
			if !fhir.IsResourceType(s) {
				t.Errorf("%s: known to scope, not to fhir", s)
			}
		}
		for _, s := range fromFHIR {
			if !scope.IsResourceType(s) {
				t.Errorf("%s: known to fhir, not to scope", s)
			}
		}
		t.Fatalf("scope has %d types, fhir %d", len(fromScope), len(fromFHIR))
	}
}
