package authorize

import (
	"net/url"
	"strings"

	"github.com/fhirgate/fhirgate/internal/oauth"
)

// matchRedirectURI returns the redirect URI to use for a request that sent
// got (possibly empty) to a client that registered registered. URIs match
// byte for byte; the only exception is the port of an http loopback IP
// literal (RFC 8252 §7.3). An omitted redirect_uri is allowed only when
// exactly one is registered.
func matchRedirectURI(registered []string, got string) (string, bool) {
	if got == "" {
		if len(registered) == 1 {
			return registered[0], true
		}
		return "", false
	}
	if strings.ContainsRune(got, '#') {
		return "", false
	}
	for _, r := range registered {
		if r == got {
			return got, true
		}
	}
	gotBase, ok := stripLoopbackPort(got)
	if !ok {
		return "", false
	}
	for _, r := range registered {
		if rb, ok := stripLoopbackPort(r); ok && rb == gotBase {
			return got, true
		}
	}
	return "", false
}

// stripLoopbackPort removes the port from an http URI on 127.0.0.1 or [::1].
// It reports false for anything else ("localhost" included: RFC 8252 §8.3).
func stripLoopbackPort(s string) (string, bool) {
	for _, prefix := range []string{"http://127.0.0.1", "http://[::1]"} {
		rest, ok := strings.CutPrefix(s, prefix)
		if !ok {
			continue
		}
		if strings.HasPrefix(rest, ":") {
			i := 1
			for i < len(rest) && i <= 6 && rest[i] >= '0' && rest[i] <= '9' {
				i++
			}
			if i == 1 || i > 6 {
				return "", false
			}
			rest = rest[i:]
		}
		if rest != "" && rest[0] != '/' && rest[0] != '?' {
			return "", false // e.g. http://127.0.0.1.evil.example/
		}
		return prefix + rest, true
	}
	return "", false
}

// appendQuery adds params to the query of redirectURI, keeping the
// parameters already there byte for byte.
func appendQuery(redirectURI string, params [][2]string) string {
	var b strings.Builder
	b.WriteString(redirectURI)
	sep := "?"
	if strings.Contains(redirectURI, "?") {
		sep = "&"
		if strings.HasSuffix(redirectURI, "?") || strings.HasSuffix(redirectURI, "&") {
			sep = ""
		}
	}
	for _, p := range params {
		if p[1] == "" {
			continue
		}
		b.WriteString(sep)
		b.WriteString(url.QueryEscape(p[0]))
		b.WriteByte('=')
		b.WriteString(url.QueryEscape(p[1]))
		sep = "&"
	}
	return b.String()
}

// successURL is the redirect carrying a code (RFC 6749 §4.1.2, RFC 9207).
func (h *Handler) successURL(redirectURI, code, state string) string {
	return appendQuery(redirectURI, [][2]string{{"code", code}, {"state", state}, {"iss", h.opts.Issuer}})
}

// errorURL is the redirect carrying an error (RFC 6749 §4.1.2.1, RFC 9207).
func (h *Handler) errorURL(redirectURI, state string, e *oauth.Error) string {
	return appendQuery(redirectURI, [][2]string{{"error", string(e.Code)}, {"error_description", e.Description},
		{"state", state}, {"iss", h.opts.Issuer}})
}

// cspOrigin is the CSP source expression for the origin of a redirect URI,
// so form-action lets the post-submit redirect through.
func cspOrigin(redirectURI string) string {
	u, err := url.Parse(redirectURI)
	if err != nil || u.Scheme == "" {
		return ""
	}
	if u.Scheme == "http" || u.Scheme == "https" {
		if u.Host == "" || strings.ContainsAny(u.Host, " ;,'") {
			return ""
		}
		return u.Scheme + "://" + u.Host
	}
	return u.Scheme + ":" // private-use scheme of a native app
}
