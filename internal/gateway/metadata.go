package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/fhirgate/fhirgate/internal/fhir"
)

// SMART security extension URLs (SMART App Launch 2.x, conformance).
const (
	oauthURIsExtension  = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
	securityServiceCode = "http://terminology.hl7.org/CodeSystem/restful-security-service"
)

// metadataCache keeps the rewritten CapabilityStatement for MetadataTTL.
type metadataCache struct {
	mu   sync.Mutex
	body []byte
	at   time.Time
}

// serveMetadata answers GET {base}/metadata without a token: the upstream's
// CapabilityStatement with the SMART security extension advertising the
// authorization server's endpoints.
func (h *Handler) serveMetadata(w http.ResponseWriter, r *http.Request) {
	body, err := h.capabilityStatement(r.Context())
	if err != nil {
		h.opts.Logger.ErrorContext(r.Context(), "gateway: metadata", "error", err)
		h.writeOutcome(w, http.StatusBadGateway, fhir.CodeException, "the upstream server is unavailable")
		return
	}
	w.Header().Set("Cache-Control", "public, max-age=60")
	allowAnyOrigin(w, r)
	writeBody(w, http.StatusOK, body)
}

func (h *Handler) capabilityStatement(ctx context.Context) ([]byte, error) {
	now := h.opts.Now()
	h.meta.mu.Lock()
	defer h.meta.mu.Unlock()
	if h.meta.body != nil && now.Sub(h.meta.at) < h.opts.MetadataTTL && !now.Before(h.meta.at) {
		return h.meta.body, nil
	}
	up := h.router.Route("/metadata")
	if up == nil {
		return nil, errors.New("no upstream for /metadata")
	}
	u := *up.URL
	u.Path += "/metadata"
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.opts.UpstreamTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", fhirJSON)
	resp, err := up.Transport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("upstream metadata status %d", resp.StatusCode)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, h.opts.MaxResponseBytes))
	if err != nil {
		return nil, err
	}
	var cs map[string]any
	if err := json.Unmarshal(raw, &cs); err != nil {
		return nil, fmt.Errorf("upstream metadata: %w", err)
	}
	if cs["resourceType"] != "CapabilityStatement" {
		return nil, errors.New("upstream metadata is not a CapabilityStatement")
	}
	body, err := json.Marshal(h.rewriteCapability(cs))
	if err != nil {
		return nil, err
	}
	h.meta.body, h.meta.at = body, now
	return body, nil
}

// rewriteCapability points the CapabilityStatement at the public base and
// replaces each rest.security with the SMART one.
func (h *Handler) rewriteCapability(cs map[string]any) map[string]any {
	impl, _ := cs["implementation"].(map[string]any)
	if impl == nil {
		impl = map[string]any{"description": "fhirgate FHIR gateway"}
	}
	impl["url"] = h.opts.BaseURL
	cs["implementation"] = impl
	var uris []any
	for _, e := range []struct{ name, url string }{
		{"authorize", h.opts.OAuth.Authorize}, {"token", h.opts.OAuth.Token}, {"register", h.opts.OAuth.Register},
		{"manage", h.opts.OAuth.Manage}, {"introspect", h.opts.OAuth.Introspect}, {"revoke", h.opts.OAuth.Revoke},
	} {
		if e.url != "" {
			uris = append(uris, map[string]any{"url": e.name, "valueUri": e.url})
		}
	}
	security := map[string]any{
		"extension": []any{map[string]any{"url": oauthURIsExtension, "extension": uris}},
		"service": []any{map[string]any{
			"coding": []any{map[string]any{"system": securityServiceCode, "code": "SMART-on-FHIR", "display": "SMART-on-FHIR"}},
			"text":   "OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)",
		}},
		"description": "Access tokens from the authorization server are required (Bearer or DPoP); see .well-known/smart-configuration.",
	}
	rest, _ := cs["rest"].([]any)
	if len(rest) == 0 {
		rest = []any{map[string]any{"mode": "server"}}
	}
	for _, r := range rest {
		if m, ok := r.(map[string]any); ok {
			m["security"] = security
		}
	}
	cs["rest"] = rest
	return cs
}

// serveSMARTConfiguration answers {base}/.well-known/smart-configuration.
func (h *Handler) serveSMARTConfiguration(w http.ResponseWriter, r *http.Request) {
	body, err := h.opts.SMARTConfiguration()
	if err != nil {
		h.opts.Logger.ErrorContext(r.Context(), "gateway: smart-configuration", "error", err)
		h.writeOutcome(w, http.StatusServiceUnavailable, fhir.CodeTransient, "the configuration is unavailable")
		return
	}
	hd := w.Header()
	hd.Set("Cache-Control", "public, max-age=300")
	allowAnyOrigin(w, r)
	hd.Set("Content-Type", "application/json")
	hd.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// allowAnyOrigin opens public, credential-free documents to every origin.
func allowAnyOrigin(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Origin") != "" {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Del("Access-Control-Expose-Headers")
	}
}
