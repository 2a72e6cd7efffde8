package authorize

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/fhirgate/fhirgate/internal/oauth"
	"github.com/fhirgate/fhirgate/internal/scope"
	"github.com/fhirgate/fhirgate/internal/secret"
	"github.com/fhirgate/fhirgate/internal/storage"
)

// Error codes the oauth package does not (yet) name.
const (
	// errRequestNotSupported is OpenID Connect Core §3.1.2.6's code for a `request` object.
	errRequestNotSupported oauth.ErrorCode = "request_not_supported"
)

// PageError is a refusal that must not redirect (unknown client, bad
// redirect URI): it is shown to the user as an HTML error page.
type PageError struct {
	Message string // safe to show
	Cause   error
}

func (e *PageError) Error() string {
	if e.Cause != nil {
		return "authorize: " + e.Message + ": " + e.Cause.Error()
	}
	return "authorize: " + e.Message
}

// Unwrap returns the cause.
func (e *PageError) Unwrap() error { return e.Cause }

// RedirectError is a refusal sent back to the client's verified redirect URI.
type RedirectError struct {
	ClientID    string
	RedirectURI string
	State       string
	Err         *oauth.Error
}

func (e *RedirectError) Error() string { return "authorize: " + e.Err.Error() }

// Unwrap returns the protocol error.
func (e *RedirectError) Unwrap() error { return e.Err }

// pkceChallenge is a base64url SHA-256 digest: 43 characters, no padding.
var pkceChallenge = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

// validated is an /authorize request that passed every check.
type validated struct {
	client *storage.Client
	ar     *storage.AuthRequest
	prompt string
}

// singleParams may appear at most once (RFC 6749 §3.1). Any parameter
// repeated is refused; client_id and redirect_uri repeated even prevent a
// redirect.
func repeated(q url.Values) string {
	for k, v := range q {
		if len(v) > 1 {
			return k
		}
	}
	return ""
}

// validate checks an /authorize request. Errors are *PageError or
// *RedirectError. A `launch` value is consumed only when everything else passed.
func (h *Handler) validate(ctx context.Context, q url.Values) (*validated, error) {
	return h.validateRequest(ctx, q, false)
}

