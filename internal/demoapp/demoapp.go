// Package demoapp is the SMART app shipped with `fhirgate demo`: a small
// backend-for-frontend (BFF). Its server side does a SMART standalone launch
// (authorization code with PKCE, golang.org/x/oauth2) against the demo
// authorization server, keeps the tokens, and reads the patient's record
// through the FHIR gateway; it renders the record as server-side HTML with a
// strict Content-Security-Policy and no scripts at all.
//
// The browser never sees a token: it holds only an HTTP-only session cookie
// whose value is a random handle (stored as its SHA-256 hash); tokens live in
// server memory and are sent only to the gateway, in the Authorization
// header. The session id is replaced after sign-in (no fixation), the
// authorization response is bound to the session by state (single use) and
// PKCE, and its iss parameter (RFC 9207) must name the expected issuer.
package demoapp

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/fhirgate/fhirgate/internal/secret"
)

// Defaults.
const (
	DefaultSessionTTL  = time.Hour
	DefaultMaxSessions = 10000
	// PendingTTL bounds the time between starting a sign-in and its callback.
	PendingTTL = 10 * time.Minute
	// CookieName is the session cookie. It is distinct from the
	// authorization server's cookies, which the browser also sends to this
	// app when both run on the same loopback host (cookies ignore ports).
	CookieName = "fhirgate_demoapp"
	// maxFHIRBytes bounds a FHIR response the app reads.
	maxFHIRBytes = 4 << 20
)

// DefaultScopes is what the app asks for: a standalone patient launch with
// read and search access to the resource types it shows (SMART v2), and a
// refresh token so the session outlives one access token.
var DefaultScopes = []string{
	"openid", "fhirUser", "launch/patient", "offline_access",
	"patient/Patient.rs", "patient/Observation.rs", "patient/Condition.rs",
	"patient/MedicationRequest.rs", "patient/AllergyIntolerance.rs", "patient/Immunization.rs",
}

// Errors.
var (
	// ErrOptions reports unusable Options.
	ErrOptions = errors.New("demoapp: invalid options")
	// ErrDiscovery: the FHIR server's SMART configuration is unusable.
	ErrDiscovery = errors.New("demoapp: SMART configuration unusable")
)

// Options configures a Handler.
type Options struct {
	// URL is the app's public base URL (http://127.0.0.1:PORT); the
	// redirect URI is URL + "/callback".
	URL string
	// FHIRBase is the gateway's FHIR base URL (the aud of the launch).
	FHIRBase string
	// Issuer is the authorization server the FHIR base must name in its
	// SMART configuration, and the iss of authorization responses.
	Issuer string
	// ClientID and ClientSecret are the app's registration (the secret is
	// empty for a public client).
	ClientID, ClientSecret string
	// Scopes requested; DefaultScopes when empty.
	Scopes []string
	// HTTPClient talks to the authorization server and the gateway.
	HTTPClient *http.Client
	// SessionTTL is how long an idle session lives; DefaultSessionTTL when zero.
	SessionTTL time.Duration
	// MaxSessions bounds the sessions kept in memory; DefaultMaxSessions when zero.
	MaxSessions int

	Logger *slog.Logger
	Now    func() time.Time
}

// Handler is the demo app. It is safe for concurrent use.
type Handler struct {
	opts     Options
	base     *url.URL
	secure   bool
	redirect string

	discMu     sync.Mutex
	oauth      *oauth2.Config // set once discovery succeeded
	requireISS bool           // the server sends iss in authorization responses (RFC 9207)

	mu       sync.Mutex
	sessions map[[32]byte]*session
}

// session is one browser's state, kept only on the server.
type session struct {
	csrf     string
	state    string // pending sign-in
	verifier string // PKCE code verifier of the pending sign-in
	started  time.Time
	token    *oauth2.Token
	patient  string
	lastSeen time.Time
}

