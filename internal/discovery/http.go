package discovery

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// Cache lifetimes of the public documents.
const (
	metadataMaxAge = 3600 // seconds; the documents change only on restart
	jwksMaxAge     = 300  // seconds; short, so rotated keys are seen soon
)

// Handler serves the discovery documents. They are public: no
// authentication, JSON whatever the Accept header says, and CORS open to
// every origin without credentials.
type Handler struct {
	docs   *documents
	keys   KeySource
	log    *slog.Logger
	now    func() time.Time
	smart  []byte
	openid []byte
	oauth  []byte
	style  []byte
}

// New validates opts, fills defaults and builds the documents.
func New(opts Options) (*Handler, error) {
	if opts.Keys == nil {
		return nil, fmt.Errorf("%w: Keys is required", ErrConfig)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	docs, err := buildDocuments(&opts)
	if err != nil {
		return nil, err
	}
	h := &Handler{docs: docs, keys: opts.Keys, log: opts.Logger, now: opts.Now}
	for _, x := range []struct {
		dst *[]byte
		v   any
	}{{&h.smart, docs.smart}, {&h.openid, docs.openid}, {&h.oauth, docs.oauth}, {&h.style, docs.style}} {
		b, err := json.Marshal(x.v)
		if err != nil {
			return nil, fmt.Errorf("discovery: encode: %w", err)
		}
		*x.dst = append(b, '\n')
	}
	return h, nil
}

// Endpoints returns the absolute endpoint URLs advertised (e.g. Style for
// the token response's smart_style_url).
func (h *Handler) Endpoints() Endpoints { return h.docs.endpoints }

// SMARTConfiguration returns the SMART configuration document.
func (h *Handler) SMARTConfiguration() SMARTConfiguration { return h.docs.smart }

// Register adds the discovery routes to mux: GET (and HEAD) plus an OPTIONS
// preflight answer for each.
func (h *Handler) Register(mux *http.ServeMux) {
	routes := map[string]http.HandlerFunc{
		PathJWKS:  h.serveJWKS,
		PathStyle: h.static(h.style, metadataMaxAge),
	}
	for _, p := range h.docs.smartPaths {
		routes[p] = h.static(h.smart, metadataMaxAge)
	}
	routes[h.docs.oidcPath] = h.static(h.openid, metadataMaxAge)
	for _, p := range h.docs.oauthPaths {
		routes[p] = h.static(h.oauth, metadataMaxAge)
	}
	for path, fn := range routes {
		mux.HandleFunc("GET "+path, fn)
		mux.HandleFunc("OPTIONS "+path, preflight)
	}
}

// Paths lists every path Register serves, for the composition root's checks.
func (h *Handler) Paths() []string {
	out := []string{PathJWKS, PathStyle, h.docs.oidcPath}
	out = append(out, h.docs.smartPaths...)
	out = append(out, h.docs.oauthPaths...)
	return uniq(out)
}

func (h *Handler) static(body []byte, maxAge int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		writeDoc(w, body, maxAge)
	}
}

func (h *Handler) serveJWKS(w http.ResponseWriter, r *http.Request) {
	set := h.keys.JWKS()
	b, err := json.Marshal(set)
	if err != nil {
		h.log.ErrorContext(r.Context(), "encode JWKS", slog.Any("error", err))
		http.Error(w, "server error", http.StatusInternalServerError)
		return
	}
	writeDoc(w, append(b, '\n'), jwksMaxAge)
}

func writeDoc(w http.ResponseWriter, body []byte, maxAge int) {
	hd := w.Header()
	allowCORS(hd)
	hd.Set("Content-Type", "application/json")
	hd.Set("Cache-Control", fmt.Sprintf("public, max-age=%d", maxAge))
	hd.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

func allowCORS(hd http.Header) {
	// Public, credential-free documents: any origin may read them. Never
	// combined with Access-Control-Allow-Credentials.
	hd.Set("Access-Control-Allow-Origin", "*")
}

// preflight answers a CORS preflight for the public documents.
func preflight(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	allowCORS(hd)
	hd.Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
	if req := r.Header.Get("Access-Control-Request-Headers"); req != "" {
		if names, err := headerNames(req); err == nil {
			hd.Set("Access-Control-Allow-Headers", names)
		}
	}
	hd.Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
}

// headerNames validates a comma-separated list of header names (RFC 9110
// tokens) and returns it normalised.
func headerNames(s string) (string, error) {
	var out []string
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" || len(f) > 64 {
			return "", errors.New("bad header name")
		}
		for _, r := range f {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("!#$%&'*+-.^_`|~", r)) {
				return "", errors.New("bad header name")
			}
		}
		out = append(out, strings.ToLower(f))
	}
	if len(out) > 20 {
		return "", errors.New("too many header names")
	}
	return strings.Join(out, ", "), nil
}
