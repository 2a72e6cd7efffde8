package userinfo

import (
	"errors"
	"net/http"
	"strings"

	"github.com/fhirgate/fhirgate/internal/dpop"
	"github.com/fhirgate/fhirgate/internal/httpx"
	"github.com/fhirgate/fhirgate/internal/mtls"
	"github.com/fhirgate/fhirgate/internal/oauth"
)

// Register mounts the handler at /userinfo for every method (so that a CORS
// wrapper can answer preflights); GET and POST are served, others get 405.
func (h *Handler) Register(mux *http.ServeMux) { h.RegisterWith(mux, nil) }

// RegisterWith mounts the handler at /userinfo wrapped by wrap (for example
// the CORS policy's Handler method); a nil wrap mounts it bare.
func (h *Handler) RegisterWith(mux *http.ServeMux, wrap func(http.Handler) http.Handler) {
	var hh http.Handler = h
	if wrap != nil {
		hh = wrap(hh)
	}
	mux.Handle("/userinfo", hh)
}

// ServeHTTP implements the UserInfo endpoint. The access token is accepted
// only in the Authorization header (RFC 6750 §2.1), never in the query or body.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	httpx.NoStore(w)
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		httpx.WriteJSON(w, http.StatusMethodNotAllowed, map[string]string{
			"error":             string(oauth.InvalidRequest),
			"error_description": "use GET or POST",
		})
		return
	}
	m := Meta{SourceIP: httpx.ClientIP(r), UserAgent: r.UserAgent(), Method: r.Method}
	fail := func(err error) {
		h.Refuse(r.Context(), m, err)
		h.writeError(w, r, m, err)
	}
	if r.URL.Query().Has("access_token") {
		fail(oauth.Errorf(oauth.InvalidRequest, "access tokens are not accepted in the query"))
		return
	}
	values := r.Header.Values("Authorization")
	if len(values) > 1 {
		fail(oauth.Errorf(oauth.InvalidRequest, "send exactly one Authorization header"))
		return
	}
	raw := ""
	if len(values) == 1 {
		scheme, rest, _ := strings.Cut(values[0], " ")
		switch {
		case strings.EqualFold(scheme, "Bearer"):
			raw = strings.TrimSpace(rest)
		case strings.EqualFold(scheme, "DPoP"):
			raw, m.DPoP = strings.TrimSpace(rest), true
		}
	}
	var err error
	if m.Proof, err = dpop.FromHeader(r.Header); err != nil {
		fail(oauth.Wrap(oauth.InvalidDPoPProof, "send exactly one DPoP proof", err))
		return
	}
	switch cert, err := mtls.ClientCert(r, h.opts.TrustedProxies); {
	case err == nil:
		m.ClientCert = cert
	case !errors.Is(err, mtls.ErrNoCert):
		fail(oauth.Wrap(oauth.InvalidRequest, "unacceptable client certificate header", err))
		return
	}
	info, err := h.UserInfo(r.Context(), raw, m)
	if err != nil {
		h.writeError(w, r, m, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, info)
}

// writeError renders err with the RFC 6750 §3 WWW-Authenticate challenge,
// or the RFC 9449 §7.1 DPoP one when the token was sent with the DPoP scheme
// or is DPoP-bound. A request that simply lacked a token gets a challenge
// without error code (RFC 6750 §3.1), for each scheme accepted.
func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, m Meta, err error) {
	oe := oauth.As(err)
	dpopErr := oe.Code == oauth.InvalidDPoPProof || oe.Code == oauth.UseDPoPNonce
	switch {
	case errors.Is(err, ErrNoToken):
		w.Header().Set("WWW-Authenticate", `Bearer realm="fhirgate"`)
		if h.opts.DPoP != nil {
			w.Header().Add("WWW-Authenticate", h.opts.DPoP.Challenge("fhirgate", "", ""))
		}
	case h.opts.DPoP != nil && (m.DPoP || dpopErr || errors.Is(err, ErrBoundAsBearer)):
		w.Header().Set("WWW-Authenticate", h.opts.DPoP.Challenge("fhirgate", string(oe.Code), oe.Description))
		if n := dpop.NonceOf(err); n != "" {
			w.Header().Set(dpop.NonceHeader, n)
		}
		if dpopErr {
			// At a protected resource these are 401 (RFC 9449 §7.1, §9),
			// not the 400 of the token endpoint.
			httpx.WriteJSON(w, http.StatusUnauthorized, map[string]string{
				"error":             string(oe.Code),
				"error_description": oe.Description,
			})
			return
		}
	case oe.Code == oauth.InvalidToken, oe.Code == oauth.InvalidRequest, oe.Code == oauth.InsufficientScope:
		v := `Bearer realm="fhirgate", error="` + string(oe.Code) + `", error_description="` + quoteSafe(oe.Description) + `"`
		if oe.Code == oauth.InsufficientScope {
			v += `, scope="openid"`
		}
		w.Header().Set("WWW-Authenticate", v)
	}
	httpx.WriteOAuthError(w, r, h.opts.Logger, err)
}

// quoteSafe drops the characters RFC 6750 §3 excludes from error_description.
func quoteSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			return -1
		}
		return r
	}, s)
}
