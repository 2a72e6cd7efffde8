package console_test

import (
	"net/http"
	"net/http/httptest"
	"sort"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/console"
)

var consolePages = []string{"/clients", "/users", "/audit?outcome=failure", "/anomalies", "/keys"}

// consoleServer returns the console mux's server, an admin's cookies (with
// a second factor) and a request runner.
func consoleServe(t testing.TB) func(path string) int {
	e := newEnv(t)
	b := e.adminWithMFA()
	req0, _ := http.NewRequest(http.MethodGet, e.srv.URL, nil)
	cookies := b.c.Jar.Cookies(req0.URL)
	h := e.srv.Config.Handler
	return func(path string) int {
		req := httptest.NewRequest(http.MethodGet, console.Path+path, nil)
		for _, c := range cookies {
			req.AddCookie(c)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
}

// TestConsoleServerTime: each console page renders within 50 ms (median of 20).
func TestConsoleServerTime(t *testing.T) {
	serve := consoleServe(t)
	for _, p := range consolePages {
		var times []time.Duration
		for range 20 {
			start := time.Now()
			if code := serve(p); code != http.StatusOK {
				t.Fatalf("%s: %d", p, code)
			}
			times = append(times, time.Since(start))
		}
		sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
		t.Logf("%s: median %s", p, times[10])
		if times[10] > 50*time.Millisecond*raceSlowdown {
			t.Errorf("%s: median %s over budget", p, times[10])
		}
	}
}

func BenchmarkConsolePages(b *testing.B) {
	serve := consoleServe(b)
	for _, p := range consolePages {
		b.Run(p, func(b *testing.B) {
			for b.Loop() {
				if code := serve(p); code != http.StatusOK {
					b.Fatalf("%s: %d", p, code)
				}
			}
		})
	}
}
