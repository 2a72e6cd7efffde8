package introspect

import (
	"net/http"

	"github.com/fhirgate/fhirgate/internal/clientauth"
	"github.com/fhirgate/fhirgate/internal/httpx"
	"github.com/fhirgate/fhirgate/internal/oauth"
)

// Path is where the endpoint is served.
const Path = "/introspect"

// Register mounts the handler at /introspect; methods other than POST get
// a JSON 405.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.Handle(Path, h)
}

// ServeHTTP implements the introspection endpoint over HTTP (RFC 7662 §2):
// a POST form with token and optional token_type_hint, the caller's client
// authentication in the Authorization header or the form.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	httpx.NoStore(w)
	req := Request{SourceIP: httpx.ClientIP(r), UserAgent: r.UserAgent()}
	fail := func(err error) {
		h.Refuse(r.Context(), req, err)
		httpx.WriteOAuthError(w, r, h.opts.Logger, err)
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		httpx.WriteJSON(w, http.StatusMethodNotAllowed, map[string]string{
			"error":             string(oauth.InvalidRequest),
			"error_description": "the introspection endpoint accepts POST only",
		})
		return
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
	resp, err := h.Introspect(r.Context(), req)
	if err != nil {
		httpx.WriteOAuthError(w, r, h.opts.Logger, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, resp)
}
