package account

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit/audittest"
	"github.com/fhirgate/fhirgate/internal/demoehr"
	"github.com/fhirgate/fhirgate/internal/gateway"
	"github.com/fhirgate/fhirgate/internal/keys"
	"github.com/fhirgate/fhirgate/internal/revocation"
	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/token"
	"github.com/fhirgate/fhirgate/internal/upstream"
)

// TestRevokeOnConnectedAppsStopsTheGateway: after Revoke on the
// connected-apps page, the real gateway (in front of the demo EHR, polling
// the same store) refuses the app's access token within the polling bound.
func TestRevokeOnConnectedAppsStopsTheGateway(t *testing.T) {
	const interval, staleness = 100 * time.Millisecond, time.Second
	const fhirBase = "https://fhir.example.org/fhir"
	e := newEnv(t)
	ctx := context.Background()
	km, err := keys.New(ctx, keys.Options{Store: e.store, KEK: keys.DevKEK()})
	if err != nil {
		t.Fatal(err)
	}
	iss, err := token.NewIssuer(token.Options{Signer: km, Verifier: km, Issuer: "https://auth.example.org"})
	if err != nil {
		t.Fatal(err)
	}
	ehr, err := demoehr.New(demoehr.Options{Username: "gw", Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	ehrSrv := httptest.NewServer(ehr)
	t.Cleanup(ehrSrv.Close)
	up, err := upstream.Build(upstream.Config{URL: ehrSrv.URL, Auth: upstream.AuthConfig{Type: upstream.AuthBasic, Username: "gw", Password: "pw"}}, upstream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	checker, err := revocation.New(revocation.Options{Source: e.store, Interval: interval, MaxStaleness: staleness})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = checker.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-done })
	gw, err := gateway.New(gateway.Options{BaseURL: fhirBase, Upstreams: []*upstream.Upstream{up}, Tokens: iss, Revocations: checker,
		SMARTConfiguration: func() ([]byte, error) { return []byte(`{}`), nil },
		Auditor:            &audittest.Recorder{}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	gw.Register(mux)
	gsrv := httptest.NewServer(mux)
	t.Cleanup(gsrv.Close)

	// amy approved the app; it holds a token of family fam-g.
	now := time.Now()
	scope := "openid patient/*.rs offline_access"
	if err := e.store.PutConsent(ctx, &storage.Consent{UserID: "u-amy", ClientID: "app", Scope: scope, CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	if err := e.store.CreateFamily(ctx, &storage.TokenFamily{ID: "fam-g", ClientID: "app", UserID: "u-amy", Scope: scope, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	tok, _, err := iss.AccessToken(token.AccessClaims{Subject: "u-amy", Audience: fhirBase, ClientID: "app", Scope: "patient/*.rs", Patient: "pt-001", FamilyID: "fam-g"})
	if err != nil {
		t.Fatal(err)
	}
	status := func() int {
		req, _ := http.NewRequest(http.MethodGet, gsrv.URL+"/fhir/Patient/pt-001", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := gsrv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	wait := func(want int, limit time.Duration) time.Duration {
		start := time.Now()
		for status() != want {
			if time.Since(start) > limit {
				t.Fatalf("gateway status %d not reached within %s", want, limit)
			}
			time.Sleep(5 * time.Millisecond)
		}
		return time.Since(start)
	}
	wait(http.StatusOK, 2*time.Second)

	b := e.browser()
	b.signIn("amy", PathApps)
	p := b.get(PathApps)
	if p := b.post(PathRevoke, url.Values{"csrf": {csrfOf(t, p.body)}, "client_id": {"app"}}); p.location != PathApps+"?done=revoked" {
		t.Fatalf("revoke: %d %q", p.status, p.location)
	}
	took := wait(http.StatusUnauthorized, staleness)
	t.Logf("revocation from the connected-apps page reached the gateway in %s (poll interval %s)", took, interval)
	if took > interval+200*time.Millisecond {
		t.Errorf("took %s, bound %s", took, interval)
	}
}
