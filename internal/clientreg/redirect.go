package clientreg

import (
	"net/netip"
	"net/url"
	"strings"
	"unicode"

	"github.com/fhirgate/fhirgate/internal/oauth"
)

// MaxURILength bounds every URI a client registers.
const MaxURILength = 2000

// forbiddenScheme reports whether scheme must never receive an authorization
// response: it runs script, embeds content, or reaches local resources.
func forbiddenScheme(scheme string) bool {
	switch scheme {
	case "javascript", "vbscript", "data", "file", "blob", "about", "filesystem",
		"view-source", "ftp", "ws", "wss", "mailto":
		return true
	}
	return false
}

// ValidateRedirectURI checks one redirect URI against fhirgate's rules and
// returns an *oauth.Error with code invalid_redirect_uri describing the first
// rule it breaks. Accepted are:
//
//   - https URIs with a host;
//   - http URIs whose host is a loopback IP literal (127.0.0.0/8 or [::1]),
//     with any port (RFC 8252 §7.3); "localhost" is refused because RFC 8252
//     §8.3 recommends IP literals, which cannot be redirected by a resolver
//     or a firewall rule;
//   - private-use URI schemes in reverse-DNS form, such as
//     com.example.app:/callback, for native apps (RFC 8252 §7.1).
//
// Every URI must be absolute and must not carry a fragment (RFC 6749 §3.1.2),
// a wildcard or userinfo. Redirect URIs are later compared by exact string
// match, so no normalisation is applied.
func ValidateRedirectURI(raw string) error {
	fail := func(format string, args ...any) error {
		return oauth.Errorf(oauth.InvalidRedirectURI, "redirect URI %q: "+format, append([]any{truncate(raw)}, args...)...)
	}
	if raw == "" {
		return oauth.Errorf(oauth.InvalidRedirectURI, "redirect URI must not be empty")
	}
	if len(raw) > MaxURILength {
		return oauth.Errorf(oauth.InvalidRedirectURI, "redirect URI is longer than %d characters", MaxURILength)
	}
	for _, r := range raw {
		if r > unicode.MaxASCII || unicode.IsSpace(r) || unicode.IsControl(r) {
			return fail("must contain only printable ASCII characters without spaces")
		}
	}
	if strings.Contains(raw, "#") {
		return fail("must not contain a fragment (RFC 6749 §3.1.2)")
	}
	if strings.Contains(raw, "*") {
		return fail("must not contain a wildcard: register each exact URI")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fail("is not a valid URI")
	}
	if !u.IsAbs() {
		return fail("must be an absolute URI with a scheme")
	}
	if u.User != nil {
		return fail("must not contain user information")
	}
	scheme := u.Scheme // url.Parse lower-cases it
	switch {
	case forbiddenScheme(scheme):
		return fail("the %s: scheme is not allowed", scheme)
	case scheme == "https":
		if u.Opaque != "" || u.Hostname() == "" {
			return fail("https URIs must name a host")
		}
		return nil
	case scheme == "http":
		return validateHTTPLoopback(u, fail)
	case strings.Contains(scheme, "."):
		// Private-use scheme for native apps (RFC 8252 §7.1), e.g.
		// com.example.app:/oauth2redirect.
		if u.Path == "" && u.Opaque == "" && u.Host == "" {
			return fail("a private-use scheme URI needs a path, e.g. %s:/callback", scheme)
		}
		return nil
	default:
		return fail("use https, http on a loopback IP literal, or a reverse-DNS private-use scheme such as com.example.app:/callback for native apps (RFC 8252 §7.1)")
	}
}

// validateHTTPLoopback accepts an http URI only when its host is a loopback
// IP literal (RFC 8252 §7.3); any port is allowed.
func validateHTTPLoopback(u *url.URL, fail func(string, ...any) error) error {
	if u.Opaque != "" {
		return fail("http URIs must name a host")
	}
	host := u.Hostname()
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return fail("http is allowed only on a loopback IP literal: use http://127.0.0.1 or http://[::1] instead of localhost (RFC 8252 §8.3)")
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || ip.Zone() != "" || !isLoopbackLiteral(ip) {
		return fail("http is allowed only on a loopback IP literal (127.0.0.1 or [::1], RFC 8252 §7.3); use https")
	}
	return nil
}

// isLoopbackLiteral reports whether ip is in 127.0.0.0/8 or is ::1. IPv4-mapped
// IPv6 forms are refused so that one address has one spelling.
func isLoopbackLiteral(ip netip.Addr) bool {
	if ip.Is4() {
		return ip.IsLoopback()
	}
	return ip == netip.IPv6Loopback()
}

// truncate shortens s for use in an error description.
func truncate(s string) string {
	const limit = 120
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "…"
}
