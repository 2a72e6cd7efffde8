package fhir

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestFilterBundle(t *testing.T) {
	// A search for patient 123's Observations with _include=Observation:subject
	// that dragged in another patient's data.
	body := `{"resourceType":"Bundle","type":"searchset","total":2,"link":[{"relation":"self","url":"x"}],"entry":[
		{"fullUrl":"Observation/o1","resource":` + obsOwn + `,"search":{"mode":"match"}},
		{"fullUrl":"Observation/o2","resource":` + obsForeign + `,"search":{"mode":"match"}},
		{"fullUrl":"Patient/456","resource":{"resourceType":"Patient","id":"456"},"search":{"mode":"include"}},
		{"fullUrl":"Patient/123","resource":` + patient123 + `,"search":{"mode":"include"}},
		{"response":{"status":"200"}}]}`
	keep := func(res []byte) (bool, error) { return InPatientCompartment(res, "123") }
	out, removed, err := FilterBundle([]byte(body), keep)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 2 || removed[0] != (RemovedEntry{1, "Observation", "o2"}) || removed[1] != (RemovedEntry{2, "Patient", "456"}) {
		t.Errorf("removed = %+v", removed)
	}
	if strings.Contains(string(out), `"id":"456"`) || strings.Contains(string(out), `"o2"`) || strings.Contains(string(out), `"total"`) {
		t.Errorf("foreign data or total left: %s", out)
	}
	var b struct {
		ResourceType string
		Link         []any
		Entry        []json.RawMessage
	}
	if err := json.Unmarshal(out, &b); err != nil || b.ResourceType != "Bundle" || len(b.Entry) != 3 || len(b.Link) != 1 {
		t.Errorf("filtered bundle %s: %v", out, err)
	}

	same := `{"resourceType":"Bundle","type":"searchset","total":1,"entry":[{"resource":` + obsOwn + `}]}`
	out, removed, err = FilterBundle([]byte(same), keep)
	if err != nil || removed != nil || string(out) != same {
		t.Errorf("unchanged bundle: %s, %v, %v", out, removed, err)
	}
	out, removed, err = FilterBundle([]byte(`{"resourceType":"Bundle","entry":[{"resource":`+obsForeign+`}]}`), keep)
	if err != nil || len(removed) != 1 || strings.Contains(string(out), "entry") {
		t.Errorf("all removed: %s, %v, %v", out, removed, err)
	}
}

func TestFilterBundleErrors(t *testing.T) {
	keep := func(res []byte) (bool, error) { return InPatientCompartment(res, "123") }
	for _, body := range []string{`{`, `{"resourceType":"Patient"}`, `{"resourceType":"Bundle","entry":{}}`, `[]`} {
		if _, _, err := FilterBundle([]byte(body), keep); !errors.Is(err, ErrMalformed) {
			t.Errorf("FilterBundle(%s) err = %v", body, err)
		}
	}
	// A malformed entry resource fails the whole response (fail closed).
	body := `{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Observation","subject":{"reference":"Patient/123"},"subject":{"reference":"Patient/9"}}}]}`
	if _, _, err := FilterBundle([]byte(body), keep); !errors.Is(err, ErrMalformed) {
		t.Errorf("duplicate-key entry: err = %v", err)
	}
}
