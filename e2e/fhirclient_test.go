package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/fhirgate/fhirgate/internal/app"
	"github.com/fhirgate/fhirgate/internal/clientreg"
	"github.com/fhirgate/fhirgate/internal/demoehr"
)

// fhirclientBuild is the browser build the fhirclient package ships.
var fhirclientBuild = filepath.Join("node_modules", "fhirclient", "build", "fhir-client.js")

// smartApp is the static test page (testdata/smartapp) with the fhirclient
// browser build, served on 127.0.0.1 by the test itself (no CDN).
type smartApp struct {
	srv *httptest.Server
	mu  sync.Mutex
	cfg map[string]any // window.E2E
}

func newSmartApp(t *testing.T) *smartApp {
	t.Helper()
	_, err := os.Stat(fhirclientBuild)
	need(t, err == nil, "%s is missing: run `npm ci` in e2e/ (.ci/run does)", fhirclientBuild)
	a := &smartApp{cfg: map[string]any{}}
	a.srv = serveFiles(t, filepath.Join("testdata", "smartapp"),
		map[string]string{"/fhir-client.js": fhirclientBuild},
		map[string]http.HandlerFunc{"GET /config.js": func(w http.ResponseWriter, _ *http.Request) {
			a.mu.Lock()
			b, _ := json.Marshal(a.cfg)
			a.mu.Unlock()
			w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			fmt.Fprintf(w, "window.E2E = %s;\n", b)
		}})
	return a
}

func (a *smartApp) redirectURI() string { return a.srv.URL + "/callback.html" }

func (a *smartApp) configure(cfg map[string]any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.cfg = cfg
}

// appResult is what app.js publishes as window.e2eResult.
type appResult struct {
	ServerURL           string         `json:"serverUrl"`
	PatientID           string         `json:"patientId"`
	PatientResourceID   string         `json:"patientResourceId"`
	PatientName         string         `json:"patientName"`
	UserID              string         `json:"userId"`
	Scope               string         `json:"scope"`
	TokenType           string         `json:"tokenType"`
	HasIDToken          bool           `json:"hasIdToken"`
	Observations        int            `json:"observations"`
	ObservationSubjects []string       `json:"observationSubjects"`
	Refused             map[string]any `json:"refused"`
	URLAfterReady       string         `json:"urlAfterReady"`
}

// waitApp waits for the test app to finish (or fail) after the redirect.
func waitApp(t *testing.T, b *browser) appResult {
	t.Helper()
	b.waitPath("/callback.html")
	raw := waitJS[string](b, "the SMART app's result", `window.e2eResult ? JSON.stringify(window.e2eResult) : window.e2eError ? "ERR " + window.e2eError : ""`, pageWait)
	b.shot("app")
	if strings.HasPrefix(raw, "ERR ") {
		b.fail("the SMART app", fmt.Errorf("%s", raw))
	}
	var r appResult
	if err := json.Unmarshal([]byte(raw), &r); err != nil {
		t.Fatalf("result %q: %v", raw, err)
	}
	return r
}

