package app

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/fhirgate/fhirgate/internal/clientreg"
	"github.com/fhirgate/fhirgate/internal/demoehr"
	"github.com/fhirgate/fhirgate/internal/storage"
)

// TestEndToEndGateway: demo EHR (HTTP Basic only) + authorization server +
// gateway in one App; a SMART client using x/oauth2 reads its own
// Observations through the gateway and is refused another patient's.
func TestEndToEndGateway(t *testing.T) {
	ctx := context.Background()
	ehr, err := demoehr.New(demoehr.Options{Username: "gw", Password: "ehr-secret"})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seenAuth []string
	ehrSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seenAuth = append(seenAuth, r.Header.Get("Authorization"))
		mu.Unlock()
		ehr.ServeHTTP(w, r)
	}))
	defer ehrSrv.Close()
	srv := startServer(t, map[string]string{"gateway.upstream": ehrSrv.URL, "gateway.upstream_auth": "basic:gw:ehr-secret"})
	st := srv.app.Store()
	now := time.Now()
	if _, err := CreateUser(ctx, st, NewUser{Username: "amy", Password: "amy-password", Role: storage.RolePatient, FHIRUser: "Patient/pt-001"}, fastPW, now); err != nil {
		t.Fatal(err)
	}
	pub, _, err := CreateClient(ctx, st, clientreg.Metadata{ClientName: "Public app", RedirectURIs: []string{redirectURI},
		Scope: "openid fhirUser launch/patient patient/*.rs", TokenEndpointAuthMethod: "none"}, now)
	if err != nil {
		t.Fatal(err)
	}
	provider, err := oidc.NewProvider(ctx, srv.app.Issuer())
	if err != nil {
		t.Fatal(err)
	}
	fx := &fixture{srv: srv, provider: provider, public: pub}
	oc := fx.oauthConfig(pub, "", "launch/patient", "openid", "fhirUser", "patient/*.rs")
	r := fx.launch(t, oc, "amy", "amy-password", "")
	if got := r.tok.Extra("patient"); got != "pt-001" {
		t.Fatalf("patient %v", got)
	}
	client := oc.Client(ctx, r.tok)
	base := srv.app.FHIRBase()
	get := func(path string) (int, map[string]any) {
		t.Helper()
		resp, err := client.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %v: %s", path, err, b)
		}
		return resp.StatusCode, m
	}
	code, bundle := get("/Observation?category=vital-signs")
	entries, _ := bundle["entry"].([]any)
	if code != 200 || len(entries) == 0 {
		t.Fatalf("own observations: %d %v", code, bundle)
	}
	for _, e := range entries {
		res := e.(map[string]any)["resource"].(map[string]any)
		if ref := res["subject"].(map[string]any)["reference"]; ref != "Patient/pt-001" {
			t.Fatalf("foreign observation %v (%v)", res["id"], ref)
		}
		if fu, _ := e.(map[string]any)["fullUrl"].(string); !strings.HasPrefix(fu, base+"/Observation/") {
			t.Fatalf("fullUrl %q", fu)
		}
	}
	if code, _ := get("/Observation/obs-002-01"); code != http.StatusNotFound {
		t.Fatalf("another patient's observation: %d", code)
	}
	if code, _ := get("/Patient/pt-002"); code != http.StatusNotFound {
		t.Fatalf("another patient: %d", code)
	}
	if code, _ := get("/Patient/pt-001"); code != http.StatusOK {
		t.Fatalf("own patient: %d", code)
	}
	// metadata is public and advertises the authorization server.
	resp, err := http.Get(base + "/metadata")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), srv.app.Issuer()+"/token") {
		t.Fatalf("metadata: %d %s", resp.StatusCode, b)
	}
	// No token: 401 with a challenge.
	resp, err = http.Get(base + "/Observation")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
		t.Fatalf("no token: %d", resp.StatusCode)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, a := range seenAuth {
		if !strings.HasPrefix(a, "Basic ") {
			t.Fatalf("upstream saw Authorization %q", a)
		}
	}
}
