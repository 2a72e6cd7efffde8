// Package scope is the vocabulary of SMART App Launch 2.2 and OpenID Connect
// scopes: a parser for SMART v1 and v2 resource scopes (including granular
// scopes with a search query), the identity, launch-context and refresh
// scopes, least-privilege intersection of scope sets, and plain-language
// descriptions for consent pages.
//
// Scopes are parsed once, at the edge, into typed values; nothing else in the
// program matches scope strings.
//
// Grammar (SMART App Launch, scopes-and-launch-context):
//
//	v1:  (patient|user|system)/(<ResourceType>|*).(read|write|*)
//	v2:  (patient|user|system)/(<ResourceType>|*).<perms>[?param=value(&param=value)*]
//
// where <perms> is a non-empty, in-order subset of "cruds". The v1 forms are
// equivalent to v2 ones: read = rs, write = cud, * = cruds. Every scope token
// must also satisfy the scope-token syntax of RFC 6749 section 3.3.
package scope

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Context is the context prefix of a SMART resource scope.
type Context string

// The three SMART scope contexts.
const (
	// Patient scopes are limited to the compartment of the patient in context.
	Patient Context = "patient"
	// User scopes are limited to what the signed-in user may access.
	User Context = "user"
	// System scopes are limited by the client's pre-configured policy (backend services).
	System Context = "system"
)

// Valid reports whether c is one of Patient, User or System.
func (c Context) Valid() bool {
	return c == Patient || c == User || c == System
}

// Perm is a set of SMART v2 permissions, one bit each.
type Perm uint8

// SMART v2 permissions, in their canonical order c r u d s.
const (
	// Create is the "c" permission: the FHIR create interaction.
	Create Perm = 1 << iota
	// Read is the "r" permission: read, vread and instance history.
	Read
	// Update is the "u" permission: update and patch (including upsert).
	Update
	// Delete is the "d" permission: the delete interaction.
	Delete
	// Search is the "s" permission: search and type or system history.
	Search
)

// Common permission sets, including the meaning of the three v1 suffixes.
const (
	// AllPerms is "cruds", the meaning of v1 ".*".
	AllPerms = Create | Read | Update | Delete | Search
	// V1Read is "rs", the meaning of v1 ".read".
	V1Read = Read | Search
	// V1Write is "cud", the meaning of v1 ".write".
	V1Write = Create | Update | Delete
)

// permLetters pairs each permission with its letter in canonical order.
var permLetters = [...]struct {
	p Perm
	c byte
}{{Create, 'c'}, {Read, 'r'}, {Update, 'u'}, {Delete, 'd'}, {Search, 's'}}

// String returns the v2 permission letters of p in canonical order, such as
// "rs". Bits outside AllPerms are ignored; an empty set gives "".
func (p Perm) String() string {
	var b [5]byte
	n := 0
	for _, pl := range permLetters {
		if p&pl.p != 0 {
			b[n] = pl.c
			n++
		}
	}
	return string(b[:n])
}

// Has reports whether p includes every permission in q.
func (p Perm) Has(q Perm) bool {
	return q&^p == 0
}

// parsePerms parses a v2 permission string: a non-empty, in-order subset of
// "cruds" with no repeated letter.
func parsePerms(s string) (Perm, bool) {
	if s == "" || len(s) > len(permLetters) {
		return 0, false
	}
	var p Perm
	next := 0 // index in permLetters of the next allowed letter
	for i := 0; i < len(s); i++ {
		found := false
		for next < len(permLetters) {
			pl := permLetters[next]
			next++
			if pl.c == s[i] {
				p |= pl.p
				found = true
				break
			}
		}
		if !found {
			return 0, false
		}
	}
	return p, true
}

// Kind tells what a Scope grants.
type Kind int

// Scope kinds. The zero Kind is not a valid scope.
const (
	// Resource is a SMART resource scope such as patient/Observation.rs.
	Resource Kind = iota + 1
	// OpenID is "openid": an id_token is requested.
	OpenID
	// FHIRUser is "fhirUser": the id_token carries the user's FHIR resource URL.
	FHIRUser
	// Profile is "profile": the OpenID Connect standard profile claims.
	Profile
	// Launch is "launch": an EHR launch with a launch parameter.
	Launch
	// LaunchPatient is "launch/patient": a patient is selected at standalone launch.
	LaunchPatient
	// LaunchEncounter is "launch/encounter": an encounter is selected at standalone launch.
	LaunchEncounter
	// OfflineAccess is "offline_access": a refresh token that outlives the session.
	OfflineAccess
	// OnlineAccess is "online_access": a refresh token valid while the user is online.
	OnlineAccess
)

