// Package mtls supports RFC 8705 mutual-TLS client authentication and
// certificate-bound access tokens: the x5t#S256 thumbprint of a client
// certificate, the certificate of a request (from the TLS connection, or from
// a header set by a TLS-terminating front proxy whose address is explicitly
// trusted), and the tls.Config of an mTLS listener.
//
// A client-certificate header is believed only when the request's immediate
// peer (RemoteAddr) is a configured trusted proxy. From anyone else it is a
// spoofing attempt and the request is refused; a trusted proxy's own TLS
// client certificate is never taken for the client's.
package mtls

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/textproto"
	"net/url"
	"strings"
	"time"
)

// Errors. Test them with errors.Is.
var (
	// ErrNoCert: the request carries no client certificate.
	ErrNoCert = errors.New("mtls: no client certificate")
	// ErrUntrustedProxy: a client-certificate header came from a peer that
	// is not a trusted proxy.
	ErrUntrustedProxy = errors.New("mtls: client certificate header from an untrusted peer")
	// ErrMalformedHeader: the header is repeated or is not a URL-encoded PEM
	// certificate.
	ErrMalformedHeader = errors.New("mtls: malformed client certificate header")
	// ErrConfig: bad trusted proxy configuration.
	ErrConfig = errors.New("mtls: bad configuration")
	// ErrMismatch: the presented certificate is not the one a token is bound to.
	ErrMismatch = errors.New("mtls: certificate does not match the bound thumbprint")
)

// CnfKey is the confirmation member of a certificate-bound token (RFC 8705 §3.1).
const CnfKey = "x5t#S256"

// Thumbprint returns the x5t#S256 value of cert: the base64url (no padding)
// SHA-256 digest of its DER encoding.
func Thumbprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// Matches reports, in constant time, whether cert has thumbprint x5t. A nil
// cert never matches.
func Matches(cert *x509.Certificate, x5t string) bool {
	if cert == nil || x5t == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(Thumbprint(cert)), []byte(x5t)) == 1
}

// TrustedProxies names the TLS-terminating front proxies allowed to pass the
// client certificate in Header (URL-encoded PEM, as nginx's
// $ssl_client_escaped_cert). The zero value trusts nobody.
type TrustedProxies struct {
	Header   string
	Prefixes []netip.Prefix
}

// ParseTrustedProxies builds a TrustedProxies from a header name and a list
// of addresses or CIDR prefixes. A list without a header, or a header without
// a list, is a configuration error.
func ParseTrustedProxies(header string, addrs []string) (TrustedProxies, error) {
	tp := TrustedProxies{Header: textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(header))}
	if (tp.Header == "") != (len(addrs) == 0) {
		return TrustedProxies{}, fmt.Errorf("%w: a client certificate header needs a trusted proxy list, and a list needs a header", ErrConfig)
	}
	for _, a := range addrs {
		a = strings.TrimSpace(a)
		var p netip.Prefix
		var err error
		if strings.Contains(a, "/") {
			p, err = netip.ParsePrefix(a)
		} else {
			var ip netip.Addr
			ip, err = netip.ParseAddr(a)
			p = netip.PrefixFrom(ip, ip.BitLen())
		}
		if err != nil {
			return TrustedProxies{}, fmt.Errorf("%w: trusted proxy %q: %w", ErrConfig, a, err)
		}
		if p.Bits() == 0 {
			return TrustedProxies{}, fmt.Errorf("%w: trusted proxy %q trusts every address", ErrConfig, a)
		}
		tp.Prefixes = append(tp.Prefixes, p.Masked())
	}
	return tp, nil
}

// Trusts reports whether remoteAddr ("host:port" or a bare address) is a
// trusted proxy.
func (tp TrustedProxies) Trusts(remoteAddr string) bool {
	if len(tp.Prefixes) == 0 {
		return false
	}
	host := remoteAddr
	if h, _, err := net.SplitHostPort(remoteAddr); err == nil {
		host = h
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	ip = ip.Unmap().WithZone("")
	for _, p := range tp.Prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// maxHeaderCert bounds the decoded header.
const maxHeaderCert = 16 << 10

func parseHeader(v string) (*x509.Certificate, error) {
	v = strings.TrimSpace(v)
	if v == "" || v == "(null)" {
		return nil, ErrNoCert
	}
	if len(v) > 3*maxHeaderCert {
		return nil, fmt.Errorf("%w: too large", ErrMalformedHeader)
	}
	// Proxies percent-encode the PEM (nginx: space as %20, '+' kept or as
	// %2B); PathUnescape keeps a literal '+' (base64) as it is. A header
	// encoded as a query component (space as '+', '+' as %2B) is recognised
	// by its "BEGIN+CERTIFICATE" line.
	unescape := url.PathUnescape
	if strings.Contains(v, "BEGIN+CERTIFICATE") {
		unescape = url.QueryUnescape
	}
	decoded, err := unescape(v)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedHeader, err)
	}
	block, _ := pem.Decode([]byte(decoded))
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%w: no PEM certificate", ErrMalformedHeader)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedHeader, err)
	}
	return cert, nil
}

// EscapeCert returns the header form of cert (URL-encoded PEM), as a front
// proxy sends it; for tests and tooling.
func EscapeCert(cert *x509.Certificate) string {
	return url.PathEscape(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})))
}

// ListenerConfig returns a copy of base (server certificates and TLS policy,
// e.g. tlsconfig.Base) for an mTLS listener: it requests a client
// certificate without verifying it against a CA, because each client is
// checked by its own registered method (RFC 8705 §2.1 PKI subject, §2.2
// self-signed key). The handshake still proves the client holds the
// certificate's private key. A presented leaf outside its validity period
// (by now, time.Now when nil) fails the handshake.
func ListenerConfig(base *tls.Config, now func() time.Time) *tls.Config {
	if now == nil {
		now = time.Now
	}
	cfg := base.Clone()
	cfg.ClientAuth = tls.RequestClientCert
	prev := cfg.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if prev != nil {
			if err := prev(cs); err != nil {
				return err
			}
		}
		if len(cs.PeerCertificates) == 0 {
			return nil
		}
		leaf := cs.PeerCertificates[0]
		t := now()
		if t.Before(leaf.NotBefore) || t.After(leaf.NotAfter) {
			return fmt.Errorf("mtls: client certificate not valid at %s", t.UTC().Format(time.RFC3339))
		}
		return nil
	}
	return cfg
}
