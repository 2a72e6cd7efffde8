// Package registration implements OAuth 2.0 Dynamic Client Registration
// (RFC 7591, POST /register) and its management protocol (RFC 7592, GET, PUT
// and DELETE /register/{client_id}).
//
// Access rules:
//
//   - POST /register needs an initial access token (`Authorization: Bearer`)
//     issued by `fhirgate clients registration-token`. It is looked up by its
//     SHA-256 hash and may be used for several registrations until it expires.
//   - Each registered client receives a registration access token for
//     /register/{client_id}. Only its hash is stored, so it cannot be shown
//     again: every successful GET and PUT rotates it and returns the new one
//     (RFC 7592 §2.1 and §2.2 allow this), and the previous one stops working.
//     The check and the rotation happen in one store transaction. It does not
//     expire otherwise; DELETE ends it with the client. Clients created by the
//     CLI have none and cannot be managed over HTTP.
//   - Client secrets are shown once, in the response that creates them. PUT
//     replaces the whole registration (omitted fields take their defaults, as
//     at registration) and keeps the secret while the method still uses one;
//     switching from "none" to a secret method issues a new secret in the
//     response, switching to "none" discards it. A client_secret in the PUT
//     body must equal the current secret (RFC 7592 §2.2).
//
// Metadata is validated by clientreg, exactly as for clients made by the CLI.
package registration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/clientreg"
	"github.com/fhirgate/fhirgate/internal/oauth"
	"github.com/fhirgate/fhirgate/internal/secret"
	"github.com/fhirgate/fhirgate/internal/storage"
)

// MaxBodyBytes bounds a registration request body.
const MaxBodyBytes = 64 << 10

// Options configures the registration endpoints.
type Options struct {
	Issuer             string // absolute https (or loopback http) URL; registration_client_uri is {Issuer}/register/{id}
	Clients            storage.Clients
	RegistrationTokens storage.RegistrationTokens
	Auditor            audit.Auditor
	Logger             *slog.Logger
	Now                func() time.Time
	// AllowBackendClients lets dynamic registration create SMART Backend
	// Services clients (client_credentials with system/ scopes, which act
	// without any user's consent). Off by default: such clients are then made
	// with the CLI only.
	AllowBackendClients bool
}

// Handler serves /register and /register/{client_id}.
type Handler struct {
	issuer  string
	clients storage.Clients
	tokens  storage.RegistrationTokens
	auditor audit.Auditor
	logger  *slog.Logger
	now     func() time.Time
	backend bool
}

// New validates opts and fills defaults (slog.Default, time.Now).
func New(opts Options) (*Handler, error) {
	u, err := url.Parse(opts.Issuer)
	if err != nil || !u.IsAbs() || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("registration: Issuer %q must be an absolute URL without query or fragment", opts.Issuer)
	}
	if opts.Clients == nil || opts.RegistrationTokens == nil {
		return nil, errors.New("registration: Clients and RegistrationTokens are required")
	}
	if opts.Auditor == nil {
		return nil, errors.New("registration: Auditor is required")
	}
	h := &Handler{
		issuer:  strings.TrimSuffix(opts.Issuer, "/"),
		clients: opts.Clients,
		tokens:  opts.RegistrationTokens,
		auditor: opts.Auditor,
		logger:  opts.Logger,
		now:     opts.Now,
		backend: opts.AllowBackendClients,
	}
	if h.logger == nil {
		h.logger = slog.Default()
	}
	if h.now == nil {
		h.now = time.Now
	}
	return h, nil
}

// request is an RFC 7591 §2 registration (or RFC 7592 §2.2 update) body.
// Metadata fhirgate does not understand is ignored (RFC 7591 §2).
type request struct {
	ClientID                 string          `json:"client_id"`
	ClientSecret             string          `json:"client_secret"`
	RedirectURIs             []string        `json:"redirect_uris"`
	TokenEndpointAuthMethod  string          `json:"token_endpoint_auth_method"`
	GrantTypes               []string        `json:"grant_types"`
	ResponseTypes            []string        `json:"response_types"`
	ClientName               string          `json:"client_name"`
	LogoURI                  string          `json:"logo_uri"`
	Scope                    string          `json:"scope"`
	JWKSURI                  string          `json:"jwks_uri"`
	JWKS                     json.RawMessage `json:"jwks"`
	IDTokenSignedResponseAlg string          `json:"id_token_signed_response_alg"`
	LaunchURI                string          `json:"launch_uri"` // fhirgate extension: the SMART EHR launch URL
	SoftwareStatement        string          `json:"software_statement"`
	TLSClientAuthSubjectDN   string          `json:"tls_client_auth_subject_dn"`
	DPoPBoundAccessTokens    bool            `json:"dpop_bound_access_tokens"`
	RequirePAR               bool            `json:"require_pushed_authorization_requests"`
}

