package anomaly_test

import (
	"context"
	"errors"
	"fmt"
	"github.com/fhirgate/fhirgate/internal/metrics"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/anomaly"
	"github.com/fhirgate/fhirgate/internal/audit"
)

type failing struct{}

func (failing) Record(context.Context, audit.Event) error { return errors.New("disk full") }

func TestTapFeedsDetector(t *testing.T) {
	d, clk, _ := newDetector(t, anomaly.Config{
		Scraping:     anomaly.ScrapingConfig{MaxPatients: 5},
		AuthFailures: anomaly.AuthFailuresConfig{Max: 5},
	})
	next := &recorder{}
	tap := anomaly.Tap{Next: next, Detector: d}
	ctx := context.Background()
	ev := func(a audit.Action, o audit.Outcome, reason, patient string) audit.Event {
		return audit.Event{Time: clk.Now(), Action: a, Outcome: o, Reason: reason, ClientID: "app", UserID: "u1", SourceIP: "192.0.2.1", Patient: patient}
	}
	for i := range 6 {
		_ = tap.Record(ctx, ev("fhir.request", audit.Success, "", fmt.Sprint("p", i)))
	}
	for range 5 {
		_ = tap.Record(ctx, ev(audit.ActionLogin, audit.Failure, "bad password", ""))
	}
	_ = tap.Record(ctx, ev(audit.ActionRefreshReuse, audit.Failure, "reuse", ""))
	_ = tap.Record(ctx, ev("token.leaked", audit.Failure, "", ""))
	_ = tap.Record(ctx, ev(audit.ActionTokenRefused, audit.Failure, "invalid_dpop_proof: the proof was replayed", ""))
	if len(next.events) != 14 {
		t.Fatalf("Next saw %d events, want 14", len(next.events))
	}
	got := map[anomaly.Rule]anomaly.Subject{}
	for _, a := range list(t, d) {
		got[a.Rule] = a.Subject
	}
	want := map[anomaly.Rule]anomaly.Subject{
		anomaly.RulePatientScraping: {Kind: anomaly.SubjectUser, ID: "u1"},
		anomaly.RuleAuthFailures:    {Kind: anomaly.SubjectIP, ID: "192.0.2.1"}, // login failures count by address
		anomaly.RuleRefreshReuse:    {Kind: anomaly.SubjectUser, ID: "u1"},
		anomaly.RuleTokenInURL:      {Kind: anomaly.SubjectUser, ID: "u1"},
		anomaly.RuleReplay:          {Kind: anomaly.SubjectClient, ID: "app"},
	}
	for r, s := range want {
		if got[r] != s {
			t.Errorf("rule %s: subject %v, want %v", r, got[r], s)
		}
	}
	if len(got) != len(want) {
		t.Errorf("raised %v, want %v", got, want)
	}
}

func TestTapQuietOnOrdinaryEvents(t *testing.T) {
	d, clk, _ := newDetector(t, anomaly.Config{})
	tap := anomaly.Tap{Next: &recorder{}, Detector: d}
	for i := range 500 {
		e := audit.Event{Time: clk.Now(), ClientID: "app", UserID: fmt.Sprint("u", i%20), SourceIP: "192.0.2.1"}
		switch i % 5 {
		case 0:
			e.Action, e.Outcome = audit.ActionLogin, audit.Success
		case 1:
			e.Action, e.Outcome = audit.ActionTokenIssued, audit.Success
		case 2:
			e.Action, e.Outcome, e.Patient = "fhir.request", audit.Success, fmt.Sprint("p", i%20)
		case 3:
			e.Action, e.Outcome, e.Reason = "fhir.request", audit.Failure, "insufficient scope"
		case 4:
			e.Action, e.Outcome = audit.ActionConsentGranted, audit.Success
		}
		_ = tap.Record(context.Background(), e)
		clk.Advance(3 * time.Second)
	}
	if as := list(t, d); len(as) != 0 {
		t.Fatalf("ordinary events raised %+v", as)
	}
}

func TestTapKeepsNextError(t *testing.T) {
	d, _, _ := newDetector(t, anomaly.Config{})
	err := anomaly.Tap{Next: failing{}, Detector: d}.Record(context.Background(), audit.Event{Action: "token.leaked", ClientID: "c"})
	if err == nil {
		t.Fatal("the tap swallowed the auditor's error (fail-closed callers depend on it)")
	}
	if len(list(t, d)) != 1 {
		t.Fatal("the detector missed an event the auditor failed to keep")
	}
}

