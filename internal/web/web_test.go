package web

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func render(t *testing.T, name string, data any) string {
	t.Helper()
	p, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := p.Render(&b, name, data); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestPagesAreAccessibleAndScriptFree(t *testing.T) {
	pages := map[string]any{
		PageError:   ErrorPage{Title: "Error", Message: "bad"},
		PageMessage: MessagePage{Title: "Signed out", Message: "bye"},
		PageLogin:   LoginPage{Title: "Sign in", ReqID: "r1", CSRF: "c1", Error: "Invalid username or password."},
		PagePicker:  PickerPage{Title: "Pick", ReqID: "r1", CSRF: "c1", Searched: true, Patients: []PatientOption{{Ref: "Patient/1", Name: "Amy"}}},
		PageConsent: ConsentPage{Title: "Consent", ReqID: "r1", CSRF: "c1", ClientName: "App", Groups: []ScopeGroup{{Label: "Observation", Scopes: []ScopeItem{{ID: "s0", Value: "patient/Observation.rs", Description: "Read", Checked: true}}}}},
	}
	for name, data := range pages {
		out := render(t, name, data)
		for _, want := range []string{`<html lang="en">`, `name="viewport"`, `href="/static/style.css"`} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: missing %s", name, want)
			}
		}
		if strings.Contains(strings.ToLower(out), "<script") || strings.Contains(out, "style=") || strings.Contains(out, "onclick") {
			t.Errorf("%s: contains script or inline style", name)
		}
	}
	login := render(t, PageLogin, pages[PageLogin])
	if strings.Count(login, `type="text"`) != 1 || strings.Count(login, `type="password"`) != 1 ||
		!strings.Contains(login, `<label for="username">`) || !strings.Contains(login, `<label for="password">`) {
		t.Errorf("login form shape wrong:\n%s", login)
	}
	consent := render(t, PageConsent, pages[PageConsent])
	for _, want := range []string{`type="checkbox" id="s0" name="scope" value="patient/Observation.rs" checked`, `name="decision" value="approve"`, `name="decision" value="deny"`, `name="csrf" value="c1"`} {
		if !strings.Contains(consent, want) {
			t.Errorf("consent missing %s", want)
		}
	}
	picker := render(t, PagePicker, pages[PagePicker])
	if !strings.Contains(picker, `type="radio" id="patient-0" name="patient" value="Patient/1"`) {
		t.Errorf("picker radio missing:\n%s", picker)
	}
}

func TestTemplatesEscape(t *testing.T) {
	out := render(t, PageError, ErrorPage{Title: "x", Message: `<script>alert(1)</script>`})
	if strings.Contains(out, "<script>") {
		t.Fatal("message not escaped")
	}
}

func TestSafeLogoURL(t *testing.T) {
	for raw, want := range map[string]string{
		"https://app.example/logo.png": "https://app.example/logo.png",
		"http://app.example/logo.png":  "",
		"javascript:alert(1)":          "",
		"data:image/png;base64,AAAA":   "",
		"https://u:p@app.example/l":    "",
		"//app.example/logo.png":       "",
	} {
		if got := SafeLogoURL(raw); got != want {
			t.Errorf("SafeLogoURL(%q) = %q, want %q", raw, got, want)
		}
	}
}

func TestStatic(t *testing.T) {
	mux := http.NewServeMux()
	Register(mux)
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/static/style.css", nil))
	if rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/css") || rec.Header().Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("style.css: %d %v", rec.Code, rec.Header())
	}
	rec = httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/static/", nil))
	if rec.Code != 404 {
		t.Fatalf("directory listing: %d", rec.Code)
	}
	rec = httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/static/../web.go", nil))
	if rec.Code == 200 {
		t.Fatal("path traversal served a file")
	}
}
