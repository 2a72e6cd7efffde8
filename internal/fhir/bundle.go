package fhir

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// BundleEntryRequest is one classified entry of a batch or transaction Bundle.
type BundleEntryRequest struct {
	// Index is the entry's position in Bundle.entry.
	Index int
	// Method and URL are Bundle.entry.request.method and .url as sent.
	Method, URL string
	// FullURL is Bundle.entry.fullUrl, "" if absent.
	FullURL string
	// Request is the entry classified as Classify would classify Method and URL.
	Request Request
	// Resource is Bundle.entry.resource as sent (nil if absent); the gateway
	// checks it (compartment, type) for create and update entries.
	Resource json.RawMessage
}

// EntryError reports the Bundle entry that could not be classified. It
// unwraps to ErrMalformed or ErrUnsupported.
type EntryError struct {
	Index int
	Err   error
}

// Error implements error.
func (e *EntryError) Error() string { return fmt.Sprintf("Bundle.entry[%d]: %v", e.Index, e.Err) }

// Unwrap returns the cause.
func (e *EntryError) Unwrap() error { return e.Err }

// MaxBundleEntries bounds how many entries ClassifyBundle accepts.
const MaxBundleEntries = 10000

// ClassifyBundle classifies the body of a POST to the FHIR base: it returns
// Batch or Transaction (from Bundle.type) and every entry's request
// classified. Each entry needs request.method and a request.url relative to
// the base ("Patient/1", "Observation?code=x"); absolute URLs are
// ErrUnsupported, since they may name another server, as are nested
// batches. Bundle types other than batch and transaction are
// ErrUnsupported; a body that is not a Bundle is ErrMalformed. A bad entry
// is reported as an *EntryError naming its index.
func ClassifyBundle(body []byte) (Interaction, []BundleEntryRequest, error) {
	var b struct {
		ResourceType string `json:"resourceType"`
		Type         string `json:"type"`
		Entry        []struct {
			FullURL  string          `json:"fullUrl"`
			Resource json.RawMessage `json:"resource"`
			Request  *struct {
				Method string `json:"method"`
				URL    string `json:"url"`
			} `json:"request"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		return "", nil, malformed("Bundle: %v", err)
	}
	if b.ResourceType != "Bundle" {
		return "", nil, malformed("body is not a Bundle")
	}
	var kind Interaction
	switch b.Type {
	case "batch":
		kind = Batch
	case "transaction":
		kind = Transaction
	default:
		return "", nil, unsupported("Bundle type %q posted to the base", clip(b.Type))
	}
	if len(b.Entry) > MaxBundleEntries {
		return "", nil, unsupported("more than %d Bundle entries", MaxBundleEntries)
	}
	entries := make([]BundleEntryRequest, len(b.Entry))
	for i, e := range b.Entry {
		if e.Request == nil || e.Request.Method == "" || e.Request.URL == "" {
			return "", nil, &EntryError{i, malformed("missing request.method or request.url")}
		}
		r, err := classifyEntry(e.Request.Method, e.Request.URL)
		if err != nil {
			return "", nil, &EntryError{i, err}
		}
		res := e.Resource
		if len(res) == 0 || string(res) == "null" {
			res = nil
		}
		entries[i] = BundleEntryRequest{Index: i, Method: e.Request.Method, URL: e.Request.URL,
			FullURL: e.FullURL, Request: r, Resource: res}
	}
	return kind, entries, nil
}

// classifyEntry classifies one Bundle entry's method and relative URL.
func classifyEntry(method, raw string) (Request, error) {
	if strings.Contains(raw, "://") || strings.HasPrefix(raw, "urn:") {
		return Request{}, unsupported("absolute entry url")
	}
	if strings.ContainsAny(raw, "#") {
		return Request{}, malformed("fragment in entry url")
	}
	path, rawQuery, _ := strings.Cut(raw, "?")
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return Request{}, malformed("entry url query: %v", errors.Unwrap(err))
	}
	r, err := Classify(method, path, q)
	if err != nil {
		return r, err
	}
	if r.Interaction == Batch {
		return r, unsupported("nested batch or transaction")
	}
	return r, nil
}