func TestTapCountsMetricsAndSkipsOwnRefusals(t *testing.T) {
	d, clk, _ := newDetector(t, anomaly.Config{AuthFailures: anomaly.AuthFailuresConfig{Max: 3}})
	m := metrics.New()
	tap := anomaly.Tap{Next: &recorder{}, Detector: d, Metrics: m}
	ctx := context.Background()
	for range 10 {
		_ = tap.Record(ctx, audit.Event{Time: clk.Now(), Action: "fhir.request", Outcome: audit.Failure, Reason: "rate limited (client)", ClientID: "app"})
	}
	for range 10 {
		_ = tap.Record(ctx, audit.Event{Time: clk.Now(), Action: audit.ActionTokenRefused, Outcome: audit.Failure, Reason: "slow_down: rate limited (ip)", ClientID: "app"})
	}
	if as := list(t, d); len(as) != 0 {
		t.Fatalf("429s counted as auth failures: %+v", as)
	}
	_ = tap.Record(ctx, audit.Event{Action: audit.ActionTokenIssued, Outcome: audit.Success, UserID: "u", ClientID: "app"})
	_ = tap.Record(ctx, audit.Event{Action: audit.ActionTokenIssued, Outcome: audit.Success, ClientID: "svc"})
	_ = tap.Record(ctx, audit.Event{Action: audit.ActionTokenRefreshed, Outcome: audit.Success, UserID: "u"})
	_ = tap.Record(ctx, audit.Event{Action: audit.ActionTokenRefused, Outcome: audit.Failure, Reason: "invalid_grant: code expired"})
	_ = tap.Record(ctx, audit.Event{Action: audit.ActionTokenRefused, Outcome: audit.Failure, Reason: "Weird Text/with:colon"})
	w := httptest.NewRecorder()
	m.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	body := w.Body.String()
	for _, want := range []string{
		`fhirgate_tokens_issued_total{grant_type="authorization_code"} 1`,
		`fhirgate_tokens_issued_total{grant_type="client_credentials"} 1`,
		`fhirgate_tokens_issued_total{grant_type="refresh_token"} 1`,
		`fhirgate_refusals_total{component="token",reason="invalid_grant"} 1`,
		`fhirgate_refusals_total{component="token",reason="other"} 1`,
		`fhirgate_refusals_total{component="token",reason="slow_down"} 10`,
		`fhirgate_refusals_total{component="gateway",reason="rate_limited"} 10`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// A gateway request audited with its answer ("; HTTP <status>") is an
// allowed request: its 404s and 502s are neither refusals nor auth failures,
// and its patients count only when the answer disclosed them.
func TestTapAnsweredRequests(t *testing.T) {
	d, clk, _ := newDetector(t, anomaly.Config{
		Scraping:     anomaly.ScrapingConfig{MaxPatients: 5},
		AuthFailures: anomaly.AuthFailuresConfig{Max: 3},
	})
	m := metrics.New()
	tap := anomaly.Tap{Next: &recorder{}, Detector: d, Metrics: m}
	ctx := context.Background()
	ev := func(o audit.Outcome, reason, patient string) audit.Event {
		return audit.Event{Time: clk.Now(), Action: audit.ActionFHIRRequest, Outcome: o, Reason: reason,
			ClientID: "app", UserID: "u1", SourceIP: "192.0.2.1", Patient: patient}
	}
	for i := range 10 {
		_ = tap.Record(ctx, ev(audit.Failure, audit.WithStatus("read Observation/x", 404), fmt.Sprint("p", i)))
		_ = tap.Record(ctx, ev(audit.Failure, audit.WithStatus("read Observation/x", 502), fmt.Sprint("q", i)))
	}
	if as := list(t, d); len(as) != 0 {
		t.Fatalf("answered failures raised %+v", as)
	}
	w := httptest.NewRecorder()
	m.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	if strings.Contains(w.Body.String(), `fhirgate_refusals_total{component="gateway"`) {
		t.Fatal("answered requests counted as gateway refusals")
	}
	// Six patients disclosed with 200s: scraping.
	for i := range 6 {
		_ = tap.Record(ctx, ev(audit.Success, audit.WithStatus("read Patient/x", 200), fmt.Sprint("r", i)))
	}
	as := list(t, d)
	if len(as) != 1 || as[0].Rule != anomaly.RulePatientScraping {
		t.Fatalf("raised %+v, want one patient scraping", as)
	}
	// Refusals recorded by the gateway itself (no status) still count.
	for range 3 {
		_ = tap.Record(ctx, ev(audit.Failure, "insufficient scope", ""))
	}
	found := false
	for _, a := range list(t, d) {
		found = found || a.Rule == anomaly.RuleAuthFailures
	}
	if !found {
		t.Fatal("gateway refusals no longer counted")
	}
}
