package app

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/anomaly"
)

// tokenError posts a client_credentials request for clientID and returns
// the status and OAuth error code.
func tokenError(t *testing.T, ts *testServer, clientID string) (int, string) {
	t.Helper()
	resp, err := http.PostForm(ts.app.URL()+"/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {clientID}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&e)
	return resp.StatusCode, e["error"]
}

func shutdown(t *testing.T, ts *testServer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ts.app.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

// With the default anomaly.store (the main store), a suspension raised on
// one server is still in force on the next server started on the same data
// directory, and so is an admin's clear of it.
func TestSuspensionSurvivesRestart(t *testing.T) {
	ov := map[string]string{"data_dir": t.TempDir(), "anomaly.token_in_url_action": "suspend"}
	s1 := startServer(t, ov)
	if s1.cfg.Anomaly.Store != "store" {
		t.Fatalf("default anomaly.store = %q, want store", s1.cfg.Anomaly.Store)
	}
	s1.app.prot.detector.Observe(anomaly.Observation{Kind: anomaly.TokenInURL, ClientID: "leaky-app"})
	if !s1.app.prot.detector.Check("leaky-app", "", "").Suspended() {
		t.Fatal("the first server did not suspend leaky-app")
	}
	shutdown(t, s1)

	s2 := startServer(t, ov)
	if !s2.app.prot.detector.Check("leaky-app", "", "").Suspended() {
		t.Fatal("the restart lifted leaky-app's suspension")
	}
	if code, e := tokenError(t, s2, "leaky-app"); code != http.StatusBadRequest || e != "unauthorized_client" {
		t.Fatalf("suspended client at /token after restart: %d %s", code, e)
	}
	cleared, err := s2.app.prot.detector.ClearSubject(context.Background(), anomaly.Subject{Kind: anomaly.SubjectClient, ID: "leaky-app"}, "admin:test")
	if err != nil || len(cleared) != 1 {
		t.Fatalf("ClearSubject = %+v, %v", cleared, err)
	}
	shutdown(t, s2)

	s3 := startServer(t, ov)
	if s3.app.prot.detector.Check("leaky-app", "", "").Suspended() {
		t.Fatal("a cleared suspension came back after a restart")
	}
	if code, e := tokenError(t, s3, "leaky-app"); e == "unauthorized_client" {
		t.Fatalf("cleared client still refused as suspended: %d %s", code, e)
	}
	l, err := s3.app.prot.detector.List(context.Background(), anomaly.ListOptions{IncludeCleared: true})
	if err != nil || len(l) != 1 || l[0].ClearedBy != "admin:test" {
		t.Fatalf("anomalies after the second restart: %+v, %v", l, err)
	}
}

// anomaly.store memory keeps the old behaviour, which is why it is no longer
// the default: a restart forgets the suspension.
func TestMemoryAnomalyStoreForgetsOnRestart(t *testing.T) {
	ov := map[string]string{"data_dir": t.TempDir(), "anomaly.token_in_url_action": "suspend", "anomaly.store": "memory"}
	s1 := startServer(t, ov)
	s1.app.prot.detector.Observe(anomaly.Observation{Kind: anomaly.TokenInURL, ClientID: "leaky-app"})
	if !s1.app.prot.detector.Check("leaky-app", "", "").Suspended() {
		t.Fatal("the first server did not suspend leaky-app")
	}
	shutdown(t, s1)
	s2 := startServer(t, ov)
	if s2.app.prot.detector.Check("leaky-app", "", "").Suspended() {
		t.Fatal("a memory store kept a suspension across a restart")
	}
}
