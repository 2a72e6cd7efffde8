// Package export turns stored audit entries into FHIR R4 AuditEvent
// resources shaped after the IHE Basic Audit Log Patterns (BALP) and into
// plain JSON, and streams query results in those formats.
//
// A gateway request becomes a RESTful-operation AuditEvent (type rest,
// subtype the FHIR interaction, action C/R/U/D/E) with agents for the user
// (BALP UserOauthAgent, the token's jti as policy), the client application
// (Source Role ID, with its network address) and fhirgate (Destination Role
// ID), the patient entity and the resource entity, and the request id as a
// BALP XrequestId entity. Authorization-server events use DICOM event types
// (User Authentication, Security Alert, Application Activity) with the
// fhirgate action as subtype. Every resource carries its chain position and
// hash in an extension, so an exported event can be matched to the
// tamper-evident record.
package export

import (
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/audit/chain"
)

// Code systems and extension URLs.
const (
	SystemAuditEventType = "http://terminology.hl7.org/CodeSystem/audit-event-type"
	SystemRESTful        = "http://hl7.org/fhir/restful-interaction"
	SystemDCM            = "http://dicom.nema.org/resources/ontology/DCM"
	SystemOutcome        = "http://terminology.hl7.org/CodeSystem/audit-event-outcome"
	SystemUserAgentTypes = "https://profiles.ihe.net/ITI/BALP/CodeSystem/UserAgentTypes"
	SystemBALPEntityType = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"
	SystemEntityType     = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
	SystemObjectRole     = "http://terminology.hl7.org/CodeSystem/object-role"
	SystemSourceType     = "http://terminology.hl7.org/CodeSystem/security-source-type"
	SystemAction         = "https://fhirgate.dev/CodeSystem/audit-action"
	SystemClientID       = "https://fhirgate.dev/NamingSystem/client-id"
	SystemSubject        = "https://fhirgate.dev/NamingSystem/subject"
	ExtChain             = "https://fhirgate.dev/fhir/StructureDefinition/audit-chain"
	ExtAuthorization     = "https://fhirgate.dev/fhir/StructureDefinition/oauth-authorization"
)

// Coding is a FHIR Coding.
type Coding struct {
	System  string `json:"system,omitempty"`
	Code    string `json:"code"`
	Display string `json:"display,omitempty"`
}

// CodeableConcept is a FHIR CodeableConcept.
type CodeableConcept struct {
	Coding []Coding `json:"coding,omitempty"`
	Text   string   `json:"text,omitempty"`
}

// Identifier is a FHIR Identifier.
type Identifier struct {
	System string `json:"system,omitempty"`
	Value  string `json:"value"`
}

// Reference is a FHIR Reference.
type Reference struct {
	Reference  string      `json:"reference,omitempty"`
	Identifier *Identifier `json:"identifier,omitempty"`
	Display    string      `json:"display,omitempty"`
}

// Extension is a FHIR Extension (the value types used here; the chain
// sequence number is a string because it can exceed FHIR's 32-bit integer).
type Extension struct {
	URL         string      `json:"url"`
	ValueString string      `json:"valueString,omitempty"`
	ValueCode   string      `json:"valueCode,omitempty"`
	Extension   []Extension `json:"extension,omitempty"`
}

// Network is AuditEvent.agent.network.
type Network struct {
	Address string `json:"address"`
	Type    string `json:"type"` // 1 machine name, 2 IP address
}

// Agent is AuditEvent.agent.
type Agent struct {
	Extension []Extension      `json:"extension,omitempty"`
	Type      *CodeableConcept `json:"type,omitempty"`
	Who       *Reference       `json:"who,omitempty"`
	AltID     string           `json:"altId,omitempty"`
	Requestor bool             `json:"requestor"`
	Policy    []string         `json:"policy,omitempty"`
	Network   *Network         `json:"network,omitempty"`
}

// Source is AuditEvent.source.
type Source struct {
	Site     string    `json:"site,omitempty"`
	Observer Reference `json:"observer"`
	Type     []Coding  `json:"type,omitempty"`
}

// Detail is AuditEvent.entity.detail.
type Detail struct {
	Type        string `json:"type"`
	ValueString string `json:"valueString"`
}

// Entity is AuditEvent.entity.
type Entity struct {
	What   *Reference `json:"what,omitempty"`
	Type   *Coding    `json:"type,omitempty"`
	Role   *Coding    `json:"role,omitempty"`
	Detail []Detail   `json:"detail,omitempty"`
}

// Meta is Resource.meta.
type Meta struct {
	Profile []string `json:"profile,omitempty"`
}