// TestFHIRClientStandalonePatientLaunch: the official SMART JavaScript
// client in a page on 127.0.0.1 launches standalone against fhirgate as a
// patient, who unchecks one scope at consent; the app reads the Patient and
// Observations through the gateway and is refused the unchecked data.
func TestFHIRClientStandalonePatientLaunch(t *testing.T) {
	sa := newSmartApp(t)
	s := startServer(t, nil)
	b := newBrowser(t) // closes before the server stops
	scope := "openid fhirUser launch/patient patient/Patient.rs patient/Observation.rs patient/Condition.rs"
	clientID, _ := s.client(t, clientreg.Metadata{
		ClientName: "fhirclient e2e app", RedirectURIs: []string{sa.redirectURI()},
		Scope: scope, TokenEndpointAuthMethod: "none",
	})
	sa.configure(map[string]any{
		"clientId": clientID, "scope": scope, "redirectUri": sa.redirectURI(), "iss": s.fhirBase,
		"refusedTypes": []string{"Condition"},
	})

	b.do("open the app", chromedp.Navigate(sa.srv.URL+"/launch.html"))
	b.waitLogin(s)
	b.login(patientUser, patientPassword)
	b.consent("patient/Condition.rs")
	r := waitApp(t, b)

	own := demoehr.PatientID(demoPatientN)
	if r.PatientID != own || r.PatientResourceID != own {
		t.Fatalf("patient %q / %q, want %s", r.PatientID, r.PatientResourceID, own)
	}
	if r.ServerURL != s.fhirBase {
		t.Fatalf("server %q, want %s", r.ServerURL, s.fhirBase)
	}
	granted := strings.Fields(r.Scope)
	for _, want := range []string{"patient/Patient.rs", "patient/Observation.rs"} {
		if !contains(granted, want) {
			t.Fatalf("scope %q lacks %s", r.Scope, want)
		}
	}
	if contains(granted, "patient/Condition.rs") {
		t.Fatalf("unchecked scope granted: %q", r.Scope)
	}
	if r.TokenType != "Bearer" || !r.HasIDToken {
		t.Fatalf("token type %q, id_token %v", r.TokenType, r.HasIDToken)
	}
	if r.Observations == 0 || len(r.ObservationSubjects) != 1 || r.ObservationSubjects[0] != "Patient/"+own {
		t.Fatalf("observations %d with subjects %v", r.Observations, r.ObservationSubjects)
	}
	if got := fmt.Sprint(r.Refused["Condition"]); got != "403" {
		t.Fatalf("unchecked Condition read: %s, want 403", got)
	}
	b.copyToDocs("login", "consent")
	if u, _ := url.Parse(r.URLAfterReady); u == nil || u.Query().Has("code") || u.Query().Has("state") {
		t.Fatalf("the code stayed in the browser's URL: %s", r.URLAfterReady)
	}
}

// TestFHIRClientEHRLaunch: an EHR launch context (`fhirgate launch create`)
// opens the app's launch URL with iss and launch; a clinician signs in and
// the app gets the launch's patient.
func TestFHIRClientEHRLaunch(t *testing.T) {
	sa := newSmartApp(t)
	s := startServer(t, nil)
	b := newBrowser(t) // closes before the server stops
	scope := "launch openid fhirUser patient/Patient.rs patient/Observation.rs"
	clientID, _ := s.client(t, clientreg.Metadata{
		ClientName: "fhirclient e2e EHR app", RedirectURIs: []string{sa.redirectURI()},
		Scope: scope, TokenEndpointAuthMethod: "none",
	})
	sa.configure(map[string]any{"clientId": clientID, "scope": scope, "redirectUri": sa.redirectURI()})
	pt := demoehr.PatientID(3)
	launchID, err := app.CreateLaunch(context.Background(), s.store, pt, "", time.Now())
	if err != nil {
		t.Fatal(err)
	}

	q := url.Values{"iss": {s.fhirBase}, "launch": {launchID}}
	b.do("EHR opens the app", chromedp.Navigate(sa.srv.URL+"/launch.html?"+q.Encode()))
	b.waitLogin(s)
	b.login(clinicianUser, clinicianPass)
	b.consent()
	r := waitApp(t, b)
	if r.PatientID != pt || r.PatientResourceID != pt {
		t.Fatalf("patient %q / %q, want the launch's %s", r.PatientID, r.PatientResourceID, pt)
	}
	if r.Observations == 0 || len(r.ObservationSubjects) != 1 || r.ObservationSubjects[0] != "Patient/"+pt {
		t.Fatalf("observations %d with subjects %v", r.Observations, r.ObservationSubjects)
	}
	if !strings.HasSuffix(r.UserID, "Practitioner/pr-01") {
		t.Fatalf("fhirUser %q", r.UserID)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
