package mtls

import (
	"crypto/x509"
	"fmt"
	"net/http"
)

// ClientCert returns the client certificate of r. From a trusted proxy
// (r.RemoteAddr in trusted), only the configured header counts: absent or
// empty is ErrNoCert. From any other peer, the header must be absent
// (ErrUntrustedProxy otherwise) and the certificate is the leaf of the TLS
// connection (ErrNoCert without one).
func ClientCert(r *http.Request, trusted TrustedProxies) (*x509.Certificate, error) {
	var values []string
	if trusted.Header != "" {
		values = r.Header.Values(trusted.Header)
	}
	if trusted.Header != "" && trusted.Trusts(r.RemoteAddr) {
		switch len(values) {
		case 0:
			return nil, ErrNoCert
		case 1:
			return parseHeader(values[0])
		}
		return nil, fmt.Errorf("%w: header repeated", ErrMalformedHeader)
	}
	if len(values) > 0 {
		return nil, fmt.Errorf("%w: %s from %s", ErrUntrustedProxy, trusted.Header, r.RemoteAddr)
	}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil, ErrNoCert
	}
	return r.TLS.PeerCertificates[0], nil
}
