package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/fhirgate/fhirgate/internal/adminapi"
	"github.com/fhirgate/fhirgate/internal/anomaly"
	"github.com/fhirgate/fhirgate/internal/clientreg"
	"github.com/fhirgate/fhirgate/internal/demoehr"
	"github.com/fhirgate/fhirgate/internal/storage"
)

func adminToken(t *testing.T, ts *testServer) string {
	t.Helper()
	text, tok, err := adminapi.NewToken("test", 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := adminapi.NewFileTokens(AdminTokensPath(ts.cfg)).AddToken(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	return text
}

func get(t *testing.T, u, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAdminListener(t *testing.T) {
	ts := startServer(t, map[string]string{"admin.addr": "127.0.0.1:0"})
	admin := ts.app.AdminURL()
	if admin == "" || admin == ts.app.URL() {
		t.Fatalf("admin URL %q (public %q)", admin, ts.app.URL())
	}
	tok := adminToken(t, ts)
	// Traffic on the public listener shows up in the metrics.
	if c, _ := get(t, ts.app.URL()+"/.well-known/smart-configuration", ""); c != 200 {
		t.Fatalf("smart-configuration: %d", c)
	}
	c, body := get(t, admin+"/metrics", tok)
	if c != 200 || !strings.Contains(body, `fhirgate_http_requests_total{outcome="2xx",route="GET /.well-known/smart-configuration"}`) {
		t.Fatalf("admin /metrics: %d %.300s", c, body)
	}
	if c, _ := get(t, admin+"/metrics", ""); c != 401 {
		t.Fatalf("admin /metrics without a token: %d", c)
	}
	if c, _ := get(t, admin+"/metrics", adminapi.TokenPrefix+"nope"); c != 401 {
		t.Fatalf("admin /metrics with a wrong token: %d", c)
	}
	if c, body := get(t, admin+"/admin/anomalies", tok); c != 200 || !strings.Contains(body, `"anomalies"`) {
		t.Fatalf("admin anomalies: %d %s", c, body)
	}
	// Nothing admin is reachable on the public listener.
	for _, p := range []string{"/metrics", "/admin/anomalies"} {
		if c, _ := get(t, ts.app.URL()+p, tok); c != 404 {
			t.Errorf("public %s: %d, want 404", p, c)
		}
	}
	// Probes need no token, on either listener.
	for _, base := range []string{admin, ts.app.URL()} {
		if c, _ := get(t, base+"/healthz", ""); c != 200 {
			t.Errorf("%s/healthz: %d", base, c)
		}
		if c, body := get(t, base+"/readyz", ""); c != 200 || !strings.Contains(body, `"store":"ok"`) {
			t.Errorf("%s/readyz: %d %s", base, c, body)
		}
	}
}

func TestNoAdminListenerByDefault(t *testing.T) {
	ts := startServer(t, nil)
	if ts.app.AdminURL() != "" {
		t.Fatalf("admin listener without admin.addr: %s", ts.app.AdminURL())
	}
}

func TestTokenEndpointRateLimited(t *testing.T) {
	ts := startServer(t, map[string]string{"ratelimit.token_per_ip": "3/1m"})
	var last *http.Response
	for i := range 4 {
		resp, err := http.PostForm(ts.app.URL()+"/token", url.Values{"grant_type": {"authorization_code"}, "client_id": {"nobody"}})
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if i < 3 && resp.StatusCode == http.StatusTooManyRequests {
			t.Fatalf("request %d limited", i+1)
		}
		last = resp
	}
	if last.StatusCode != http.StatusTooManyRequests || last.Header.Get("Retry-After") == "" {
		t.Fatalf("4th /token request: %d %v", last.StatusCode, last.Header)
	}
}

func TestLoginRateLimited(t *testing.T) {
	ts := startServer(t, map[string]string{"ratelimit.login_per_ip": "2/1m"})
	codes := []int{}
	for range 3 {
		resp, err := http.PostForm(ts.app.URL()+"/authorize/login", url.Values{"username": {"x"}, "password": {"y"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		codes = append(codes, resp.StatusCode)
	}
	if codes[0] == 429 || codes[1] == 429 || codes[2] != 429 {
		t.Fatalf("login statuses %v, want the third refused with 429", codes)
	}
}

func TestSuspendedClientRefusedAtToken(t *testing.T) {
	ts := startServer(t, map[string]string{"anomaly.token_in_url_action": "suspend"})
	ts.app.prot.detector.Observe(anomaly.Observation{Kind: anomaly.TokenInURL, ClientID: "leaky-app"})
	resp, err := http.PostForm(ts.app.URL()+"/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {"leaky-app"}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&e)
	if resp.StatusCode != 400 || e["error"] != "unauthorized_client" {
		t.Fatalf("suspended client at /token: %d %v", resp.StatusCode, e)
	}
}

// Two nodes sharing Redis hold one /token budget per address.
func TestTwoNodesShareRedisBudget(t *testing.T) {
	addr := os.Getenv("FHIRGATE_TEST_REDIS_ADDR")
	if addr == "" {
		t.Skip("FHIRGATE_TEST_REDIS_ADDR is unset: skipping the shared Redis budget test (.ci/run sets it)")
	}
	ov := map[string]string{
		"ratelimit.backend": "redis", "ratelimit.redis_url": "redis://" + addr,
		"ratelimit.redis_prefix": fmt.Sprintf("fhirgate:test:%d:", time.Now().UnixNano()),
		"ratelimit.token_per_ip": "6/1h",
	}
	a, b := startServer(t, ov), startServer(t, ov)
	limited := 0
	for i := range 12 {
		node := a
		if i%2 == 1 {
			node = b
		}
		resp, err := http.PostForm(node.app.URL()+"/token", url.Values{"grant_type": {"authorization_code"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			limited++
		}
	}
	if limited != 6 {
		t.Fatalf("%d of 12 requests across two nodes limited, want 6 (one shared budget of 6)", limited)
	}
}

// TestGatewayProtection: a token sent in a URL suspends the user (through
// the audit tap), the suspension holds for a new token until an admin
// clears it, and the per-client budget answers 429 with an OperationOutcome.
func TestGatewayProtection(t *testing.T) {
	ctx := context.Background()
	ehr, err := demoehr.New(demoehr.Options{Username: "gw", Password: "ehr-secret"})
	if err != nil {
		t.Fatal(err)
	}
	ehrSrv := httptest.NewServer(ehr)
	defer ehrSrv.Close()
	srv := startServer(t, map[string]string{
		"gateway.upstream": ehrSrv.URL, "gateway.upstream_auth": "basic:gw:ehr-secret",
		"admin.addr": "127.0.0.1:0", "anomaly.token_in_url_action": "suspend",
		"ratelimit.gateway_per_client": "4/1h",
	})
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
	base := srv.app.FHIRBase()
	fetch := func(c *http.Client, u string) (int, string, http.Header) {
		t.Helper()
		resp, err := c.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	r := fx.launch(t, oc, "amy", "amy-password", "")
	r2 := fx.launch(t, oc, "amy", "amy-password", "") // a second app session, from before the suspension
	client := oc.Client(ctx, r.tok)
	if c, body, _ := fetch(client, base+"/Patient/pt-001"); c != 200 { // budget 1 of 4
		t.Fatalf("own patient: %d %s", c, body)
	}
	// The token in a URL: refused, revoked, and (action suspend) the user suspended.
	if c, _, _ := fetch(http.DefaultClient, base+"/Patient/pt-001?access_token="+url.QueryEscape(r.tok.AccessToken)); c == 200 {
		t.Fatal("a token in the URL was accepted")
	}
	waitUntil(t, func() bool { return suspendedAny(srv) })
	client2 := oc.Client(ctx, r2.tok)
	c, body, _ := fetch(client2, base+"/Patient/pt-001")
	if c != http.StatusForbidden || !strings.Contains(body, `"suspended"`) {
		t.Fatalf("suspended user's other token: %d %s", c, body)
	}
	// A new launch is refused at /authorize after sign-in (access_denied).
	b := newBrowser(t, srv.app.URL(), redirectURI)
	p := b.get(oc.AuthCodeURL("state-suspended", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("aud", base)))
	p = b.submit(onlyForm(t, p, "/authorize/login"), url.Values{"username": {"amy"}, "password": {"amy-password"}})
	if p.location == nil || p.location.Query().Get("error") != "access_denied" {
		t.Fatalf("suspended user's new launch: %d %v", p.status, p.location)
	}
	// An admin clears it through the admin API.
	tok := adminToken(t, srv)
	list := struct{ Anomalies []anomaly.Anomaly }{}
	_, lb := get(t, srv.app.AdminURL()+"/admin/anomalies", tok)
	if err := json.Unmarshal([]byte(lb), &list); err != nil || len(list.Anomalies) != 1 || list.Anomalies[0].Rule != anomaly.RuleTokenInURL {
		t.Fatalf("anomalies: %s", lb)
	}
	req, _ := http.NewRequest(http.MethodPost, srv.app.AdminURL()+"/admin/anomalies/"+list.Anomalies[0].ID+"/clear", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("clear: %v %v", resp, err)
	}
	resp.Body.Close()
	for i := range 3 { // budget 2..4 of 4
		if c, body, _ := fetch(client2, base+"/Patient/pt-001"); c != 200 {
			t.Fatalf("request %d after clear: %d %s", i+1, c, body)
		}
	}
	c, body, h := fetch(client2, base+"/Patient/pt-001")
	if c != http.StatusTooManyRequests || h.Get("Retry-After") == "" || !strings.Contains(body, `"throttled"`) {
		t.Fatalf("over the client budget: %d %v %s", c, h, body)
	}
	_, metricsBody := get(t, srv.app.AdminURL()+"/metrics", tok)
	for _, want := range []string{
		`fhirgate_rate_limited_total{dimension="client",endpoint="gateway"} 1`,
		`fhirgate_anomalies_total{action="suspend",rule="token_in_url"} 1`,
		`fhirgate_upstream_request_duration_seconds_count{outcome="2xx",upstream="/"}`,
		`fhirgate_tokens_issued_total{grant_type="authorization_code"} 2`,
		`fhirgate_refusals_total{component="gateway",reason="suspended"} 1`,
	} {
		if !strings.Contains(metricsBody, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func suspendedAny(srv *testServer) bool {
	as, _ := srv.app.prot.detector.List(context.Background(), anomaly.ListOptions{})
	return len(as) > 0 && as[0].Action == anomaly.ActionSuspend
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestReadyzChecksUpstream(t *testing.T) {
	// The readiness check dials the upstream. Port 1 is privileged and
	// outside the ephemeral range, so no test listener can take it; a
	// closed test server's port could be handed to the next listener (the
	// live one, or the app's), which once made this check pass.
	deadURL := "http://127.0.0.1:1"
	live := httptest.NewServer(http.NotFoundHandler())
	defer live.Close()
	for _, tc := range []struct {
		upstream string
		code     int
		check    string
	}{{live.URL, 200, `"upstream /":"ok"`}, {deadURL, 503, `"upstream /":"fail"`}} {
		ts := startServer(t, map[string]string{"gateway.upstream": tc.upstream})
		if c, body := get(t, ts.app.URL()+"/readyz", ""); c != tc.code || !strings.Contains(body, tc.check) {
			t.Errorf("upstream %s: /readyz %d %s", tc.upstream, c, body)
		}
	}
}
