package demoehr

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Errors returned by the store.
var (
	// ErrNotFound: no resource of that type and id (or version).
	ErrNotFound = errors.New("demoehr: not found")
	// ErrInvalid: the resource or request is malformed.
	ErrInvalid = errors.New("demoehr: invalid")
)

var idPattern = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)

// entry is one stored resource version.
type entry struct {
	raw    []byte // JSON as served
	parsed obj    // for search matching; never modified after storing
}

// record is every version of one resource, newest last.
type record struct {
	versions []entry
}

func (r *record) current() entry { return r.versions[len(r.versions)-1] }

// Store holds the resources. It is safe for concurrent use.
type Store struct {
	now func() time.Time

	mu       sync.RWMutex
	byType   map[string]map[string]*record
	order    map[string][]string // ids in insertion order, per type
	patients []PatientInfo
	nextID   int
}

// NewStore returns a store seeded with patients synthetic patients (none
// when patients is 0).
func NewStore(patients int, now func() time.Time) (*Store, error) {
	if now == nil {
		now = time.Now
	}
	s := &Store{now: now, byType: map[string]map[string]*record{}, order: map[string][]string{}}
	for _, t := range resourceTypes {
		s.byType[t] = map[string]*record{}
	}
	res, infos := seed(patients)
	for _, r := range res {
		raw, err := json.Marshal(r)
		if err != nil {
			return nil, fmt.Errorf("demoehr: encode seed: %w", err)
		}
		if _, err := s.put(raw, seedEpoch, false); err != nil {
			return nil, err
		}
	}
	s.patients = infos
	return s, nil
}

// Patients lists the seeded patients.
func (s *Store) Patients() []PatientInfo { return append([]PatientInfo(nil), s.patients...) }

// Read returns the current version of a resource.
func (s *Store) Read(typ, id string) ([]byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	rec := s.byType[typ][id]
	if rec == nil {
		return nil, fmt.Errorf("%w: %s/%s", ErrNotFound, typ, id)
	}
	return rec.current().raw, nil
}

// VRead returns version vid of a resource.
func (s *Store) VRead(typ, id, vid string) ([]byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	rec := s.byType[typ][id]
	n, err := strconv.Atoi(vid)
	if rec == nil || err != nil || n < 1 || n > len(rec.versions) {
		return nil, fmt.Errorf("%w: %s/%s/_history/%s", ErrNotFound, typ, id, vid)
	}
	return rec.versions[n-1].raw, nil
}

// Create stores a new resource with a server-assigned id and returns it as
// stored (id and meta filled in).
func (s *Store) Create(typ string, body []byte) ([]byte, string, error) {
	var r obj
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, "", fmt.Errorf("%w: body is not a JSON resource", ErrInvalid)
	}
	if rt, _ := r["resourceType"].(string); rt != typ {
		return nil, "", fmt.Errorf("%w: resourceType %q does not match %s", ErrInvalid, rt, typ)
	}
	s.mu.Lock()
	s.nextID++
	id := fmt.Sprintf("new-%d", s.nextID)
	s.mu.Unlock()
	r["id"] = id
	raw, err := json.Marshal(r)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	out, err := s.put(raw, s.now(), false)
	return out, id, err
}

// Update stores a new version of typ/id (creating it if absent). It reports
// whether the resource was created.
func (s *Store) Update(typ, id string, body []byte) ([]byte, bool, error) {
	var r obj
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, false, fmt.Errorf("%w: body is not a JSON resource", ErrInvalid)
	}
	if rt, _ := r["resourceType"].(string); rt != typ {
		return nil, false, fmt.Errorf("%w: resourceType %q does not match %s", ErrInvalid, rt, typ)
	}
	if bid, _ := r["id"].(string); bid != id {
		return nil, false, fmt.Errorf("%w: body id %q does not match %q", ErrInvalid, bid, id)
	}
	s.mu.RLock()
	created := s.byType[typ][id] == nil
	s.mu.RUnlock()
	out, err := s.put(body, s.now(), true)
	return out, created, err
}

// Put stores a resource as given (its id is required), as a new version when
// it already exists. It is meant for tests and demo set-up.
func (s *Store) Put(raw []byte) ([]byte, error) { return s.put(raw, s.now(), true) }

func (s *Store) put(raw []byte, when time.Time, allowExisting bool) ([]byte, error) {
	var r obj
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("%w: body is not a JSON resource", ErrInvalid)
	}
	typ, _ := r["resourceType"].(string)
	id, _ := r["id"].(string)
	if !idPattern.MatchString(id) {
		return nil, fmt.Errorf("%w: bad id %q", ErrInvalid, id)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	byID, ok := s.byType[typ]
	if !ok {
		return nil, fmt.Errorf("%w: unsupported resource type %q", ErrInvalid, typ)
	}
	rec := byID[id]
	if rec != nil && !allowExisting {
		return nil, fmt.Errorf("%w: %s/%s exists", ErrInvalid, typ, id)
	}
	if rec == nil {
		rec = &record{}
		byID[id] = rec
		s.order[typ] = append(s.order[typ], id)
	}
	r["meta"] = obj{"versionId": strconv.Itoa(len(rec.versions) + 1), "lastUpdated": when.UTC().Format(time.RFC3339)}
	out, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	rec.versions = append(rec.versions, entry{raw: out, parsed: r})
	return out, nil
}

