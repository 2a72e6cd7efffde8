package clientauth

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	"github.com/go-jose/go-jose/v4"

	"github.com/fhirgate/fhirgate/internal/oauth"
	"github.com/fhirgate/fhirgate/internal/storage"
)

// Certificate authentication failure causes (RFC 8705 §2).
var (
	ErrNoCertificate    = errors.New("clientauth: no TLS client certificate")
	ErrCertificateChain = errors.New("clientauth: client certificate chain not trusted")
	ErrSubjectDN        = errors.New("clientauth: client certificate subject does not match the registration")
	ErrCertificateKey   = errors.New("clientauth: client certificate key is not registered")
)

// verifyTLSClientAuth implements tls_client_auth (RFC 8705 §2.1): the chain
// verifies against ClientCAs for client authentication, and the leaf's
// subject DN equals the registered tls_client_auth_subject_dn.
func (a Authenticator) verifyTLSClientAuth(client *storage.Client, certs []*x509.Certificate) error {
	if a.ClientCAs == nil {
		return oauth.Wrap(oauth.InvalidClient, "tls_client_auth is not enabled on this server",
			fmt.Errorf("%w: no client CA pool", ErrNotConfigured))
	}
	if len(certs) == 0 || certs[0] == nil {
		return refuse(ErrNoCertificate)
	}
	leaf := certs[0]
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:         a.ClientCAs,
		Intermediates: inter,
		CurrentTime:   a.now(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return refuse(fmt.Errorf("%w: %w", ErrCertificateChain, err))
	}
	if client.TLSClientAuthSubjectDN == "" || !SameDN(leaf.Subject.String(), client.TLSClientAuthSubjectDN) {
		return refuse(fmt.Errorf("%w: presented %q", ErrSubjectDN, leaf.Subject.String()))
	}
	return nil
}

// verifySelfSigned implements self_signed_tls_client_auth (RFC 8705 §2.2):
// the leaf's public key must be one of the client's registered keys (its
// jwks, or the set at its jwks_uri, refreshed once on a miss). The chain is
// not validated.
func (a Authenticator) verifySelfSigned(ctx context.Context, client *storage.Client, certs []*x509.Certificate) error {
	if len(certs) == 0 || certs[0] == nil {
		return refuse(ErrNoCertificate)
	}
	leaf := certs[0]
	if now := a.now(); now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return refuse(fmt.Errorf("%w: outside its validity period", ErrCertificateKey))
	}
	want, err := x509.MarshalPKIXPublicKey(leaf.PublicKey)
	if err != nil {
		return refuse(fmt.Errorf("%w: %w", ErrCertificateKey, err))
	}
	set, err := a.clientKeys(ctx, client)
	if err != nil {
		return err
	}
	if hasKey(set, want) {
		return nil
	}
	if client.JWKSURI != "" && a.JWKS != nil {
		if set, refreshed, err := a.JWKS.Refresh(ctx, client.JWKSURI); err == nil && refreshed && hasKey(set, want) {
			return nil
		}
	}
	return refuse(ErrCertificateKey)
}

func hasKey(set *jose.JSONWebKeySet, spki []byte) bool {
	if set == nil {
		return false
	}
	for _, k := range set.Keys {
		if der, err := x509.MarshalPKIXPublicKey(k.Key); err == nil && bytes.Equal(der, spki) {
			return true
		}
	}
	return false
}

// SameDN reports whether two RFC 4514 distinguished name strings name the
// same subject: the same attributes in the same order, attribute types
// compared case-insensitively, values compared case-insensitively after
// unescaping and trimming.
func SameDN(a, b string) bool {
	x, okx := parseDN(a)
	y, oky := parseDN(b)
	if !okx || !oky || len(x) != len(y) || len(x) == 0 {
		return false
	}
	for i := range x {
		if !strings.EqualFold(x[i][0], y[i][0]) || !strings.EqualFold(x[i][1], y[i][1]) || x[i][2] != y[i][2] {
			return false
		}
	}
	return true
}

// parseDN splits an RFC 4514 string into (type, value, separator) triples,
// where separator is "," or "+" (multi-valued RDN) for all but the last.
func parseDN(s string) ([][3]string, bool) {
	var out [][3]string
	var cur strings.Builder
	var typ string
	inValue := false
	flush := func(sep string) bool {
		if !inValue {
			return false
		}
		out = append(out, [3]string{strings.TrimSpace(typ), strings.TrimSpace(cur.String()), sep})
		cur.Reset()
		typ, inValue = "", false
		return true
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == '\\':
			if i+1 >= len(s) {
				return nil, false
			}
			if i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
				cur.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
				i += 2
			} else {
				cur.WriteByte(s[i+1])
				i++
			}
		case ch == '=' && !inValue:
			typ, inValue = cur.String(), true
			cur.Reset()
		case (ch == ',' || ch == '+') && inValue:
			if !flush(string(ch)) {
				return nil, false
			}
		default:
			cur.WriteByte(ch)
		}
	}
	if !flush("") {
		return nil, false
	}
	return out, true
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}
