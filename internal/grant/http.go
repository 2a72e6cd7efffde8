package grant

import (
	"net/http"

	"github.com/fhirgate/fhirgate/internal/clientauth"
	"github.com/fhirgate/fhirgate/internal/dpop"
	"github.com/fhirgate/fhirgate/internal/httpx"
	"github.com/fhirgate/fhirgate/internal/oauth"
)

// Register mounts the handler at /token. Every method reaches it, so that a
// CORS wrapper (see RegisterWith) can answer preflights; anything but POST
// gets 405.
func (h *Handler) Register(mux *http.ServeMux) { h.RegisterWith(mux, nil) }

// RegisterWith mounts the handler at /token wrapped by wrap (for example
// the CORS policy's Handler method); a nil wrap mounts it bare.
func (h *Handler) RegisterWith(mux *http.ServeMux, wrap func(http.Handler) http.Handler) {
	var hh http.Handler = h
	if wrap != nil {
		hh = wrap(hh)
	}
	mux.Handle("/token", hh)
}

// ServeHTTP implements the token endpoint over HTTP.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	httpx.NoStore(w)
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		httpx.WriteJSON(w, http.StatusMethodNotAllowed, map[string]string{
			"error":             string(oauth.InvalidRequest),
			"error_description": "the token endpoint accepts POST only",
		})
		return
	}
	req := Request{SourceIP: httpx.ClientIP(r), UserAgent: r.UserAgent()}
	fail := func(err error) {
		h.Refuse(r.Context(), req, err)
		h.writeError(w, r, err)
	}
	if err := httpx.ParseOAuthForm(w, r); err != nil {
		fail(err)
		return
	}
	var err error
	req.Form = r.PostForm
	req.Credentials, err = clientauth.FromRequest(r, h.opts.TrustedProxies)
	if err != nil {
		fail(err)
		return
	}
	if req.DPoP, err = dpop.FromHeader(r.Header); err != nil {
		fail(oauth.Wrap(oauth.InvalidDPoPProof, "send exactly one DPoP proof", err))
		return
	}
	resp, err := h.Token(r.Context(), req)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, resp)
}

// writeError renders err; a use_dpop_nonce error carries the nonce to retry
// with in the DPoP-Nonce header (RFC 9449 §8).
func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	if n := dpop.NonceOf(err); n != "" {
		w.Header().Set(dpop.NonceHeader, n)
	}
	httpx.WriteOAuthError(w, r, h.opts.Logger, err)
}
