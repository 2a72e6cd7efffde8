package anomaly_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/anomaly"
)

const hookSecret = "0123456789abcdef0123456789abcdef-webhook"

func TestWebhookSignedAndRetried(t *testing.T) {
	var calls atomic.Int32
	var mu sync.Mutex
	var got struct {
		Event   string
		Anomaly anomaly.Anomaly
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if !anomaly.Verify(hookSecret, r.Header.Get(anomaly.HeaderTimestamp), body, r.Header.Get(anomaly.HeaderSignature)) {
			t.Errorf("bad signature %q", r.Header.Get(anomaly.HeaderSignature))
		}
		if anomaly.Verify("another-secret-another-secret-xx", r.Header.Get(anomaly.HeaderTimestamp), body, r.Header.Get(anomaly.HeaderSignature)) {
			t.Error("signature verifies under another secret")
		}
		if calls.Add(1) < 3 {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		mu.Lock()
		_ = json.Unmarshal(body, &got)
		mu.Unlock()
	}))
	defer srv.Close()
	hook, err := anomaly.NewWebhook(anomaly.WebhookConfig{URL: srv.URL, Secret: hookSecret, Backoff: time.Millisecond}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	d, err := anomaly.New(anomaly.Options{Auditor: &recorder{}, Notifier: hook})
	if err != nil {
		t.Fatal(err)
	}
	d.Observe(anomaly.Observation{Kind: anomaly.Replay, ClientID: "app", Detail: "client_assertion"})
	if err := d.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 3 {
		t.Fatalf("webhook called %d times, want 3 (two 502s, then accepted)", calls.Load())
	}
	mu.Lock()
	defer mu.Unlock()
	if got.Event != anomaly.EventRaised || got.Anomaly.Rule != anomaly.RuleReplay || got.Anomaly.ClientID != "app" {
		t.Fatalf("webhook body = %+v", got)
	}
}

func TestWebhookNoRetryOnClientError(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusBadRequest)
	}))
	defer srv.Close()
	hook, _ := anomaly.NewWebhook(anomaly.WebhookConfig{URL: srv.URL, Secret: hookSecret, Backoff: time.Millisecond}, nil, nil)
	err := hook.Notify(context.Background(), anomaly.EventRaised, anomaly.Anomaly{ID: "x"})
	if !errors.Is(err, anomaly.ErrWebhook) || calls.Load() != 1 {
		t.Fatalf("Notify = %v after %d calls, want one call and ErrWebhook", err, calls.Load())
	}
}

func TestWebhookGivesUp(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	hook, _ := anomaly.NewWebhook(anomaly.WebhookConfig{URL: srv.URL, Secret: hookSecret, Backoff: time.Millisecond, MaxAttempts: 4}, nil, nil)
	if err := hook.Notify(context.Background(), anomaly.EventRaised, anomaly.Anomaly{}); err == nil || calls.Load() != 4 {
		t.Fatalf("Notify = %v after %d calls, want an error after 4", err, calls.Load())
	}
}

// A hung webhook never delays a request: Observe returns at once.
func TestWebhookNeverBlocks(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	hook, _ := anomaly.NewWebhook(anomaly.WebhookConfig{URL: srv.URL, Secret: hookSecret, Timeout: time.Minute}, nil, nil)
	d, _ := anomaly.New(anomaly.Options{Auditor: &recorder{}, Notifier: hook, QueueSize: 4})
	start := time.Now()
	for i := range 200 {
		d.Observe(anomaly.Observation{Kind: anomaly.TokenInURL, ClientID: "c" + strings.Repeat("x", i%50), UserID: string(rune('a' + i))})
	}
	if el := time.Since(start); el > 500*time.Millisecond {
		t.Fatalf("200 observations with a hung webhook took %v", el)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := d.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close with a hung webhook = %v, want the deadline", err)
	}
}

func TestWebhookConfigRefused(t *testing.T) {
	for _, c := range []anomaly.WebhookConfig{
		{URL: "http://hooks.example.com/x", Secret: hookSecret},
		{URL: "https://hooks.example.com/x", Secret: "short"},
		{URL: "/relative", Secret: hookSecret},
	} {
		if _, err := anomaly.NewWebhook(c, nil, nil); !errors.Is(err, anomaly.ErrWebhook) {
			t.Errorf("NewWebhook(%q) = %v, want ErrWebhook", c.URL, err)
		}
	}
	if _, err := anomaly.NewWebhook(anomaly.WebhookConfig{URL: "http://127.0.0.1:9/x", Secret: hookSecret}, nil, nil); err != nil {
		t.Errorf("loopback http refused: %v", err)
	}
}
