package fhir

import (
	"encoding/json"
)

// RemovedEntry describes a Bundle entry FilterBundle removed, for audit.
type RemovedEntry struct {
	// Index is the entry's position in the original Bundle.entry.
	Index int
	// ResourceType and ID identify the removed resource ("" if unknown).
	ResourceType, ID string
}

// FilterBundle removes from a Bundle (typically a searchset or history
// returned upstream) every entry whose resource keep rejects, and returns
// the re-encoded Bundle and what was removed. Entries without a resource
// are kept. When something is removed, Bundle.total is dropped, since it
// would reveal how many resources were withheld. If nothing is removed the
// original body is returned unchanged. The result is an error wrapping
// ErrMalformed when body is not a JSON Bundle; an error from keep is
// returned as is, and the caller must then withhold the whole response.
func FilterBundle(body []byte, keep func(resource []byte) (bool, error)) ([]byte, []RemovedEntry, error) {
	var b map[string]json.RawMessage
	if err := json.Unmarshal(body, &b); err != nil {
		return nil, nil, malformed("Bundle: %v", err)
	}
	var rt string
	if json.Unmarshal(b["resourceType"], &rt) != nil || rt != "Bundle" {
		return nil, nil, malformed("body is not a Bundle")
	}
	raw, ok := b["entry"]
	if !ok {
		return body, nil, nil
	}
	var entries []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &entries); err != nil {
		return nil, nil, malformed("Bundle.entry: %v", err)
	}
	kept := entries[:0:0]
	var removed []RemovedEntry
	for i, e := range entries {
		res, has := e["resource"]
		if !has || string(res) == "null" {
			kept = append(kept, e)
			continue
		}
		ok, err := keep(res)
		if err != nil {
			return nil, nil, err
		}
		if ok {
			kept = append(kept, e)
			continue
		}
		typ, id, _ := ResourceIdentity(res)
		removed = append(removed, RemovedEntry{Index: i, ResourceType: typ, ID: id})
	}
	if len(removed) == 0 {
		return body, nil, nil
	}
	delete(b, "total")
	if len(kept) == 0 {
		delete(b, "entry")
	} else {
		enc, err := json.Marshal(kept)
		if err != nil {
			return nil, nil, err
		}
		b["entry"] = enc
	}
	out, err := json.Marshal(b)
	if err != nil {
		return nil, nil, err
	}
	return out, removed, nil
}
