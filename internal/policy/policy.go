// Package policy decides, without I/O, whether a SMART access token's
// principal may perform a classified FHIR request, and under which
// constraints the gateway must carry it out.
//
// # Scopes to permissions
//
// SMART v1 and v2 scopes are both accepted (the scope package parses v1
// .read as rs, .write as cud, .* as cruds). Interactions need:
//
//	read, vread, history-instance            r
//	search-type, search-compartment,
//	history-type                             s
//	create                                   c
//	update, patch                            u
//	delete                                   d
//	capabilities                             nothing: public
//	search-system, history-system            s on "*" in user/ or system/ context
//	batch, transaction                       each entry on its own (DecideBundle)
//
// # Which scope wins
//
// A token may hold scopes of several contexts. Decide tries, in order,
// unconditional system/, user/ and patient/ scopes, then granular (v2 with a
// query) system/, user/ and patient/ scopes, and reports the first that
// permits the request; Decision.Context names it. user/ and system/ scopes
// carry no patient constraint (the upstream and the audit trail enforce the
// user's role); patient/ scopes always do.
//
// # patient/ scopes
//
// The token must name a patient (Principal.Patient); otherwise patient/
// scopes allow nothing. Patient/[id] interactions need id == the token's
// patient (any other id is answered NotFound, like a missing resource).
// Other types must be in the R4 Patient compartment; every allowed request
// carries Constraints.Patient, and:
//   - read, vread, history-instance: the gateway checks the returned
//     resource(s) with fhir.InPatientCompartment and answers 404 otherwise;
//   - search-type: the gateway adds a patient parameter (Constraints.PatientParams)
//     and checks every returned entry, including _include/_revinclude;
//   - search-compartment: only Patient/[token patient]/[type]; the path
//     itself restricts the search, no parameter is added;
//   - create: the body must lie in the compartment;
//   - update, delete: the current resource must lie in the compartment
//     (the gateway reads it first and answers 404 otherwise), and for update
//     the body too;
//   - patch and history-type are refused: the result of a patch and the
//     entries of a type history cannot be limited to a patient before the
//     upstream acts (use update and history-instance instead); Patient create is refused.
//
// # Granular scopes
//
// A v2 scope with a query (patient/Observation.rs?category=laboratory)
// permits only with Constraints.Queries: the request and every resource it
// returns or writes must match one of the queries.
//
// # Operations
//
//   - $everything on Patient/[id]: read and search of every type (*.rs) in
//     some context; with patient/*.rs only for the token's patient (NotFound
//     otherwise), constrained to it. Patient/$everything (all patients)
//     needs user/ or system/ *.rs.
//   - $export (system, Patient, Group/[id]): bulk data, user/ or system/
//     scopes only, rs on every type named in _type, or on "*" without _type.
//   - $validate: like create (type level) or update (instance level).
//   - $meta: like read (instance), search-type (type; refused for patient/
//     scopes), search-system (system).
//   - $lastn: like search-type on Observation; $docref: like search-type on
//     DocumentReference with PatientParams ["patient"].
//   - $expand, $lookup, $validate-code, $subsumes, $translate: like read of
//     the terminology type (ValueSet, CodeSystem, ConceptMap); these types
//     are outside the Patient compartment, so patient/ scopes do not reach them.
//   - anything else never gets here: fhir.Classify refuses it.
package policy

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/scope"
)

// Principal is who asks: the validated access token's claims.
type Principal struct {
	// Scopes are the granted scopes of the token.
	Scopes scope.Set
	// Patient is the bare patient id from the token's launch context, "" if none.
	Patient string
	// FHIRUser is the fhirUser claim (a resource URL), "" if none.
	FHIRUser string
	// ClientID and Subject identify the client and the user (or client) for audit.
	ClientID, Subject string
}

// Decision is the outcome of Decide.
type Decision struct {
	// Allow tells whether the request may go upstream.
	Allow bool
	// Reason explains the decision for the audit trail (not for the client).
	Reason string
	// MissingScope names, on a refusal for want of a scope, a scope that
	// would have allowed the request, such as "patient/Observation.s"
	// (written in v1 syntax when the token holds only v1 scopes); the
	// gateway shows it in the 403 OperationOutcome. "" otherwise.
	MissingScope string
	// NotFound asks the gateway to answer 404, exactly as for a resource
	// that does not exist, instead of 403: the request named another
	// patient than the token's.
	NotFound bool
	// Context is the scope context that allowed the request, "" for a
	// refusal or a public interaction.
	Context scope.Context
	// Constraints are what the gateway must enforce on an allowed request.
	Constraints Constraints
}

