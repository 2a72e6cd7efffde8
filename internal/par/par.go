// Package par implements OAuth 2.0 Pushed Authorization Requests (RFC 9126):
// POST /par takes an authorization request in the body of an authenticated
// (or, for public clients, identified) client, validates it exactly as
// /authorize does, stores it and answers with a single-use request_uri that
// /authorize accepts for DefaultTTL.
package par

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/clientauth"
	"github.com/fhirgate/fhirgate/internal/mtls"
	"github.com/fhirgate/fhirgate/internal/oauth"
	"github.com/fhirgate/fhirgate/internal/storage"
)

// Lifetimes of a pushed request.
const (
	DefaultTTL = 60 * time.Second
	MaxTTL     = 10 * time.Minute
)

// RequestURIPrefix starts every request_uri (the same as authorize.RequestURIPrefix).
const RequestURIPrefix = "urn:ietf:params:oauth:request_uri:"

// Validator validates a pushed authorization request as /authorize would
// (implemented by *authorize.Handler).
type Validator interface {
	ValidatePushed(ctx context.Context, client *storage.Client, form url.Values) (*storage.AuthRequest, error)
}

// Options configures the PAR endpoint.
type Options struct {
	// ClientAuth authenticates the client; public clients present client_id only.
	ClientAuth *clientauth.Authenticator
	Requests   storage.AuthRequests
	Validator  Validator
	TTL        time.Duration // DefaultTTL when zero; at most MaxTTL
	// TrustedProxies may pass the client certificate of a TLS connection
	// they terminated in a header (tls_client_auth behind a proxy).
	TrustedProxies mtls.TrustedProxies
	Auditor        audit.Auditor
	Logger         *slog.Logger
	Now            func() time.Time
}

// Handler serves POST /par.
type Handler struct {
	opts Options
}

// Response is the RFC 9126 §2.2 success body.
type Response struct {
	RequestURI string `json:"request_uri"`
	ExpiresIn  int64  `json:"expires_in"`
}

// New validates opts and fills defaults.
func New(opts Options) (*Handler, error) {
	var errs []error
	if opts.ClientAuth == nil || opts.ClientAuth.Clients == nil {
		errs = append(errs, errors.New("par: Options.ClientAuth with Clients is required"))
	}
	if opts.Requests == nil {
		errs = append(errs, errors.New("par: Options.Requests is required"))
	}
	if opts.Validator == nil {
		errs = append(errs, errors.New("par: Options.Validator is required"))
	}
	if opts.Auditor == nil {
		errs = append(errs, errors.New("par: Options.Auditor is required"))
	}
	if opts.TTL == 0 {
		opts.TTL = DefaultTTL
	}
	if opts.TTL < time.Second || opts.TTL > MaxTTL {
		errs = append(errs, fmt.Errorf("par: TTL %s must be between 1s and %s", opts.TTL, MaxTTL))
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Handler{opts: opts}, nil
}

// Request is a parsed /par request.
type Request struct {
	Form        url.Values // body parameters, each at most once
	Credentials clientauth.Credentials
	SourceIP    string
	UserAgent   string
}

// Push authenticates the client, validates and stores the request, and
// returns the request_uri. Errors are *oauth.Error values. Every outcome is
// audited; if the success cannot be audited the request is not stored.
func (h *Handler) Push(ctx context.Context, req Request) (*Response, error) {
	ev := audit.Event{Time: h.opts.Now(), Action: audit.ActionAuthorize, SourceIP: req.SourceIP,
		UserAgent: req.UserAgent, ClientID: req.Credentials.ClientID()}
	resp, err := h.push(ctx, req, &ev)
	if err != nil {
		oe := oauth.As(err)
		ev.Outcome, ev.Reason = audit.Failure, "par: "+string(oe.Code)+": "+oe.Description
		if aerr := h.opts.Auditor.Record(context.WithoutCancel(ctx), ev); aerr != nil {
			h.opts.Logger.ErrorContext(ctx, "audit of refused pushed request failed", "error", aerr)
		}
		return nil, err
	}
	return resp, nil
}

func (h *Handler) push(ctx context.Context, req Request, ev *audit.Event) (*Response, error) {
	client, err := h.opts.ClientAuth.Authenticate(ctx, req.Credentials)
	if err != nil {
		return nil, err
	}
	ev.ClientID = client.ID
	if req.Form.Get("request_uri") != "" {
		return nil, oauth.Errorf(oauth.InvalidRequest, "request_uri must not be pushed (RFC 9126 §2.1)")
	}
	if id := req.Form.Get("client_id"); id != "" && id != client.ID {
		return nil, oauth.Errorf(oauth.InvalidRequest, "client_id does not match the authenticated client")
	}
	ar, err := h.opts.Validator.ValidatePushed(ctx, client, req.Form)
	if err != nil {
		return nil, err
	}
	now := h.opts.Now()
	ar.Pushed = true
	ar.CreatedAt = now
	ar.ExpiresAt = now.Add(h.opts.TTL)
	ev.Outcome, ev.Reason, ev.Scope = audit.Success, "par: request pushed", ar.Scope
	if err := h.opts.Auditor.Record(context.WithoutCancel(ctx), *ev); err != nil {
		return nil, oauth.Wrap(oauth.TemporarilyUnavailable, "audit trail unavailable; try again later", err)
	}
	if err := h.opts.Requests.CreateAuthRequest(ctx, ar); err != nil {
		return nil, oauth.Wrap(oauth.ServerError, "internal error", fmt.Errorf("par: store request: %w", err))
	}
	return &Response{RequestURI: RequestURIPrefix + ar.ID, ExpiresIn: int64(h.opts.TTL / time.Second)}, nil
}