// validateRequest is validate for a request sent to /authorize (pushed
// false), which PAR-only clients may not use, or to /par (pushed true).
func (h *Handler) validateRequest(ctx context.Context, q url.Values, pushed bool) (*validated, error) {
	for _, k := range []string{"client_id", "redirect_uri"} {
		if len(q[k]) > 1 {
			return nil, &PageError{Message: "The request repeats the " + k + " parameter."}
		}
	}
	clientID := q.Get("client_id")
	if clientID == "" {
		return nil, &PageError{Message: "The request does not name a client (client_id is missing)."}
	}
	client, err := h.opts.Clients.GetClient(ctx, clientID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, &PageError{Message: "The application is not registered with this server.", Cause: err}
	}
	if err != nil {
		return nil, fmt.Errorf("authorize: get client: %w", err)
	}
	if client.Disabled {
		return nil, &PageError{Message: "The application is not registered with this server.", Cause: errors.New("client disabled")}
	}
	redirectURI, ok := matchRedirectURI(client.RedirectURIs, q.Get("redirect_uri"))
	if !ok {
		msg := "The redirect URI does not match any registered for this application."
		if q.Get("redirect_uri") == "" {
			msg = "The request must include a redirect_uri registered for this application."
		}
		return nil, &PageError{Message: msg}
	}
	state := q.Get("state")
	fail := func(code oauth.ErrorCode, format string, args ...any) error {
		return &RedirectError{ClientID: client.ID, RedirectURI: redirectURI, State: state, Err: oauth.Errorf(code, format, args...)}
	}
	if !pushed && (client.RequirePAR || h.opts.RequirePAR) {
		return nil, fail(oauth.InvalidRequest, "this client must use a pushed authorization request (PAR, RFC 9126)")
	}
	if k := repeated(q); k != "" {
		return nil, fail(oauth.InvalidRequest, "parameter %s is repeated", k)
	}
	if len(state) > maxParamLen || len(q.Get("nonce")) > maxParamLen {
		return nil, fail(oauth.InvalidRequest, "state or nonce is too long")
	}
	if q.Get("request") != "" {
		return nil, fail(errRequestNotSupported, "request objects are not supported")
	}
	if q.Get("request_uri") != "" {
		return nil, fail(oauth.InvalidRequest, "request_uri cannot be used in a pushed authorization request")
	}
	switch rt := q.Get("response_type"); {
	case rt == "":
		return nil, fail(oauth.InvalidRequest, "response_type is required")
	case rt != string(oauth.ResponseCode):
		return nil, fail(oauth.UnsupportedResponseType, "only response_type=code is supported")
	}
	if rm := q.Get("response_mode"); rm != "" && rm != "query" {
		return nil, fail(oauth.InvalidRequest, "only response_mode=query is supported")
	}
	if len(client.GrantTypes) > 0 && !contains(client.GrantTypes, string(oauth.GrantAuthorizationCode)) {
		return nil, fail(oauth.UnauthorizedClient, "the client is not registered for the authorization_code grant")
	}
	challenge, method := q.Get("code_challenge"), q.Get("code_challenge_method")
	switch {
	case challenge == "":
		return nil, fail(oauth.InvalidRequest, "code_challenge is required (PKCE)")
	case method == "":
		return nil, fail(oauth.InvalidRequest, "code_challenge_method is required and must be S256")
	case method != "S256":
		return nil, fail(oauth.InvalidRequest, "code_challenge_method must be S256")
	case !pkceChallenge.MatchString(challenge):
		return nil, fail(oauth.InvalidRequest, "code_challenge must be 43 base64url characters")
	}
	// RFC 9449 §10: dpop_jkt binds the code to a DPoP key (a SHA-256 JWK
	// thumbprint has the same shape as an S256 challenge).
	dpopJKT := q.Get("dpop_jkt")
	if _, sent := q["dpop_jkt"]; sent && !pkceChallenge.MatchString(dpopJKT) {
		return nil, fail(oauth.InvalidRequest, "dpop_jkt must be a base64url SHA-256 JWK thumbprint")
	}
	aud := q.Get("aud")
	if res := q.Get("resource"); res != "" {
		if aud != "" && strings.TrimRight(aud, "/") != strings.TrimRight(res, "/") {
			return nil, fail(oauth.InvalidRequest, "aud and resource differ")
		}
		aud = res
	}
	audience, ok := h.matchAudience(aud)
	if !ok {
		return nil, fail(oauth.InvalidRequest, "aud must be this server's FHIR base URL")
	}
	requested, _, err := scope.ParseSet(q.Get("scope"))
	if err != nil {
		return nil, fail(oauth.InvalidScope, "scope is malformed")
	}
	requested = withoutSystem(requested)
	if len(requested) == 0 {
		return nil, fail(oauth.InvalidScope, "no supported scope was requested")
	}
	if len(clientAllowed(client, requested)) == 0 {
		return nil, fail(oauth.InvalidScope, "none of the requested scopes is registered for this client")
	}
	prompt := q.Get("prompt")
	if prompt != "" {
		for p := range strings.FieldsSeq(prompt) {
			if p != "none" && p != "login" && p != "consent" && p != "select_account" {
				return nil, fail(oauth.InvalidRequest, "unsupported prompt value")
			}
		}
		if strings.Contains(prompt, "none") && prompt != "none" {
			return nil, fail(oauth.InvalidRequest, "prompt=none cannot be combined with other values")
		}
	}
	now := h.opts.Now()
	ar := &storage.AuthRequest{
		ID:            secret.Token(),
		ClientID:      client.ID,
		RedirectURI:   redirectURI,
		State:         state,
		Scope:         requested.String(),
		Nonce:         q.Get("nonce"),
		CodeChallenge: challenge,
		Audience:      audience,
		ResponseMode:  "query",
		DPoPJKT:       dpopJKT,
		CreatedAt:     now,
		ExpiresAt:     now.Add(AuthRequestTTL),
	}
	if lv := q.Get("launch"); lv != "" {
		l, err := h.opts.Launches.ConsumeLaunch(ctx, storage.HashSecret(lv), now)
		switch {
		case errors.Is(err, storage.ErrNotFound), errors.Is(err, storage.ErrExpired), errors.Is(err, storage.ErrAlreadyUsed):
			return nil, &RedirectError{ClientID: client.ID, RedirectURI: redirectURI, State: state,
				Err: oauth.Wrap(oauth.InvalidRequest, "launch is unknown, expired or already used", err)}
		case err != nil:
			return nil, fmt.Errorf("authorize: consume launch: %w", err)
		}
		lc := l.Context
		ar.Launch = &lc
	}
	return &validated{client: client, ar: ar, prompt: prompt}, nil
}

// matchAudience returns the configured FHIR base aud names, comparing with
// any trailing slash removed.
func (h *Handler) matchAudience(aud string) (string, bool) {
	if aud == "" {
		return "", false
	}
	a := strings.TrimRight(aud, "/")
	for _, b := range h.bases {
		if a == b {
			return b, true
		}
	}
	return "", false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
