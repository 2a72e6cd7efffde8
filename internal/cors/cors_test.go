package cors_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/cors"
	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/storage/sqlite"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func setup(t *testing.T) (*sqlite.Store, *clock, http.Handler) {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	for _, c := range []*storage.Client{
		{ID: "web", Name: "web", AuthMethod: "none", RedirectURIs: []string{"https://app.example.com/cb", "https://App.Example.com:8443/x?y=1"}},
		{ID: "native", Name: "native", AuthMethod: "none", RedirectURIs: []string{"http://127.0.0.1:7000/cb"}},
		{ID: "default-port", Name: "dp", AuthMethod: "none", RedirectURIs: []string{"https://dp.example.org:443/cb"}},
		{ID: "off", Name: "off", AuthMethod: "none", RedirectURIs: []string{"https://disabled.example.net/cb"}, Disabled: true},
		{ID: "custom", Name: "custom", AuthMethod: "none", RedirectURIs: []string{"com.example.app:/cb"}},
	} {
		if err := st.CreateClient(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	clk := &clock{t: time.Now()}
	p, err := cors.New(cors.Options{Clients: st, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Next", "1")
		w.WriteHeader(http.StatusTeapot)
	})
	return st, clk, p.Handler(next)
}

func send(h http.Handler, method, origin string, preflight bool) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, "/token", nil)
	if origin != "" {
		r.Header.Set("Origin", origin)
	}
	if preflight {
		r.Header.Set("Access-Control-Request-Method", "POST")
		r.Header.Set("Access-Control-Request-Headers", "content-type, dpop")
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestAllowedOrigins(t *testing.T) {
	_, _, h := setup(t)
	for _, o := range []string{"https://app.example.com", "https://app.example.com:8443", "http://127.0.0.1:7000", "https://dp.example.org", "https://APP.example.com"} {
		w := send(h, http.MethodPost, o, false)
		if got := w.Header().Get("Access-Control-Allow-Origin"); got != o {
			t.Errorf("%s: Allow-Origin %q", o, got)
		}
		if w.Code != http.StatusTeapot || w.Header().Get("X-Next") != "1" {
			t.Errorf("%s: request not passed on", o)
		}
		if !slices.Contains(w.Header().Values("Vary"), "Origin") {
			t.Errorf("%s: no Vary: Origin", o)
		}
		if w.Header().Get("Access-Control-Allow-Credentials") != "" {
			t.Errorf("%s: credentials allowed", o)
		}
	}
}

func TestUnknownOrigins(t *testing.T) {
	_, _, h := setup(t)
	for _, o := range []string{"https://evil.example.com", "http://app.example.com", "https://app.example.com:444",
		"https://disabled.example.net", "null", "https://app.example.com/cb", "com.example.app:", "*", "http://127.0.0.1:7001",
		"https://app.example.com.evil.org", "https://user@app.example.com"} {
		for _, pre := range []bool{false, true} {
			method := http.MethodPost
			if pre {
				method = http.MethodOptions
			}
			w := send(h, method, o, pre)
			for k := range w.Header() {
				if len(k) > 12 && k[:12] == "Access-Contr" {
					t.Errorf("%s (preflight %v): CORS header %s", o, pre, k)
				}
			}
			if pre && w.Code != http.StatusNoContent {
				t.Errorf("%s: preflight status %d", o, w.Code)
			}
		}
	}
	// No Origin: untouched.
	if w := send(h, http.MethodPost, "", false); w.Code != http.StatusTeapot || len(w.Header().Values("Vary")) != 0 {
		t.Errorf("no origin: %d %v", w.Code, w.Header())
	}
}

func TestPreflight(t *testing.T) {
	_, _, h := setup(t)
	w := send(h, http.MethodOptions, "https://app.example.com", true)
	if w.Code != http.StatusNoContent || w.Header().Get("X-Next") != "" {
		t.Fatalf("status %d, next called %q", w.Code, w.Header().Get("X-Next"))
	}
	want := map[string]string{
		"Access-Control-Allow-Origin":  "https://app.example.com",
		"Access-Control-Allow-Methods": "POST, GET, OPTIONS",
		"Access-Control-Allow-Headers": "Authorization, Content-Type, DPoP",
		"Access-Control-Max-Age":       "600",
	}
	for k, v := range want {
		if got := w.Header().Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if w.Header().Get("Access-Control-Allow-Credentials") != "" {
		t.Error("credentials allowed")
	}
	// OPTIONS without Access-Control-Request-Method is not a preflight.
	if w := send(h, http.MethodOptions, "https://app.example.com", false); w.Code != http.StatusTeapot {
		t.Errorf("plain OPTIONS: %d", w.Code)
	}
}

func TestCacheRefresh(t *testing.T) {
	st, clk, h := setup(t)
	const o = "https://new.example.com"
	if w := send(h, http.MethodPost, o, false); w.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Fatal("allowed before registration")
	}
	if err := st.CreateClient(context.Background(), &storage.Client{ID: "new", Name: "new", AuthMethod: "none", RedirectURIs: []string{o + "/cb"}}); err != nil {
		t.Fatal(err)
	}
	if w := send(h, http.MethodPost, o, false); w.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Fatal("cache not used")
	}
	clk.Add(cors.DefaultCacheTTL)
	if w := send(h, http.MethodPost, o, false); w.Header().Get("Access-Control-Allow-Origin") != o {
		t.Fatal("new client's origin not picked up after the cache TTL")
	}
	// Deleting the client withdraws its origin after the TTL.
	if err := st.DeleteClient(context.Background(), "new"); err != nil {
		t.Fatal(err)
	}
	clk.Add(cors.DefaultCacheTTL)
	if w := send(h, http.MethodPost, o, false); w.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Fatal("deleted client's origin still allowed")
	}
}

// failingClients fails every list.
type failingClients struct{ storage.Clients }

func (failingClients) ListClients(context.Context) ([]storage.Client, error) {
	return nil, errors.New("db down")
}

func TestStoreFailureFailsClosed(t *testing.T) {
	p, err := cors.New(cors.Options{Clients: failingClients{}})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := p.Allowed(context.Background(), "https://app.example.com"); ok || err == nil {
		t.Fatalf("allowed %v err %v", ok, err)
	}
	w := send(p.Handler(http.NotFoundHandler()), http.MethodPost, "https://app.example.com", false)
	if w.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Fatal("allowed while the store is down")
	}
}

func TestNormalize(t *testing.T) {
	cases := map[string]string{
		"https://A.example:443":  "https://a.example",
		"http://a.example:80":    "http://a.example",
		"http://[::1]:8080":      "http://[::1]:8080",
		"https://a.example:8443": "https://a.example:8443",
		"https://a.example/":     "https://a.example",
	}
	for in, want := range cases {
		if got, ok := cors.Normalize(in); !ok || got != want {
			t.Errorf("Normalize(%q) = %q %v, want %q", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "null", "ftp://a.example", "https://a.example/p", "https://a.example?", "https://a.example#f", "a.example", "https://u:p@a.example"} {
		if got, ok := cors.Normalize(in); ok {
			t.Errorf("Normalize(%q) = %q, want refusal", in, got)
		}
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := cors.New(cors.Options{}); !errors.Is(err, cors.ErrOptions) {
		t.Fatal(err)
	}
}
