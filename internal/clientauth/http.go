package clientauth

import (
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/fhirgate/fhirgate/internal/mtls"
	"github.com/fhirgate/fhirgate/internal/oauth"
)

// ErrMalformedBasic is the cause when an Authorization: Basic header cannot
// be decoded.
var ErrMalformedBasic = errors.New("clientauth: malformed Basic authorization header")

// FromRequest extracts Credentials from a request to /token, /par, /revoke
// or /introspect whose form has already been parsed (r.PostForm). The Basic
// header's id and secret are form-urlencoded before base64 (RFC 6749 §2.3.1)
// and are decoded here; a repeated client parameter is an invalid_request, a
// malformed header invalid_client.
//
// The client certificate comes from mtls.ClientCert with trusted: the chain
// of the TLS connection, or, from a trusted TLS-terminating proxy, the
// certificate in its header (never the proxy's own). A certificate header
// from any other peer, or a malformed one, is an invalid_request.
func FromRequest(r *http.Request, trusted mtls.TrustedProxies) (Credentials, error) {
	var c Credentials
	for _, name := range []string{"client_id", "client_secret", "client_assertion", "client_assertion_type"} {
		if len(r.PostForm[name]) > 1 {
			return c, oauth.Errorf(oauth.InvalidRequest, "parameter %s repeated", name)
		}
	}
	c.FormID = r.PostForm.Get("client_id")
	_, c.HasFormSecret = r.PostForm["client_secret"]
	c.FormSecret = r.PostForm.Get("client_secret")
	_, a := r.PostForm["client_assertion"]
	_, at := r.PostForm["client_assertion_type"]
	c.HasAssertion = a || at
	c.Assertion = r.PostForm.Get("client_assertion")
	c.AssertionType = r.PostForm.Get("client_assertion_type")
	switch cert, err := mtls.ClientCert(r, trusted); {
	case errors.Is(err, mtls.ErrNoCert):
	case err != nil:
		return c, oauth.Wrap(oauth.InvalidRequest, "unacceptable client certificate header", err)
	case trusted.Trusts(r.RemoteAddr):
		c.ClientCerts = []*x509.Certificate{cert}
	default: // the connection's own chain, leaf first (intermediates for tls_client_auth)
		c.ClientCerts = r.TLS.PeerCertificates
	}

	values := r.Header.Values("Authorization")
	if len(values) == 0 {
		return c, nil
	}
	if len(values) > 1 {
		return c, oauth.Errorf(oauth.InvalidRequest, "Authorization header repeated")
	}
	scheme, payload, _ := strings.Cut(values[0], " ")
	if !strings.EqualFold(scheme, "Basic") {
		return c, oauth.Wrap(oauth.InvalidClient, "unsupported Authorization scheme", ErrMalformedBasic)
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(payload))
	if err != nil {
		return c, oauth.Wrap(oauth.InvalidClient, "malformed Basic authorization header", fmt.Errorf("%w: %w", ErrMalformedBasic, err))
	}
	id, sec, ok := strings.Cut(string(raw), ":")
	if !ok {
		return c, oauth.Wrap(oauth.InvalidClient, "malformed Basic authorization header", ErrMalformedBasic)
	}
	// The unescape error quotes part of its input (maybe of the secret), so
	// it is not kept as the cause.
	if c.BasicID, err = url.QueryUnescape(id); err != nil {
		return c, oauth.Wrap(oauth.InvalidClient, "malformed Basic authorization header", fmt.Errorf("%w: bad escape in client id", ErrMalformedBasic))
	}
	if c.BasicSecret, err = url.QueryUnescape(sec); err != nil {
		return c, oauth.Wrap(oauth.InvalidClient, "malformed Basic authorization header", fmt.Errorf("%w: bad escape in client secret", ErrMalformedBasic))
	}
	c.HasBasic = true
	return c, nil
}
