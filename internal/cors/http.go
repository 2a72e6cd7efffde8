package cors

import (
	"net/http"
	"strconv"
)

// Allowed methods and request headers announced in preflight answers.
const (
	allowMethods  = "POST, GET, OPTIONS"
	allowHeaders  = "Authorization, Content-Type, DPoP"
	exposeHeaders = "WWW-Authenticate, DPoP-Nonce"
)

// Handler wraps next with the policy. A request whose Origin is allowed gets
// Access-Control-Allow-Origin set to that origin (never "*", never with
// credentials); a preflight (OPTIONS with Access-Control-Request-Method) is
// answered 204 here, with the CORS headers only for an allowed origin.
// Other requests pass through to next unchanged apart from Vary: Origin.
func (p *Policy) Handler(next http.Handler) http.Handler {
	maxAge := strconv.Itoa(int(p.opts.MaxAge.Seconds()))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
		if origin == "" {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Add("Vary", "Origin")
		allowed, err := p.Allowed(r.Context(), origin)
		if err != nil {
			p.opts.Logger.ErrorContext(r.Context(), "cors: origin check failed; refusing cross-origin access", "error", err)
		}
		if preflight {
			h.Add("Vary", "Access-Control-Request-Method")
			h.Add("Vary", "Access-Control-Request-Headers")
			if allowed {
				h.Set("Access-Control-Allow-Origin", origin)
				h.Set("Access-Control-Allow-Methods", allowMethods)
				h.Set("Access-Control-Allow-Headers", allowHeaders)
				h.Set("Access-Control-Max-Age", maxAge)
			}
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if allowed {
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Expose-Headers", exposeHeaders)
		}
		next.ServeHTTP(w, r)
	})
}