// New validates opts and fills defaults.
func New(opts Options) (*Handler, error) {
	u, err := url.Parse(opts.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%w: URL %q must be an absolute http(s) URL", ErrOptions, opts.URL)
	}
	if u.Path != "" && u.Path != "/" {
		return nil, fmt.Errorf("%w: URL %q must not have a path", ErrOptions, opts.URL)
	}
	switch {
	case opts.FHIRBase == "":
		return nil, fmt.Errorf("%w: FHIRBase is required", ErrOptions)
	case opts.Issuer == "":
		return nil, fmt.Errorf("%w: Issuer is required", ErrOptions)
	case opts.ClientID == "":
		return nil, fmt.Errorf("%w: ClientID is required", ErrOptions)
	case opts.SessionTTL < 0 || opts.MaxSessions < 0:
		return nil, fmt.Errorf("%w: negative limit", ErrOptions)
	}
	if len(opts.Scopes) == 0 {
		opts.Scopes = DefaultScopes
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if opts.SessionTTL == 0 {
		opts.SessionTTL = DefaultSessionTTL
	}
	if opts.MaxSessions == 0 {
		opts.MaxSessions = DefaultMaxSessions
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	opts.FHIRBase = strings.TrimRight(opts.FHIRBase, "/")
	u.Path = ""
	return &Handler{
		opts:     opts,
		base:     u,
		secure:   u.Scheme == "https",
		redirect: u.String() + "/callback",
		sessions: map[[32]byte]*session{},
	}, nil
}

// RedirectURL is the redirect URI to register for the app.
func (h *Handler) RedirectURL() string { return h.redirect }

// smartConfig is the part of the SMART configuration the app uses.
type smartConfig struct {
	Issuer                string   `json:"issuer"`
	AuthorizationEndpoint string   `json:"authorization_endpoint"`
	TokenEndpoint         string   `json:"token_endpoint"`
	CodeChallengeMethods  []string `json:"code_challenge_methods_supported"`
	ISSParameter          bool     `json:"authorization_response_iss_parameter_supported"`
}

// config returns the OAuth configuration, discovering the endpoints from
// {FHIRBase}/.well-known/smart-configuration on first use (the
// authorization server may start after the app).
func (h *Handler) config(ctx context.Context) (*oauth2.Config, error) {
	h.discMu.Lock()
	defer h.discMu.Unlock()
	if h.oauth != nil {
		return h.oauth, nil
	}
	var sc smartConfig
	if err := h.getJSON(ctx, nil, h.opts.FHIRBase+"/.well-known/smart-configuration", &sc); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDiscovery, err)
	}
	if sc.Issuer != "" && strings.TrimRight(sc.Issuer, "/") != strings.TrimRight(h.opts.Issuer, "/") {
		return nil, fmt.Errorf("%w: issuer %q, want %q", ErrDiscovery, sc.Issuer, h.opts.Issuer)
	}
	for _, e := range []string{sc.AuthorizationEndpoint, sc.TokenEndpoint} {
		if eu, err := url.Parse(e); err != nil || eu.Host == "" || (eu.Scheme != "https" && eu.Scheme != "http") {
			return nil, fmt.Errorf("%w: endpoint %q", ErrDiscovery, e)
		}
	}
	s256 := false
	for _, m := range sc.CodeChallengeMethods {
		s256 = s256 || m == "S256"
	}
	if !s256 {
		return nil, fmt.Errorf("%w: S256 PKCE not supported", ErrDiscovery)
	}
	style := oauth2.AuthStyleInHeader
	if h.opts.ClientSecret == "" {
		style = oauth2.AuthStyleInParams
	}
	h.requireISS = sc.ISSParameter
	h.oauth = &oauth2.Config{
		ClientID: h.opts.ClientID, ClientSecret: h.opts.ClientSecret,
		Endpoint:    oauth2.Endpoint{AuthURL: sc.AuthorizationEndpoint, TokenURL: sc.TokenEndpoint, AuthStyle: style},
		RedirectURL: h.redirect, Scopes: h.opts.Scopes,
	}
	return h.oauth, nil
}

// errStatus is a FHIR read that did not succeed.
type errStatus struct{ code int }

func (e errStatus) Error() string { return fmt.Sprintf("status %d", e.code) }

// getJSON GETs u (with client, or the plain HTTP client when nil) and
// decodes the JSON answer into v.
func (h *Handler) getJSON(ctx context.Context, client *http.Client, u string, v any) error {
	if client == nil {
		client = h.opts.HTTPClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/fhir+json, application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxFHIRBytes))
		return errStatus{resp.StatusCode}
	}
	return json.NewDecoder(io.LimitReader(resp.Body, maxFHIRBytes)).Decode(v)
}

// sessionKey is the map key of a cookie value.
func sessionKey(cookie string) [32]byte { return sha256.Sum256([]byte(cookie)) }

