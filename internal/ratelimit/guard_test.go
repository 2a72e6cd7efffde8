package ratelimit_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/ratelimit"
	"github.com/fhirgate/fhirgate/internal/ratelimit/ratelimittest"
)

func newGuard(t *testing.T, p ratelimit.Policy) (*ratelimit.Guard, *ratelimittest.Clock) {
	t.Helper()
	clk := ratelimittest.NewClock(time.Unix(1000, 0))
	g, err := ratelimit.NewGuard(ratelimit.NewMemory(ratelimit.MemoryOptions{Now: clk.Now}), p)
	if err != nil {
		t.Fatal(err)
	}
	return g, clk
}

func TestGuardDimensions(t *testing.T) {
	g, _ := newGuard(t, ratelimit.Policy{
		Endpoints: map[ratelimit.Endpoint]ratelimit.Rates{
			ratelimit.EndpointToken: {
				IP:     ratelimit.Rate{Requests: 3, Per: time.Minute},
				Client: ratelimit.Rate{Requests: 2, Per: time.Minute},
			},
			ratelimit.EndpointLogin: {IP: ratelimit.Rate{Requests: 1, Per: time.Minute}},
		},
		ClientOverrides: map[string]ratelimit.Rate{"big": {Requests: 100, Per: time.Minute}},
	})
	ctx := context.Background()
	check := func(e ratelimit.Endpoint, s ratelimit.Subject) ratelimit.Result {
		t.Helper()
		r, err := g.Check(ctx, e, s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	// Per client: two requests, from different IPs.
	check(ratelimit.EndpointToken, ratelimit.Subject{IP: "10.0.0.1", ClientID: "app"})
	check(ratelimit.EndpointToken, ratelimit.Subject{IP: "10.0.0.2", ClientID: "app"})
	if r := check(ratelimit.EndpointToken, ratelimit.Subject{IP: "10.0.0.3", ClientID: "app"}); r.Allowed || r.Dimension != ratelimit.ByClient {
		t.Fatalf("third request of client app: %+v, want refused by client", r)
	}
	// The override lifts the client budget, the IP budget still applies.
	for i := range 3 {
		if r := check(ratelimit.EndpointToken, ratelimit.Subject{IP: "10.0.0.9", ClientID: "big"}); !r.Allowed {
			t.Fatalf("request %d of client big refused: %+v", i+1, r)
		}
	}
	if r := check(ratelimit.EndpointToken, ratelimit.Subject{IP: "10.0.0.9", ClientID: "big"}); r.Allowed || r.Dimension != ratelimit.ByIP {
		t.Fatalf("fourth request from one IP: %+v, want refused by ip", r)
	}
	// Endpoints have separate buckets.
	if r := check(ratelimit.EndpointLogin, ratelimit.Subject{IP: "10.0.0.9"}); !r.Allowed {
		t.Fatal("login shares the token endpoint's bucket")
	}
	if r := check(ratelimit.EndpointLogin, ratelimit.Subject{IP: "10.0.0.9"}); r.Allowed {
		t.Fatal("second login from one IP allowed")
	}
	// An endpoint without rates is unlimited.
	for range 10 {
		if r := check(ratelimit.EndpointGateway, ratelimit.Subject{IP: "10.0.0.9", ClientID: "app"}); !r.Allowed {
			t.Fatal("an unconfigured endpoint refused")
		}
	}
}

func TestGuardThrottle(t *testing.T) {
	g, clk := newGuard(t, ratelimit.Policy{Throttle: ratelimit.Rate{Requests: 1, Per: time.Minute}})
	ctx := context.Background()
	s := ratelimit.Subject{ClientID: "app", UserID: "u1"}
	for range 5 {
		if r, _ := g.Check(ctx, ratelimit.EndpointGateway, s); !r.Allowed {
			t.Fatal("an unthrottled subject was throttled")
		}
	}
	s.Throttled = true
	if r, _ := g.Check(ctx, ratelimit.EndpointGateway, s); !r.Allowed {
		t.Fatal("first throttled request refused")
	}
	r, _ := g.Check(ctx, ratelimit.EndpointGateway, s)
	if r.Allowed || r.Dimension != ratelimit.ByThrottle {
		t.Fatalf("second throttled request: %+v", r)
	}
	clk.Advance(time.Minute)
	if r, _ := g.Check(ctx, ratelimit.EndpointGateway, s); !r.Allowed {
		t.Fatal("throttle did not refill")
	}
}

func TestPolicyValidate(t *testing.T) {
	bad := ratelimit.Policy{
		Endpoints:       map[ratelimit.Endpoint]ratelimit.Rates{ratelimit.EndpointToken: {IP: ratelimit.Rate{Requests: 1}}},
		ClientOverrides: map[string]ratelimit.Rate{"c": {Requests: 1, Per: time.Second, Burst: -1}},
	}
	err := bad.Validate()
	if !errors.Is(err, ratelimit.ErrInvalidRate) {
		t.Fatalf("Validate = %v, want ErrInvalidRate", err)
	}
	if _, err := ratelimit.NewGuard(ratelimit.NewMemory(ratelimit.MemoryOptions{}), bad); err == nil {
		t.Fatal("NewGuard accepted an invalid policy")
	}
	if _, err := ratelimit.NewGuard(nil, ratelimit.Policy{}); err == nil {
		t.Fatal("NewGuard accepted a nil limiter")
	}
}

func TestWriteRefusals(t *testing.T) {
	res := ratelimit.Result{Decision: ratelimit.Decision{Limit: 5, RetryAfter: 1500 * time.Millisecond}, Dimension: ratelimit.ByIP}
	w := httptest.NewRecorder()
	ratelimit.WriteOAuthRefusal(w, httptest.NewRequest(http.MethodPost, "/token", nil), nil, res, nil)
	var body map[string]string
	_ = json.Unmarshal(w.Body.Bytes(), &body)
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "2" || body["error"] != "slow_down" ||
		w.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("OAuth refusal: %d %v %s", w.Code, w.Header(), w.Body)
	}

	w = httptest.NewRecorder()
	ratelimit.WriteOAuthRefusal(w, httptest.NewRequest(http.MethodPost, "/token", nil), nil, res, fmt.Errorf("redis: %w", ratelimit.ErrUnavailable))
	_ = json.Unmarshal(w.Body.Bytes(), &body)
	if w.Code != http.StatusServiceUnavailable || body["error"] != "temporarily_unavailable" {
		t.Fatalf("fail-closed OAuth refusal: %d %s", w.Code, w.Body)
	}

	w = httptest.NewRecorder()
	ratelimit.WriteOutcomeRefusal(w, res, nil)
	var oo struct {
		ResourceType string
		Issue        []struct{ Code string }
	}
	_ = json.Unmarshal(w.Body.Bytes(), &oo)
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "2" || oo.ResourceType != "OperationOutcome" ||
		len(oo.Issue) != 1 || oo.Issue[0].Code != "throttled" || w.Header().Get("Content-Type") != "application/fhir+json" {
		t.Fatalf("FHIR refusal: %d %v %s", w.Code, w.Header(), w.Body)
	}
}
