package scope

import (
	"net/url"
	"strings"
)

// Audience selects how DescribeFor words patient/ scopes.
type Audience int

// Audiences for DescribeFor.
const (
	// ForPatient speaks to the patient: patient/ scopes read "your ...".
	ForPatient Audience = iota
	// ForClinician speaks to a clinician or other user acting on a patient's
	// record: patient/ scopes read "the patient's ...".
	ForClinician
)

// futureTypes is appended to every wildcard description, because a "*"
// grant also covers resource types the server adds later.
const futureTypes = ", including types of data added in the future"

// Describe returns a plain-language description of s for a consent page,
// addressed to a patient, for example "Read and search your laboratory
// results" for
// patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory.
func Describe(s Scope) string {
	return DescribeFor(s, ForPatient)
}

// DescribeFor is Describe with the wording chosen for audience a.
func DescribeFor(s Scope, a Audience) string {
	switch s.Kind {
	case Resource:
		return describeResource(s, a)
	case OpenID:
		return "Know who you are"
	case FHIRUser:
		return "Know who you are in the health record"
	case Profile:
		return "See your name and basic profile information"
	case Launch:
		return "Know which patient record and visit were open when it was launched"
	case LaunchPatient:
		return "Know which patient record is open"
	case LaunchEncounter:
		return "Know which visit is open"
	case OfflineAccess:
		return "Keep access after you log out, until you revoke it"
	case OnlineAccess:
		return "Keep access while you are logged in"
	}
	return "Unrecognised permission"
}

// describeResource words a resource scope as "<verbs> <object>".
func describeResource(s Scope, a Audience) string {
	noun, rest := "", s.Query
	if s.Type != "*" {
		noun, rest = categoryNoun(s.Query)
		if noun == "" {
			noun = typeNoun(s.Type)
		}
	}
	var obj string
	switch {
	case s.Type == "*":
		switch {
		case s.Context == User:
			obj = "all data you can access"
		case s.Context == System:
			obj = "all data on this server"
		case a == ForClinician:
			obj = "all of the patient's health data"
		default:
			obj = "all your health data"
		}
	case s.Context == User:
		obj = noun + " you can access"
	case s.Context == System:
		obj = "all " + noun + " on this server"
	case a == ForClinician:
		obj = "the patient's " + noun
	default:
		obj = "your " + noun
	}
	if rest != "" {
		obj += ", only where " + humanQuery(rest)
	}
	if s.Type == "*" {
		obj += futureTypes
	}
	return verbs(s.Perms) + " " + obj
}

// verbs lists the actions of p as "Create, read, update, delete and search".
func verbs(p Perm) string {
	var words []string
	for _, pl := range permLetters {
		if p&pl.p == 0 {
			continue
		}
		switch pl.p {
		case Create:
			words = append(words, "create")
		case Read:
			words = append(words, "read")
		case Update:
			words = append(words, "update")
		case Delete:
			words = append(words, "delete")
		case Search:
			words = append(words, "search")
		}
	}
	if len(words) == 0 {
		return "No access to"
	}
	out := joinAnd(words)
	return strings.ToUpper(out[:1]) + out[1:]
}

// joinAnd joins words as "a, b and c".
func joinAnd(words []string) string {
	if len(words) <= 1 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " and " + words[len(words)-1]
}

// categoryNoun looks for a "category" parameter in query whose codes are all
// known. It returns their friendly names joined ("laboratory results and
// vital signs") and the query with that parameter removed; or "" and the
// whole query.
func categoryNoun(query string) (string, string) {
	if query == "" {
		return "", ""
	}
	var (
		noun string
		rest []string
	)
	for pair := range strings.SplitSeq(query, "&") {
		name, value, _ := strings.Cut(pair, "=")
		if noun == "" && name == "category" {
			if n := categoryNames(value); n != "" {
				noun = n
				continue
			}
		}
		rest = append(rest, pair)
	}
	if noun == "" {
		return "", query
	}
	return noun, strings.Join(rest, "&")
}

