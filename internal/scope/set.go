package scope

import (
	"errors"
	"strings"
)

// Set is an ordered list of distinct scopes, as requested or granted.
type Set []Scope

// ParseSet parses a space-separated scope string (the OAuth "scope"
// parameter). Runs of spaces are tolerated; any other whitespace is a bad
// character.
//
// It returns the parsed set (in request order, exact duplicates collapsed),
// the tokens that were well formed but unknown (dropped from the set, each
// once, in order), and an error wrapping ErrMalformed for the first malformed
// token, in which case the set and the unknown list are nil. An empty string
// gives an empty set.
func ParseSet(raw string) (Set, []string, error) {
	var (
		set     dedup
		unknown []string
		seenUnk map[string]bool
	)
	for tok := range strings.SplitSeq(raw, " ") {
		if tok == "" {
			continue
		}
		sc, err := Parse(tok)
		switch {
		case err == nil:
			set.add(sc)
		case errors.Is(err, ErrUnknown):
			if seenUnk == nil {
				seenUnk = make(map[string]bool)
			}
			if !seenUnk[tok] {
				seenUnk[tok] = true
				unknown = append(unknown, tok)
			}
		default:
			return nil, nil, err
		}
	}
	return set.list, unknown, nil
}

// MustParseSet is ParseSet for trusted constants (tests, built-in defaults):
// it panics if raw holds a malformed or unknown scope.
func MustParseSet(raw string) Set {
	set, unknown, err := ParseSet(raw)
	if err != nil {
		panic(err)
	}
	if len(unknown) > 0 {
		panic("scope: unknown scope in MustParseSet: " + strings.Join(unknown, " "))
	}
	return set
}

// dedupThreshold is the size from which dedup switches from a linear scan
// to a map, keeping large (hostile) inputs linear in time.
const dedupThreshold = 16

// dedup builds a Set in insertion order without exact duplicates.
type dedup struct {
	list Set
	seen map[Scope]struct{}
}

// add appends sc unless it is already present.
func (d *dedup) add(sc Scope) {
	if d.seen == nil && len(d.list) < dedupThreshold {
		for _, x := range d.list {
			if x == sc {
				return
			}
		}
		d.list = append(d.list, sc)
		return
	}
	if d.seen == nil {
		d.seen = make(map[Scope]struct{}, 2*len(d.list))
		for _, x := range d.list {
			d.seen[x] = struct{}{}
		}
	}
	if _, ok := d.seen[sc]; ok {
		return
	}
	d.seen[sc] = struct{}{}
	d.list = append(d.list, sc)
}

// String returns the scopes of s in order, separated by single spaces.
func (s Set) String() string {
	return strings.Join(s.Strings(), " ")
}

// Strings returns the text of each scope of s, in order.
func (s Set) Strings() []string {
	out := make([]string, len(s))
	for i, sc := range s {
		out[i] = sc.String()
	}
	return out
}

// Has reports whether s holds a scope of kind k.
func (s Set) Has(k Kind) bool {
	for _, sc := range s {
		if sc.Kind == k {
			return true
		}
	}
	return false
}

// Permits reports whether the unconditional resource scopes of s (those
// without a Query) in context c together grant every permission in p on
// resourceType. A scope for type "*" applies to every type. It reports false
// for an empty resourceType, an empty p, or bits outside AllPerms.
//
// Granular scopes (with a Query) never count here: see Queries.
func (s Set) Permits(c Context, resourceType string, p Perm) bool {
	if resourceType == "" || p == 0 || p&^AllPerms != 0 {
		return false
	}
	var have Perm
	for _, sc := range s {
		if sc.Kind == Resource && sc.Context == c && sc.Query == "" &&
			(sc.Type == "*" || sc.Type == resourceType) {
			have |= sc.Perms
		}
	}
	return have.Has(p)
}

