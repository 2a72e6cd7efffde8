package gateway

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/policy"
	"github.com/fhirgate/fhirgate/internal/scope"
)

// TestBatchSearchEntriesGetPatientParameter: a search inside a batch gets
// the patient parameter and granular query added to its entry URL, like a
// top-level search, and the upstream sees only the re-encoded parsed query.
func TestBatchSearchEntriesGetPatientParameter(t *testing.T) {
	var mu sync.Mutex
	var sent []byte
	var f *fixture
	f = newFixture(t, fixtureOpts{upstream: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || (r.URL.Path != "/" && r.URL.Path != "") {
			f.ehr.ServeHTTP(w, r)
			return
		}
		// The demo EHR has no batch support: run each GET entry against it
		// and answer a batch-response Bundle.
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		sent = b
		mu.Unlock()
		var in struct {
			Entry []struct {
				Request struct{ Method, URL string } `json:"request"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(b, &in); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		var out []map[string]any
		for _, e := range in.Entry {
			req := httptest.NewRequest(http.MethodGet, "/"+e.Request.URL, nil)
			req.Header.Set("Authorization", r.Header.Get("Authorization"))
			rec := httptest.NewRecorder()
			f.ehr.ServeHTTP(rec, req)
			out = append(out, map[string]any{"resource": json.RawMessage(rec.Body.Bytes()),
				"response": map[string]any{"status": strconv.Itoa(rec.Code)}})
		}
		w.Header().Set("Content-Type", "application/fhir+json")
		_ = json.NewEncoder(w).Encode(map[string]any{"resourceType": "Bundle", "type": "batch-response", "entry": out})
	})})
	entryURLs := func() []string {
		t.Helper()
		mu.Lock()
		defer mu.Unlock()
		var bundle struct {
			Entry []struct {
				Request struct {
					URL string `json:"url"`
				} `json:"request"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(sent, &bundle); err != nil {
			t.Fatalf("upstream body %q: %v", sent, err)
		}
		var out []string
		for _, e := range bundle.Entry {
			out = append(out, e.Request.URL)
		}
		return out
	}

	tok, _ := f.token(patientAll, patientA)
	bundle := `{"resourceType":"Bundle","type":"batch","entry":[
		{"request":{"method":"GET","url":"Observation?code=8867-4"}},
		{"request":{"method":"GET","url":"Observation/obs-001-01"}},
		{"request":{"method":"GET","url":"Condition"}},
		{"request":{"method":"GET","url":"Patient/` + patientA + `/Observation?code=8867-4"}}]}`
	r := f.do("POST", "", bearer(tok), bundle, "Content-Type", "application/fhir+json")
	if r.status != http.StatusOK {
		t.Fatalf("batch: %d %s", r.status, r.body)
	}
	urls := entryURLs()
	if len(urls) != 4 {
		t.Fatalf("entries %v", urls)
	}
	for _, i := range []int{0, 2} {
		path, raw, _ := strings.Cut(urls[i], "?")
		q, _ := url.ParseQuery(raw)
		if q.Get("subject") != "Patient/"+patientA && q.Get("patient") != "Patient/"+patientA {
			t.Errorf("entry %d (%s) has no patient parameter: %q", i, path, urls[i])
		}
	}
	if q, _ := url.ParseQuery(strings.SplitN(urls[0], "?", 2)[1]); q.Get("code") != "8867-4" {
		t.Errorf("entry 0 lost its own parameter: %q", urls[0])
	}
	if urls[1] != "Observation/obs-001-01" {
		t.Errorf("a read entry was changed: %q", urls[1])
	}
	// Nothing of another patient comes back in the nested searchsets.
	if bytes.Contains(r.body, []byte("Patient/"+patientB)) {
		t.Fatalf("another patient's data in the batch response: %s", r.body)
	}

	// Granular scope: the query is added to the entry too.
	tok2, _ := f.token("patient/Observation.rs?category=laboratory", patientA)
	bundle = `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Observation"}}]}`
	if r := f.do("POST", "", bearer(tok2), bundle, "Content-Type", "application/fhir+json"); r.status != http.StatusOK {
		t.Fatalf("granular batch: %d %s", r.status, r.body)
	}
	q, _ := url.ParseQuery(strings.SplitN(entryURLs()[0], "?", 2)[1])
	if q.Get("category") != "laboratory" || q.Get("subject") != "Patient/"+patientA {
		t.Fatalf("granular entry query %v", q)
	}
}

func TestConstrainBundleSearchesLeavesOtherBundlesAlone(t *testing.T) {
	set, _, err := scope.ParseSet("user/*.rs")
	if err != nil {
		t.Fatal(err)
	}
	p := policy.Principal{Scopes: set, Subject: "u1", ClientID: "app"}
	body := []byte(`{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Observation?code=1"}}]}`)
	_, ents, err := fhir.ClassifyBundle(body)
	if err != nil {
		t.Fatal(err)
	}
	out, changed, err := constrainBundleSearches(p, body, ents)
	if err != nil || changed || !bytes.Equal(out, body) {
		t.Fatalf("user scopes: changed=%v err=%v %s", changed, err, out)
	}
	// With a patient constraint only the search entry changes; the rest of
	// the Bundle (other keys, the read entry) survives.
	set, _, _ = scope.ParseSet("patient/*.rs")
	p = policy.Principal{Scopes: set, Patient: "pt-001", Subject: "u1", ClientID: "app"}
	body = []byte(`{"resourceType":"Bundle","id":"b1","type":"batch","entry":[{"fullUrl":"urn:x","request":{"method":"GET","url":"Observation?code=1&code=2"}},{"request":{"method":"GET","url":"Patient/pt-001"}}]}`)
	_, ents, _ = fhir.ClassifyBundle(body)
	out, changed, err = constrainBundleSearches(p, body, ents)
	if err != nil || !changed {
		t.Fatalf("patient scopes: changed=%v err=%v", changed, err)
	}
	var b struct {
		ID    string `json:"id"`
		Entry []struct {
			FullURL string               `json:"fullUrl"`
			Request struct{ URL string } `json:"request"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(out, &b); err != nil {
		t.Fatal(err)
	}
	q, _ := url.ParseQuery(strings.SplitN(b.Entry[0].Request.URL, "?", 2)[1])
	if b.ID != "b1" || b.Entry[0].FullURL != "urn:x" || len(q["code"]) != 2 || q.Get("subject") != "Patient/pt-001" ||
		b.Entry[1].Request.URL != "Patient/pt-001" {
		t.Fatalf("rewritten %s", out)
	}
}