// categoryNames maps a category search value (comma-separated
// [system|]code tokens) to friendly words, or "" if any code is unknown.
func categoryNames(value string) string {
	v, err := url.QueryUnescape(value)
	if err != nil {
		return ""
	}
	var names []string
	for tok := range strings.SplitSeq(v, ",") {
		code := tok
		if i := strings.LastIndexByte(tok, '|'); i >= 0 {
			code = tok[i+1:]
		}
		n := categoryName(code)
		if n == "" {
			return ""
		}
		names = append(names, n)
	}
	return joinAnd(names)
}

// categoryName gives friendly words for the common US Core Observation and
// Condition category codes.
func categoryName(code string) string {
	switch code {
	// Observation (observation-category, US Core).
	case "laboratory":
		return "laboratory results"
	case "vital-signs":
		return "vital signs"
	case "social-history":
		return "social history"
	case "survey":
		return "survey and questionnaire answers"
	case "sdoh":
		return "social needs information (such as housing, food and transport)"
	case "imaging":
		return "imaging results"
	case "exam":
		return "physical exam findings"
	case "clinical-test":
		return "clinical test results"
	case "procedure":
		return "procedure results"
	case "therapy":
		return "therapy results"
	case "activity":
		return "physical activity records"
	// Condition (condition-category, US Core).
	case "encounter-diagnosis":
		return "visit diagnoses"
	case "problem-list-item":
		return "problem list"
	case "health-concern":
		return "health concerns"
	// DocumentReference (US Core).
	case "clinical-note":
		return "clinical notes"
	}
	return ""
}

// typeNoun names the records of a resource type in plain words.
func typeNoun(t string) string {
	switch t {
	case "AllergyIntolerance":
		return "allergies and intolerances"
	case "Appointment":
		return "appointments"
	case "CarePlan":
		return "care plans"
	case "CareTeam":
		return "care team members"
	case "Condition":
		return "conditions and diagnoses"
	case "Coverage":
		return "insurance coverage"
	case "Device":
		return "medical devices"
	case "DiagnosticReport":
		return "test and imaging reports"
	case "DocumentReference":
		return "clinical documents"
	case "Encounter":
		return "visits"
	case "ExplanationOfBenefit":
		return "insurance claims and payments"
	case "FamilyMemberHistory":
		return "family health history"
	case "Goal":
		return "health goals"
	case "Immunization":
		return "immunizations"
	case "Location":
		return "care locations"
	case "Medication":
		return "medication details"
	case "MedicationDispense":
		return "dispensed medications"
	case "MedicationRequest":
		return "prescriptions and medication orders"
	case "MedicationStatement":
		return "medication lists"
	case "Observation":
		return "observations (such as lab results and vital signs)"
	case "Organization":
		return "healthcare organizations"
	case "Patient":
		return "patient details (such as name, birth date and contact information)"
	case "Practitioner":
		return "healthcare providers"
	case "PractitionerRole":
		return "healthcare provider roles"
	case "Procedure":
		return "procedures"
	case "Provenance":
		return "record history (who made each change)"
	case "QuestionnaireResponse":
		return "questionnaire answers"
	case "RelatedPerson":
		return "related people (such as family and caregivers)"
	case "ServiceRequest":
		return "orders and referrals"
	case "Specimen":
		return "specimens"
	}
	return splitWords(t) + " records"
}

// splitWords turns "ChargeItemDefinition" into "charge item definition".
func splitWords(t string) string {
	var b strings.Builder
	for i := 0; i < len(t); i++ {
		c := t[i]
		if c >= 'A' && c <= 'Z' {
			if i > 0 {
				b.WriteByte(' ')
			}
			c += 'a' - 'A'
		}
		b.WriteByte(c)
	}
	return b.String()
}

// humanQuery renders a scope query as "code is 1234-5 and status is final".
// A system|code value shows only its code.
func humanQuery(q string) string {
	var parts []string
	for pair := range strings.SplitSeq(q, "&") {
		name, value, _ := strings.Cut(pair, "=")
		if v, err := url.QueryUnescape(value); err == nil {
			value = v
		}
		if i := strings.LastIndexByte(value, '|'); i >= 0 && i < len(value)-1 {
			value = value[i+1:]
		}
		parts = append(parts, name+" is "+value)
	}
	return joinAnd(parts)
}