// Constraints restrict an allowed request.
type Constraints struct {
	// Patient is the id of the patient whose compartment every result and
	// every write must lie in, "" for no patient constraint.
	Patient string
	// PatientParams lists, for searches under a Patient constraint, the
	// search parameters that can restrict the search to the patient, in
	// order of preference. The gateway adds the first one with the value
	// "Patient/{Patient}" ("{Patient}" for "_id", used for Patient
	// searches), or rewrites the search as a compartment search
	// Patient/{Patient}/{type}; either way it also checks every returned
	// entry. Nil when nothing needs adding.
	PatientParams []string
	// Queries are the queries of the granular scopes that permitted the
	// request, nil if an unconditional scope did. The request and each
	// resource it returns or writes must match at least one of them (OR);
	// the parameters inside one query must all match (AND).
	Queries []url.Values
}

// permFor maps an interaction on a type to the SMART permission it needs.
func permFor(i fhir.Interaction) scope.Perm {
	switch i {
	case fhir.Read, fhir.VRead, fhir.HistoryInstance:
		return scope.Read
	case fhir.SearchType, fhir.SearchCompartment, fhir.HistoryType:
		return scope.Search
	case fhir.Create:
		return scope.Create
	case fhir.Update, fhir.Patch:
		return scope.Update
	case fhir.Delete:
		return scope.Delete
	}
	return 0
}

// contexts is the order in which scope contexts are tried.
var contexts = [...]scope.Context{scope.System, scope.User, scope.Patient}

func deny(format string, a ...any) Decision {
	return Decision{Reason: fmt.Sprintf(format, a...)}
}

// Decide decides a single FHIR request. See the package documentation for
// the rules.
func Decide(p Principal, r fhir.Request) Decision {
	switch r.Interaction {
	case fhir.Capabilities:
		return Decision{Allow: true, Reason: "capability statement is public"}
	case fhir.Batch, fhir.Transaction:
		return deny("a %s Bundle is decided entry by entry (DecideBundle)", r.Interaction)
	case fhir.SearchSystem, fhir.HistorySystem:
		return decideSystemWide(p, r, scope.Search)
	case fhir.Operation:
		return decideOperation(p, r)
	}
	perm := permFor(r.Interaction)
	if perm == 0 {
		return deny("unknown interaction %q", r.Interaction)
	}
	if !fhir.IsResourceType(r.Type) {
		return deny("%s without a valid resource type", r.Interaction)
	}
	return decideTyped(p, r, r.Interaction, perm, nil)
}

// decideSystemWide decides a request across all types: only unconditional
// wildcard user/ or system/ scopes reach it.
func decideSystemWide(p Principal, r fhir.Request, perm scope.Perm) Decision {
	for _, c := range [...]scope.Context{scope.System, scope.User} {
		if p.Scopes.Permits(c, "*", perm) {
			return Decision{Allow: true, Context: c, Reason: fmt.Sprintf("%s allowed by %s/*.%s", r.Interaction, c, perm)}
		}
	}
	d := deny("%s needs %s on every type (*) in user/ or system/ context", r, perm)
	d.MissingScope = missing(p, "*", perm, true)
	return d
}

// decideTyped decides request r on r.Type needing perm, treated like the
// interaction like for the patient compartment rules. patientParams, if
// not nil, replaces the compartment parameters of a patient-constrained search.
func decideTyped(p Principal, r fhir.Request, like fhir.Interaction, perm scope.Perm, patientParams []string) Decision {
	for _, c := range contexts {
		if !p.Scopes.Permits(c, r.Type, perm) {
			continue
		}
		if c == scope.Patient {
			return patientDecision(p, r, like, patientParams, nil)
		}
		return Decision{Allow: true, Context: c, Reason: fmt.Sprintf("%s allowed by %s/%s.%s", r, c, r.Type, perm)}
	}
	for _, c := range contexts {
		queries := parseQueries(p.Scopes.Queries(c, r.Type, perm))
		if len(queries) == 0 {
			continue
		}
		if c == scope.Patient {
			return patientDecision(p, r, like, patientParams, queries)
		}
		return Decision{Allow: true, Context: c, Constraints: Constraints{Queries: queries},
			Reason: fmt.Sprintf("%s allowed by granular %s/%s.%s scopes", r, c, r.Type, perm)}
	}
	d := deny("%s: no scope grants %s on %s", r, perm, r.Type)
	d.MissingScope = missing(p, r.Type, perm, false)
	return d
}

