package fhir

//go:generate go run ../../tools/compartmentgen -in ../../tools/compartmentgen/patient-compartment-r4.json -out compartment_gen.go

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// compartmentEntry is one resource type of the Patient compartment.
type compartmentEntry struct {
	Type   string
	Params []compartmentParam
}

// compartmentParam is one compartment search parameter and the JSON element
// paths of the references it names (reduced from its FHIRPath expression).
type compartmentParam struct {
	Code  string
	Paths [][]string
}

// lookupCompartment returns the table entry for resourceType, or nil.
func lookupCompartment(resourceType string) *compartmentEntry {
	lo, hi := 0, len(patientCompartment)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		switch c := strings.Compare(patientCompartment[m].Type, resourceType); {
		case c == 0:
			return &patientCompartment[m]
		case c < 0:
			lo = m + 1
		default:
			hi = m
		}
	}
	return nil
}

// PatientCompartmentParams returns, in the order of the R4
// CompartmentDefinition, the search parameters that put a resource of
// resourceType in a Patient compartment (Observation: subject, performer),
// or nil when the type is not in the compartment. The caller owns the slice.
//
// Patient itself returns ["link"] as in the definition, but a Patient
// resource is in the compartment of exactly one patient: itself (see
// InPatientCompartment); search it with _id.
func PatientCompartmentParams(resourceType string) []string {
	e := lookupCompartment(resourceType)
	if e == nil {
		return nil
	}
	out := make([]string, len(e.Params))
	for i, p := range e.Params {
		out[i] = p.Code
	}
	return out
}

// InPatientCompartment reports whether the FHIR JSON resource lies in the
// compartment of Patient/patientID: for a Patient resource, whether its id
// is patientID; for any other type in the compartment, whether one of the
// references its compartment parameters name points at Patient/patientID
// (see PatientReferenceID for which references count). A resource of a
// type outside the compartment is in no patient's compartment.
//
// References inside contained resources are not compartment references
// and are not looked at. The result is an error wrapping ErrMalformed when
// the body is not a JSON object with a string resourceType, or when a
// member the check reads is named twice.
func InPatientCompartment(resourceJSON []byte, patientID string) (bool, error) {
	if !ValidID(patientID) {
		return false, nil
	}
	found := false
	err := patientRefs(resourceJSON, func(id string) bool {
		found = id == patientID
		return !found
	})
	return found, err
}

