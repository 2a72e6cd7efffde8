package gateway

import (
	"net/http"
	"strconv"
)

// CORS answers for the FHIR API.
const (
	corsAllowMethods  = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
	corsAllowHeaders  = "Authorization, DPoP, Content-Type, Accept, If-Match, If-None-Match, If-None-Exist, If-Modified-Since, Prefer, X-Request-Id"
	corsExposeHeaders = "WWW-Authenticate, DPoP-Nonce, Location, Content-Location, ETag, Last-Modified"
	corsMaxAge        = 600
)

// handleCORS sets CORS headers for allowed origins (the registered clients'
// redirect URI origins, never "*", never with credentials) and answers
// preflights. It returns true when the request has been answered.
func (h *Handler) handleCORS(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
	if origin == "" {
		if preflight {
			w.WriteHeader(http.StatusNoContent)
			return true
		}
		return false
	}
	hd := w.Header()
	hd.Add("Vary", "Origin")
	allowed := false
	if h.opts.CORS != nil {
		var err error
		allowed, err = h.opts.CORS.Allowed(r.Context(), origin)
		if err != nil {
			h.opts.Logger.ErrorContext(r.Context(), "gateway: CORS origin check failed; refusing cross-origin access", "error", err)
			allowed = false
		}
	}
	if preflight {
		hd.Add("Vary", "Access-Control-Request-Method")
		hd.Add("Vary", "Access-Control-Request-Headers")
		if allowed {
			hd.Set("Access-Control-Allow-Origin", origin)
			hd.Set("Access-Control-Allow-Methods", corsAllowMethods)
			hd.Set("Access-Control-Allow-Headers", corsAllowHeaders)
			hd.Set("Access-Control-Max-Age", strconv.Itoa(corsMaxAge))
		}
		w.WriteHeader(http.StatusNoContent)
		return true
	}
	if allowed {
		hd.Set("Access-Control-Allow-Origin", origin)
		hd.Set("Access-Control-Expose-Headers", corsExposeHeaders)
	}
	return false
}