// kindNames maps each non-resource Kind to its scope text.
var kindNames = [...]string{
	OpenID:          "openid",
	FHIRUser:        "fhirUser",
	Profile:         "profile",
	Launch:          "launch",
	LaunchPatient:   "launch/patient",
	LaunchEncounter: "launch/encounter",
	OfflineAccess:   "offline_access",
	OnlineAccess:    "online_access",
}

// String returns the scope text of a non-resource Kind (such as "openid"),
// "resource" for Resource, and "" for an invalid Kind.
func (k Kind) String() string {
	if k == Resource {
		return "resource"
	}
	if k > Resource && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return ""
}

// kindOf returns the non-resource Kind whose scope text is s, or 0.
func kindOf(s string) Kind {
	for k := OpenID; int(k) < len(kindNames); k++ {
		if kindNames[k] == s {
			return k
		}
	}
	return 0
}

// Scope is one parsed scope. For Kind Resource, Context, Type, Perms, Query
// and V1 describe it; for every other Kind those fields are zero.
//
// Scope values are comparable: two scopes parsed from the same text are ==.
// Use Equivalent to compare meaning regardless of v1 or v2 syntax.
type Scope struct {
	Kind    Kind
	Context Context
	// Type is a FHIR R4 resource type name, or "*" for all types.
	Type  string
	Perms Perm
	// Query is the raw text after '?' in a granular v2 scope, "" if none.
	Query string
	// V1 records that the scope was written in v1 syntax (.read, .write, .*).
	V1 bool
}

// Errors returned by Parse and ParseSet, wrapped with details.
var (
	// ErrMalformed means the scope text breaks the syntax; an authorization
	// server answers it with invalid_scope.
	ErrMalformed = errors.New("scope: malformed scope")
	// ErrUnknown means the scope is well formed but not supported here (an
	// unknown resource type, an extension scope); it is dropped, not granted.
	ErrUnknown = errors.New("scope: unknown scope")
)

// maxEcho bounds how much of a bad scope an error message repeats.
const maxEcho = 64

// scopeErr wraps sentinel with the (clipped) scope text and a reason. The
// scope text is only echoed once it is known to hold scope-token characters
// only, so the message is safe as an OAuth error_description.
func scopeErr(sentinel error, s, reason string) error {
	if len(s) > maxEcho {
		s = s[:maxEcho] + "..."
	}
	return fmt.Errorf("%w: %s: %s", sentinel, s, reason)
}

// isTokenChar reports whether b may appear in an RFC 6749 scope-token:
// %x21 / %x23-5B / %x5D-7E (printable ASCII except space, '"' and '\').
func isTokenChar(b byte) bool {
	return b >= 0x21 && b <= 0x7e && b != '"' && b != '\\'
}

// isLetters reports whether s is non-empty and all ASCII letters.
func isLetters(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') {
			return false
		}
	}
	return true
}

// Parse parses one scope token.
//
// It returns an error wrapping ErrMalformed when s breaks the scope-token
// syntax or the SMART resource-scope grammar (".dus", ".rr", an empty suffix,
// an unknown context prefix on a resource-shaped scope, an empty or invalid
// query). It returns an error wrapping ErrUnknown when s is well formed but
// not supported: an unknown resource type (patient/Foo.rs), an extension
// scope, or any other name.
func Parse(s string) (Scope, error) {
	if s == "" {
		return Scope{}, fmt.Errorf("%w: empty scope", ErrMalformed)
	}
	for i := 0; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			return Scope{}, fmt.Errorf("%w: invalid character at byte %d", ErrMalformed, i)
		}
	}
	if k := kindOf(s); k != 0 {
		return Scope{Kind: k}, nil
	}
	prefix, rest, hasSlash := strings.Cut(s, "/")
	if hasSlash {
		switch c := Context(prefix); c {
		case Patient, User, System:
			return parseResource(c, rest, s)
		}
		if isLetters(prefix) && resourceShaped(rest) {
			return Scope{}, scopeErr(ErrMalformed, s, "unknown context prefix (want patient, user or system)")
		}
	}
	return Scope{}, scopeErr(ErrUnknown, s, "not a supported scope")
}

// resourceShaped reports whether rest (the text after "prefix/") looks like
// "<Type>.<suffix>", so that an unknown prefix is a mistake rather than an
// unrelated scope such as "launch/location" or a URI.
func resourceShaped(rest string) bool {
	body, _, _ := strings.Cut(rest, "?")
	typ, _, ok := strings.Cut(body, ".")
	return ok && (typ == "*" || isLetters(typ))
}