// Match is one search result.
type Match struct {
	Type, ID string
	Raw      []byte
	Include  bool // added by _include/_revinclude (search mode "include")
}

// SearchResult is a page of search matches.
type SearchResult struct {
	Total   int
	Matches []Match
	Offset  int
	Count   int
	Next    bool
}

// Search runs a FHIR search on typ with params. Unknown parameters are
// ignored (lenient legacy behaviour); _include, _revinclude, _count,
// _offset, _summary=count and _id are supported.
func (s *Store) Search(typ string, params url.Values) (SearchResult, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	byID, ok := s.byType[typ]
	if !ok {
		return SearchResult{}, fmt.Errorf("%w: unsupported resource type %q", ErrInvalid, typ)
	}
	count, offset := 50, 0
	if v := params.Get("_count"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return SearchResult{}, fmt.Errorf("%w: bad _count", ErrInvalid)
		}
		count = min(n, 500)
	}
	if v := params.Get("_offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return SearchResult{}, fmt.Errorf("%w: bad _offset", ErrInvalid)
		}
		offset = n
	}
	var hits []Match
	var hitRes []obj
	for _, id := range s.order[typ] {
		e := byID[id].current()
		if matches(typ, e.parsed, params) {
			hits = append(hits, Match{Type: typ, ID: id, Raw: e.raw})
			hitRes = append(hitRes, e.parsed)
		}
	}
	res := SearchResult{Total: len(hits), Offset: offset, Count: count}
	if params.Get("_summary") == "count" {
		return res, nil
	}
	if offset < len(hits) {
		end := min(len(hits), offset+count)
		res.Next = end < len(hits)
		hits, hitRes = hits[offset:end], hitRes[offset:end]
	} else {
		hits, hitRes = nil, nil
	}
	res.Matches = hits
	seen := map[string]bool{}
	for _, m := range hits {
		seen[m.Type+"/"+m.ID] = true
	}
	add := func(t, id string) {
		key := t + "/" + id
		if seen[key] {
			return
		}
		rec := s.byType[t][id]
		if rec == nil {
			return
		}
		seen[key] = true
		res.Matches = append(res.Matches, Match{Type: t, ID: id, Raw: rec.current().raw, Include: true})
	}
	for _, inc := range params["_include"] {
		srcType, param, ok := strings.Cut(inc, ":")
		if !ok || srcType != typ {
			continue
		}
		param, target, _ := strings.Cut(param, ":")
		for _, r := range hitRes {
			for _, ref := range referencesAt(typ, r, param) {
				t, id, ok := splitRef(ref)
				if ok && (target == "" || target == t) {
					add(t, id)
				}
			}
		}
	}
	for _, inc := range params["_revinclude"] {
		srcType, param, ok := strings.Cut(inc, ":")
		if !ok {
			continue
		}
		param, _, _ = strings.Cut(param, ":")
		src, ok := s.byType[srcType]
		if !ok {
			continue
		}
		for _, id := range s.order[srcType] {
			e := src[id].current()
			for _, ref := range referencesAt(srcType, e.parsed, param) {
				t, rid, ok := splitRef(ref)
				if ok && t == typ && seen[t+"/"+rid] {
					add(srcType, id)
					break
				}
			}
		}
	}
	return res, nil
}

// paramFields maps a search parameter to the element names it searches.
// Type-specific entries take precedence over the common ones.
var commonParams = map[string][]string{
	"patient": {"subject", "patient"}, "subject": {"subject"}, "encounter": {"encounter"},
	"performer": {"performer", "performer.actor"}, "requester": {"requester"}, "recorder": {"recorder"},
	"result": {"result"}, "has-member": {"hasMember"}, "participant": {"participant.individual"},
	"general-practitioner": {"generalPractitioner"}, "link": {"link.other"},
	"category": {"category"}, "code": {"code", "medicationCodeableConcept"}, "status": {"status"},
	"clinical-status": {"clinicalStatus"}, "verification-status": {"verificationStatus"},
	"vaccine-code": {"vaccineCode"}, "identifier": {"identifier"}, "gender": {"gender"},
	"intent": {"intent"}, "birthdate": {"birthDate"}, "name": {"name"}, "family": {"name.family"},
	"given": {"name.given"}, "class": {"class"},
}

type paramKind int

const (
	kindToken paramKind = iota
	kindReference
	kindString
	kindDate
)

var paramKinds = map[string]paramKind{
	"patient": kindReference, "subject": kindReference, "encounter": kindReference, "performer": kindReference,
	"requester": kindReference, "recorder": kindReference, "result": kindReference, "has-member": kindReference,
	"participant": kindReference, "general-practitioner": kindReference, "link": kindReference,
	"name": kindString, "family": kindString, "given": kindString, "birthdate": kindDate,
}

