package par

import (
	"context"
	"net/http"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/clientauth"
	"github.com/fhirgate/fhirgate/internal/httpx"
	"github.com/fhirgate/fhirgate/internal/oauth"
)

// Path is the PAR endpoint.
const Path = "/par"

// Register mounts POST /par.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.Handle("POST "+Path, h)
}

// ServeHTTP implements the PAR endpoint over HTTP: 201 with the request_uri,
// or an RFC 6749 JSON error.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	httpx.NoStore(w)
	req := Request{SourceIP: httpx.ClientIP(r), UserAgent: r.UserAgent()}
	fail := func(err error) {
		h.refuseEarly(r.Context(), req, err)
		httpx.WriteOAuthError(w, r, h.opts.Logger, err)
	}
	if r.URL.RawQuery != "" {
		fail(oauth.Errorf(oauth.InvalidRequest, "parameters go in the request body, not the URL"))
		return
	}
	if err := httpx.ParseOAuthForm(w, r); err != nil {
		fail(err)
		return
	}
	var err error
	req.Form = r.PostForm
	if req.Credentials, err = clientauth.FromRequest(r, h.opts.TrustedProxies); err != nil {
		fail(err)
		return
	}
	resp, err := h.Push(r.Context(), req)
	if err != nil {
		httpx.WriteOAuthError(w, r, h.opts.Logger, err)
		return
	}
	httpx.WriteJSON(w, http.StatusCreated, resp)
}

// refuseEarly audits a request refused before Push could run.
func (h *Handler) refuseEarly(ctx context.Context, req Request, err error) {
	oe := oauth.As(err)
	ev := audit.Event{Time: h.opts.Now(), Action: audit.ActionAuthorize, Outcome: audit.Failure, SourceIP: req.SourceIP,
		UserAgent: req.UserAgent, ClientID: req.Credentials.ClientID(), Reason: "par: " + string(oe.Code) + ": " + oe.Description}
	if aerr := h.opts.Auditor.Record(context.WithoutCancel(ctx), ev); aerr != nil {
		h.opts.Logger.ErrorContext(ctx, "audit of refused pushed request failed", "error", aerr)
	}
}
