package gateway

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/policy"
)

// constrainBundleSearches gives every search entry of a batch or
// transaction Bundle its own constraints, exactly as a top-level search gets
// them: the patient search parameter and granular scope queries are added to
// Bundle.entry.request.url, which is re-encoded from the parsed query (the
// backend sees what was checked, never the raw text). Other entries and
// every other byte of an entry are left as sent. It returns body unchanged
// (and false) when no entry needs a constraint.
func constrainBundleSearches(p policy.Principal, body []byte, entries []fhir.BundleEntryRequest) ([]byte, bool, error) {
	urls := map[int]string{}
	for _, e := range entries {
		if !isSearch(e.Request.Interaction) {
			continue
		}
		d := policy.Decide(p, e.Request)
		if !d.Allow {
			return nil, false, fmt.Errorf("Bundle.entry[%d]: not allowed", e.Index) // DecideBundle allowed it; never expected
		}
		path, rawQuery, _ := strings.Cut(e.URL, "?")
		q, err := url.ParseQuery(rawQuery)
		if err != nil {
			return nil, false, fmt.Errorf("Bundle.entry[%d].request.url: %w", e.Index, err)
		}
		if applyConstraints(q, e.Request.Type, d.Constraints) {
			urls[e.Index] = path + "?" + q.Encode()
		}
	}
	if len(urls) == 0 {
		return body, false, nil
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return nil, false, fmt.Errorf("Bundle: %w", err)
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(top["entry"], &raw); err != nil {
		return nil, false, fmt.Errorf("Bundle.entry: %w", err)
	}
	for i, u := range urls {
		if i < 0 || i >= len(raw) {
			return nil, false, fmt.Errorf("Bundle.entry[%d]: out of range", i)
		}
		var em map[string]json.RawMessage
		if err := json.Unmarshal(raw[i], &em); err != nil {
			return nil, false, fmt.Errorf("Bundle.entry[%d]: %w", i, err)
		}
		var req map[string]json.RawMessage
		if err := json.Unmarshal(em["request"], &req); err != nil {
			return nil, false, fmt.Errorf("Bundle.entry[%d].request: %w", i, err)
		}
		var err error
		if req["url"], err = json.Marshal(u); err != nil {
			return nil, false, err
		}
		if em["request"], err = json.Marshal(req); err != nil {
			return nil, false, err
		}
		if raw[i], err = json.Marshal(em); err != nil {
			return nil, false, err
		}
	}
	var err error
	if top["entry"], err = json.Marshal(raw); err != nil {
		return nil, false, err
	}
	out, err := json.Marshal(top)
	if err != nil {
		return nil, false, err
	}
	return out, true, nil
}
