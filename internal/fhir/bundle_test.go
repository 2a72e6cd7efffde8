package fhir

import (
	"errors"
	"testing"
)

func TestClassifyBundle(t *testing.T) {
	body := `{"resourceType":"Bundle","type":"transaction","entry":[
		{"fullUrl":"urn:uuid:1","resource":{"resourceType":"Observation","subject":{"reference":"Patient/123"}},
		 "request":{"method":"POST","url":"Observation"}},
		{"request":{"method":"GET","url":"Observation?code=8867-4&subject=Patient/123"}},
		{"request":{"method":"DELETE","url":"Observation/o9"}},
		{"resource":{"resourceType":"Patient","id":"123"},"request":{"method":"PUT","url":"Patient/123"}}]}`
	kind, entries, err := ClassifyBundle([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if kind != Transaction || len(entries) != 4 {
		t.Fatalf("kind %v, %d entries", kind, len(entries))
	}
	want := []Request{
		{Interaction: Create, Type: "Observation"},
		{Interaction: SearchType, Type: "Observation"},
		{Interaction: Delete, Type: "Observation", ID: "o9"},
		{Interaction: Update, Type: "Patient", ID: "123"},
	}
	for i, e := range entries {
		if e.Index != i || !sameRequest(e.Request, want[i]) {
			t.Errorf("entry %d: %+v, want %+v", i, e.Request, want[i])
		}
	}
	if entries[0].FullURL != "urn:uuid:1" || entries[0].Resource == nil || entries[2].Resource != nil {
		t.Errorf("fullUrl/resource not carried: %+v", entries)
	}
	if entries[1].Request.Query.Get("subject") != "Patient/123" {
		t.Errorf("query not parsed: %v", entries[1].Request.Query)
	}

	kind, _, err = ClassifyBundle([]byte(`{"resourceType":"Bundle","type":"batch","entry":[]}`))
	if err != nil || kind != Batch {
		t.Errorf("batch: %v, %v", kind, err)
	}
}

func TestClassifyBundleRefusals(t *testing.T) {
	tests := []struct {
		name, body string
		want       error
		entry      int // -1: no EntryError
	}{
		{"not json", `{`, ErrMalformed, -1},
		{"not a bundle", `{"resourceType":"Patient"}`, ErrMalformed, -1},
		{"collection", `{"resourceType":"Bundle","type":"collection","entry":[]}`, ErrUnsupported, -1},
		{"document", `{"resourceType":"Bundle","type":"document"}`, ErrUnsupported, -1},
		{"searchset", `{"resourceType":"Bundle","type":"searchset"}`, ErrUnsupported, -1},
		{"no type", `{"resourceType":"Bundle"}`, ErrUnsupported, -1},
		{"missing request", `{"resourceType":"Bundle","type":"batch","entry":[{"resource":{}}]}`, ErrMalformed, 0},
		{"bad url", `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Patient/1"}},{"request":{"method":"GET","url":"Patient/../x"}}]}`, ErrMalformed, 1},
		{"absolute url", `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"https://other/fhir/Patient/1"}}]}`, ErrUnsupported, 0},
		{"nested batch", `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"POST","url":""}}]}`, ErrMalformed, 0},
		{"nested batch slash", `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"POST","url":"/"}}]}`, ErrUnsupported, 0},
		{"unknown type", `{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"GET","url":"Foo/1"}}]}`, ErrUnsupported, 0},
		{"bad query", `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Patient?a=%zz"}}]}`, ErrMalformed, 0},
		{"fragment", `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Patient/1#x"}}]}`, ErrMalformed, 0},
		{"conditional delete", `{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":"Observation?subject=Patient/9"}}]}`, ErrUnsupported, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, entries, err := ClassifyBundle([]byte(tt.body))
			if !errors.Is(err, tt.want) || entries != nil {
				t.Fatalf("err = %v, entries %v; want %v", err, entries, tt.want)
			}
			var ee *EntryError
			if errors.As(err, &ee) != (tt.entry >= 0) || (ee != nil && ee.Index != tt.entry) {
				t.Errorf("EntryError = %v, want index %d", ee, tt.entry)
			}
		})
	}
}
