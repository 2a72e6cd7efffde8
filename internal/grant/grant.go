// Package grant implements the /token endpoint: one dispatcher that
// authenticates the client, runs the grant-specific exchange, records the
// audit event and only then answers. Each grant type lives in its own file
// (authcode.go, refresh.go); token minting shared by both is in issue.go.
//
// Access tokens are audience-restricted to Options.FHIRBase, the one
// configured FHIR base URL. Several FHIR bases (each its own aud) arrive with
// the gateway; the authorization code record will then carry its audience.
package grant

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/clientauth"
	"github.com/fhirgate/fhirgate/internal/dpop"
	"github.com/fhirgate/fhirgate/internal/mtls"
	"github.com/fhirgate/fhirgate/internal/oauth"
	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/token"
)

// Defaults for refresh token lifetimes.
const (
	// DefaultRefreshIdle is how long an unused refresh token stays valid.
	DefaultRefreshIdle = 30 * 24 * time.Hour
	// DefaultRefreshRetryWindow is the configured default retry window
	// (Options.RefreshRetryWindow is taken as given: 0 means none).
	DefaultRefreshRetryWindow = 10 * time.Second
	// DefaultRefreshAbsolute is the absolute lifetime of a token family
	// (ONC asks for at least three months).
	DefaultRefreshAbsolute = 90 * 24 * time.Hour
)

// ErrOptions is returned by New when a required option is missing or invalid.
var ErrOptions = errors.New("grant: invalid options")

// Options configures the token endpoint.
type Options struct {
	Clients storage.Clients   // for client authentication
	Codes   storage.AuthCodes // authorization codes
	Tokens  storage.Tokens    // token families and refresh tokens, read with their users
	Issuer  *token.Issuer     // mints access tokens and id_tokens
	// BackendIssuer mints client_credentials (SMART Backend Services) access
	// tokens, configured with their short lifetime; Issuer when nil.
	BackendIssuer *token.Issuer
	// ClientAuth authenticates clients; when nil only none and
	// client_secret_* work (an Authenticator with just Clients).
	ClientAuth *clientauth.Authenticator
	// IssuerURL is this server's issuer identifier; smart_style_url is
	// {IssuerURL}/smart-style.json.
	IssuerURL string
	// FHIRBase is the FHIR base URL access tokens are issued for (their aud)
	// and against which fhirUser becomes an absolute URL.
	FHIRBase string
	// RefreshIdle is the lifetime of each refresh token (default 30 days),
	// never past the family's end.
	RefreshIdle time.Duration
	// RefreshAbsolute is the lifetime of a token family (default 90 days).
	RefreshAbsolute time.Duration
	// RefreshRetryWindow is how long after a rotation the previous refresh
	// token may be presented again while its successor is unused (a client
	// that lost the response retries; FAPI 2.0). 0 turns retries off: any
	// second presentation is reuse. Config default DefaultRefreshRetryWindow.
	RefreshRetryWindow time.Duration
	// Sessions looks up login sessions: refresh tokens of online_access
	// grants stop working once the session that approved them has ended.
	// Without it such refreshes are refused (fail closed).
	Sessions SessionLookup
	// DPoP verifies DPoP proofs (RFC 9449); nil refuses requests carrying one.
	DPoP *dpop.Verifier
	// TokenURL is the public /token URL DPoP proofs must name (htu);
	// IssuerURL + "/token" when empty.
	TokenURL string
	// TrustedProxies may pass the client certificate of a TLS connection
	// they terminated in a header (RFC 8705 behind a front proxy).
	TrustedProxies mtls.TrustedProxies
	// RequireBoundConfidential refuses unbound (neither DPoP nor mTLS)
	// access tokens to confidential clients.
	RequireBoundConfidential bool
	// RequireBoundSystem refuses unbound access tokens for client_credentials.
	RequireBoundSystem bool
	// Suspended, when set, reports whether the suspicious-activity detector
	// has suspended the client or the user (either may be ""): their token
	// requests are refused until an administrator clears it.
	Suspended func(clientID, userID string) bool
	Auditor   audit.Auditor
	Logger    *slog.Logger
	Now       func() time.Time
}

