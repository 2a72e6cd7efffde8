package dpop

import (
	"crypto/subtle"
	"fmt"
	"net/http"
	"strings"
)

// Header is the request header carrying a proof and NonceHeader the response
// header carrying a server nonce (RFC 9449 §4.1, §8).
const (
	Header      = "DPoP"
	NonceHeader = "DPoP-Nonce"
)

// FromHeader returns the DPoP proof of a request: "" when there is none,
// ErrMultiple when the header is repeated or holds several values.
func FromHeader(h http.Header) (string, error) {
	vs := h.Values(Header)
	switch len(vs) {
	case 0:
		return "", nil
	case 1:
		v := strings.TrimSpace(vs[0])
		if strings.Contains(v, ",") {
			return "", ErrMultiple
		}
		return v, nil
	}
	return "", ErrMultiple
}

// GatewayVerifier adapts a Verifier to a resource server that already holds
// the access token and its cnf.jkt (the gateway's ProofVerifier, /userinfo).
type GatewayVerifier struct {
	Verifier *Verifier
}

// Verify checks the DPoP proof of r for accessToken and requires it to be
// signed by the key with thumbprint jkt. r.URL must be the absolute public
// URL the client called. Errors are those of Verifier.Verify and
// ErrKeyMismatch; a *NonceError asks for a retry with a server nonce.
func (g GatewayVerifier) Verify(r *http.Request, accessToken, jkt string) error {
	if g.Verifier == nil {
		return fmt.Errorf("%w: no verifier", ErrUnavailable)
	}
	if accessToken == "" || jkt == "" {
		return fmt.Errorf("%w: access token and bound key required", ErrInvalid)
	}
	proof, err := FromHeader(r.Header)
	if err != nil {
		return err
	}
	p, err := g.Verifier.Verify(r.Context(), proof, r.Method, r.URL, accessToken)
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare([]byte(p.JKT), []byte(jkt)) != 1 {
		return ErrKeyMismatch
	}
	return nil
}

// AllowedAlgs returns the algorithms the wrapped Verifier accepts (none
// without a Verifier).
func (g GatewayVerifier) AllowedAlgs() []string {
	if g.Verifier == nil {
		return nil
	}
	return g.Verifier.AllowedAlgs()
}

// Challenge returns a WWW-Authenticate value for the DPoP scheme (RFC 9449
// §7.1): realm, the error code and description when code is not empty, and
// the accepted algorithms.
func (v *Verifier) Challenge(realm, code, description string) string {
	var b strings.Builder
	b.WriteString("DPoP")
	sep := " "
	add := func(k, val string) {
		b.WriteString(sep + k + `="` + quoteSafe(val) + `"`)
		sep = ", "
	}
	if realm != "" {
		add("realm", realm)
	}
	if code != "" {
		add("error", code)
		if description != "" {
			add("error_description", description)
		}
	}
	add("algs", strings.Join(v.AllowedAlgs(), " "))
	return b.String()
}

// quoteSafe drops the characters RFC 6750 §3 excludes from quoted values.
func quoteSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			return -1
		}
		return r
	}, s)
}