// AuditEvent is a FHIR R4 AuditEvent resource.
type AuditEvent struct {
	ResourceType string      `json:"resourceType"`
	ID           string      `json:"id"`
	Meta         *Meta       `json:"meta,omitempty"`
	Extension    []Extension `json:"extension,omitempty"`
	Type         Coding      `json:"type"`
	Subtype      []Coding    `json:"subtype,omitempty"`
	Action       string      `json:"action,omitempty"`
	Recorded     string      `json:"recorded"`
	Outcome      string      `json:"outcome,omitempty"`
	OutcomeDesc  string      `json:"outcomeDesc,omitempty"`
	Agent        []Agent     `json:"agent"`
	Source       Source      `json:"source"`
	Entity       []Entity    `json:"entity,omitempty"`
}

var idUnsafe = regexp.MustCompile(`[^A-Za-z0-9.-]`)

// ResourceID is the AuditEvent id of an entry: node and sequence number.
func ResourceID(e chain.Entry) string {
	node := idUnsafe.ReplaceAllString(e.Node, "-")
	seq := strconv.FormatUint(e.Seq, 10)
	if max := 63 - len(seq); len(node) > max {
		node = node[:max]
	}
	return node + "-" + seq
}

// profiles of BALP used for gateway reads and queries with a patient.
const (
	profilePatientRead  = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.PatientRead"
	profilePatientQuery = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.PatientQuery"
	profileTokenUse     = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.OAUTHaccessTokenUse.Opaque"
)

// ToAuditEvent converts one entry into an AuditEvent.
func ToAuditEvent(e chain.Entry) AuditEvent {
	ev := chain.Normalize(e.Event)
	ae := AuditEvent{
		ResourceType: "AuditEvent",
		ID:           ResourceID(e),
		Recorded:     ev.Time.Format(time.RFC3339Nano),
		Action:       "E",
		Outcome:      "0",
		Source: Source{
			Observer: Reference{Display: "fhirgate " + e.Node},
			Type:     []Coding{{System: SystemSourceType, Code: "4", Display: "Application Server"}},
		},
	}
	ae.Extension = []Extension{{URL: ExtChain, Extension: []Extension{
		{URL: "node", ValueString: e.Node},
		{URL: "seq", ValueString: strconv.FormatUint(e.Seq, 10)},
		{URL: "hash", ValueString: hexString(e.Hash)},
	}}}
	if ev.Outcome == audit.Failure {
		ae.Outcome = "4"
	}
	ae.OutcomeDesc = ev.Reason
	actionCoding := Coding{System: SystemAction, Code: string(ev.Action)}

	rest := ev.Interaction != "" || ev.Action == audit.ActionFHIRRequest || ev.Action == audit.ActionFHIRFiltered
	switch {
	case rest:
		ae.Type = Coding{System: SystemAuditEventType, Code: "rest", Display: "Restful Operation"}
		if ev.Interaction != "" {
			ae.Subtype = append(ae.Subtype, Coding{System: SystemRESTful, Code: ev.Interaction})
		}
		ae.Action = crudAction(ev.Interaction)
		if ev.Patient != "" && ev.Outcome != audit.Failure {
			if strings.HasPrefix(ev.Interaction, "search") {
				ae.Meta = &Meta{Profile: []string{profilePatientQuery, profileTokenUse}}
			} else if ev.Interaction == "read" || ev.Interaction == "vread" {
				ae.Meta = &Meta{Profile: []string{profilePatientRead, profileTokenUse}}
			}
		}
	case isAuthentication(ev.Action):
		ae.Type = Coding{System: SystemDCM, Code: "110114", Display: "User Authentication"}
		switch ev.Action {
		case audit.ActionLogin:
			ae.Subtype = append(ae.Subtype, Coding{System: SystemDCM, Code: "110122", Display: "Login"})
		case audit.ActionLogout:
			ae.Subtype = append(ae.Subtype, Coding{System: SystemDCM, Code: "110123", Display: "Logout"})
		}
	case isSecurityAlert(ev.Action):
		ae.Type = Coding{System: SystemDCM, Code: "110113", Display: "Security Alert"}
	default:
		ae.Type = Coding{System: SystemDCM, Code: "110100", Display: "Application Activity"}
	}
	ae.Subtype = append(ae.Subtype, actionCoding)

	// Who: the user, the client application, and fhirgate itself.
	if ev.UserID != "" || ev.FHIRUser != "" || ev.TokenID != "" {
		u := Agent{
			Type:      &CodeableConcept{Coding: []Coding{{System: SystemUserAgentTypes, Code: "UserOauthAgent", Display: "User OAuth Agent participant"}}},
			Requestor: true,
			Who:       &Reference{},
		}
		if ev.FHIRUser != "" {
			u.Who.Reference = ev.FHIRUser
		}
		if ev.UserID != "" {
			u.Who.Identifier = &Identifier{System: SystemSubject, Value: ev.UserID}
		}
		if ev.TokenID != "" {
			u.Policy = []string{ev.TokenID}
		}
		var authz []Extension
		for _, kv := range [][2]string{{"client_id", ev.ClientID}, {"scope", ev.Scope}, {"allowedBy", ev.AllowedBy}, {"binding", string(ev.Binding)}} {
			if kv[1] != "" {
				authz = append(authz, Extension{URL: kv[0], ValueString: kv[1]})
			}
		}
		if len(authz) > 0 {
			u.Extension = []Extension{{URL: ExtAuthorization, Extension: authz}}
		}
		ae.Agent = append(ae.Agent, u)
	}
	client := Agent{
		Type:      &CodeableConcept{Coding: []Coding{{System: SystemDCM, Code: "110153", Display: "Source Role ID"}}},
		Requestor: ev.UserID == "" && ev.FHIRUser == "" && ev.TokenID == "",
	}
	if ev.ClientID != "" {
		client.Who = &Reference{Identifier: &Identifier{System: SystemClientID, Value: ev.ClientID}}
	}
	if ev.SourceIP != "" {
		client.Network = &Network{Address: ev.SourceIP, Type: "2"}
	}
	if ev.UserAgent != "" {
		client.AltID = ev.UserAgent
	}
	ae.Agent = append(ae.Agent, client)
	ae.Agent = append(ae.Agent, Agent{
		Type: &CodeableConcept{Coding: []Coding{{System: SystemDCM, Code: "110152", Display: "Destination Role ID"}}},
		Who:  &Reference{Display: "fhirgate " + e.Node},
	})

	// What: the patient, the resource, the request.
	if ev.Patient != "" {
		ae.Entity = append(ae.Entity, Entity{
			What: &Reference{Reference: patientRef(ev.Patient)},
			Type: &Coding{System: SystemEntityType, Code: "1", Display: "Person"},
			Role: &Coding{System: SystemObjectRole, Code: "1", Display: "Patient"},
		})
	}
	if ev.ResourceType != "" {
		ref := ev.ResourceType
		if ev.ResourceID != "" {
			ref += "/" + ev.ResourceID
		}
		ent := Entity{
			What: &Reference{Reference: ref},
			Type: &Coding{System: SystemEntityType, Code: "2", Display: "System Object"},
			Role: &Coding{System: SystemObjectRole, Code: "4", Display: "Domain Resource"},
		}
		if ev.EntriesFiltered > 0 {
			ent.Detail = append(ent.Detail, Detail{Type: "entriesFiltered", ValueString: strconv.Itoa(ev.EntriesFiltered)})
		}
		ae.Entity = append(ae.Entity, ent)
	}
	if ev.RequestID != "" {
		ae.Entity = append(ae.Entity, Entity{
			What: &Reference{Identifier: &Identifier{Value: ev.RequestID}},
			Type: &Coding{System: SystemBALPEntityType, Code: "XrequestId", Display: "X-Request-Id"},
		})
	}
	return ae
}