// ReferencesPatient returns, sorted and each once, the ids of every patient
// the resource's compartment references name (for a Patient resource, its
// own id). It returns nil for a type outside the compartment. Errors are
// as for InPatientCompartment.
func ReferencesPatient(resourceJSON []byte) ([]string, error) {
	var ids []string
	err := patientRefs(resourceJSON, func(id string) bool {
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(ids)
	return ids, nil
}

// ResourceIdentity returns the resourceType and id ("" if absent) of a FHIR
// JSON resource. It is an error wrapping ErrMalformed when the body is not
// a JSON object with a string resourceType, or names either member twice.
func ResourceIdentity(resourceJSON []byte) (resourceType, id string, err error) {
	obj, typ, err := resourceObject(resourceJSON)
	if err != nil {
		return "", "", err
	}
	idv, err := member(obj, "id")
	if err != nil {
		return "", "", malformed("resource id: %v", err)
	}
	if idv != nil {
		s, ok := decodeString(idv)
		if !ok {
			return "", "", malformed("resource id is not a string")
		}
		id = s
	}
	return typ, id, nil
}

// resourceObject validates resourceJSON and returns it trimmed with its
// resourceType.
func resourceObject(resourceJSON []byte) ([]byte, string, error) {
	if !json.Valid(resourceJSON) {
		return nil, "", malformed("resource is not valid JSON")
	}
	obj := trim(resourceJSON)
	if len(obj) == 0 || obj[0] != '{' {
		return nil, "", malformed("resource is not a JSON object")
	}
	tv, err := member(obj, "resourceType")
	if err != nil {
		return nil, "", malformed("resourceType: %v", err)
	}
	typ, ok := decodeString(tv)
	if !ok || typ == "" {
		return nil, "", malformed("resource has no string resourceType")
	}
	return obj, typ, nil
}

// patientRefs calls fn with the patient id of every compartment reference
// of the resource until fn returns false.
func patientRefs(resourceJSON []byte, fn func(id string) bool) error {
	obj, typ, err := resourceObject(resourceJSON)
	if err != nil {
		return err
	}
	if typ == "Patient" {
		idv, err := member(obj, "id")
		if err != nil {
			return malformed("Patient.id: %v", err)
		}
		if id, ok := decodeString(idv); ok && ValidID(id) {
			fn(id)
		}
		return nil
	}
	e := lookupCompartment(typ)
	if e == nil {
		return nil
	}
	stop := errStop{}
	for _, p := range e.Params {
		for _, path := range p.Paths {
			err := walkRefs(obj, path, func(ref string) error {
				if id, ok := PatientReferenceID(ref); ok && !fn(id) {
					return stop
				}
				return nil
			})
			if err == stop {
				return nil
			}
			if err != nil {
				return malformed("%s.%s: %v", typ, strings.Join(path, "."), err)
			}
		}
	}
	return nil
}

// errStop ends a walk early; it never leaves this package.
type errStop struct{}

func (errStop) Error() string { return "stop" }

// walkRefs calls visit with the reference string of every Reference found
// at path below v, descending into arrays at any level.
func walkRefs(v []byte, path []string, visit func(string) error) error {
	if len(v) == 0 {
		return nil
	}
	if v[0] == '[' {
		return elements(v, func(el []byte) error { return walkRefs(el, path, visit) })
	}
	if v[0] != '{' {
		return nil
	}
	if len(path) == 0 {
		rv, err := member(v, "reference")
		if err != nil || rv == nil {
			return err
		}
		if s, ok := decodeString(rv); ok {
			return visit(s)
		}
		return nil
	}
	next, err := member(v, path[0])
	if err != nil || next == nil {
		return err
	}
	return walkRefs(next, path[1:], visit)
}

// PatientReferenceID returns the patient id a Reference.reference string
// points at, and whether it points at a Patient at all.
//
// Accepted: the relative form "Patient/[id]", and an absolute URL
// ("https://host/fhir/Patient/[id]") whose last two path segments are
// Patient/[id]; either may end in "/_history/[vid]". The id must be a valid
// FHIR id. Not accepted: contained ("#p1") and placeholder ("urn:uuid:...")
// references, anything with a query or fragment, and relative references
// with more segments ("foo/Patient/1").
//
// Caution: the absolute form trusts that the upstream server only stores
// absolute references to its own patients. A server that holds references
// to other servers' patients by absolute URL needs the stricter
// PatientReferenceIDIn.
func PatientReferenceID(ref string) (string, bool) {
	if strings.Contains(ref, "://") {
		return absolutePatientID(ref)
	}
	return relativePatientID(ref)
}

// PatientReferenceIDIn is PatientReferenceID that accepts an absolute URL
// only when it starts with one of bases (FHIR base URLs such as
// "https://ehr.example/fhir", compared exactly, without a trailing slash).
// With no bases it accepts relative references only.
func PatientReferenceIDIn(ref string, bases []string) (string, bool) {
	if !strings.Contains(ref, "://") {
		return relativePatientID(ref)
	}
	for _, b := range bases {
		if rest, ok := strings.CutPrefix(ref, strings.TrimSuffix(b, "/")+"/"); ok {
			return relativePatientID(rest)
		}
	}
	return "", false
}

func relativePatientID(ref string) (string, bool) {
	rest, ok := strings.CutPrefix(ref, "Patient/")
	if !ok {
		return "", false
	}
	id, hist, versioned := strings.Cut(rest, "/_history/")
	if versioned && !ValidID(hist) {
		return "", false
	}
	if !ValidID(id) {
		return "", false
	}
	return id, true
}

func absolutePatientID(ref string) (string, bool) {
	if strings.ContainsAny(ref, "?#") {
		return "", false
	}
	_, rest, _ := strings.Cut(ref, "://")
	if i := strings.Index(rest, "/_history/"); i >= 0 {
		if !ValidID(rest[i+len("/_history/"):]) {
			return "", false
		}
		rest = rest[:i]
	}
	i := strings.LastIndexByte(rest, '/')
	if i < 0 {
		return "", false
	}
	j := strings.LastIndexByte(rest[:i], '/')
	if j < 0 || rest[j+1:i] != "Patient" {
		return "", false
	}
	id := rest[i+1:]
	if !ValidID(id) {
		return "", false
	}
	return id, true
}

// String renders a Request for logs and audit records, such as
// "read Patient/123" or "operation Patient/123/$everything".
func (r Request) String() string {
	var b strings.Builder
	b.WriteString(string(r.Interaction))
	b.WriteByte(' ')
	if r.CompartmentType != "" {
		fmt.Fprintf(&b, "%s/%s/", r.CompartmentType, r.CompartmentID)
	}
	b.WriteString(r.Type)
	if r.ID != "" {
		b.WriteString("/" + r.ID)
	}
	if r.VersionID != "" {
		b.WriteString("/_history/" + r.VersionID)
	}
	if r.Operation != "" {
		if r.Type != "" {
			b.WriteByte('/')
		}
		b.WriteString(r.Operation)
	}
	return strings.TrimSpace(b.String())
}
