// Package httpx holds the small HTTP helpers shared by fhirgate's handlers:
// JSON and OAuth error responses, security headers and client addresses.
package httpx

import (
	"encoding/json"
	"errors"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"

	"github.com/fhirgate/fhirgate/internal/oauth"
)

// WriteJSON writes v as a JSON response with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// NoStore marks a response as uncacheable (RFC 6749 §5.1).
func NoStore(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
}

// errorBody is the RFC 6749 §5.2 error response.
type errorBody struct {
	Error            oauth.ErrorCode `json:"error"`
	ErrorDescription string          `json:"error_description,omitempty"`
}

// WriteOAuthError renders err as an RFC 6749 JSON error with no-store headers.
// Only the client-visible description is sent; the cause is logged.
// invalid_client answered to HTTP Basic gets a WWW-Authenticate challenge.
func WriteOAuthError(w http.ResponseWriter, r *http.Request, logger *slog.Logger, err error) {
	oe := oauth.As(err)
	if logger != nil {
		level := slog.LevelInfo
		if oe.Code == oauth.ServerError || oe.Code == oauth.TemporarilyUnavailable {
			level = slog.LevelError
		}
		logger.LogAttrs(r.Context(), level, "oauth error",
			slog.String("path", r.URL.Path),
			slog.String("error", string(oe.Code)),
			slog.String("description", oe.Description),
			slog.Any("cause", oe.Cause))
	}
	NoStore(w)
	if oe.Code == oauth.InvalidClient {
		if _, _, ok := r.BasicAuth(); ok {
			w.Header().Set("WWW-Authenticate", `Basic realm="fhirgate"`)
		}
	}
	WriteJSON(w, oe.Status(), errorBody{Error: oe.Code, ErrorDescription: oe.Description})
}

// ErrBodyTooLarge is returned by ParseForm when a form exceeds MaxFormBytes.
var ErrBodyTooLarge = errors.New("httpx: request body too large")

// MaxFormBytes bounds every form body fhirgate parses.
const MaxFormBytes = 64 << 10

// ParseForm parses r's form with a body size limit.
func ParseForm(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, MaxFormBytes)
	if err := r.ParseForm(); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return ErrBodyTooLarge
		}
		return err
	}
	return nil
}

// ClientIP returns the connection's remote IP. Forwarded headers are not
// trusted here; a deployment behind a proxy configures that explicitly.
func ClientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// IsLoopbackHost reports whether host (an IP literal or "localhost", without
// port) names the loopback interface.
func IsLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// PageSecurityHeaders sets the headers every HTML page carries: a strict CSP
// that forbids inline script and framing, no referrer, no sniffing, no caching.
// formAction lists extra origins forms (and the redirects that follow their
// submission) may target, such as a client's redirect URI origin.
func PageSecurityHeaders(w http.ResponseWriter, formAction ...string) {
	fa := "'self'"
	for _, o := range formAction {
		fa += " " + o
	}
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' https: data:; form-action "+fa+"; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
}

// ParseOAuthForm parses the body of an OAuth endpoint request (token,
// PAR, revocation, introspection): the Content-Type must be
// application/x-www-form-urlencoded, the body at most MaxFormBytes, and no
// parameter may be repeated (RFC 6749 §3.2). Refusals are invalid_request.
func ParseOAuthForm(w http.ResponseWriter, r *http.Request) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return oauth.Errorf(oauth.InvalidRequest, "Content-Type must be application/x-www-form-urlencoded")
	}
	if err := ParseForm(w, r); err != nil {
		if errors.Is(err, ErrBodyTooLarge) {
			return oauth.Wrap(oauth.InvalidRequest, "request body too large", err)
		}
		return oauth.Wrap(oauth.InvalidRequest, "malformed form body", err)
	}
	for name, vs := range r.PostForm {
		if len(vs) > 1 {
			return oauth.Errorf(oauth.InvalidRequest, "parameter %q repeated", name)
		}
	}
	return nil
}