func patientRef(p string) string {
	if strings.Contains(p, "/") {
		return p
	}
	return "Patient/" + p
}

func crudAction(interaction string) string {
	switch {
	case interaction == "create":
		return "C"
	case interaction == "read" || interaction == "vread" || strings.HasPrefix(interaction, "search") || strings.HasPrefix(interaction, "history"):
		return "R"
	case interaction == "update" || interaction == "patch":
		return "U"
	case interaction == "delete":
		return "D"
	}
	return "E"
}

func isAuthentication(a audit.Action) bool {
	switch a {
	case audit.ActionLogin, audit.ActionLogout, audit.ActionAuthorize, audit.ActionCodeIssued,
		audit.ActionTokenIssued, audit.ActionTokenRefreshed, audit.ActionTokenRefused,
		audit.ActionTokenRevoked, audit.ActionTokenIntrospected, audit.ActionUserinfo:
		return true
	}
	return false
}

func isSecurityAlert(a audit.Action) bool {
	switch a {
	case audit.ActionLockout, audit.ActionCodeReuse, audit.ActionRefreshReuse, audit.ActionReplayDetected,
		audit.ActionAnomaly, audit.ActionSuspended, audit.ActionTokenLeaked, audit.ActionKeyRotated,
		audit.ActionClientRegistered, audit.ActionClientChanged, audit.ActionClientDeleted, audit.ActionRegistrationRefused:
		return true
	}
	return false
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}