// matches reports whether r satisfies every supported parameter (AND across
// parameters, OR across comma-separated values).
func matches(typ string, r obj, params url.Values) bool {
	for name, values := range params {
		base, _, _ := strings.Cut(name, ":")
		if base == "_id" {
			id, _ := r["id"].(string)
			for _, v := range values {
				if !slices.Contains(strings.Split(v, ","), id) {
					return false
				}
			}
			continue
		}
		fields, ok := commonParams[base]
		if !ok || (typ == "Patient" && base == "patient") {
			continue // unknown parameters are ignored
		}
		if base == "patient" && typ != "Patient" {
			// patient=123 means Patient/123.
			values = qualify(values, "Patient")
		}
		for _, v := range values {
			if !matchAny(r, fields, paramKinds[base], strings.Split(v, ",")) {
				return false
			}
		}
	}
	return true
}

func qualify(values []string, typ string) []string {
	out := make([]string, len(values))
	for i, v := range values {
		parts := strings.Split(v, ",")
		for j, p := range parts {
			if !strings.Contains(p, "/") {
				parts[j] = typ + "/" + p
			}
		}
		out[i] = strings.Join(parts, ",")
	}
	return out
}

func matchAny(r obj, fields []string, kind paramKind, alts []string) bool {
	for _, f := range fields {
		for _, v := range valuesAt(r, f) {
			for _, want := range alts {
				if matchValue(v, kind, want) {
					return true
				}
			}
		}
	}
	return false
}

func matchValue(v any, kind paramKind, want string) bool {
	switch kind {
	case kindReference:
		m, _ := v.(obj)
		ref, _ := m["reference"].(string)
		return ref != "" && refEqual(ref, want)
	case kindString:
		return stringMatch(v, strings.ToLower(want))
	case kindDate:
		s, _ := v.(string)
		w := strings.TrimPrefix(want, "eq")
		return s != "" && strings.HasPrefix(s, w)
	default:
		return tokenMatch(v, want)
	}
}

func stringMatch(v any, want string) bool {
	switch x := v.(type) {
	case string:
		return strings.HasPrefix(strings.ToLower(x), want)
	case []any:
		for _, e := range x {
			if stringMatch(e, want) {
				return true
			}
		}
	case obj:
		for _, k := range []string{"family", "given", "text"} {
			if e, ok := x[k]; ok && stringMatch(e, want) {
				return true
			}
		}
	}
	return false
}

// tokenMatch matches a token search value ("code", "system|code", "|code",
// "system|") against a code, Coding, CodeableConcept or Identifier.
func tokenMatch(v any, want string) bool {
	system, code, hasSystem := strings.Cut(want, "|")
	if !hasSystem {
		code, system = system, ""
	}
	check := func(sys, c string) bool {
		if hasSystem && system != sys {
			return false
		}
		return code == "" || code == c
	}
	switch x := v.(type) {
	case string:
		return (!hasSystem || system == "") && x == code
	case obj:
		if codings, ok := x["coding"].([]any); ok {
			for _, c := range codings {
				if tokenMatch(c, want) {
					return true
				}
			}
			return false
		}
		sys, _ := x["system"].(string)
		if c, ok := x["code"].(string); ok {
			return check(sys, c)
		}
		if val, ok := x["value"].(string); ok { // Identifier
			return check(sys, val)
		}
	}
	return false
}

// valuesAt returns the values at a dotted element path, flattening arrays.
func valuesAt(r obj, path string) []any {
	cur := []any{r}
	for _, step := range strings.Split(path, ".") {
		var next []any
		for _, c := range cur {
			m, ok := c.(obj)
			if !ok {
				continue
			}
			switch v := m[step].(type) {
			case nil:
			case []any:
				next = append(next, v...)
			default:
				next = append(next, v)
			}
		}
		cur = next
	}
	return cur
}

// referencesAt returns the reference strings r holds for search parameter param.
func referencesAt(typ string, r obj, param string) []string {
	fields := commonParams[param]
	if paramKinds[param] != kindReference || (typ == "Patient" && param == "patient") {
		return nil
	}
	var out []string
	for _, f := range fields {
		for _, v := range valuesAt(r, f) {
			if m, ok := v.(obj); ok {
				if s, ok := m["reference"].(string); ok {
					out = append(out, s)
				}
			}
		}
	}
	return out
}

// splitRef splits "Type/id" (or an absolute URL ending in it).
func splitRef(ref string) (string, string, bool) {
	parts := strings.Split(strings.TrimRight(ref, "/"), "/")
	if len(parts) < 2 {
		return "", "", false
	}
	return parts[len(parts)-2], parts[len(parts)-1], true
}

func refEqual(have, want string) bool {
	ht, hid, ok1 := splitRef(have)
	wt, wid, ok2 := splitRef(want)
	if !ok2 {
		return ok1 && hid == want
	}
	return ok1 && ht == wt && hid == wid
}