// patientDecision applies the patient compartment rules to a request a
// patient/ scope permits.
func patientDecision(p Principal, r fhir.Request, like fhir.Interaction, patientParams []string, queries []url.Values) Decision {
	if !fhir.ValidID(p.Patient) {
		return deny("%s: patient/ scope but no patient in the token's context", r)
	}
	allow := func(params []string) Decision {
		how := "patient/"
		if queries != nil {
			how = "granular patient/"
		}
		return Decision{Allow: true, Context: scope.Patient,
			Reason:      fmt.Sprintf("%s allowed by %s scope in the compartment of Patient/%s", r, how, p.Patient),
			Constraints: Constraints{Patient: p.Patient, PatientParams: params, Queries: queries}}
	}
	notFound := func(id string) Decision {
		d := deny("%s: Patient/%s is not the token's patient Patient/%s", r, id, p.Patient)
		d.NotFound = true
		return d
	}
	if r.CompartmentType != "" {
		if r.CompartmentType != "Patient" {
			return deny("%s: only the Patient compartment is supported", r)
		}
		if r.CompartmentID != p.Patient {
			return notFound(r.CompartmentID)
		}
		if fhir.PatientCompartmentParams(r.Type) == nil {
			return deny("%s: %s is not in the Patient compartment", r, r.Type)
		}
		return allow(nil)
	}
	if r.Type == "Patient" {
		switch like {
		case fhir.Read, fhir.VRead, fhir.HistoryInstance, fhir.Update, fhir.Patch, fhir.Delete:
			if r.ID != p.Patient {
				return notFound(r.ID)
			}
			return allow(nil)
		case fhir.SearchType:
			return allow([]string{"_id"})
		default:
			return deny("%s: not allowed with patient/ scopes on Patient", r)
		}
	}
	params := fhir.PatientCompartmentParams(r.Type)
	if params == nil {
		return deny("%s: %s is not in the Patient compartment, which patient/ scopes are limited to", r, r.Type)
	}
	switch like {
	case fhir.Read, fhir.VRead, fhir.HistoryInstance, fhir.Create, fhir.Update, fhir.Delete:
		return allow(nil)
	case fhir.SearchType:
		if patientParams != nil {
			params = patientParams
		}
		return allow(params)
	case fhir.Patch:
		return deny("%s: a patch cannot be checked against the patient compartment before it is applied; use update", r)
	default:
		return deny("%s: cannot be limited to the patient compartment", r)
	}
}

// parseQueries parses granular scope queries; one that does not parse is
// dropped (it then permits nothing).
func parseQueries(raw []string) []url.Values {
	var out []url.Values
	for _, q := range raw {
		v, err := url.ParseQuery(q)
		if err != nil || len(v) == 0 {
			continue
		}
		out = append(out, v)
	}
	return out
}

// missing renders the scope that would have allowed a refused request, in
// the principal's preferred context and syntax.
func missing(p Principal, typ string, perm scope.Perm, wide bool) string {
	c := preferredContext(p)
	if wide && c == scope.Patient {
		c = scope.User
	}
	suffix := perm.String()
	if onlyV1(p.Scopes) {
		switch {
		case scope.V1Read.Has(perm):
			suffix = "read"
		case scope.V1Write.Has(perm):
			suffix = "write"
		default:
			suffix = "*"
		}
	}
	return string(c) + "/" + typ + "." + suffix
}

// preferredContext is the context the principal's resource scopes use
// (patient before user before system), or patient when the token names a
// patient, else user.
func preferredContext(p Principal) scope.Context {
	var has [3]bool
	for _, sc := range p.Scopes {
		switch sc.Context {
		case scope.Patient:
			has[0] = true
		case scope.User:
			has[1] = true
		case scope.System:
			has[2] = true
		}
	}
	switch {
	case has[0]:
		return scope.Patient
	case has[1]:
		return scope.User
	case has[2]:
		return scope.System
	case p.Patient != "":
		return scope.Patient
	}
	return scope.User
}

// onlyV1 reports whether every resource scope of s is in v1 syntax (and
// there is at least one).
func onlyV1(s scope.Set) bool {
	n := 0
	for _, sc := range s {
		if sc.Kind != scope.Resource {
			continue
		}
		if !sc.V1 {
			return false
		}
		n++
	}
	return n > 0
}

// typesParam returns the resource types listed in _type (comma-separated,
// possibly repeated), and false if one is not a resource type.
func typesParam(q url.Values) ([]string, bool) {
	var out []string
	for _, v := range q["_type"] {
		for _, t := range strings.Split(v, ",") {
			t = strings.TrimSpace(t)
			if !fhir.IsResourceType(t) {
				return nil, false
			}
			out = append(out, t)
		}
	}
	return out, true
}

// PatientSearchParam returns the search parameter and value the gateway
// adds to a search under a Patient constraint: the first PatientParams
// entry with "Patient/{Patient}" ("_id" gets the bare id). ok is false
// when there is nothing to add.
func (c Constraints) PatientSearchParam() (name, value string, ok bool) {
	if c.Patient == "" || len(c.PatientParams) == 0 {
		return "", "", false
	}
	name = c.PatientParams[0]
	if name == "_id" {
		return name, c.Patient, true
	}
	return name, "Patient/" + c.Patient, true
}
