// Package demoehr is a small in-memory FHIR R4 server standing in for a
// legacy EHR in `fhirgate demo`, in tests and in the load test. It supports
// read, vread, search (GET and POST _search, compartment search), create and
// update for Patient, Practitioner, Encounter, Observation, Condition,
// MedicationRequest, AllergyIntolerance, Immunization and DiagnosticReport,
// holds deterministic synthetic data for DefaultPatients patients, and
// accepts only HTTP Basic authentication, so a gateway in front of it has to
// inject the backend credentials.
//
// It is deliberately lenient, like many legacy systems: unknown search
// parameters are ignored rather than refused. A gateway must therefore check
// what comes back, not only what it asks for.
package demoehr

import (
	"fmt"
	"math/rand/v2"
	"time"
)

// DefaultPatients is how many synthetic patients Seed creates.
const DefaultPatients = 24

// ResourceTypes lists the resource types the server knows.
var resourceTypes = []string{
	"Patient", "Practitioner", "Encounter", "Observation", "Condition",
	"MedicationRequest", "AllergyIntolerance", "Immunization", "DiagnosticReport",
}

// ResourceTypes returns the resource types the server supports.
func ResourceTypes() []string { return append([]string(nil), resourceTypes...) }

// PatientInfo describes one seeded patient (for the demo picker directory).
type PatientInfo struct {
	ID        string
	Name      string
	BirthDate string
}

// seedEpoch is the lastUpdated of all seeded data, so the data set is the
// same on every run.
var seedEpoch = time.Date(2024, 1, 15, 9, 0, 0, 0, time.UTC)