// parseResource parses the part after "<context>/" of a resource scope.
func parseResource(c Context, rest, raw string) (Scope, error) {
	body, query, hasQuery := strings.Cut(rest, "?")
	typ, suffix, ok := strings.Cut(body, ".")
	if !ok {
		return Scope{}, scopeErr(ErrMalformed, raw, "missing permissions suffix")
	}
	if typ == "" {
		return Scope{}, scopeErr(ErrMalformed, raw, "missing resource type")
	}
	if typ != "*" && !isLetters(typ) {
		return Scope{}, scopeErr(ErrMalformed, raw, "invalid resource type")
	}
	sc := Scope{Kind: Resource, Context: c, Type: typ}
	switch suffix {
	case "read":
		sc.Perms, sc.V1 = V1Read, true
	case "write":
		sc.Perms, sc.V1 = V1Write, true
	case "*":
		sc.Perms, sc.V1 = AllPerms, true
	case "":
		return Scope{}, scopeErr(ErrMalformed, raw, "empty permissions suffix")
	default:
		p, ok := parsePerms(suffix)
		if !ok {
			return Scope{}, scopeErr(ErrMalformed, raw, "permissions must be read, write, * or an in-order subset of cruds")
		}
		sc.Perms = p
	}
	if hasQuery {
		if sc.V1 {
			return Scope{}, scopeErr(ErrMalformed, raw, "a v1 scope cannot carry a query")
		}
		if reason := checkQuery(query); reason != "" {
			return Scope{}, scopeErr(ErrMalformed, raw, reason)
		}
		sc.Query = query
	}
	if typ != "*" && !IsResourceType(typ) {
		return Scope{}, scopeErr(ErrUnknown, raw, "unknown FHIR R4 resource type")
	}
	return sc, nil
}

// checkQuery validates the query of a granular scope: one or more
// param=value pairs joined by '&', each with a non-empty parameter name made
// of letters, digits and "_-.:" (search modifiers and chains) and a non-empty
// value whose percent-escapes decode. It returns "" when q is valid, else the
// reason.
func checkQuery(q string) string {
	if q == "" {
		return "empty query"
	}
	for pair := range strings.SplitSeq(q, "&") {
		name, value, ok := strings.Cut(pair, "=")
		if !ok {
			return "query parameter without '='"
		}
		if name == "" || value == "" {
			return "empty query parameter name or value"
		}
		for i := 0; i < len(name); i++ {
			c := name[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
				c == '_' || c == '-' || c == '.' || c == ':') {
				return "invalid query parameter name"
			}
		}
		if _, err := url.QueryUnescape(value); err != nil {
			return "invalid percent-encoding in query value"
		}
	}
	if _, err := url.ParseQuery(q); err != nil {
		return "invalid query"
	}
	return ""
}

// String returns the canonical text of s in the syntax it was parsed from.
//
// A resource scope with V1 set prints in v1 syntax when its Perms are exactly
// rs (.read), cud (.write) or cruds (.*) and it has no Query; otherwise (v1
// cannot express it) it prints in v2 syntax. An invalid Kind gives "".
func (s Scope) String() string {
	if s.Kind != Resource {
		return s.Kind.String()
	}
	var b strings.Builder
	b.Grow(len(s.Context) + len(s.Type) + len(s.Query) + 8)
	b.WriteString(string(s.Context))
	b.WriteByte('/')
	b.WriteString(s.Type)
	b.WriteByte('.')
	b.WriteString(s.suffix())
	if s.Query != "" {
		b.WriteByte('?')
		b.WriteString(s.Query)
	}
	return b.String()
}

// suffix returns the permission suffix String prints.
func (s Scope) suffix() string {
	if s.V1 && s.Query == "" {
		switch s.Perms & AllPerms {
		case V1Read:
			return "read"
		case V1Write:
			return "write"
		case AllPerms:
			return "*"
		}
	}
	return s.Perms.String()
}

// Equivalent reports whether s and o mean the same thing, ignoring whether
// each was written in v1 or v2 syntax: patient/Observation.read is
// equivalent to patient/Observation.rs.
func (s Scope) Equivalent(o Scope) bool {
	s.V1, o.V1 = false, false
	s.Perms &= AllPerms
	o.Perms &= AllPerms
	return s == o
}

// Within reports whether everything s grants is also granted by o alone:
// same context, o's type is "*" or equal to s's, s's permissions are a
// subset of o's, and o has no query or the same query as s. For
// non-resource scopes it reports whether both have the same Kind.
func (s Scope) Within(o Scope) bool {
	if s.Kind != Resource || o.Kind != Resource {
		return s.Kind != 0 && s.Kind == o.Kind && s.Kind != Resource
	}
	return s.Context == o.Context &&
		(o.Type == "*" || o.Type == s.Type) &&
		(o.Perms & AllPerms).Has(s.Perms) &&
		(o.Query == "" || o.Query == s.Query)
}
