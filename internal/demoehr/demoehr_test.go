package demoehr

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

func newServer(t *testing.T) (*httptest.Server, *Handler) {
	t.Helper()
	h, err := New(Options{Username: "gw", Password: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, h
}

func get(t *testing.T, srv *httptest.Server, path string, auth bool) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
	if auth {
		req.SetBasicAuth("gw", "s3cret")
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatalf("%s: %v: %s", path, err, b)
	}
	return resp.StatusCode, body
}

func TestBasicAuthRequired(t *testing.T) {
	srv, _ := newServer(t)
	if code, _ := get(t, srv, "/Patient/pt-001", false); code != http.StatusUnauthorized {
		t.Fatalf("no auth: %d", code)
	}
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/Patient/pt-001", nil)
	req.SetBasicAuth("gw", "wrong")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
		t.Fatalf("wrong password: %d", resp.StatusCode)
	}
	req.Header.Set("Authorization", "Bearer abc")
	resp, _ = srv.Client().Do(req)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("bearer accepted: %d", resp.StatusCode)
	}
}

func TestDeterministicSeed(t *testing.T) {
	a, _ := NewStore(DefaultPatients, nil)
	b, _ := NewStore(DefaultPatients, nil)
	if len(a.Patients()) < 20 {
		t.Fatalf("only %d patients", len(a.Patients()))
	}
	for _, typ := range resourceTypes {
		ra, _ := a.Search(typ, url.Values{"_count": {"500"}})
		rb, _ := b.Search(typ, url.Values{"_count": {"500"}})
		if ra.Total == 0 || ra.Total != rb.Total {
			t.Fatalf("%s: totals %d %d", typ, ra.Total, rb.Total)
		}
		for i := range ra.Matches {
			if string(ra.Matches[i].Raw) != string(rb.Matches[i].Raw) {
				t.Fatalf("%s differs between runs", ra.Matches[i].ID)
			}
		}
	}
}

func TestReadSearchInclude(t *testing.T) {
	srv, _ := newServer(t)
	code, p := get(t, srv, "/Patient/pt-001", true)
	if code != 200 || p["id"] != "pt-001" {
		t.Fatalf("read: %d %v", code, p)
	}
	if code, _ := get(t, srv, "/Patient/nope", true); code != 404 {
		t.Fatalf("missing: %d", code)
	}
	_, b := get(t, srv, "/Observation?patient=pt-002&category=laboratory", true)
	if b["total"].(float64) != 3 {
		t.Fatalf("labs: %v", b["total"])
	}
	for _, e := range b["entry"].([]any) {
		res := e.(map[string]any)["resource"].(map[string]any)
		if res["subject"].(map[string]any)["reference"] != "Patient/pt-002" {
			t.Fatalf("foreign entry %v", res["id"])
		}
	}
	_, b = get(t, srv, "/Observation?subject=Patient/pt-002&category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs&_include=Observation:performer", true)
	var inc int
	for _, e := range b["entry"].([]any) {
		if e.(map[string]any)["search"].(map[string]any)["mode"] == "include" {
			inc++
		}
	}
	if b["total"].(float64) != 8 || inc != 1 {
		t.Fatalf("vitals %v includes %d", b["total"], inc)
	}
	_, b = get(t, srv, "/Patient/pt-003/Condition", true)
	if b["total"].(float64) < 1 {
		t.Fatalf("compartment search: %v", b["total"])
	}
	_, b = get(t, srv, "/Patient?_id=pt-003&_revinclude=Immunization:patient", true)
	if len(b["entry"].([]any)) != 3 {
		t.Fatalf("revinclude: %d", len(b["entry"].([]any)))
	}
	_, b = get(t, srv, "/Patient?name=amy&unknownparam=1", true)
	if b["total"].(float64) != 1 {
		t.Fatalf("name search: %v", b["total"])
	}
}

func TestCreateUpdateVread(t *testing.T) {
	srv, _ := newServer(t)
	body := `{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/pt-001"}}`
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/Observation", strings.NewReader(body))
	req.SetBasicAuth("gw", "s3cret")
	req.Header.Set("Content-Type", "application/fhir+json")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var created map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&created)
	resp.Body.Close()
	if resp.StatusCode != 201 || !strings.Contains(resp.Header.Get("Location"), "/Observation/") {
		t.Fatalf("create: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	id := created["id"].(string)
	created["status"] = "amended"
	b, _ := json.Marshal(created)
	req, _ = http.NewRequest(http.MethodPut, srv.URL+"/Observation/"+id, strings.NewReader(string(b)))
	req.SetBasicAuth("gw", "s3cret")
	req.Header.Set("Content-Type", "application/fhir+json")
	resp, _ = srv.Client().Do(req)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("update: %d", resp.StatusCode)
	}
	_, v1 := get(t, srv, "/Observation/"+id+"/_history/1", true)
	_, v2 := get(t, srv, "/Observation/"+id, true)
	if v1["status"] != "final" || v2["status"] != "amended" || v2["meta"].(map[string]any)["versionId"] != "2" {
		t.Fatalf("versions: %v %v", v1["status"], v2["status"])
	}
	// A body whose id differs from the URL is refused.
	req, _ = http.NewRequest(http.MethodPut, srv.URL+"/Observation/other", strings.NewReader(string(b)))
	req.SetBasicAuth("gw", "s3cret")
	req.Header.Set("Content-Type", "application/fhir+json")
	resp, _ = srv.Client().Do(req)
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("mismatched id: %d", resp.StatusCode)
	}
}
