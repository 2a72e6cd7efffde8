package app

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/audit/chain"
	"github.com/fhirgate/fhirgate/internal/audit/export"
	"github.com/fhirgate/fhirgate/internal/storage"
)

// launchEvents returns the launch.created events in the server's audit trail.
func launchEvents(t *testing.T, srv *testServer) []chain.JSONEntry {
	t.Helper()
	var buf bytes.Buffer
	if _, err := ExportAudit(context.Background(), srv.cfg, &buf,
		chain.Filter{Actions: []audit.Action{audit.ActionLaunchCreated}}, export.JSON, time.Now()); err != nil {
		t.Fatal(err)
	}
	var out []chain.JSONEntry
	dec := json.NewDecoder(&buf)
	for dec.More() {
		var e chain.JSONEntry
		if err := dec.Decode(&e); err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

// POST /admin/launch (an EHR creating a launch context) lives on the admin
// listener only, behind an admin token; an admin user's password opens
// nothing, and the public listener does not have the route at all.
func TestAdminLaunchOnlyOnAdminListener(t *testing.T) {
	fx := setupWith(t, map[string]string{"admin.addr": "127.0.0.1:0"})
	srv := fx.srv
	if _, err := CreateUser(context.Background(), srv.app.Store(), NewUser{Username: "root", Password: "root-password", Role: storage.RoleAdmin}, fastPW, time.Now()); err != nil {
		t.Fatal(err)
	}
	tok := adminToken(t, srv)
	body := `{"patient":"Patient/123","encounter":"Encounter/9"}`
	post := func(base string, auth func(*http.Request), body string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, base+"/admin/launch", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if auth != nil {
			auth(req)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	basic := func(r *http.Request) { r.SetBasicAuth("root", "root-password") }
	bearer := func(token string) func(*http.Request) {
		return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }
	}

	// Public listener: no such route, whatever the credentials.
	for name, auth := range map[string]func(*http.Request){"none": nil, "admin user": basic, "admin token": bearer(tok)} {
		resp, b := post(srv.app.URL(), auth, body)
		if (resp.StatusCode != 404 && resp.StatusCode != 405) || strings.Contains(b, `"launch"`) {
			t.Errorf("public POST /admin/launch (%s): %d %s", name, resp.StatusCode, b)
		}
	}
	// Admin listener without an admin token: 401, and an admin user's
	// password is not an admin token.
	for name, auth := range map[string]func(*http.Request){"none": nil, "admin user": basic, "wrong token": bearer(tok + "x")} {
		resp, b := post(srv.app.AdminURL(), auth, body)
		if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") || strings.Contains(b, `"launch"`) {
			t.Errorf("admin POST /admin/launch (%s): %d %q %s", name, resp.StatusCode, resp.Header.Get("WWW-Authenticate"), b)
		}
	}
	if evs := launchEvents(t, srv); len(evs) != 0 {
		t.Fatalf("refused requests reached the launch handler: %+v", evs)
	}

	// With an admin token: a launch value that works for an EHR launch.
	resp, b := post(srv.app.AdminURL(), bearer(tok), body)
	var out struct {
		Launch    string `json:"launch"`
		ExpiresIn int    `json:"expires_in"`
	}
	if err := json.Unmarshal([]byte(b), &out); err != nil || resp.StatusCode != 200 || out.Launch == "" || out.ExpiresIn != 300 ||
		resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("admin POST /admin/launch with a token: %d %s %v", resp.StatusCode, b, err)
	}
	oc := fx.oauthConfig(fx.conf, fx.secret, "launch", "openid", "fhirUser", "patient/*.rs")
	r := fx.launch(t, oc, "drwho", "doctor-password", "", oauth2.SetAuthURLParam("launch", out.Launch))
	if r.tok.Extra("patient") != "123" || r.tok.Extra("encounter") != "9" {
		t.Fatalf("context patient=%v encounter=%v", r.tok.Extra("patient"), r.tok.Extra("encounter"))
	}
	// The body is still validated behind the token.
	if resp, b := post(srv.app.AdminURL(), bearer(tok), `{"patient":"Encounter/1"}`); resp.StatusCode != 400 || strings.Contains(b, `"launch"`) {
		t.Fatalf("bad patient: %d %s", resp.StatusCode, b)
	}
	// Audited with the admin token's principal.
	evs := launchEvents(t, srv)
	if len(evs) != 2 || evs[0].Event.Outcome != string(audit.Success) || !strings.HasPrefix(evs[0].Event.UserID, "token:test/") ||
		evs[0].Event.Patient != "123" || evs[1].Event.Outcome != string(audit.Failure) {
		t.Fatalf("launch.created events: %+v", evs)
	}
}
