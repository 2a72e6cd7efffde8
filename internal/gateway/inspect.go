package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/policy"
)

// verdict is what the response check decided.
type verdict struct {
	withheld string // what was removed or hidden, and why ("" = nothing)
	notFound bool   // the whole response is replaced by 404
	entries  int    // how many resources or Bundle entries were withheld
}

// maxWithheldListed bounds the resources named in one filter audit event.
const maxWithheldListed = 20

// inspect checks an upstream answer against what the token may see.
func (h *Handler) inspect(x *exchange, body []byte) ([]byte, verdict, error) {
	typ, id, err := fhir.ResourceIdentity(body)
	if err != nil {
		return nil, verdict{}, fmt.Errorf("%w: %w", errUncheckable, err)
	}
	switch typ {
	case "OperationOutcome":
		return body, verdict{}, nil
	case "Parameters":
		// Operation results; they pass only when they carry no resource.
		if bytes.Contains(body, []byte(`"resource"`)) {
			return nil, verdict{withheld: "Parameters carrying resources", notFound: true, entries: 1}, nil
		}
		return body, verdict{}, nil
	case "Bundle":
		decisions := map[string]policy.Decision{}
		out, removed, err := h.filterBundle(x, body, decisions, 0)
		if err != nil {
			return nil, verdict{}, err
		}
		if len(removed) == 0 {
			return body, verdict{}, nil
		}
		return out, verdict{withheld: describeRemoved(removed), entries: len(removed)}, nil
	}
	if ok, why := h.allowResource(x, typ, id, body, nil, false); !ok {
		return nil, verdict{withheld: typ + "/" + id + ": " + why, notFound: true, entries: 1}, nil
	}
	return body, verdict{}, nil
}

func describeRemoved(removed []string) string {
	s := fmt.Sprintf("removed %d Bundle entries: ", len(removed))
	if len(removed) > maxWithheldListed {
		return s + strings.Join(removed[:maxWithheldListed], ", ") + ", ..."
	}
	return s + strings.Join(removed, ", ")
}

// maxBundleDepth bounds nested Bundles (batch responses holding searchsets).
const maxBundleDepth = 3

// filterBundle removes every entry whose resource the token may not see.
// It returns the body unchanged when nothing is removed.
func (h *Handler) filterBundle(x *exchange, body []byte, decisions map[string]policy.Decision, depth int) ([]byte, []string, error) {
	if depth > maxBundleDepth {
		return nil, nil, fmt.Errorf("%w: Bundles nested too deep", errUncheckable)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", errUncheckable, err)
	}
	rawEntries, ok := top["entry"]
	if !ok {
		return body, nil, nil
	}
	var entries []json.RawMessage
	if err := json.Unmarshal(rawEntries, &entries); err != nil {
		return nil, nil, fmt.Errorf("%w: Bundle.entry: %w", errUncheckable, err)
	}
	var removed []string
	removedMatch := false
	kept := make([]json.RawMessage, 0, len(entries))
	changed := false
	for _, e := range entries {
		var em map[string]json.RawMessage
		if err := json.Unmarshal(e, &em); err != nil {
			return nil, nil, fmt.Errorf("%w: Bundle entry: %w", errUncheckable, err)
		}
		res := em["resource"]
		if len(res) == 0 || string(res) == "null" {
			kept = append(kept, e)
			continue
		}
		typ, id, err := fhir.ResourceIdentity(res)
		if err != nil {
			removed = append(removed, "unreadable entry")
			changed = true
			continue
		}
		switch typ {
		case "OperationOutcome":
			kept = append(kept, e)
			continue
		case "Bundle":
			inner, innerRemoved, err := h.filterBundle(x, res, decisions, depth+1)
			if err != nil {
				return nil, nil, err
			}
			if len(innerRemoved) > 0 {
				removed = append(removed, innerRemoved...)
				em["resource"] = inner
				if e, err = json.Marshal(em); err != nil {
					return nil, nil, fmt.Errorf("%w: %w", errUncheckable, err)
				}
				changed = true
			}
			kept = append(kept, e)
			continue
		}
		if ok, why := h.allowResource(x, typ, id, res, decisions, true); !ok {
			removed = append(removed, typ+"/"+id+" ("+why+")")
			changed = true
			if isMatchEntry(em) {
				removedMatch = true
			}
			continue
		}
		kept = append(kept, e)
	}
	if !changed {
		return body, nil, nil
	}
	if len(kept) == 0 {
		delete(top, "entry")
	} else {
		b, err := json.Marshal(kept)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %w", errUncheckable, err)
		}
		top["entry"] = b
	}
	if removedMatch {
		// The count would reveal how much foreign data matched.
		delete(top, "total")
	}
	out, err := json.Marshal(top)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", errUncheckable, err)
	}
	return out, removed, nil
}

func isMatchEntry(em map[string]json.RawMessage) bool {
	var s struct {
		Mode string `json:"mode"`
	}
	if raw, ok := em["search"]; ok {
		_ = json.Unmarshal(raw, &s)
	}
	return s.Mode == "" || s.Mode == "match"
}

