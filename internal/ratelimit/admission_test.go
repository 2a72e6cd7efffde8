package ratelimit_test

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

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/metrics"
	"github.com/fhirgate/fhirgate/internal/ratelimit"
)

func admission(t *testing.T, status ratelimit.StatusFunc) *ratelimit.Admission {
	g, _ := newGuard(t, ratelimit.Policy{
		Endpoints: map[ratelimit.Endpoint]ratelimit.Rates{
			ratelimit.EndpointToken:   {IP: ratelimit.Rate{Requests: 2, Per: time.Minute}},
			ratelimit.EndpointGateway: {Client: ratelimit.Rate{Requests: 2, Per: time.Minute}},
		},
		Throttle: ratelimit.Rate{Requests: 1, Per: time.Minute},
	})
	return &ratelimit.Admission{Guard: g, Status: status, Metrics: metrics.New(), Auditor: &auditRec{}}
}

type auditRec struct {
	mu     sync.Mutex
	events []audit.Event
}

func (r *auditRec) Record(_ context.Context, e audit.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
	return nil
}

func TestAdmissionMiddleware(t *testing.T) {
	a := admission(t, func(client, user, ip string) (bool, bool) { return client == "bad-app", false })
	var reached int
	h := a.Middleware(ratelimit.EndpointToken)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached++
		// The handler still sees the form the middleware parsed.
		if r.Method == http.MethodPost && r.PostFormValue("grant_type") != "authorization_code" {
			t.Errorf("form lost: %v", r.PostForm)
		}
	}))
	post := func(ip, body string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.RemoteAddr = ip + ":1234"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	body := "grant_type=authorization_code&client_id=app"
	if w := post("10.0.0.1", body); w.Code != 200 || w.Header().Get("RateLimit-Remaining") != "1" {
		t.Fatalf("first: %d %v", w.Code, w.Header())
	}
	post("10.0.0.1", body)
	w := post("10.0.0.1", body)
	var e map[string]string
	_ = json.Unmarshal(w.Body.Bytes(), &e)
	if w.Code != 429 || e["error"] != "slow_down" || w.Header().Get("Retry-After") == "" {
		t.Fatalf("third from one IP: %d %v %v", w.Code, w.Header(), e)
	}
	if w := post("10.0.0.2", body); w.Code != 200 {
		t.Fatalf("another IP: %d", w.Code)
	}
	w = post("10.0.0.3", "grant_type=authorization_code&client_id=bad-app")
	_ = json.Unmarshal(w.Body.Bytes(), &e)
	if w.Code != 400 || e["error"] != "unauthorized_client" {
		t.Fatalf("suspended client: %d %v", w.Code, e)
	}
	// Basic auth names the client too.
	r := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader("grant_type=authorization_code"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.SetBasicAuth("bad-app", "secret")
	r.RemoteAddr = "10.0.0.4:1"
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	if rec.Code != 400 {
		t.Fatalf("suspended client by Basic auth: %d", rec.Code)
	}
	if reached != 3 {
		t.Fatalf("handler reached %d times, want 3", reached)
	}
	// Every refusal the middleware answers is audited.
	evs := a.Auditor.(*auditRec).events
	// At the token endpoint they are token.refused events naming the client
	// the request claimed, with the OAuth error code first in the reason.
	if len(evs) != 3 || evs[0].Action != audit.ActionTokenRefused || evs[0].SourceIP != "10.0.0.1" || evs[0].ClientID != "app" ||
		!strings.HasPrefix(evs[0].Reason, "slow_down: ") || evs[1].ClientID != "bad-app" ||
		!strings.HasPrefix(evs[1].Reason, "unauthorized_client: ") || evs[0].Time.IsZero() {
		t.Fatalf("audit events %+v", evs)
	}
	// Elsewhere they have actions of their own.
	login := a.Middleware(ratelimit.EndpointLogin)(http.NotFoundHandler())
	for range 3 {
		r := httptest.NewRequest(http.MethodPost, "/authorize/login", strings.NewReader("client_id=bad-app"))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		login.ServeHTTP(httptest.NewRecorder(), r)
	}
	if evs := a.Auditor.(*auditRec).events; evs[len(evs)-1].Action != ratelimit.ActionSuspended {
		t.Fatalf("login refusal audited as %s", evs[len(evs)-1].Action)
	}
	// Preflights pass untouched.
	pre := httptest.NewRequest(http.MethodOptions, "/token", nil)
	pre.RemoteAddr = "10.0.0.1:1"
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, pre)
	if reached != 4 {
		t.Fatal("preflight was limited")
	}
}

func TestAdmissionGateway(t *testing.T) {
	throttled := map[string]bool{"slow-app": true}
	a := admission(t, func(client, user, ip string) (bool, bool) { return user == "evil-user", throttled[client] })
	ask := func(client, user string) (int, string, http.Header) {
		r := httptest.NewRequest(http.MethodGet, "/fhir/Patient/1", nil)
		refuse, reason := a.Gateway(r, client, user)
		if refuse == nil {
			return 200, reason, nil
		}
		w := httptest.NewRecorder()
		refuse(w)
		b, _ := io.ReadAll(w.Body)
		if !strings.Contains(string(b), `"resourceType":"OperationOutcome"`) {
			t.Errorf("refusal body %s", b)
		}
		return w.Code, reason, w.Header()
	}
	if c, _, _ := ask("app", "u1"); c != 200 {
		t.Fatal("first request refused")
	}
	ask("app", "u2")
	c, reason, h := ask("app", "u3")
	if c != 429 || h.Get("Retry-After") == "" || !strings.Contains(reason, "client") {
		t.Fatalf("third request of a client: %d %q %v", c, reason, h)
	}
	if c, reason, _ := ask("other", "evil-user"); c != 403 || reason != ratelimit.ReasonSuspended {
		t.Fatalf("suspended user: %d %q", c, reason)
	}
	// A throttled client gets the throttle budget (1/min) on top.
	if c, _, _ := ask("slow-app", "u1"); c != 200 {
		t.Fatal("first throttled request refused")
	}
	if c, reason, _ := ask("slow-app", "u1"); c != 429 || !strings.Contains(reason, "throttle") {
		t.Fatalf("second throttled request: %d %q", c, reason)
	}
	var nilA *ratelimit.Admission
	if refuse, _ := nilA.Gateway(httptest.NewRequest("GET", "/", nil), "a", "b"); refuse != nil {
		t.Fatal("nil Admission refused")
	}
}
