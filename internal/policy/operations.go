package policy

import (
	"fmt"

	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/scope"
)

// decideOperation decides an extended operation; see the package
// documentation for the rules.
func decideOperation(p Principal, r fhir.Request) Decision {
	if r.Type != "" && !fhir.IsResourceType(r.Type) {
		return deny("%s without a valid resource type", r)
	}
	switch r.Operation {
	case fhir.OpEverything:
		return decideEverything(p, r)
	case fhir.OpExport:
		return decideExport(p, r)
	case fhir.OpValidate:
		if r.Type == "" {
			break
		}
		if r.ID != "" {
			return decideTyped(p, r, fhir.Update, scope.Update, nil)
		}
		return decideTyped(p, r, fhir.Create, scope.Create, nil)
	case fhir.OpMeta:
		switch {
		case r.ID != "":
			return decideTyped(p, r, fhir.Read, scope.Read, nil)
		case r.Type != "":
			// Tags across a type cannot be limited to one patient.
			return decideTyped(p, r, fhir.HistoryType, scope.Search, nil)
		default:
			return decideSystemWide(p, r, scope.Search)
		}
	case fhir.OpLastN:
		if r.Type == "Observation" && r.ID == "" {
			return decideTyped(p, r, fhir.SearchType, scope.Search, nil)
		}
	case fhir.OpDocRef:
		if r.Type == "DocumentReference" && r.ID == "" {
			return decideTyped(p, r, fhir.SearchType, scope.Search, []string{"patient"})
		}
	default:
		if fhir.IsTerminologyOperation(r.Operation) && r.Type != "" {
			return decideTyped(p, r, fhir.Read, scope.Read, nil)
		}
	}
	return deny("%s: operation not allowed here", r)
}

// decideEverything decides Patient/[id]/$everything and Patient/$everything.
func decideEverything(p Principal, r fhir.Request) Decision {
	const need = scope.Read | scope.Search
	if r.Type != "Patient" {
		return deny("%s: $everything only on Patient", r)
	}
	for _, c := range contexts {
		if !p.Scopes.Permits(c, "*", need) {
			continue
		}
		if c != scope.Patient {
			return Decision{Allow: true, Context: c, Reason: fmt.Sprintf("%s allowed by %s/*.rs", r, c)}
		}
		if r.ID == "" {
			return deny("%s: $everything on all patients is not allowed with patient/ scopes", r)
		}
		return patientDecision(p, r, fhir.Read, nil, nil)
	}
	d := deny("%s needs read and search of every type (*.rs)", r)
	d.MissingScope = missing(p, "*", need, r.ID == "")
	return d
}

// decideExport decides a Bulk Data $export kick-off.
func decideExport(p Principal, r fhir.Request) Decision {
	const need = scope.Read | scope.Search
	types, ok := typesParam(r.Query)
	if !ok {
		return deny("%s: _type names an unknown resource type", r)
	}
	for _, c := range [...]scope.Context{scope.System, scope.User} {
		if len(types) == 0 {
			if p.Scopes.Permits(c, "*", need) {
				return Decision{Allow: true, Context: c, Reason: fmt.Sprintf("%s allowed by %s/*.rs", r, c)}
			}
			continue
		}
		all := true
		for _, t := range types {
			if !p.Scopes.Permits(c, t, need) {
				all = false
				break
			}
		}
		if all {
			return Decision{Allow: true, Context: c, Reason: fmt.Sprintf("%s allowed by %s/ scopes on every _type", r, c)}
		}
	}
	d := deny("%s needs user/ or system/ read and search scopes on the exported types", r)
	typ := "*"
	if len(types) == 1 {
		typ = types[0]
	}
	d.MissingScope = missing(p, typ, need, true)
	return d
}
