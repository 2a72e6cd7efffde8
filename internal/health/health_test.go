package health_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/health"
)

func get(t *testing.T, h *health.Handler, path string) (int, map[string]any, string) {
	t.Helper()
	mux := http.NewServeMux()
	h.Register(mux)
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
	var body map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("%s: %v: %s", path, err, w.Body)
	}
	return w.Code, body, w.Body.String()
}

func TestLiveAndReady(t *testing.T) {
	h := health.New(health.Options{})
	if code, _, _ := get(t, h, "/healthz"); code != 200 {
		t.Fatalf("/healthz = %d", code)
	}
	h.Add("store", func(context.Context) error { return nil })
	if code, body, _ := get(t, h, "/readyz"); code != 200 || body["status"] != "ok" {
		t.Fatalf("/readyz = %d %v", code, body)
	}
}

func TestReadyFailsWithoutLeakingCause(t *testing.T) {
	h := health.New(health.Options{})
	h.Add("store", func(context.Context) error { return nil })
	h.Add("upstream", func(context.Context) error { return errors.New("dial tcp 10.1.2.3:443: password=hunter2") })
	code, body, raw := get(t, h, "/readyz")
	if code != 503 || body["status"] != "unavailable" {
		t.Fatalf("/readyz = %d %v", code, body)
	}
	checks := body["checks"].(map[string]any)
	if checks["upstream"] != "fail" || checks["store"] != "ok" {
		t.Fatalf("checks = %v", checks)
	}
	if strings.Contains(raw, "10.1.2.3") || strings.Contains(raw, "hunter2") {
		t.Fatalf("/readyz leaks the cause: %s", raw)
	}
	// Liveness is unaffected.
	if code, _, _ := get(t, h, "/healthz"); code != 200 {
		t.Fatalf("/healthz = %d", code)
	}
}

func TestReadyTimeout(t *testing.T) {
	h := health.New(health.Options{Timeout: 50 * time.Millisecond})
	block := make(chan struct{})
	defer close(block)
	h.Add("slow", func(ctx context.Context) error { <-block; return nil })
	start := time.Now()
	if code, _, _ := get(t, h, "/readyz"); code != 503 {
		t.Fatalf("/readyz with a hung check = %d", code)
	}
	if time.Since(start) > time.Second {
		t.Fatal("a hung check held /readyz past the timeout")
	}
}

func TestDraining(t *testing.T) {
	h := health.New(health.Options{})
	h.SetDraining(true)
	if code, _, _ := get(t, h, "/readyz"); code != 503 {
		t.Fatalf("/readyz while draining = %d", code)
	}
	h.SetDraining(false)
	if code, _, _ := get(t, h, "/readyz"); code != 200 {
		t.Fatalf("/readyz after draining = %d", code)
	}
}
