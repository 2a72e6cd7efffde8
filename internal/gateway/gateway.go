// Package gateway is fhirgate's FHIR API gateway: the policy enforcement
// point in front of a FHIR server or legacy EHR API that cannot be changed.
//
// Every request under the FHIR base is checked before it reaches a backend:
// the access token (Authorization header only, Bearer or DPoP scheme; a
// token in the query or a form body is refused and revoked as leaked), its
// signature, issuer, audience and lifetime (internal/token), revocation,
// its DPoP or certificate binding; then the FHIR interaction is classified
// (internal/fhir) and decided (internal/policy). The decision's constraints
// are applied to the forwarded request (patient search parameter, granular
// scope queries) and checked on the response: a single resource outside the
// patient's compartment is answered exactly like one that does not exist,
// and foreign entries of a search Bundle (including _include/_revinclude)
// are removed, with the removal audited. Every request is audited before it
// is forwarded; when the audit cannot be written the request is refused.
//
// The client's Authorization header never reaches a backend: the backend's
// own credentials are injected by internal/upstream.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/mtls"
	"github.com/fhirgate/fhirgate/internal/token"
	"github.com/fhirgate/fhirgate/internal/upstream"
)

// Audit actions recorded by the gateway.
const (
	// ActionFHIRRequest is a FHIR request decided by the gateway: Success
	// when it is forwarded, Failure when it is refused (Reason says why).
	ActionFHIRRequest = audit.ActionFHIRRequest
	// ActionFHIRFiltered records resources removed from (or withheld in) a
	// response because they lie outside what the token may see.
	ActionFHIRFiltered = audit.ActionFHIRFiltered
	// ActionTokenLeaked records an access token sent in a URL query or a
	// form body; the token is revoked.
	ActionTokenLeaked = audit.ActionTokenLeaked
	// ActionFHIRResponse records the outcome of a forwarded request: the
	// status the client got (Reason "HTTP 200"), Success below 400. It
	// follows the write-ahead fhir.request event of the same request.
	ActionFHIRResponse = audit.ActionFHIRResponse
)

// Defaults.
const (
	DefaultMaxRequestBytes  = 8 << 20
	DefaultMaxResponseBytes = 32 << 20
	DefaultUpstreamTimeout  = 60 * time.Second
	DefaultTokenCacheSize   = 10000
	DefaultMetadataTTL      = time.Minute
)

// ErrOptions reports unusable Options.
var ErrOptions = errors.New("gateway: invalid options")

// TokenParser verifies a JWT access token for an audience (the gateway's
// FHIR base URL). It is satisfied by *token.Issuer; errors wrap
// token.ErrInvalid.
type TokenParser interface {
	ParseAccessToken(raw, audience string) (*token.AccessClaims, error)
}

// Revocations answers whether a token (by jti) or its family was revoked.
// An error means "unknown" and the gateway refuses the request (fail closed).
type Revocations interface {
	Revoked(ctx context.Context, jti, familyID string) (bool, error)
}

// Leaked is told about an access token that was exposed (sent in a URL or
// form body); it must revoke it.
type Leaked interface {
	Leaked(ctx context.Context, claims *token.AccessClaims) error
}

// ProofVerifier checks the DPoP proof of r (RFC 9449 §4.3, §7.1): it is
// bound to accessToken (ath) and to the key with thumbprint jkt, fresh and
// not replayed. The request's URL is the absolute public URL (htu).
type ProofVerifier interface {
	Verify(r *http.Request, accessToken, jkt string) error
	// AllowedAlgs lists the proof algorithms accepted (the algs parameter
	// of the DPoP WWW-Authenticate challenge, RFC 9449 §7.1).
	AllowedAlgs() []string
}

// NonceError is implemented by ProofVerifier errors that ask the client to
// retry with a server nonce (RFC 9449 §8).
type NonceError interface {
	error
	DPoPNonce() string
}

// Origins decides which browser origins may call the FHIR API (satisfied by
// *cors.Policy).
type Origins interface {
	Allowed(ctx context.Context, origin string) (bool, error)
}

// OAuthURIs are the authorization server endpoints advertised in the
// CapabilityStatement's SMART security extension (oauth-uris). Empty ones
// are left out.
type OAuthURIs struct {
	Authorize, Token, Register, Manage, Introspect, Revoke string
}