// Handler serves /token.
type Handler struct {
	opts     Options
	auth     clientauth.Authenticator
	fhirBase string
	styleURL string
}

// New validates opts, fills defaults and returns the handler.
func New(opts Options) (*Handler, error) {
	var missing []string
	if opts.Clients == nil {
		missing = append(missing, "Clients")
	}
	if opts.Codes == nil {
		missing = append(missing, "Codes")
	}
	if opts.Tokens == nil {
		missing = append(missing, "Tokens")
	}
	if opts.Issuer == nil {
		missing = append(missing, "Issuer")
	}
	if opts.Auditor == nil {
		missing = append(missing, "Auditor")
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: missing %s", ErrOptions, strings.Join(missing, ", "))
	}
	for name, v := range map[string]string{"IssuerURL": opts.IssuerURL, "FHIRBase": opts.FHIRBase} {
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("%w: %s %q is not an absolute http(s) URL", ErrOptions, name, v)
		}
	}
	if opts.RefreshIdle < 0 || opts.RefreshAbsolute < 0 || opts.RefreshRetryWindow < 0 {
		return nil, fmt.Errorf("%w: negative refresh lifetime", ErrOptions)
	}
	if opts.RefreshIdle == 0 {
		opts.RefreshIdle = DefaultRefreshIdle
	}
	if opts.RefreshAbsolute == 0 {
		opts.RefreshAbsolute = DefaultRefreshAbsolute
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	auth := clientauth.Authenticator{Clients: opts.Clients, Now: opts.Now}
	if opts.ClientAuth != nil {
		auth = *opts.ClientAuth
	}
	return &Handler{
		opts:     opts,
		auth:     auth,
		fhirBase: strings.TrimRight(opts.FHIRBase, "/"),
		styleURL: strings.TrimRight(opts.IssuerURL, "/") + "/smart-style.json",
	}, nil
}

// Request is a parsed token request.
type Request struct {
	Form        url.Values // the body parameters, each present at most once
	Credentials clientauth.Credentials
	SourceIP    string
	UserAgent   string
	// DPoP is the DPoP proof header, "" when none was sent.
	DPoP string
}

// Response is the token response (RFC 6749 §5.1 with the SMART launch
// context parameters).
type Response struct {
	AccessToken       string          `json:"access_token"`
	TokenType         oauth.TokenType `json:"token_type"`
	ExpiresIn         int64           `json:"expires_in"`
	Scope             string          `json:"scope"`
	IDToken           string          `json:"id_token,omitempty"`
	RefreshToken      string          `json:"refresh_token,omitempty"`
	Patient           string          `json:"patient,omitempty"`
	Encounter         string          `json:"encounter,omitempty"`
	FHIRContext       []any           `json:"fhirContext,omitempty"`
	NeedPatientBanner *bool           `json:"need_patient_banner,omitempty"`
	SmartStyleURL     string          `json:"smart_style_url,omitempty"`
	Intent            string          `json:"intent,omitempty"`
}

// result is what a successful exchange hands back to the dispatcher.
type result struct {
	resp     *Response
	familyID string
}

// Token runs the token endpoint: client authentication, the exchange named by
// grant_type, the audit record, in that order. Errors are *oauth.Error values
// (use oauth.As). If the success cannot be audited, the minted tokens are
// revoked and never returned (fail closed).
func (h *Handler) Token(ctx context.Context, req Request) (*Response, error) {
	ev := audit.Event{
		Time:      h.opts.Now(),
		Action:    audit.ActionTokenRefused,
		SourceIP:  req.SourceIP,
		UserAgent: req.UserAgent,
		ClientID:  req.Credentials.ClientID(),
	}
	res, err := h.dispatch(ctx, req, &ev)
	if err != nil {
		h.refused(ctx, ev, err)
		return nil, err
	}
	ev.Outcome = audit.Success
	if err := h.opts.Auditor.Record(context.WithoutCancel(ctx), ev); err != nil {
		rerr := h.opts.Tokens.RevokeFamily(context.WithoutCancel(ctx), res.familyID, h.opts.Now(), "audit unavailable at issue")
		return nil, oauth.Wrap(oauth.TemporarilyUnavailable, "audit trail unavailable; try again later",
			errors.Join(fmt.Errorf("grant: audit: %w", err), rerr))
	}
	return res.resp, nil
}

