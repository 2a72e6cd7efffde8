package policy

import (
	"fmt"

	"github.com/fhirgate/fhirgate/internal/fhir"
)

// DecideEach decides every entry of a batch or transaction Bundle on its
// own. The gateway applies each allowed entry's own Constraints.
func DecideEach(p Principal, entries []fhir.Request) []Decision {
	out := make([]Decision, len(entries))
	for i, e := range entries {
		out[i] = Decide(p, e)
	}
	return out
}

// DecideBundle decides a batch or transaction Bundle: it is allowed only if
// every entry is. On a refusal it returns the first denied entry's Decision
// (Reason prefixed with "Bundle.entry[i]") and its index; otherwise an
// allowing Decision and -1. The allowing Decision carries a Patient
// constraint only when every entry has the same one; the gateway must
// still apply each entry's own Constraints, from DecideEach.
func DecideBundle(p Principal, entries []fhir.Request) (Decision, int) {
	patient, same := "", true
	for i, e := range entries {
		d := Decide(p, e)
		if !d.Allow {
			d.Reason = fmt.Sprintf("Bundle.entry[%d]: %s", i, d.Reason)
			return d, i
		}
		if i == 0 {
			patient = d.Constraints.Patient
		} else if d.Constraints.Patient != patient {
			same = false
		}
	}
	d := Decision{Allow: true, Reason: fmt.Sprintf("all %d Bundle entries allowed", len(entries))}
	if same {
		d.Constraints.Patient = patient
	}
	return d, -1
}