func (r *request) metadata() clientreg.Metadata {
	return clientreg.Metadata{
		ClientName:               r.ClientName,
		RedirectURIs:             r.RedirectURIs,
		Scope:                    r.Scope,
		TokenEndpointAuthMethod:  r.TokenEndpointAuthMethod,
		GrantTypes:               r.GrantTypes,
		ResponseTypes:            r.ResponseTypes,
		LogoURI:                  r.LogoURI,
		LaunchURI:                r.LaunchURI,
		IDTokenSignedResponseAlg: r.IDTokenSignedResponseAlg,
		JWKS:                     r.JWKS,
		JWKSURI:                  r.JWKSURI,

		TLSClientAuthSubjectDN:             r.TLSClientAuthSubjectDN,
		DPoPBoundAccessTokens:              r.DPoPBoundAccessTokens,
		RequirePushedAuthorizationRequests: r.RequirePAR,
	}
}

// checkBackend refuses client_credentials unless backend clients may
// register dynamically.
func (h *Handler) checkBackend(m clientreg.Metadata) error {
	if h.backend {
		return nil
	}
	for _, g := range m.GrantTypes {
		if oauth.GrantType(g) == oauth.GrantClientCredentials {
			return oauth.Errorf(oauth.InvalidClientMetadata,
				"backend services clients (client_credentials) cannot register dynamically on this server; ask an administrator")
		}
	}
	return nil
}

// response is the client information response (RFC 7591 §3.2.1, RFC 7592 §3).
type response struct {
	ClientID                 string          `json:"client_id"`
	ClientSecret             string          `json:"client_secret,omitempty"`
	ClientSecretExpiresAt    *int64          `json:"client_secret_expires_at,omitempty"`
	ClientIDIssuedAt         int64           `json:"client_id_issued_at"`
	RegistrationAccessToken  string          `json:"registration_access_token"`
	RegistrationClientURI    string          `json:"registration_client_uri"`
	ClientName               string          `json:"client_name"`
	RedirectURIs             []string        `json:"redirect_uris"`
	TokenEndpointAuthMethod  string          `json:"token_endpoint_auth_method"`
	GrantTypes               []string        `json:"grant_types"`
	ResponseTypes            []string        `json:"response_types"`
	Scope                    string          `json:"scope"`
	IDTokenSignedResponseAlg string          `json:"id_token_signed_response_alg"`
	LogoURI                  string          `json:"logo_uri,omitempty"`
	LaunchURI                string          `json:"launch_uri,omitempty"`
	JWKSURI                  string          `json:"jwks_uri,omitempty"`
	JWKS                     json.RawMessage `json:"jwks,omitempty"`
	TLSClientAuthSubjectDN   string          `json:"tls_client_auth_subject_dn,omitempty"`
	DPoPBoundAccessTokens    bool            `json:"dpop_bound_access_tokens,omitempty"`
	RequirePAR               bool            `json:"require_pushed_authorization_requests,omitempty"`
}

// caller describes who sent the request, for the audit trail.
type caller struct {
	ip        string
	userAgent string
}

// Errors for the bearer tokens of this endpoint. They render as 401
// invalid_token with a WWW-Authenticate challenge.
var (
	errNoToken      = oauth.Errorf(oauth.InvalidToken, "an access token is required: send Authorization: Bearer <token>")
	errInitialToken = oauth.Errorf(oauth.InvalidToken, "the initial access token is invalid or expired")
	errRegToken     = oauth.Errorf(oauth.InvalidToken, "the registration access token is invalid for this client")
)

func (h *Handler) clientURI(id string) string {
	return h.issuer + "/register/" + url.PathEscape(id)
}

func (h *Handler) info(c *storage.Client, clientSecret, regToken string) *response {
	m := clientreg.FromClient(c)
	r := &response{
		ClientID:                 c.ID,
		ClientSecret:             clientSecret,
		ClientIDIssuedAt:         c.CreatedAt.Unix(),
		RegistrationAccessToken:  regToken,
		RegistrationClientURI:    h.clientURI(c.ID),
		ClientName:               m.ClientName,
		RedirectURIs:             m.RedirectURIs,
		TokenEndpointAuthMethod:  m.TokenEndpointAuthMethod,
		GrantTypes:               m.GrantTypes,
		ResponseTypes:            m.ResponseTypes,
		Scope:                    m.Scope,
		IDTokenSignedResponseAlg: m.IDTokenSignedResponseAlg,
		LogoURI:                  m.LogoURI,
		LaunchURI:                m.LaunchURI,
		JWKSURI:                  m.JWKSURI,
		JWKS:                     m.JWKS,
		TLSClientAuthSubjectDN:   m.TLSClientAuthSubjectDN,
		DPoPBoundAccessTokens:    m.DPoPBoundAccessTokens,
		RequirePAR:               m.RequirePushedAuthorizationRequests,
	}
	if r.RedirectURIs == nil {
		r.RedirectURIs = []string{}
	}
	if oauth.AuthMethod(c.AuthMethod).UsesSecret() {
		never := int64(0) // secrets do not expire (RFC 7591 §3.2.1: 0 means never)
		r.ClientSecretExpiresAt = &never
	}
	return r
}

