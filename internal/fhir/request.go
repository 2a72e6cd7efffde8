// Package fhir is the FHIR R4 REST vocabulary of the gateway: it classifies
// a request (method and path relative to the FHIR base) into a FHIR
// interaction, classifies the entries of batch and transaction Bundles,
// answers Patient compartment questions about resources from a table
// generated from the official R4 CompartmentDefinition (see
// tools/compartmentgen), and builds OperationOutcome bodies.
//
// It uses the standard library only and performs no I/O. Anything it does
// not recognise is refused (ErrUnsupported) rather than guessed at, so that
// the policy never decides on a request it misunderstood.
package fhir

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// Interaction is a FHIR RESTful interaction (R4 http.html).
type Interaction string

// The FHIR interactions the gateway distinguishes.
const (
	// Read is GET [type]/[id].
	Read Interaction = "read"
	// VRead is GET [type]/[id]/_history/[vid].
	VRead Interaction = "vread"
	// Update is PUT [type]/[id].
	Update Interaction = "update"
	// Patch is PATCH [type]/[id].
	Patch Interaction = "patch"
	// Delete is DELETE [type]/[id].
	Delete Interaction = "delete"
	// Create is POST [type].
	Create Interaction = "create"
	// SearchType is GET [type]?... or POST [type]/_search.
	SearchType Interaction = "search-type"
	// SearchSystem is GET [base]?... or POST [base]/_search.
	SearchSystem Interaction = "search-system"
	// SearchCompartment is GET Patient/[id]/[type]?... (or POST .../_search).
	SearchCompartment Interaction = "search-compartment"
	// HistoryInstance is GET [type]/[id]/_history.
	HistoryInstance Interaction = "history-instance"
	// HistoryType is GET [type]/_history.
	HistoryType Interaction = "history-type"
	// HistorySystem is GET [base]/_history.
	HistorySystem Interaction = "history-system"
	// Operation is an extended operation ($name) at system, type or instance level.
	Operation Interaction = "operation"
	// Capabilities is GET [base]/metadata.
	Capabilities Interaction = "capabilities"
	// Batch is a batch Bundle POSTed to the base. Classify returns Batch
	// for any POST to the base; ClassifyBundle reads the body and tells
	// Batch from Transaction.
	Batch Interaction = "batch"
	// Transaction is a transaction Bundle POSTed to the base.
	Transaction Interaction = "transaction"
)

// Errors returned by Classify and ClassifyBundle, wrapped with details.
var (
	// ErrUnsupported means the request is well formed but not an
	// interaction the gateway lets through (an unknown resource type or
	// operation, a conditional update or delete, an unknown method).
	ErrUnsupported = errors.New("fhir: unsupported request")
	// ErrMalformed means the request breaks FHIR URL or Bundle syntax
	// (empty segments, "." or "..", an invalid id, a body that is not a Bundle).
	ErrMalformed = errors.New("fhir: malformed request")
)

// Request is a classified FHIR request.
type Request struct {
	Interaction Interaction
	// Type is the resource type: of the instance, of the type-level
	// interaction, or of the searched type in a compartment search.
	// It is "" at system level.
	Type string
	// ID is the logical id of the instance, "" if none.
	ID string
	// VersionID is the version of a vread, "" otherwise.
	VersionID string
	// Operation is the operation name with its '$' (such as "$everything"),
	// "" unless Interaction is Operation.
	Operation string
	// CompartmentType and CompartmentID name the compartment of a
	// compartment search: Patient/123/Observation gives "Patient", "123".
	CompartmentType, CompartmentID string
	// Query is the query of the request, as given to Classify.
	Query url.Values
}

// Level reports whether the request is at system ("system"), type ("type")
// or instance ("instance") level.
func (r Request) Level() string {
	switch {
	case r.ID != "":
		return "instance"
	case r.Type != "":
		return "type"
	default:
		return "system"
	}
}

// IsResourceType reports whether t is a FHIR R4 resource type (from the
// generated table; Parameters, which has no REST endpoint, is not one).
func IsResourceType(t string) bool {
	_, ok := slices.BinarySearch(resourceTypes[:], t)
	return ok
}

// ResourceTypes returns the generated table's resource types in byte order.
// The caller owns the returned slice.
func ResourceTypes() []string {
	return slices.Clone(resourceTypes[:])
}

// ValidID reports whether s is a valid FHIR id: [A-Za-z0-9\-\.]{1,64}. The
// path segments "." and ".." match that expression but are refused, since
// an upstream would treat them as path navigation.
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > 64 || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// validOperation reports whether s is "$" followed by a name made of
// letters, digits and '-'.
func validOperation(s string) bool {
	if len(s) < 2 || len(s) > 64 || s[0] != '$' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// maxSegments bounds the number of path segments Classify looks at; no
// FHIR interaction has more than four.
const maxSegments = 4

// malformed and unsupported wrap the sentinels with a reason.
func malformed(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, a...))
}

func unsupported(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrUnsupported, fmt.Sprintf(format, a...))
}

