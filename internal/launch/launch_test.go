package launch

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/audit/audittest"
	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/storage/sqlite"
)

func open(t *testing.T) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "db.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestBareID(t *testing.T) {
	for in, want := range map[string]string{"Patient/123": "123", "123": "123", "": "", "Patient/a.b-C": "a.b-C"} {
		if got, err := BareID(in, "Patient"); err != nil || got != want {
			t.Errorf("BareID(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"Encounter/1", "Patient/", "Patient/1/_history/2", "https://x/Patient/1", "Patient/a b", "a_b",
		"Patient/" + strings.Repeat("1", 65)} {
		if _, err := BareID(bad, "Patient"); !errors.Is(err, ErrInvalidContext) {
			t.Errorf("BareID(%q) accepted", bad)
		}
	}
}

func TestCreateAndConsume(t *testing.T) {
	ctx := context.Background()
	store := open(t)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	v, err := Create(ctx, store, storage.LaunchContext{Patient: "Patient/123", Encounter: "Encounter/9"}, now, 0)
	if err != nil || len(v) < 43 {
		t.Fatalf("%q %v", v, err)
	}
	l, err := store.ConsumeLaunch(ctx, storage.HashSecret(v), now.Add(4*time.Minute))
	if err != nil || l.Context.Patient != "123" || l.Context.Encounter != "9" || !l.ExpiresAt.Equal(now.Add(DefaultTTL)) {
		t.Fatalf("%+v %v", l, err)
	}
	if _, err := store.ConsumeLaunch(ctx, storage.HashSecret(v), now); !errors.Is(err, storage.ErrAlreadyUsed) {
		t.Fatalf("reuse: %v", err)
	}
	if _, err := Create(ctx, store, storage.LaunchContext{Patient: "Encounter/1"}, now, 0); !errors.Is(err, ErrInvalidContext) {
		t.Fatalf("bad patient: %v", err)
	}
	if _, err := Create(ctx, store, storage.LaunchContext{Patient: "1", FHIRContext: []byte(`{"x":1}`)}, now, 0); !errors.Is(err, ErrInvalidContext) {
		t.Fatalf("bad fhirContext: %v", err)
	}
	if _, err := Create(ctx, store, storage.LaunchContext{Patient: "1"}, now, time.Hour); err == nil {
		t.Fatal("a 1 h launch was accepted")
	}
}

// testPrincipal stands in for the admin API's authentication: the test
// names the admitted principal in a header the real server never trusts.
func testPrincipal(r *http.Request) (string, bool) {
	p := r.Header.Get("X-Test-Principal")
	return p, p != ""
}

func TestNewRequiresPrincipal(t *testing.T) {
	store := open(t)
	if _, err := New(Options{Launches: store, Auditor: &audittest.Recorder{}}); err == nil {
		t.Fatal("a handler without Principal (no admin authentication) was built")
	}
	if _, err := New(Options{Launches: store, Principal: testPrincipal, Auditor: &audittest.Recorder{}, TTL: time.Hour}); err == nil {
		t.Fatal("a 1 h TTL was accepted")
	}
}

func TestAdminEndpoint(t *testing.T) {
	ctx := context.Background()
	store := open(t)
	rec := &audittest.Recorder{}
	h, err := New(Options{Launches: store, Principal: testPrincipal, Auditor: rec})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(Pattern, h)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	post := func(principal, body string) (*http.Response, map[string]any) {
		req, _ := http.NewRequest("POST", srv.URL+"/admin/launch", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if principal != "" {
			req.Header.Set("X-Test-Principal", principal)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp, out
	}
	const admin = "token:ehr/t1"
	body := `{"patient":"Patient/123","encounter":"Encounter/9"}`
	resp, out := post(admin, body)
	if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "no-store" || out["expires_in"] != float64(300) {
		t.Fatalf("%d %v", resp.StatusCode, out)
	}
	v, _ := out["launch"].(string)
	l, err := store.ConsumeLaunch(ctx, storage.HashSecret(v), time.Now())
	if err != nil || l.Context.Patient != "123" || l.Context.Encounter != "9" || !l.Context.NeedPatientBanner {
		t.Fatalf("%+v %v", l, err)
	}
	var okEv *audit.Event
	for _, e := range rec.Events() {
		if e.Action == audit.ActionLaunchCreated && e.Outcome == audit.Success {
			okEv = &e
		}
	}
	if okEv == nil || okEv.UserID != admin || okEv.Patient != "123" {
		t.Fatalf("success audit event %+v: want UserID %q, Patient 123", okEv, admin)
	}
	before := len(rec.Events())
	for _, c := range []struct {
		principal, body string
		status          int
	}{
		{"", body, 401}, // not admitted by the admin API: refused even if mounted elsewhere
		{admin, `{"patient":"Encounter/1"}`, 400},
		{admin, `{"patient":"1","encounter":"Patient/2"}`, 400},
		{admin, `{"patient":"1","fhirContext":{"x":1}}`, 400},
		{admin, `{"patient":"1","extra":true}`, 400},
		{admin, `not json`, 400},
		{admin, `{"patient":"` + strings.Repeat("1", maxBody) + `"}`, 400},
	} {
		resp, out := post(c.principal, c.body)
		if resp.StatusCode != c.status || out["error"] == nil || out["launch"] != nil || resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%+v: %d %v", c, resp.StatusCode, out)
		}
		if got := resp.Header.Get("WWW-Authenticate"); (c.status == 401) != strings.HasPrefix(got, "Bearer") {
			t.Errorf("%+v: WWW-Authenticate %q", c, got)
		}
	}
	evs := rec.Events()[before:]
	if len(evs) != 7 {
		t.Fatalf("%d refusal events, want 7", len(evs))
	}
	for _, e := range evs {
		if e.Action != audit.ActionLaunchCreated || e.Outcome != audit.Failure || e.Reason == "" {
			t.Errorf("refusal event %+v", e)
		}
	}
	if evs[0].UserID != "" || evs[1].UserID != admin {
		t.Errorf("refusal UserIDs %q, %q", evs[0].UserID, evs[1].UserID)
	}
	// Wrong content type.
	req, _ := http.NewRequest("POST", srv.URL+"/admin/launch", strings.NewReader(body))
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Set("X-Test-Principal", admin)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 400 {
		t.Fatalf("text/plain: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	// Audit failure: no launch handed out.
	rec.Fail = errors.New("disk full")
	if resp, out := post(admin, body); resp.StatusCode != 503 || out["launch"] != nil {
		t.Fatalf("audit down: %d %v", resp.StatusCode, out)
	}
}