// Options configures a Handler.
type Options struct {
	// BaseURL is the public FHIR base URL: the token audience, and the path
	// (its path part) the handler serves under.
	BaseURL string
	// Upstreams are the backends, routed by prefix (see internal/upstream).
	Upstreams []*upstream.Upstream
	// Tokens verifies access tokens (in-process: *token.Issuer).
	Tokens TokenParser
	// Revocations is consulted on every request (required).
	Revocations Revocations
	// Leaked revokes exposed tokens (optional; without it they are only audited).
	Leaked Leaked
	// DPoP verifies DPoP proofs. Nil refuses every DPoP-bound token.
	DPoP ProofVerifier
	// TrustedProxies may pass the client certificate of a TLS connection
	// they terminated in a header, for certificate-bound tokens (cnf
	// x5t#S256). The zero value trusts nobody: only the certificate of the
	// gateway's own TLS connection counts.
	TrustedProxies mtls.TrustedProxies
	// CORS lets registered clients' origins call the API from browsers (optional).
	CORS Origins
	// Admit, when set, is asked once a token is verified whether the request
	// may proceed (rate limits, suspensions). A non-nil refuse writes the
	// refusal; reason is audited.
	Admit func(r *http.Request, clientID, userID string) (refuse func(http.ResponseWriter), reason string)
	// OAuth lists the endpoints advertised in metadata.
	OAuth OAuthURIs
	// SMARTConfiguration returns the SMART configuration document served at
	// {base}/.well-known/smart-configuration (required).
	SMARTConfiguration func() ([]byte, error)

	MaxRequestBytes  int64         // default DefaultMaxRequestBytes
	MaxResponseBytes int64         // default DefaultMaxResponseBytes (inspected and streamed alike)
	UpstreamTimeout  time.Duration // default DefaultUpstreamTimeout, whole exchange
	TokenCacheSize   int           // default DefaultTokenCacheSize verified tokens
	MetadataTTL      time.Duration // how long the rewritten CapabilityStatement is reused
	// SkipOutcomeAudit leaves out the per-request fhir.response event (the
	// write-ahead fhir.request event is always recorded). For benchmarks.
	SkipOutcomeAudit bool

	Auditor audit.Auditor
	Logger  *slog.Logger
	Now     func() time.Time
}

// Handler is the gateway. It is safe for concurrent use.
type Handler struct {
	opts     Options
	base     *url.URL
	basePath string // without trailing slash, "" for the root
	router   *upstream.Router
	proxies  map[*upstream.Upstream]*httputil.ReverseProxy
	bases    map[*upstream.Upstream]upstreamBases
	cache    *tokenCache
	dpopAlgs string // `, algs="..."` of the DPoP challenge; "" without a verifier
	meta     metadataCache
	bufPool  bufferPool
}

// New validates opts, fills defaults and builds the reverse proxies.
func New(opts Options) (*Handler, error) {
	u, err := url.Parse(opts.BaseURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%w: BaseURL %q must be an absolute http(s) URL", ErrOptions, opts.BaseURL)
	}
	switch {
	case opts.Tokens == nil:
		return nil, fmt.Errorf("%w: Tokens is required", ErrOptions)
	case opts.Revocations == nil:
		return nil, fmt.Errorf("%w: Revocations is required", ErrOptions)
	case opts.Auditor == nil:
		return nil, fmt.Errorf("%w: Auditor is required", ErrOptions)
	case opts.SMARTConfiguration == nil:
		return nil, fmt.Errorf("%w: SMARTConfiguration is required", ErrOptions)
	case len(opts.Upstreams) == 0:
		return nil, fmt.Errorf("%w: at least one upstream is required", ErrOptions)
	case opts.MaxRequestBytes < 0 || opts.MaxResponseBytes < 0 || opts.UpstreamTimeout < 0 || opts.TokenCacheSize < 0:
		return nil, fmt.Errorf("%w: negative limit", ErrOptions)
	}
	router, err := upstream.NewRouter(opts.Upstreams...)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrOptions, err)
	}
	if opts.MaxRequestBytes == 0 {
		opts.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if opts.MaxResponseBytes == 0 {
		opts.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if opts.UpstreamTimeout == 0 {
		opts.UpstreamTimeout = DefaultUpstreamTimeout
	}
	if opts.TokenCacheSize == 0 {
		opts.TokenCacheSize = DefaultTokenCacheSize
	}
	if opts.MetadataTTL <= 0 {
		opts.MetadataTTL = DefaultMetadataTTL
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.SkipOutcomeAudit {
		opts.Logger.Warn("gateway: SkipOutcomeAudit is set; response statuses are not audited")
	}
	if opts.DPoP == nil {
		opts.Logger.Warn("gateway: no DPoP verifier configured; DPoP-bound tokens will be refused")
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	h := &Handler{
		opts:     opts,
		base:     u,
		basePath: u.Path,
		router:   router,
		proxies:  map[*upstream.Upstream]*httputil.ReverseProxy{},
		bases:    map[*upstream.Upstream]upstreamBases{},
		cache:    newTokenCache(opts.TokenCacheSize),
	}
	if opts.DPoP != nil {
		h.dpopAlgs = fmt.Sprintf(`, algs=%q`, strings.Join(opts.DPoP.AllowedAlgs(), " "))
	}
	for _, up := range router.Upstreams() {
		h.proxies[up] = h.newProxy(up)
		b := upstreamBase(up)
		h.bases[up] = upstreamBases{str: b, slash: []byte(b + "/")}
	}
	return h, nil
}

// Register mounts the gateway at the FHIR base path on mux.
func (h *Handler) Register(mux *http.ServeMux) {
	if h.basePath == "" {
		mux.Handle("/", h)
		return
	}
	mux.Handle(h.basePath+"/", h)
	mux.Handle(h.basePath, h)
}

// BasePath is the path the gateway serves under ("" for the root).
func (h *Handler) BasePath() string { return h.basePath }

// CloseIdleConnections closes idle upstream connections (on shutdown).
func (h *Handler) CloseIdleConnections() {
	for up := range h.proxies {
		if c, ok := up.Transport.(interface{ CloseIdleConnections() }); ok {
			c.CloseIdleConnections()
		}
	}
}