// register handles an RFC 7591 registration request. bodyErr is the error
// decoding the body gave, reported only once the initial access token has
// been accepted.
func (h *Handler) register(ctx context.Context, initialToken string, req *request, bodyErr error, who caller) (*response, error) {
	now := h.now()
	if initialToken == "" {
		return nil, h.refuse(ctx, "", who, errNoToken)
	}
	if _, err := h.tokens.GetRegistrationToken(ctx, storage.HashSecret(initialToken), now); err != nil {
		if errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrExpired) {
			return nil, h.refuse(ctx, "", who, oauth.Wrap(errInitialToken.Code, errInitialToken.Description, err))
		}
		return nil, oauth.Wrap(oauth.ServerError, "internal error", err)
	}
	if bodyErr != nil {
		return nil, h.refuse(ctx, "", who, bodyErr)
	}
	if req.SoftwareStatement != "" {
		return nil, h.refuse(ctx, "", who, oauth.Errorf(oauth.InvalidClientMetadata, "software statements are not supported"))
	}
	if req.ClientID != "" || req.ClientSecret != "" {
		return nil, h.refuse(ctx, "", who, oauth.Errorf(oauth.InvalidClientMetadata, "client_id and client_secret are assigned by the server"))
	}
	if err := h.checkBackend(req.metadata()); err != nil {
		return nil, h.refuse(ctx, "", who, err)
	}
	c, clientSecret, err := clientreg.Build(req.metadata(), now)
	if err != nil {
		return nil, h.refuse(ctx, "", who, err)
	}
	regToken := secret.Token()
	c.RegistrationTokenHash = storage.HashSecret(regToken)
	// Audit before acting: if the event cannot be kept, nothing is registered.
	if err := h.record(ctx, audit.ActionClientRegistered, audit.Success, c, who, ""); err != nil {
		return nil, err
	}
	if err := h.clients.CreateClient(ctx, c); err != nil {
		return nil, oauth.Wrap(oauth.ServerError, "internal error", err)
	}
	return h.info(c, clientSecret, regToken), nil
}

// authorizeAndRotate checks regToken against the client's registration token
// hash and, in the same transaction, runs change (which may be nil) and
// replaces the hash with a new token's. It returns the updated client, the
// new token and whatever change returned as the new client secret.
func (h *Handler) authorizeAndRotate(ctx context.Context, id, regToken string, change func(*storage.Client) (string, error)) (*storage.Client, string, string, error) {
	if regToken == "" {
		return nil, "", "", errNoToken
	}
	presented := storage.HashSecret(regToken)
	next := secret.Token()
	var newSecret string
	c, err := h.clients.UpdateClient(ctx, id, func(c *storage.Client) error {
		if len(c.RegistrationTokenHash) == 0 || !secret.Equal(c.RegistrationTokenHash, presented) {
			return errRegToken
		}
		if change != nil {
			s, err := change(c)
			if err != nil {
				return err
			}
			newSecret = s
		}
		c.RegistrationTokenHash = storage.HashSecret(next)
		return nil
	})
	if err != nil {
		var oe *oauth.Error
		switch {
		case errors.As(err, &oe):
			return nil, "", "", oe
		case errors.Is(err, storage.ErrNotFound):
			// RFC 7592 §2.1: an unknown client is answered 401, so the
			// endpoint does not reveal which client ids exist.
			return nil, "", "", oauth.Wrap(errRegToken.Code, errRegToken.Description, err)
		default:
			return nil, "", "", oauth.Wrap(oauth.ServerError, "internal error", err)
		}
	}
	return c, next, newSecret, nil
}

// read handles an RFC 7592 §2.1 read request.
func (h *Handler) read(ctx context.Context, id, regToken string, who caller) (*response, error) {
	c, next, _, err := h.authorizeAndRotate(ctx, id, regToken, nil)
	if err != nil {
		return nil, h.refuse(ctx, id, who, err)
	}
	return h.info(c, "", next), nil
}