// clip shortens s for an error message.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// Classify classifies a FHIR REST request.
//
// path is relative to the FHIR base, such as "Patient/123/_history/2"; one
// leading '/' is ignored, and "" is the base itself. Pass the escaped path
// (url.URL.EscapedPath minus the base) or the decoded one: no FHIR type, id
// or operation needs escaping, so a '%' (like any other character outside
// the FHIR id alphabet) makes the request malformed. query is stored in the
// Request unchanged (not copied).
//
// HEAD is classified like GET. POST [type]/_search and POST [base]/_search
// are searches: the caller merges the form body into Query. POST to the
// base returns Batch: the caller then classifies the body with
// ClassifyBundle. Conditional update, patch and delete (no id) are
// ErrUnsupported, as are compartments other than Patient and
// Patient/[id]/* . Operations are recognised only where listed in
// operations.go; any other is ErrUnsupported.
func Classify(method, path string, query url.Values) (Request, error) {
	r := Request{Query: query}
	path = strings.TrimPrefix(path, "/")
	var segs [maxSegments]string
	n := 0
	if path != "" {
		rest := path
		for {
			if n == maxSegments {
				return r, malformed("too many path segments")
			}
			seg, tail, more := strings.Cut(rest, "/")
			if seg == "" {
				return r, malformed("empty path segment")
			}
			if seg == "." || seg == ".." {
				return r, malformed("dot segment in path")
			}
			segs[n] = seg
			n++
			if !more {
				break
			}
			rest = tail
		}
	}
	switch method {
	case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE":
	default:
		return r, unsupported("method %s", clip(method))
	}
	s := segs[:n]
	// System level.
	if n == 0 {
		switch method {
		case "GET", "HEAD":
			r.Interaction = SearchSystem
		case "POST":
			r.Interaction = Batch
		default:
			return r, unsupported("%s on the base", method)
		}
		return r, nil
	}
	if s[0] == "metadata" && n == 1 {
		if method != "GET" && method != "HEAD" {
			return r, unsupported("%s metadata", method)
		}
		r.Interaction = Capabilities
		return r, nil
	}
	if s[0] == "_history" && n == 1 {
		if method != "GET" && method != "HEAD" {
			return r, unsupported("%s _history", method)
		}
		r.Interaction = HistorySystem
		return r, nil
	}
	if s[0] == "_search" && n == 1 {
		if method != "POST" {
			return r, unsupported("%s _search", method)
		}
		r.Interaction = SearchSystem
		return r, nil
	}
	if strings.HasPrefix(s[0], "$") {
		if n != 1 {
			return r, malformed("path after a system operation")
		}
		return classifyOperation(r, method, s[0])
	}
	// Type level and below.
	if !isTypeName(s[0]) {
		return r, malformed("invalid resource type %q", clip(s[0]))
	}
	if !IsResourceType(s[0]) {
		return r, unsupported("unknown resource type %q", clip(s[0]))
	}
	r.Type = s[0]
	if n == 1 {
		switch method {
		case "GET", "HEAD":
			r.Interaction = SearchType
		case "POST":
			r.Interaction = Create
		default:
			return r, unsupported("conditional %s", strings.ToLower(method))
		}
		return r, nil
	}
	switch {
	case s[1] == "_search":
		if n != 2 {
			return r, malformed("path after _search")
		}
		if method != "POST" {
			return r, unsupported("%s %s/_search", method, r.Type)
		}
		r.Interaction = SearchType
		return r, nil
	case s[1] == "_history":
		if n != 2 {
			return r, malformed("path after type _history")
		}
		if method != "GET" && method != "HEAD" {
			return r, unsupported("%s type history", method)
		}
		r.Interaction = HistoryType
		return r, nil
	case strings.HasPrefix(s[1], "$"):
		if n != 2 {
			return r, malformed("path after a type operation")
		}
		return classifyOperation(r, method, s[1])
	}
	if !ValidID(s[1]) {
		return r, malformed("invalid id %q", clip(s[1]))
	}
	r.ID = s[1]
	if n == 2 {
		switch method {
		case "GET", "HEAD":
			r.Interaction = Read
		case "PUT":
			r.Interaction = Update
		case "PATCH":
			r.Interaction = Patch
		case "DELETE":
			r.Interaction = Delete
		default:
			return r, unsupported("POST to an instance")
		}
		return r, nil
	}
	switch {
	case s[2] == "_history":
		if method != "GET" && method != "HEAD" {
			return r, unsupported("%s instance history", method)
		}
		if n == 3 {
			r.Interaction = HistoryInstance
			return r, nil
		}
		if !ValidID(s[3]) {
			return r, malformed("invalid version id %q", clip(s[3]))
		}
		r.Interaction, r.VersionID = VRead, s[3]
		return r, nil
	case strings.HasPrefix(s[2], "$"):
		if n != 3 {
			return r, malformed("path after an instance operation")
		}
		return classifyOperation(r, method, s[2])
	}
	// Compartment search: [CompartmentType]/[id]/[type][/_search].
	if s[2] == "*" {
		return r, unsupported("search of every type in a compartment")
	}
	if !isTypeName(s[2]) {
		return r, malformed("invalid resource type %q", clip(s[2]))
	}
	if !IsResourceType(s[2]) {
		return r, unsupported("unknown resource type %q", clip(s[2]))
	}
	if r.Type != "Patient" {
		return r, unsupported("%s compartment", r.Type)
	}
	if PatientCompartmentParams(s[2]) == nil {
		return r, unsupported("%s is not in the Patient compartment", s[2])
	}
	switch {
	case n == 3 && (method == "GET" || method == "HEAD"):
	case n == 4 && s[3] == "_search" && method == "POST":
	case n == 4 && s[3] != "_search":
		return r, malformed("path after compartment search")
	default:
		return r, unsupported("%s compartment search", method)
	}
	r.Interaction = SearchCompartment
	r.CompartmentType, r.CompartmentID = r.Type, r.ID
	r.Type, r.ID = s[2], ""
	return r, nil
}

// isTypeName reports whether s is shaped like a resource type name: an
// upper-case ASCII letter followed by letters.
func isTypeName(s string) bool {
	if s == "" || s[0] < 'A' || s[0] > 'Z' || len(s) > 64 {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}
