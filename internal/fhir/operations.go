package fhir

// Operation names the gateway recognises. Any other operation is
// ErrUnsupported.
const (
	// OpEverything is Patient/[id]/$everything and Patient/$everything.
	OpEverything = "$everything"
	// OpExport is the Bulk Data kick-off: $export, Patient/$export, Group/[id]/$export.
	OpExport = "$export"
	// OpValidate is [type]/$validate and [type]/[id]/$validate.
	OpValidate = "$validate"
	// OpMeta is $meta at system, type and instance level.
	OpMeta = "$meta"
	// OpLastN is Observation/$lastn.
	OpLastN = "$lastn"
	// OpDocRef is DocumentReference/$docref.
	OpDocRef = "$docref"
	// OpExpand is ValueSet/$expand and ValueSet/[id]/$expand.
	OpExpand = "$expand"
	// OpLookup is CodeSystem/$lookup.
	OpLookup = "$lookup"
	// OpValidateCode is $validate-code on CodeSystem or ValueSet (type or instance).
	OpValidateCode = "$validate-code"
	// OpSubsumes is CodeSystem/$subsumes.
	OpSubsumes = "$subsumes"
	// OpTranslate is ConceptMap/$translate and ConceptMap/[id]/$translate.
	OpTranslate = "$translate"
)

// Levels at which an operation may be invoked.
const (
	lvSystem = 1 << iota
	lvType
	lvInstance
)

// opRule says where an operation is allowed: at which levels, and on which
// types ("" = any resource type).
type opRule struct {
	name   string
	levels int
	types  []string
}

// operationRules is the explicit list of recognised operations.
var operationRules = [...]opRule{
	{OpEverything, lvType | lvInstance, []string{"Patient"}},
	{OpExport, lvSystem, nil},
	{OpExport, lvType, []string{"Patient"}},
	{OpExport, lvInstance, []string{"Group"}},
	{OpValidate, lvType | lvInstance, nil},
	{OpMeta, lvSystem | lvType | lvInstance, nil},
	{OpLastN, lvType, []string{"Observation"}},
	{OpDocRef, lvType, []string{"DocumentReference"}},
	{OpExpand, lvType | lvInstance, []string{"ValueSet"}},
	{OpLookup, lvType, []string{"CodeSystem"}},
	{OpValidateCode, lvType | lvInstance, []string{"CodeSystem", "ValueSet"}},
	{OpSubsumes, lvType, []string{"CodeSystem"}},
	{OpTranslate, lvType | lvInstance, []string{"ConceptMap"}},
}

// IsTerminologyOperation reports whether op is one of the terminology
// operations ($expand, $lookup, $validate-code, $subsumes, $translate),
// which read code systems and value sets, never patient data.
func IsTerminologyOperation(op string) bool {
	switch op {
	case OpExpand, OpLookup, OpValidateCode, OpSubsumes, OpTranslate:
		return true
	}
	return false
}

// classifyOperation completes r (Type and ID already set for its level)
// as the operation op, if op is recognised at that level and type.
func classifyOperation(r Request, method, op string) (Request, error) {
	if !validOperation(op) {
		return r, malformed("invalid operation name %q", clip(op))
	}
	if method != "GET" && method != "HEAD" && method != "POST" {
		return r, unsupported("%s %s", method, op)
	}
	level := lvSystem
	switch {
	case r.ID != "":
		level = lvInstance
	case r.Type != "":
		level = lvType
	}
	for _, rule := range operationRules {
		if rule.name != op || rule.levels&level == 0 {
			continue
		}
		if rule.types != nil && !contains(rule.types, r.Type) {
			continue
		}
		r.Interaction, r.Operation = Operation, op
		return r, nil
	}
	return r, unsupported("operation %s at %s level%s", op, r.Level(), onType(r.Type))
}

func onType(t string) string {
	if t == "" {
		return ""
	}
	return " on " + t
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