// Queries returns, in order and each once, the queries of the granular
// scopes of s in context c that grant every permission in p on resourceType
// (scopes with the same query pooling their permissions). A request that
// Permits refuses is allowed only if it stays within one of these queries.
// It returns nil for an empty resourceType, an empty p, or bits outside
// AllPerms.
func (s Set) Queries(c Context, resourceType string, p Perm) []string {
	if resourceType == "" || p == 0 || p&^AllPerms != 0 {
		return nil
	}
	var (
		queries []string
		perms   []Perm
	)
	for _, sc := range s {
		if sc.Kind != Resource || sc.Context != c || sc.Query == "" ||
			(sc.Type != "*" && sc.Type != resourceType) {
			continue
		}
		i := 0
		for i < len(queries) && queries[i] != sc.Query {
			i++
		}
		if i == len(queries) {
			queries = append(queries, sc.Query)
			perms = append(perms, 0)
		}
		perms[i] |= sc.Perms
	}
	var out []string
	for i, q := range queries {
		if perms[i].Has(p) {
			out = append(out, q)
		}
	}
	return out
}

// Resources returns the resource scopes of s, in order.
func (s Set) Resources() Set {
	var out Set
	for _, sc := range s {
		if sc.Kind == Resource {
			out = append(out, sc)
		}
	}
	return out
}

// Narrow returns the least-privilege intersection of requested with
// allowed: for each requested scope, in request order, what of it the
// allowed scopes cover. Exact duplicates are collapsed.
//
// A non-resource scope (openid, launch, offline_access, ...) survives when
// allowed has the same kind.
//
// A resource scope is intersected with every allowed resource scope of the
// same Context (never across contexts) whose type covers it: an allowed "*"
// covers any type, and a requested "*" against an allowed specific type
// yields that specific type. Permissions intersect. If only one side has a
// query the result carries it; if both have queries they must be equal, or
// that pair yields nothing. Pairs with no permissions left are dropped. The
// pieces obtained from one requested scope that share type and query are
// merged (their permissions pooled), and a piece wholly within another piece
// of the same request is dropped.
//
// Syntax follows the request: a v2 request is always answered in v2. A v1
// request stays v1 only if its result has no query and its permissions are
// exactly rs (.read), cud (.write) or cruds (.*); otherwise v1 cannot express
// the narrower grant and it is answered in v2 (patient/Observation.read
// narrowed to read only becomes patient/Observation.r).
func Narrow(requested, allowed Set) Set {
	var out dedup
	for _, r := range requested {
		for _, sc := range narrowOne(r, allowed) {
			out.add(sc)
		}
	}
	return out.list
}

// narrowOne returns what allowed grants of the single requested scope r.
func narrowOne(r Scope, allowed Set) []Scope {
	switch {
	case r.Kind == 0:
		return nil
	case r.Kind != Resource:
		if allowed.Has(r.Kind) {
			return []Scope{{Kind: r.Kind}}
		}
		return nil
	case !r.Context.Valid():
		return nil
	}
	var pieces []Scope
	for _, a := range allowed {
		if a.Kind != Resource || a.Context != r.Context {
			continue
		}
		var typ string
		switch {
		case a.Type == "*":
			typ = r.Type
		case r.Type == "*" || r.Type == a.Type:
			typ = a.Type
		default:
			continue
		}
		perms := r.Perms & a.Perms & AllPerms
		if perms == 0 {
			continue
		}
		query := r.Query
		if query == "" {
			query = a.Query
		} else if a.Query != "" && a.Query != query {
			continue
		}
		merged := false
		for i := range pieces {
			if pieces[i].Type == typ && pieces[i].Query == query {
				pieces[i].Perms |= perms
				merged = true
				break
			}
		}
		if !merged {
			pieces = append(pieces, Scope{Kind: Resource, Context: r.Context, Type: typ, Perms: perms, Query: query})
		}
	}
	out := pieces[:0:0]
	for i, p := range pieces {
		redundant := false
		for j, q := range pieces {
			if i != j && p.Within(q) {
				redundant = true
				break
			}
		}
		if redundant {
			continue
		}
		if r.V1 && p.Query == "" && (p.Perms == V1Read || p.Perms == V1Write || p.Perms == AllPerms) {
			p.V1 = true
		}
		out = append(out, p)
	}
	return out
}

// Covers reports whether every scope of requested lies within granted, that
// is whether Narrow(requested, granted) means the same as requested. An
// empty requested set is covered by anything. A wildcard request
// (patient/*.rs) is only covered by a wildcard grant, since it includes
// resource types added in future.
func Covers(granted, requested Set) bool {
	for _, r := range requested {
		if r.Kind == 0 {
			return false
		}
		ok := false
		for _, got := range narrowOne(r, granted) {
			if got.Equivalent(r) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}
