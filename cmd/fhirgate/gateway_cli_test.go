package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// serve --upstream URL --upstream-auth header:NAME:VALUE: the gateway sends
// the static header (never the client's Authorization) to the upstream.
func TestServeWithUpstreamHeaderAuth(t *testing.T) {
	var mu sync.Mutex
	var seen []http.Header
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Clone())
		mu.Unlock()
		if r.Header.Get("X-Api-Key") != "k-123" {
			http.Error(w, "no key", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/fhir+json")
		_, _ = io.WriteString(w, `{"resourceType":"CapabilityStatement","status":"active","kind":"instance","fhirVersion":"4.0.1","format":["json"],"rest":[{"mode":"server"}]}`)
	}))
	defer up.Close()
	url, stop := startServe(t, nil, "--data-dir", t.TempDir(), "--addr", "127.0.0.1:0", "--upstream", up.URL, "--upstream-auth", "header:X-Api-Key:k-123")
	resp, err := http.Get(url + "/fhir/metadata")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "oauth-uris") {
		t.Fatalf("metadata through the gateway: %d %s", resp.StatusCode, b)
	}
	// Without a token nothing reaches the upstream.
	mu.Lock()
	before := len(seen)
	mu.Unlock()
	req, _ := http.NewRequest(http.MethodGet, url+"/fhir/Patient/1", nil)
	req.Header.Set("Authorization", "Bearer not-a-token")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("bad token: %d", resp.StatusCode)
	}
	mu.Lock()
	if len(seen) != before {
		t.Fatal("a refused request reached the upstream")
	}
	for _, h := range seen {
		if h.Get("Authorization") != "" {
			t.Fatalf("upstream saw Authorization %q", h.Get("Authorization"))
		}
	}
	mu.Unlock()
	r := stop()
	if r.code != 0 {
		t.Fatalf("serve exit %d: %s", r.code, r.stderr)
	}
	if strings.Contains(r.stderr+r.stdout, "k-123") {
		t.Fatal("upstream credential logged")
	}
}

// demo without --json prints the human-readable summary, the app URL first.
func TestDemoText(t *testing.T) {
	var out, errOut syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"demo", "--addr", "127.0.0.1:0", "--data-dir", t.TempDir()}, testEnv(nil, "", &out, &errOut))
	}()
	lines := waitLines(t, &out, &errOut, 12, done)
	text := strings.Join(lines, "\n")
	for _, want := range []string{"demo SMART app:      http://127.0.0.1:", "FHIR base (gateway):", "user clinician", "user patient", "public client", "fhirgate: serving on "} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("demo exit %d: %s", code, errOut.String())
	}
}
