package anomaly

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/fhirgate/fhirgate/internal/httpx"
)

// Webhook headers.
const (
	// HeaderSignature carries "sha256=" and the hex HMAC-SHA256, keyed with
	// the webhook secret, of the timestamp header value, ".", and the body.
	HeaderSignature = "X-Fhirgate-Signature"
	// HeaderTimestamp is the send time in Unix seconds; receivers should
	// refuse stale ones.
	HeaderTimestamp = "X-Fhirgate-Timestamp"
	// HeaderEvent is "anomaly.raised" or "anomaly.cleared".
	HeaderEvent = "X-Fhirgate-Event"
)

// Webhook defaults.
const (
	DefaultWebhookAttempts = 5
	DefaultWebhookBackoff  = time.Second
	DefaultWebhookTimeout  = 10 * time.Second
)

// WebhookConfig configures the anomaly webhook.
type WebhookConfig struct {
	// URL receives the POSTs: https, or http only to a loopback host.
	URL string `yaml:"url" json:"url"`
	// Secret keys the HMAC-SHA256 signature (at least 32 characters).
	Secret string `yaml:"secret" json:"-"`
	// MaxAttempts bounds the tries per event (DefaultWebhookAttempts).
	MaxAttempts int `yaml:"max_attempts" json:"max_attempts"`
	// Backoff is the wait before the second try, doubling after each
	// failure (DefaultWebhookBackoff).
	Backoff time.Duration `yaml:"backoff" json:"backoff"`
	// Timeout bounds each try (DefaultWebhookTimeout).
	Timeout time.Duration `yaml:"timeout" json:"timeout"`
}

// Webhook POSTs anomalies as signed JSON, retrying transport errors, 429
// and 5xx answers with exponential backoff.
type Webhook struct {
	cfg    WebhookConfig
	client *http.Client
	now    func() time.Time
}

// ErrWebhook reports an unusable webhook configuration or a delivery that
// failed every attempt.
var ErrWebhook = errors.New("anomaly: webhook")

// NewWebhook validates cfg. client may be nil (a client with cfg.Timeout).
func NewWebhook(cfg WebhookConfig, client *http.Client, now func() time.Time) (*Webhook, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && httpx.IsLoopbackHost(u.Hostname()))) {
		return nil, fmt.Errorf("%w: url must be an absolute https URL (http only on loopback), got %q", ErrWebhook, cfg.URL)
	}
	if len(cfg.Secret) < 32 {
		return nil, fmt.Errorf("%w: secret must be at least 32 characters", ErrWebhook)
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = DefaultWebhookAttempts
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = DefaultWebhookBackoff
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultWebhookTimeout
	}
	if client == nil {
		client = &http.Client{Timeout: cfg.Timeout}
	}
	if now == nil {
		now = time.Now
	}
	return &Webhook{cfg: cfg, client: client, now: now}, nil
}

// webhookBody is the JSON POSTed for each event.
type webhookBody struct {
	Event   string  `json:"event"`
	Anomaly Anomaly `json:"anomaly"`
}

// Sign returns the signature header value for timestamp and body under secret.
func Sign(secret, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(timestamp))
	m.Write([]byte("."))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify checks a signature header in constant time (for receivers and tests).
func Verify(secret, timestamp string, body []byte, signature string) bool {
	return hmac.Equal([]byte(Sign(secret, timestamp, body)), []byte(signature))
}

// Notify implements Notifier: it POSTs event and a, retrying until it is
// accepted (2xx), refused for good (another 4xx), attempts run out or ctx ends.
func (w *Webhook) Notify(ctx context.Context, event string, a Anomaly) error {
	body, err := json.Marshal(webhookBody{Event: event, Anomaly: a})
	if err != nil {
		return fmt.Errorf("%w: encode: %w", ErrWebhook, err)
	}
	wait := w.cfg.Backoff
	var last error
	for attempt := 1; attempt <= w.cfg.MaxAttempts; attempt++ {
		retry, err := w.post(ctx, event, body)
		if err == nil {
			return nil
		}
		last = err
		if !retry || attempt == w.cfg.MaxAttempts {
			break
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w: %w (last: %w)", ErrWebhook, ctx.Err(), last)
		case <-t.C:
		}
		wait *= 2
	}
	return fmt.Errorf("%w: %w", ErrWebhook, last)
}

func (w *Webhook) post(ctx context.Context, event string, body []byte) (retry bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	ts := strconv.FormatInt(w.now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderEvent, event)
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, Sign(w.cfg.Secret, ts, body))
	resp, err := w.client.Do(req)
	if err != nil {
		return true, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return false, nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return true, fmt.Errorf("status %d", resp.StatusCode)
	default:
		return false, fmt.Errorf("refused with status %d", resp.StatusCode)
	}
}
