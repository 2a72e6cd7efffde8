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
	"github.com/fhirgate/fhirgate/internal/password"
	"github.com/fhirgate/fhirgate/internal/session"
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

func TestAdminEndpoint(t *testing.T) {
	ctx := context.Background()
	store := open(t)
	cheap := password.Params{Time: 1, Memory: 1024, Threads: 1, KeyLen: 32}
	for _, u := range []struct {
		id, name string
		role     storage.Role
	}{{"a", "admin", storage.RoleAdmin}, {"c", "doc", storage.RoleClinician}} {
		h, _ := password.Hash("password123", cheap)
		if err := store.CreateUser(ctx, &storage.User{ID: u.id, Username: u.name, PasswordHash: h, Role: u.role}); err != nil {
			t.Fatal(err)
		}
	}
	rec := &audittest.Recorder{}
	dummy, _ := password.Hash("dummy password", cheap)
	authn, _ := session.NewAuthenticator(session.AuthenticatorOptions{Users: store, DummyHash: dummy, Auditor: rec})
	h, err := New(Options{Launches: store, Authenticator: authn, Auditor: rec})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	post := func(user, pass, body string) (*http.Response, map[string]any) {
		req, _ := http.NewRequest("POST", srv.URL+"/admin/launch", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if user != "" {
			req.SetBasicAuth(user, pass)
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
	body := `{"patient":"Patient/123","encounter":"Encounter/9"}`
	resp, out := post("admin", "password123", body)
	if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("%d %v", resp.StatusCode, out)
	}
	v, _ := out["launch"].(string)
	l, err := store.ConsumeLaunch(ctx, storage.HashSecret(v), time.Now())
	if err != nil || l.Context.Patient != "123" || l.Context.Encounter != "9" || !l.Context.NeedPatientBanner {
		t.Fatalf("%+v %v", l, err)
	}
	if !rec.Has(audit.ActionLaunchCreated, audit.Success) {
		t.Error("not audited")
	}
	for _, c := range []struct {
		user, pass, body string
		status           int
	}{
		{"", "", body, 401},
		{"admin", "wrong-password", body, 401},
		{"ghost", "wrong-password", body, 401},
		{"doc", "password123", body, 403},
		{"admin", "password123", `{"patient":"Encounter/1"}`, 400},
		{"admin", "password123", `{"patient":"1","extra":true}`, 400},
		{"admin", "password123", `not json`, 400},
	} {
		resp, out := post(c.user, c.pass, c.body)
		if resp.StatusCode != c.status || out["error"] == nil || out["launch"] != nil {
			t.Errorf("%+v: %d %v", c, resp.StatusCode, out)
		}
		if c.status == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic") {
			t.Errorf("%+v: no WWW-Authenticate", c)
		}
	}
	if !rec.Has(audit.ActionLaunchCreated, audit.Failure) {
		t.Error("refusals not audited")
	}
	// Audit failure: no launch handed out.
	rec.Fail = errors.New("disk full")
	if resp, out := post("admin", "password123", body); resp.StatusCode != 503 || out["launch"] != nil {
		t.Fatalf("audit down: %d %v", resp.StatusCode, out)
	}
}