var (
	givenNames  = []string{"Amy", "Ben", "Chloe", "Daniel", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jamal", "Kira", "Liam", "Maya", "Noah", "Olga", "Pedro", "Quinn", "Rosa", "Sami", "Tara", "Umar", "Vera", "Wei", "Yusuf"}
	familyNames = []string{"Shaw", "Okafor", "Nguyen", "Keller", "Rossi", "Haddad", "Lindqvist", "Tanaka", "Moreau", "Brown", "Kowalski", "Silva", "Patel", "Novak", "Ivanova", "Garcia", "Murphy", "Costa", "Jensen", "Ahmed", "Fischer", "Dubois", "Chen", "Yilmaz"}
)

type codeDef struct {
	system, code, display, unit string
	low, high                   float64
}

const (
	loinc  = "http://loinc.org"
	snomed = "http://snomed.info/sct"
	rxnorm = "http://www.nlm.nih.gov/research/umls/rxnorm"
	cvx    = "http://hl7.org/fhir/sid/cvx"
	ucum   = "http://unitsofmeasure.org"
	obsCat = "http://terminology.hl7.org/CodeSystem/observation-category"
)

var vitals = []codeDef{
	{loinc, "8867-4", "Heart rate", "/min", 55, 100},
	{loinc, "8480-6", "Systolic blood pressure", "mm[Hg]", 100, 150},
	{loinc, "29463-7", "Body weight", "kg", 50, 110},
	{loinc, "8310-5", "Body temperature", "Cel", 36.1, 37.8},
}

var labs = []codeDef{
	{loinc, "2339-0", "Glucose [Mass/volume] in Blood", "mg/dL", 70, 160},
	{loinc, "4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 4.8, 8.5},
	{loinc, "2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL", 140, 260},
}

var conditions = []codeDef{
	{snomed, "44054006", "Diabetes mellitus type 2", "", 0, 0},
	{snomed, "38341003", "Hypertensive disorder", "", 0, 0},
	{snomed, "195967001", "Asthma", "", 0, 0},
	{snomed, "55822004", "Hyperlipidemia", "", 0, 0},
	{snomed, "35489007", "Depressive disorder", "", 0, 0},
}

var medications = []codeDef{
	{rxnorm, "860975", "metformin hydrochloride 500 MG Oral Tablet", "", 0, 0},
	{rxnorm, "314076", "lisinopril 10 MG Oral Tablet", "", 0, 0},
	{rxnorm, "745679", "albuterol 0.09 MG/ACTUAT Metered Dose Inhaler", "", 0, 0},
	{rxnorm, "617310", "atorvastatin 20 MG Oral Tablet", "", 0, 0},
	{rxnorm, "312938", "sertraline 50 MG Oral Tablet", "", 0, 0},
}

var allergies = []codeDef{
	{snomed, "91936005", "Allergy to penicillin", "", 0, 0},
	{snomed, "91935009", "Allergy to peanuts", "", 0, 0},
	{snomed, "300913006", "Shellfish allergy", "", 0, 0},
	{snomed, "418689008", "Allergy to grass pollen", "", 0, 0},
}

var vaccines = []codeDef{
	{cvx, "140", "Influenza, seasonal, injectable, preservative free", "", 0, 0},
	{cvx, "208", "SARS-COV-2 (COVID-19) vaccine, mRNA, 30 mcg/0.3mL dose", "", 0, 0},
	{cvx, "115", "Tdap", "", 0, 0},
	{cvx, "33", "pneumococcal polysaccharide vaccine, 23 valent", "", 0, 0},
}

type obj = map[string]any

func ref(typ, id string) obj { return obj{"reference": typ + "/" + id} }

func concept(c codeDef) obj {
	return obj{"coding": []any{obj{"system": c.system, "code": c.code, "display": c.display}}, "text": c.display}
}

func category(system, code, display string) []any {
	return []any{obj{"coding": []any{obj{"system": system, "code": code, "display": display}}}}
}

// PatientID is the id of the n-th seeded patient (1-based).
func PatientID(n int) string { return fmt.Sprintf("pt-%03d", n) }

// seed returns the deterministic synthetic data set: n patients with their
// clinical records and a handful of practitioners.
func seed(n int) ([]obj, []PatientInfo) {
	rng := rand.New(rand.NewPCG(20240115, 4))
	var out []obj
	const practitioners = 5
	for i := 1; i <= practitioners; i++ {
		id := fmt.Sprintf("pr-%02d", i)
		out = append(out, obj{
			"resourceType": "Practitioner", "id": id, "active": true,
			"identifier": []any{obj{"system": "http://hl7.org/fhir/sid/us-npi", "value": fmt.Sprintf("99900000%02d", i)}},
			"name":       []any{obj{"family": familyNames[len(familyNames)-i], "given": []any{givenNames[len(givenNames)-i]}, "prefix": []any{"Dr."}}},
		})
	}
	var infos []PatientInfo
	for p := 1; p <= n; p++ {
		pid := PatientID(p)
		given, family := givenNames[(p-1)%len(givenNames)], familyNames[(p*7)%len(familyNames)]
		gender := []string{"female", "male"}[p%2]
		birth := time.Date(1940+rng.IntN(60), time.Month(1+rng.IntN(12)), 1+rng.IntN(28), 0, 0, 0, 0, time.UTC).Format("2006-01-02")
		gp := fmt.Sprintf("pr-%02d", 1+p%practitioners)
		infos = append(infos, PatientInfo{ID: pid, Name: given + " " + family, BirthDate: birth})
		out = append(out, obj{
			"resourceType": "Patient", "id": pid, "active": true,
			"identifier":          []any{obj{"system": "urn:oid:2.16.840.1.113883.19.5", "value": fmt.Sprintf("MRN%06d", 100000+p)}},
			"name":                []any{obj{"use": "official", "family": family, "given": []any{given}}},
			"gender":              gender,
			"birthDate":           birth,
			"generalPractitioner": []any{ref("Practitioner", gp)},
		})
		var encIDs []string
		for e := 1; e <= 2; e++ {
			eid := fmt.Sprintf("enc-%03d-%d", p, e)
			encIDs = append(encIDs, eid)
			start := seedEpoch.AddDate(0, -e*3, -rng.IntN(20))
			out = append(out, obj{
				"resourceType": "Encounter", "id": eid, "status": "finished",
				"class":       obj{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"},
				"type":        []any{obj{"text": "Office visit"}},
				"subject":     ref("Patient", pid),
				"participant": []any{obj{"individual": ref("Practitioner", gp)}},
				"period":      obj{"start": start.Format(time.RFC3339), "end": start.Add(30 * time.Minute).Format(time.RFC3339)},
			})
		}
		k := 0
		obs := func(c codeDef, cat, catDisplay, enc string, when time.Time) string {
			k++
			id := fmt.Sprintf("obs-%03d-%02d", p, k)
			v := c.low + rng.Float64()*(c.high-c.low)
			out = append(out, obj{
				"resourceType": "Observation", "id": id, "status": "final",
				"category":          category(obsCat, cat, catDisplay),
				"code":              concept(c),
				"subject":           ref("Patient", pid),
				"encounter":         ref("Encounter", enc),
				"performer":         []any{ref("Practitioner", gp)},
				"effectiveDateTime": when.Format(time.RFC3339),
				"valueQuantity":     obj{"value": float64(int(v*10)) / 10, "unit": c.unit, "system": ucum, "code": c.unit},
			})
			return id
		}
		for e, eid := range encIDs {
			when := seedEpoch.AddDate(0, -(e+1)*3, 0)
			for _, c := range vitals {
				obs(c, "vital-signs", "Vital Signs", eid, when)
			}
		}
		var labIDs []string
		for _, c := range labs {
			labIDs = append(labIDs, obs(c, "laboratory", "Laboratory", encIDs[0], seedEpoch.AddDate(0, -3, 1)))
		}
		results := make([]any, len(labIDs))
		for i, id := range labIDs {
			results[i] = ref("Observation", id)
		}
		out = append(out, obj{
			"resourceType": "DiagnosticReport", "id": fmt.Sprintf("dr-%03d-1", p), "status": "final",
			"category":          category("http://terminology.hl7.org/CodeSystem/v2-0074", "LAB", "Laboratory"),
			"code":              concept(codeDef{system: loinc, code: "24323-8", display: "Comprehensive metabolic panel"}),
			"subject":           ref("Patient", pid),
			"encounter":         ref("Encounter", encIDs[0]),
			"performer":         []any{ref("Practitioner", gp)},
			"effectiveDateTime": seedEpoch.AddDate(0, -3, 1).Format(time.RFC3339),
			"result":            results,
		})
		for c := 0; c < 1+p%2; c++ {
			cd := conditions[(p+c)%len(conditions)]
			out = append(out, obj{
				"resourceType": "Condition", "id": fmt.Sprintf("cond-%03d-%d", p, c+1),
				"clinicalStatus":     concept(codeDef{system: "http://terminology.hl7.org/CodeSystem/condition-clinical", code: "active", display: "Active"}),
				"verificationStatus": concept(codeDef{system: "http://terminology.hl7.org/CodeSystem/condition-ver-status", code: "confirmed", display: "Confirmed"}),
				"category":           category("http://terminology.hl7.org/CodeSystem/condition-category", "problem-list-item", "Problem List Item"),
				"code":               concept(cd),
				"subject":            ref("Patient", pid),
				"recorder":           ref("Practitioner", gp),
				"onsetDateTime":      seedEpoch.AddDate(-1-rng.IntN(5), 0, 0).Format("2006-01-02"),
			})
			md := medications[(p+c)%len(medications)]
			out = append(out, obj{
				"resourceType": "MedicationRequest", "id": fmt.Sprintf("med-%03d-%d", p, c+1),
				"status": "active", "intent": "order",
				"medicationCodeableConcept": concept(md),
				"subject":                   ref("Patient", pid),
				"requester":                 ref("Practitioner", gp),
				"authoredOn":                seedEpoch.AddDate(0, -2, 0).Format("2006-01-02"),
				"dosageInstruction":         []any{obj{"text": "1 tablet daily"}},
			})
		}
		ad := allergies[p%len(allergies)]
		out = append(out, obj{
			"resourceType": "AllergyIntolerance", "id": fmt.Sprintf("alg-%03d-1", p),
			"clinicalStatus":     concept(codeDef{system: "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", code: "active", display: "Active"}),
			"verificationStatus": concept(codeDef{system: "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", code: "confirmed", display: "Confirmed"}),
			"code":               concept(ad),
			"patient":            ref("Patient", pid),
			"recorder":           ref("Practitioner", gp),
		})
		for v := 0; v < 2; v++ {
			vd := vaccines[(p+v)%len(vaccines)]
			out = append(out, obj{
				"resourceType": "Immunization", "id": fmt.Sprintf("imm-%03d-%d", p, v+1),
				"status":             "completed",
				"vaccineCode":        concept(vd),
				"patient":            ref("Patient", pid),
				"occurrenceDateTime": seedEpoch.AddDate(-v, -1, 0).Format("2006-01-02"),
				"performer":          []any{obj{"actor": ref("Practitioner", gp)}},
			})
		}
	}
	return out, infos
}