// lookup returns the live session of cookie value c, or nil.
func (h *Handler) lookup(c string) *session {
	if c == "" {
		return nil
	}
	now := h.opts.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	k := sessionKey(c)
	s := h.sessions[k]
	if s == nil {
		return nil
	}
	if now.Sub(s.lastSeen) > h.opts.SessionTTL {
		delete(h.sessions, k)
		return nil
	}
	s.lastSeen = now
	return s
}

// create stores a new session and returns its cookie value.
func (h *Handler) create(s *session) string {
	now := h.opts.Now()
	c := secret.Token()
	s.lastSeen = now
	if s.csrf == "" {
		s.csrf = secret.Token()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.sessions) >= h.opts.MaxSessions {
		h.pruneLocked(now)
	}
	h.sessions[sessionKey(c)] = s
	return c
}

// pruneLocked drops expired sessions, and when still full the least
// recently seen one.
func (h *Handler) pruneLocked(now time.Time) {
	var oldestK [32]byte
	var oldest time.Time
	for k, s := range h.sessions {
		if now.Sub(s.lastSeen) > h.opts.SessionTTL {
			delete(h.sessions, k)
			continue
		}
		if oldest.IsZero() || s.lastSeen.Before(oldest) {
			oldestK, oldest = k, s.lastSeen
		}
	}
	if len(h.sessions) >= h.opts.MaxSessions && !oldest.IsZero() {
		delete(h.sessions, oldestK)
	}
}

// drop removes the session of cookie value c.
func (h *Handler) drop(c string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.sessions, sessionKey(c))
}

// beginSignIn records a pending sign-in on s and returns the authorization
// URL to send the browser to.
func (h *Handler) beginSignIn(ctx context.Context, s *session) (string, error) {
	oc, err := h.config(ctx)
	if err != nil {
		return "", err
	}
	state, verifier := secret.Token(), oauth2.GenerateVerifier()
	h.mu.Lock()
	s.state, s.verifier, s.started = state, verifier, h.opts.Now()
	h.mu.Unlock()
	return oc.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier),
		oauth2.SetAuthURLParam("aud", h.opts.FHIRBase)), nil
}

// Errors of the authorization response, shown to the user.
var (
	errNoPending = errors.New("no sign-in is in progress in this browser")
	errState     = errors.New("the sign-in response does not belong to this browser")
	errIssuer    = errors.New("the sign-in response came from an unexpected server")
)

// finishSignIn checks the authorization response against the pending
// sign-in of s (consuming it) and exchanges the code.
func (h *Handler) finishSignIn(ctx context.Context, s *session, q url.Values) (*oauth2.Token, error) {
	h.mu.Lock()
	state, verifier, started := s.state, s.verifier, s.started
	s.state, s.verifier = "", "" // single use, whatever the outcome
	h.mu.Unlock()
	if state == "" || h.opts.Now().Sub(started) > PendingTTL {
		return nil, errNoPending
	}
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(state)) != 1 {
		return nil, errState
	}
	oc, err := h.config(ctx)
	if err != nil {
		return nil, err
	}
	if iss := q.Get("iss"); (iss == "" && h.requireISS) || (iss != "" && strings.TrimRight(iss, "/") != strings.TrimRight(h.opts.Issuer, "/")) {
		return nil, errIssuer
	}
	if e := q.Get("error"); e != "" {
		return nil, fmt.Errorf("the authorization server answered %q", truncate(e, 64))
	}
	code := q.Get("code")
	if code == "" {
		return nil, errors.New("the sign-in response has no code")
	}
	tok, err := oc.Exchange(h.clientCtx(ctx), code, oauth2.VerifierOption(verifier))
	if err != nil {
		h.opts.Logger.WarnContext(ctx, "demoapp: code exchange failed", "error", redactErr(err))
		return nil, errors.New("the authorization server refused the sign-in")
	}
	return tok, nil
}

// clientCtx makes x/oauth2 use the configured HTTP client.
func (h *Handler) clientCtx(ctx context.Context) context.Context {
	return context.WithValue(ctx, oauth2.HTTPClient, h.opts.HTTPClient)
}

// redactErr keeps an oauth2 error's code but not the response body (which
// could hold tokens).
func redactErr(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return fmt.Sprintf("token endpoint %d %s", re.Response.StatusCode, re.ErrorCode)
	}
	return err.Error()
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
