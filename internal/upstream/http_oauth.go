package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// ErrToken reports that no backend access token could be obtained.
var ErrToken = errors.New("upstream: backend token")

// ClientCredentialsOptions configures a ClientCredentials adapter.
type ClientCredentialsOptions struct {
	TokenURL, ClientID, ClientSecret, Scope, Audience string
	// HTTPClient reaches the token endpoint (it carries any client
	// certificate); it must have a timeout.
	HTTPClient *http.Client
	// RefreshBefore is how long before expiry a token is replaced; default
	// a fifth of its lifetime, at most one minute.
	RefreshBefore time.Duration
	Logger        *slog.Logger
	Now           func() time.Time
}

// ClientCredentials obtains bearer tokens from the backend's OAuth token
// endpoint with the client_credentials grant, caches them, and replaces
// them before they expire. It is safe for concurrent use; at most one
// token request is in flight at a time.
type ClientCredentials struct {
	opts ClientCredentialsOptions

	fetchMu sync.Mutex // one token request at a time

	mu        sync.Mutex
	token     string
	expiresAt time.Time
	refreshAt time.Time
}

// NewClientCredentials validates opts.
func NewClientCredentials(opts ClientCredentialsOptions) (*ClientCredentials, error) {
	if opts.TokenURL == "" || opts.ClientID == "" {
		return nil, fmt.Errorf("%w: client_credentials needs token URL and client id", ErrConfig)
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 15 * time.Second}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &ClientCredentials{opts: opts}, nil
}

// Apply implements Auth.
func (c *ClientCredentials) Apply(r *http.Request) error {
	tok, err := c.Token(r.Context())
	if err != nil {
		return err
	}
	r.Header.Set("Authorization", "Bearer "+tok)
	return nil
}

// Invalidate drops the cached token.
func (c *ClientCredentials) Invalidate() {
	c.mu.Lock()
	c.token = ""
	c.mu.Unlock()
}

// Token returns a valid token: the cached one, or a fresh one when none is
// cached, it expired, or its refresh time has come. While a refresh fails,
// a still-valid cached token keeps being used.
func (c *ClientCredentials) Token(ctx context.Context) (string, error) {
	now := c.opts.Now()
	c.mu.Lock()
	tok, exp, refresh := c.token, c.expiresAt, c.refreshAt
	c.mu.Unlock()
	if tok != "" && now.Before(refresh) {
		return tok, nil
	}
	valid := tok != "" && now.Before(exp)
	if valid && !c.fetchMu.TryLock() {
		return tok, nil // someone else is refreshing; the old token still works
	}
	if !valid {
		c.fetchMu.Lock()
	}
	defer c.fetchMu.Unlock()
	// Another caller may have refreshed while we waited.
	c.mu.Lock()
	if c.token != "" && now.Before(c.refreshAt) {
		tok = c.token
		c.mu.Unlock()
		return tok, nil
	}
	c.mu.Unlock()
	newTok, ttl, err := c.fetch(ctx)
	if err != nil {
		if valid {
			c.opts.Logger.WarnContext(ctx, "upstream: token refresh failed; using the cached token until it expires", "error", err)
			return tok, nil
		}
		return "", err
	}
	before := c.opts.RefreshBefore
	if before <= 0 {
		before = min(ttl/5, time.Minute)
	}
	now = c.opts.Now()
	c.mu.Lock()
	c.token, c.expiresAt, c.refreshAt = newTok, now.Add(ttl), now.Add(ttl-before)
	c.mu.Unlock()
	return newTok, nil
}

// maxTokenResponse bounds the token endpoint's answer.
const maxTokenResponse = 64 << 10

func (c *ClientCredentials) fetch(ctx context.Context) (string, time.Duration, error) {
	form := url.Values{"grant_type": {"client_credentials"}}
	if c.opts.Scope != "" {
		form.Set("scope", c.opts.Scope)
	}
	if c.opts.Audience != "" {
		form.Set("audience", c.opts.Audience)
	}
	if c.opts.ClientSecret == "" {
		form.Set("client_id", c.opts.ClientID) // tls_client_auth
	}
	req, err := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodPost, c.opts.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", 0, fmt.Errorf("%w: %w", ErrToken, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if c.opts.ClientSecret != "" {
		// RFC 6749 §2.3.1: form-encode the id and secret before Basic.
		req.SetBasicAuth(url.QueryEscape(c.opts.ClientID), url.QueryEscape(c.opts.ClientSecret))
	}
	resp, err := c.opts.HTTPClient.Do(req)
	if err != nil {
		return "", 0, fmt.Errorf("%w: %w", ErrToken, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenResponse))
	if err != nil {
		return "", 0, fmt.Errorf("%w: read response: %w", ErrToken, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(body, &e)
		return "", 0, fmt.Errorf("%w: token endpoint answered %d %s", ErrToken, resp.StatusCode, e.Error)
	}
	if ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); ct != "application/json" {
		return "", 0, fmt.Errorf("%w: token endpoint answered %q, not JSON", ErrToken, ct)
	}
	var tr struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int64  `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &tr); err != nil {
		return "", 0, fmt.Errorf("%w: decode response: %w", ErrToken, err)
	}
	if tr.AccessToken == "" || !strings.EqualFold(tr.TokenType, "bearer") {
		return "", 0, fmt.Errorf("%w: response lacks a bearer access_token", ErrToken)
	}
	ttl := time.Duration(tr.ExpiresIn) * time.Second
	if tr.ExpiresIn <= 0 {
		ttl = 5 * time.Minute // RFC 6749 leaves it optional; assume a short life
	}
	if ttl > 24*time.Hour {
		ttl = 24 * time.Hour
	}
	return tr.AccessToken, ttl, nil
}