// update handles an RFC 7592 §2.2 update request: the body replaces the
// client's metadata. bodyErr is the error decoding the body gave, reported
// only to the holder of the registration access token.
func (h *Handler) update(ctx context.Context, id, regToken string, req *request, bodyErr error, who caller) (*response, error) {
	if regToken == "" {
		return nil, h.refuse(ctx, id, who, errNoToken)
	}
	now := h.now()
	c, next, newSecret, err := h.authorizeAndRotate(ctx, id, regToken, func(c *storage.Client) (string, error) {
		// The token is checked before the body, so a caller without it
		// learns nothing about the client from validation errors.
		if bodyErr != nil {
			return "", bodyErr
		}
		if req.ClientID != c.ID {
			return "", oauth.Errorf(oauth.InvalidClientMetadata, "client_id in the body must match the client being updated (RFC 7592 §2.2)")
		}
		if req.ClientSecret != "" && (len(c.SecretHash) == 0 || !secret.Equal(c.SecretHash, storage.HashSecret(req.ClientSecret))) {
			return "", oauth.Errorf(oauth.InvalidClientMetadata, "client_secret does not match the current secret; a client cannot choose its own secret")
		}
		if req.SoftwareStatement != "" {
			return "", oauth.Errorf(oauth.InvalidClientMetadata, "software statements are not supported")
		}
		if err := h.checkBackend(req.metadata()); err != nil {
			return "", err
		}
		v, err := clientreg.Validate(req.metadata())
		if err != nil {
			return "", err
		}
		hadSecret := oauth.AuthMethod(c.AuthMethod).UsesSecret() && len(c.SecretHash) > 0
		clientreg.Apply(c, v)
		c.UpdatedAt = now
		var issued string
		switch {
		case !oauth.AuthMethod(c.AuthMethod).UsesSecret():
			c.SecretHash = nil
		case !hadSecret:
			issued = secret.Token()
			c.SecretHash = storage.HashSecret(issued)
		}
		// Audit inside the transaction: if the event cannot be kept, the
		// change is not written.
		if err := h.record(ctx, audit.ActionClientChanged, audit.Success, c, who, ""); err != nil {
			return "", err
		}
		return issued, nil
	})
	if err != nil {
		return nil, h.refuse(ctx, id, who, err)
	}
	return h.info(c, newSecret, next), nil
}

// remove handles an RFC 7592 §2.3 delete request.
func (h *Handler) remove(ctx context.Context, id, regToken string, who caller) error {
	if regToken == "" {
		return h.refuse(ctx, id, who, errNoToken)
	}
	c, err := h.clients.GetClient(ctx, id)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return h.refuse(ctx, id, who, oauth.Wrap(errRegToken.Code, errRegToken.Description, err))
		}
		return oauth.Wrap(oauth.ServerError, "internal error", err)
	}
	if len(c.RegistrationTokenHash) == 0 || !secret.Equal(c.RegistrationTokenHash, storage.HashSecret(regToken)) {
		return h.refuse(ctx, id, who, errRegToken)
	}
	if err := h.record(ctx, audit.ActionClientDeleted, audit.Success, c, who, ""); err != nil {
		return err
	}
	if err := h.clients.DeleteClient(ctx, id); err != nil && !errors.Is(err, storage.ErrNotFound) {
		return oauth.Wrap(oauth.ServerError, "internal error", err)
	}
	return nil
}

// record writes an audit event. A failure becomes a 503 the caller returns,
// so nothing happens that the audit trail does not show.
func (h *Handler) record(ctx context.Context, action audit.Action, outcome audit.Outcome, c *storage.Client, who caller, reason string) error {
	e := audit.Event{
		Time:      h.now(),
		Action:    action,
		Outcome:   outcome,
		Reason:    reason,
		SourceIP:  who.ip,
		UserAgent: who.userAgent,
	}
	if c != nil {
		e.ClientID = c.ID
		e.Scope = c.Scope
	}
	// The audit write must not be cut short by a client disconnecting.
	if err := h.auditor.Record(context.WithoutCancel(ctx), e); err != nil {
		return oauth.Wrap(oauth.TemporarilyUnavailable, "the audit trail is unavailable; try again later", err)
	}
	return nil
}

// refuse audits a refused request and returns err for the caller to render.
// Server-side failures are not refusals and pass through unaudited here.
func (h *Handler) refuse(ctx context.Context, clientID string, who caller, err error) error {
	oe := oauth.As(err)
	if oe.Code == oauth.ServerError || oe.Code == oauth.TemporarilyUnavailable {
		return err
	}
	e := audit.Event{
		Time:      h.now(),
		Action:    audit.ActionRegistrationRefused,
		Outcome:   audit.Failure,
		Reason:    string(oe.Code) + ": " + oe.Description,
		ClientID:  clientID,
		SourceIP:  who.ip,
		UserAgent: who.userAgent,
	}
	if aerr := h.auditor.Record(context.WithoutCancel(ctx), e); aerr != nil {
		h.logger.ErrorContext(ctx, "audit record failed", slog.String("action", string(e.Action)), slog.Any("error", aerr))
	}
	return err
}