// Refuse records the audit event for a request refused before Token could run
// (a malformed HTTP request).
func (h *Handler) Refuse(ctx context.Context, req Request, err error) {
	h.refused(ctx, audit.Event{
		Time:      h.opts.Now(),
		Action:    audit.ActionTokenRefused,
		SourceIP:  req.SourceIP,
		UserAgent: req.UserAgent,
		ClientID:  req.Credentials.ClientID(),
	}, err)
}

func (h *Handler) refused(ctx context.Context, ev audit.Event, err error) {
	oe := oauth.As(err)
	ev.Action = audit.ActionTokenRefused
	ev.Outcome = audit.Failure
	ev.Reason = string(oe.Code) + ": " + oe.Description
	if aerr := h.opts.Auditor.Record(context.WithoutCancel(ctx), ev); aerr != nil {
		h.opts.Logger.ErrorContext(ctx, "audit of refused token request failed", "error", aerr)
	}
}

func (h *Handler) dispatch(ctx context.Context, req Request, ev *audit.Event) (*result, error) {
	client, err := h.auth.Authenticate(ctx, req.Credentials)
	if err != nil {
		return nil, err
	}
	ev.ClientID = client.ID
	if h.suspended(client.ID, "") {
		return nil, oauth.Errorf(oauth.UnauthorizedClient, "this client is suspended pending review")
	}
	gt := req.Form.Get("grant_type")
	if gt == "" {
		return nil, oauth.Errorf(oauth.InvalidRequest, "grant_type missing")
	}
	bnd, err := h.bind(ctx, client, req, oauth.GrantType(gt))
	if err != nil {
		return nil, err
	}
	ctx = withBinding(ctx, bnd)
	switch oauth.GrantType(gt) {
	case oauth.GrantAuthorizationCode:
		if !allowsGrant(client, oauth.GrantAuthorizationCode) {
			return nil, oauth.Errorf(oauth.UnauthorizedClient, "client may not use grant_type authorization_code")
		}
		ev.Action = audit.ActionTokenIssued
		return h.authorizationCode(ctx, client, req.Form, ev)
	case oauth.GrantRefreshToken:
		if !allowsGrant(client, oauth.GrantRefreshToken) {
			return nil, oauth.Errorf(oauth.UnauthorizedClient, "client may not use grant_type refresh_token")
		}
		ev.Action = audit.ActionTokenRefreshed
		return h.refreshToken(ctx, client, req.Form, ev)
	case oauth.GrantClientCredentials:
		if !allowsGrant(client, oauth.GrantClientCredentials) {
			return nil, oauth.Errorf(oauth.UnauthorizedClient, "client may not use grant_type client_credentials")
		}
		ev.Action = audit.ActionTokenIssued
		return h.clientCredentials(ctx, client, req.Form, ev)
	}
	return nil, oauth.Errorf(oauth.UnsupportedGrantType, "grant_type not supported")
}

// suspended reports whether the client or user is suspended.
func (h *Handler) suspended(clientID, userID string) bool {
	return h.opts.Suspended != nil && h.opts.Suspended(clientID, userID)
}

// errUserSuspended refuses a grant for a suspended user.
func errUserSuspended() error {
	return oauth.Errorf(oauth.InvalidGrant, "access by this user is suspended pending review")
}

// allowsGrant reports whether the client's registration permits the grant.
// A client registered without grant types gets authorization_code and
// refresh_token (the RFC 7591 default plus refresh).
func allowsGrant(c *storage.Client, g oauth.GrantType) bool {
	if len(c.GrantTypes) == 0 {
		return g == oauth.GrantAuthorizationCode || g == oauth.GrantRefreshToken
	}
	return slices.Contains(c.GrantTypes, string(g))
}

// storeError turns a store failure into a server_error without leaking it.
func storeError(op string, err error) error {
	return oauth.Wrap(oauth.ServerError, "internal error", fmt.Errorf("grant: %s: %w", op, err))
}
