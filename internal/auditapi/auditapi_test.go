package auditapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/audit/audittest"
	"github.com/fhirgate/fhirgate/internal/audit/chain"
)

var t0 = time.Date(2026, 2, 1, 10, 0, 0, 0, time.UTC)

func store(t *testing.T) *audittest.MemorySink {
	s := audittest.NewMemorySink()
	var es []chain.Entry
	var prev *chain.Entry
	add := func(ev audit.Event) {
		es = append(es, chain.Link("n", prev, ev))
		prev = &es[len(es)-1]
	}
	for i := range 30 {
		ev := audittest.SampleEvent(i, t0.Add(time.Duration(i)*time.Minute))
		if i%10 == 9 {
			ev.Outcome, ev.Reason = audit.Failure, "insufficient_scope"
		}
		add(ev)
	}
	add(audit.Event{Time: t0.Add(time.Hour), Action: audit.ActionLogin, Outcome: audit.Success, UserID: "user-1"})
	if err := s.Append(context.Background(), es); err != nil {
		t.Fatal(err)
	}
	return s
}

func server(t *testing.T, s *audittest.MemorySink, rec *audittest.Recorder) *httptest.Server {
	h, err := New(Options{
		Store: s, Auditor: rec,
		AuthorizeAdmin: func(r *http.Request) (string, error) {
			if r.Header.Get("Authorization") != "Bearer admin-token" {
				return "", errors.New("bad admin token")
			}
			return "admin", nil
		},
		PatientOf: func(r *http.Request) (string, error) {
			if p := r.Header.Get("X-Test-Patient"); p != "" {
				return p, nil
			}
			return "", errors.New("not signed in")
		},
		ClientNames: func(_ context.Context, id string) string { return "App " + strings.ToUpper(id) },
		Now:         func() time.Time { return t0 },
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, srv *httptest.Server, path string, hdr map[string]string, out any) *http.Response {
	req, _ := http.NewRequest("GET", srv.URL+path, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		json.NewDecoder(resp.Body).Decode(out)
	}
	return resp
}

var admin = map[string]string{"Authorization": "Bearer admin-token"}

func TestOptionsRequired(t *testing.T) {
	if _, err := New(Options{Store: audittest.NewMemorySink(), Auditor: &audittest.Recorder{}}); !errors.Is(err, ErrOptions) {
		t.Fatalf("no AuthorizeAdmin: %v", err)
	}
}

func TestAdminQueryPagesAndIsAudited(t *testing.T) {
	rec := &audittest.Recorder{}
	srv := server(t, store(t), rec)
	var got []chain.JSONEntry
	cursor := ""
	for pages := 0; ; pages++ {
		var p page
		q := url.Values{"patient": {"Patient/pat-1"}, "limit": {"3"}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		resp := get(t, srv, "/admin/audit?"+q.Encode(), admin, &p)
		if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") == "" {
			t.Fatalf("status %d", resp.StatusCode)
		}
		got = append(got, p.Events...)
		if p.Next == "" {
			break
		}
		cursor = p.Next
	}
	if len(got) != 8 { // i%4 == 1 for i < 30
		t.Fatalf("%d events for pat-1, want 8", len(got))
	}
	for _, e := range got {
		if e.Event.Patient != "pat-1" || e.Hash == "" {
			t.Fatalf("event %+v", e)
		}
	}
	evs := rec.Events()
	if len(evs) != 3 || evs[0].Action != audit.ActionAuditQuery || evs[0].UserID != "admin" || evs[0].Patient != "pat-1" {
		t.Fatalf("queries not audited: %+v", evs)
	}
}

func TestAdminFilters(t *testing.T) {
	srv := server(t, store(t), &audittest.Recorder{})
	var p page
	get(t, srv, "/admin/audit?action=login", admin, &p)
	if len(p.Events) != 1 || p.Events[0].Event.Action != "login" {
		t.Fatalf("action filter: %+v", p.Events)
	}
	get(t, srv, "/admin/audit?client=app-0&outcome=failure&since=2026-02-01&until="+url.QueryEscape(t0.Add(20*time.Minute).Format(time.RFC3339)), admin, &p)
	if len(p.Events) != 0 { // failures are i=9,19,29: app-1,app-1,app-1
		t.Fatalf("combined filter: %+v", p.Events)
	}
	get(t, srv, "/admin/audit?user=Practitioner/p0&until="+url.QueryEscape(t0.Add(10*time.Minute).Format(time.RFC3339)), admin, &p)
	if len(p.Events) != 4 {
		t.Fatalf("user+until: %d", len(p.Events))
	}
}

func TestAdminFHIRBundle(t *testing.T) {
	srv := server(t, store(t), &audittest.Recorder{})
	var b struct {
		ResourceType, Type string
		Link               []struct{ Relation, URL string }
		Entry              []struct{ Resource map[string]any }
	}
	resp := get(t, srv, "/admin/audit?format=fhir&limit=5", admin, &b)
	if resp.Header.Get("Content-Type") != "application/fhir+json" || b.Type != "searchset" || len(b.Entry) != 5 ||
		b.Entry[0].Resource["resourceType"] != "AuditEvent" || len(b.Link) != 2 || !strings.Contains(b.Link[1].URL, "cursor=") {
		t.Fatalf("bundle: %+v", b)
	}
}

func TestAdminRefusals(t *testing.T) {
	rec := &audittest.Recorder{}
	srv := server(t, store(t), rec)
	for path, want := range map[string]int{
		"/admin/audit":                 401, // no admin token
		"/admin/audit?since=yesterday": 400,
		"/admin/audit?limit=0":         400,
		"/admin/audit?limit=100000":    400,
		"/admin/audit?cursor=%21%21":   400,
		"/admin/audit?outcome=maybe":   400,
		"/admin/audit?format=xml":      400,
	} {
		hdr := admin
		if want == 401 {
			hdr = map[string]string{"Authorization": "Bearer wrong"}
		}
		var body map[string]string
		if resp := get(t, srv, path, hdr, &body); resp.StatusCode != want || body["error"] == "" {
			t.Errorf("%s: %d %v, want %d", path, resp.StatusCode, body, want)
		}
	}
	for _, e := range rec.Events() {
		if e.Outcome != audit.Failure {
			t.Fatalf("refusal audited as %s", e.Outcome)
		}
	}
	if len(rec.Events()) != 7 {
		t.Fatalf("%d refusals audited, want 7", len(rec.Events()))
	}
}

// If the query cannot be audited, the trail is not disclosed.
func TestAdminFailsClosed(t *testing.T) {
	rec := &audittest.Recorder{Fail: errors.New("disk full")}
	srv := server(t, store(t), rec)
	var p page
	if resp := get(t, srv, "/admin/audit", admin, &p); resp.StatusCode != 503 || len(p.Events) != 0 {
		t.Fatalf("status %d with %d events", resp.StatusCode, len(p.Events))
	}
}

func TestPatientAccessReport(t *testing.T) {
	srv := server(t, store(t), &audittest.Recorder{})
	var rep Report
	resp := get(t, srv, "/patient/access-report", map[string]string{"X-Test-Patient": "pat-2"}, &rep)
	if resp.StatusCode != 200 || rep.Patient != "pat-2" || len(rep.Items) != 7 {
		t.Fatalf("report: %d %+v", resp.StatusCode, rep)
	}
	for _, it := range rep.Items {
		if it.Who == "" || it.App != "App "+strings.ToUpper(it.ClientID) || !strings.HasPrefix(it.Resource, "Observation/") {
			t.Fatalf("item %+v", it)
		}
	}
	if len(rep.Apps) != 1 || rep.Apps[0].Count != 7 { // i%4==2 → even i → app-0
		t.Fatalf("apps: %+v", rep.Apps)
	}
	// A patient cannot ask for someone else's report: there is no patient parameter.
	var other Report
	get(t, srv, "/patient/access-report?patient=pat-1", map[string]string{"X-Test-Patient": "pat-2"}, &other)
	if other.Patient != "pat-2" {
		t.Fatalf("patient parameter honoured: %+v", other.Patient)
	}
	if resp := get(t, srv, "/patient/access-report", nil, nil); resp.StatusCode != 401 {
		t.Fatalf("anonymous report: %d", resp.StatusCode)
	}
}

func TestAccessReportFunctionShowsRefusals(t *testing.T) {
	rep, err := AccessReport(context.Background(), store(t), "Patient/pat-1", ReportQuery{Limit: 100}, nil)
	if err != nil {
		t.Fatal(err)
	}
	refused := 0
	for _, it := range rep.Items {
		if !it.Allowed {
			refused++
			if it.Reason != "insufficient_scope" {
				t.Fatalf("refusal without reason: %+v", it)
			}
		}
	}
	if refused != 2 { // i = 9, 29 (i%4 == 1)
		t.Fatalf("%d refusals, want 2", refused)
	}
	if _, err := AccessReport(context.Background(), store(t), "", ReportQuery{}, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty patient: %v", err)
	}
}