// allowResource decides whether one returned resource may reach the client:
// its type must be permitted, it must lie in the patient's compartment when
// the token is limited to one patient, and it must match a granular scope
// query when the permission has one.
func (h *Handler) allowResource(x *exchange, typ, id string, raw []byte, decisions map[string]policy.Decision, inBundle bool) (bool, string) {
	d := x.decision
	if typ != x.req.Type || x.req.Interaction == fhir.Batch || x.req.Interaction == fhir.Transaction || x.req.Type == "" {
		var ok bool
		if d, ok = decisions[typ]; !ok {
			d = policy.Decide(x.v.principal, entryRequest(typ, id, inBundle))
			if decisions != nil {
				decisions[typ] = d
			}
		}
		if !d.Allow {
			return false, "not permitted: " + d.Reason
		}
	}
	c := d.Constraints
	if c.Patient != "" && (typ == "Patient" || fhir.PatientCompartmentParams(typ) != nil) {
		in, err := fhir.InPatientCompartment(raw, c.Patient)
		if err != nil {
			return false, "unreadable resource"
		}
		if !in {
			return false, "outside the patient compartment"
		}
	}
	if len(c.Queries) > 0 && !matchesAnyQuery(raw, c.Queries) {
		return false, "outside the granted scope query"
	}
	return true, ""
}

// entryRequest is the request a returned resource is decided as: a search
// of its type inside a Bundle (included resources are search results), a
// read otherwise.
func entryRequest(typ, id string, inBundle bool) fhir.Request {
	if inBundle {
		return fhir.Request{Interaction: fhir.SearchType, Type: typ, Query: url.Values{}}
	}
	return fhir.Request{Interaction: fhir.Read, Type: typ, ID: id}
}

// applyConstraints adds the decision's constraints to search parameters q:
// the patient search parameter and the granular scope queries. Repeated
// parameters are ANDed by FHIR servers, so a client's own parameters can
// only narrow the result further.
func applyConstraints(q url.Values, typ string, c policy.Constraints) bool {
	changed := false
	if name, value, ok := c.PatientSearchParam(); ok {
		q.Add(name, value)
		changed = true
	}
	switch len(c.Queries) {
	case 0:
	case 1:
		for k, vs := range c.Queries[0] {
			for _, v := range vs {
				q.Add(k, v)
				changed = true
			}
		}
	default:
		// Several granted queries are alternatives (OR). When they all test
		// one parameter once, a comma list expresses that; otherwise the
		// response check alone enforces them.
		name := ""
		var values []string
		for _, cq := range c.Queries {
			if len(cq) != 1 {
				return changed
			}
			for k, vs := range cq {
				if len(vs) != 1 || (name != "" && k != name) {
					return changed
				}
				name = k
				values = append(values, vs[0])
			}
		}
		q.Add(name, strings.Join(values, ","))
		changed = true
	}
	return changed
}

// matchesAnyQuery reports whether the resource satisfies at least one of
// the granted queries (each a set of ANDed search parameters).
func matchesAnyQuery(raw []byte, queries []url.Values) bool {
	var res map[string]any
	if err := json.Unmarshal(raw, &res); err != nil {
		return false
	}
	for _, q := range queries {
		if matchesQuery(res, q) {
			return true
		}
	}
	return false
}

// matchesQuery evaluates token and reference search parameters against the
// element of the same (camel-cased) name. Anything it cannot evaluate
// (modifiers, chained or special parameters, a missing element) does not
// match: the check fails closed.
func matchesQuery(res map[string]any, q url.Values) bool {
	for name, values := range q {
		if strings.ContainsAny(name, ":.") || strings.HasPrefix(name, "_") {
			return false
		}
		el, ok := res[camel(name)]
		if !ok {
			return false
		}
		for _, v := range values {
			if !anyValueMatches(el, strings.Split(v, ",")) {
				return false
			}
		}
	}
	return true
}

func anyValueMatches(el any, alts []string) bool {
	if arr, ok := el.([]any); ok {
		for _, e := range arr {
			if anyValueMatches(e, alts) {
				return true
			}
		}
		return false
	}
	for _, want := range alts {
		if valueMatches(el, want) {
			return true
		}
	}
	return false
}

// valueMatches matches a code, Coding, CodeableConcept, Identifier or
// Reference against a token ("code", "system|code", "|code", "system|")
// or reference ("Type/id") value.
func valueMatches(v any, want string) bool {
	switch x := v.(type) {
	case string:
		sys, code, has := strings.Cut(want, "|")
		if !has {
			return x == want
		}
		return sys == "" && x == code
	case bool:
		return (want == "true" && x) || (want == "false" && !x)
	case map[string]any:
		if ref, ok := x["reference"].(string); ok {
			return ref == want || strings.HasSuffix(ref, "/"+want)
		}
		if codings, ok := x["coding"].([]any); ok {
			for _, c := range codings {
				if valueMatches(c, want) {
					return true
				}
			}
			return false
		}
		sys, _ := x["system"].(string)
		code, ok := x["code"].(string)
		if !ok {
			if code, ok = x["value"].(string); !ok {
				return false
			}
		}
		wsys, wcode, has := strings.Cut(want, "|")
		if !has {
			return code == want
		}
		return wsys == sys && (wcode == "" || wcode == code)
	}
	return false
}

// camel turns a search parameter name into its element name:
// clinical-status -> clinicalStatus.
func camel(s string) string {
	if !strings.Contains(s, "-") {
		return s
	}
	var b strings.Builder
	up := false
	for _, r := range s {
		if r == '-' {
			up = true
			continue
		}
		if up && r >= 'a' && r <= 'z' {
			r -= 'a' - 'A'
		}
		up = false
		b.WriteRune(r)
	}
	return b.String()
}
