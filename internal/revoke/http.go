package revoke

import (
	"net/http"

	"github.com/fhirgate/fhirgate/internal/clientauth"
	"github.com/fhirgate/fhirgate/internal/httpx"
	"github.com/fhirgate/fhirgate/internal/oauth"
)

// Path is where the endpoint is served.
const Path = "/revoke"

// Register mounts the handler at /revoke; methods other than POST get a
// JSON 405.
func (h *Handler) Register(mux *http.ServeMux) { h.RegisterWith(mux, nil) }

// RegisterWith mounts the handler wrapped by wrap (for example a CORS
// policy, since browser apps revoke their tokens at logout); nil mounts it
// bare.
func (h *Handler) RegisterWith(mux *http.ServeMux, wrap func(http.Handler) http.Handler) {
	var hh http.Handler = h
	if wrap != nil {
		hh = wrap(hh)
	}
	mux.Handle(Path, hh)
}

// ServeHTTP implements the revocation endpoint over HTTP (RFC 7009 §2):
// a POST form with token and optional token_type_hint, and the client's
// authentication. Success is an empty 200.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	httpx.NoStore(w)
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		httpx.WriteJSON(w, http.StatusMethodNotAllowed, map[string]string{
			"error":             string(oauth.InvalidRequest),
			"error_description": "the revocation endpoint accepts POST only",
		})
		return
	}
	req := Request{SourceIP: httpx.ClientIP(r), UserAgent: r.UserAgent()}
	fail := func(err error) {
		h.Refuse(r.Context(), req, err)
		httpx.WriteOAuthError(w, r, h.opts.Logger, err)
	}
	if err := httpx.ParseOAuthForm(w, r); err != nil {
		fail(err)
		return
	}
	if len(r.URL.Query()["token"]) > 0 {
		fail(oauth.Errorf(oauth.InvalidRequest, "the token must be sent in the request body"))
		return
	}
	var err error
	req.Token = r.PostForm.Get("token")
	req.Hint = r.PostForm.Get("token_type_hint")
	req.Credentials, err = clientauth.FromRequest(r, h.opts.TrustedProxies)
	if err != nil {
		fail(err)
		return
	}
	if err := h.Revoke(r.Context(), req); err != nil {
		httpx.WriteOAuthError(w, r, h.opts.Logger, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}
