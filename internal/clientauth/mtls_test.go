package clientauth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/fhirgate/fhirgate/internal/clientauth"
	"github.com/fhirgate/fhirgate/internal/mtls"
	"github.com/fhirgate/fhirgate/internal/oauth"
	"github.com/fhirgate/fhirgate/internal/storage"
)

type certKey struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCert(t *testing.T, subject pkix.Name, parent *certKey, isCA bool) *certKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               subject,
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		BasicConstraintsValid: true,
		IsCA:                  isCA,
	}
	if isCA {
		tmpl.KeyUsage = x509.KeyUsageCertSign
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	signerCert, signerKey := tmpl, key
	if parent != nil {
		signerCert, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &certKey{cert: c, key: key}
}

func TestTLSClientAuth(t *testing.T) {
	st := newStore(t)
	ctx := context.Background()
	ca := newCert(t, pkix.Name{CommonName: "Test CA"}, nil, true)
	otherCA := newCert(t, pkix.Name{CommonName: "Other CA"}, nil, true)
	subj := pkix.Name{CommonName: "backend-1", Organization: []string{"Example, Inc."}, Country: []string{"US"}}
	good := newCert(t, subj, ca, false)
	wrongDN := newCert(t, pkix.Name{CommonName: "backend-2", Organization: []string{"Example, Inc."}, Country: []string{"US"}}, ca, false)
	untrusted := newCert(t, subj, otherCA, false)
	selfSigned := newCert(t, pkix.Name{CommonName: "self"}, nil, false)
	stranger := newCert(t, pkix.Name{CommonName: "self"}, nil, false)

	for _, c := range []storage.Client{
		{ID: "mtls", AuthMethod: string(oauth.AuthTLSClientAuth), TLSClientAuthSubjectDN: "CN=backend-1, O=Example\\, Inc., C=US"},
		{ID: "self", AuthMethod: string(oauth.AuthSelfSignedTLSClientAuth),
			JWKS: jwksJSON(t, jose.JSONWebKey{Key: &selfSigned.key.PublicKey, KeyID: "s1"})},
	} {
		c.Name = c.ID
		if err := st.CreateClient(ctx, &c); err != nil {
			t.Fatal(err)
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	a := clientauth.Authenticator{Clients: st, ClientCAs: pool}

	creds := func(id string, c *certKey) clientauth.Credentials {
		cr := clientauth.Credentials{FormID: id}
		if c != nil {
			cr.ClientCerts = []*x509.Certificate{c.cert}
		}
		return cr
	}
	if c, err := a.Authenticate(ctx, creds("mtls", good)); err != nil || c.ID != "mtls" {
		t.Fatalf("tls_client_auth: %v %v", c, err)
	}
	if c, err := a.Authenticate(ctx, creds("self", selfSigned)); err != nil || c.ID != "self" {
		t.Fatalf("self_signed: %v %v", c, err)
	}
	cases := []struct {
		name  string
		creds clientauth.Credentials
		cause error
	}{
		{"no certificate", creds("mtls", nil), clientauth.ErrNoCertificate},
		{"wrong subject", creds("mtls", wrongDN), clientauth.ErrSubjectDN},
		{"untrusted chain", creds("mtls", untrusted), clientauth.ErrCertificateChain},
		{"self-signed for tls_client_auth", creds("mtls", selfSigned), clientauth.ErrCertificateChain},
		{"self-signed: unregistered key", creds("self", stranger), clientauth.ErrCertificateKey},
		{"self-signed: no certificate", creds("self", nil), clientauth.ErrNoCertificate},
		{"secret for a certificate client", clientauth.Credentials{FormID: "mtls", HasFormSecret: true, FormSecret: "x",
			ClientCerts: []*x509.Certificate{good.cert}}, clientauth.ErrMethodMismatch},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := a.Authenticate(ctx, tc.creds)
			var oe *oauth.Error
			if c != nil || !errors.As(err, &oe) || oe.Code != oauth.InvalidClient || !errors.Is(err, tc.cause) {
				t.Fatalf("client %v err %v, want invalid_client wrapping %v", c, err, tc.cause)
			}
		})
	}
	// Without a CA pool tls_client_auth is refused, never accepted unchecked.
	a.ClientCAs = nil
	if _, err := a.Authenticate(ctx, creds("mtls", good)); !errors.Is(err, clientauth.ErrNotConfigured) {
		t.Fatal(err)
	}
}

func TestSameDN(t *testing.T) {
	same := [][2]string{
		{"CN=a,O=b,C=US", "cn=a, o=b, c=US"},
		{`CN=x\,y,O=z`, `CN=x\2cy,O=z`},
		{"CN=A", "CN=a"},
	}
	for _, p := range same {
		if !clientauth.SameDN(p[0], p[1]) {
			t.Errorf("%q vs %q: want same", p[0], p[1])
		}
	}
	diff := [][2]string{
		{"CN=a,O=b", "O=b,CN=a"},
		{"CN=a,O=b", "CN=a"},
		{"CN=a+O=b", "CN=a,O=b"},
		{"CN=a,O=b", "CN=a,O=c"},
		{"", ""},
		{"garbage", "garbage"},
		{`CN=a\`, `CN=a\`},
	}
	for _, p := range diff {
		if clientauth.SameDN(p[0], p[1]) {
			t.Errorf("%q vs %q: want different", p[0], p[1])
		}
	}
}

func FuzzSameDN(f *testing.F) {
	for _, s := range []string{"CN=a,O=b", `CN=x\,y+OU=z`, `CN=\41`, "", "=", `\`, "CN=a\\"} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		if clientauth.SameDN(a, b) != clientauth.SameDN(b, a) {
			t.Fatalf("not symmetric: %q %q", a, b)
		}
	})
}

// TestFromRequestClientCertificate: the certificate comes from the TLS
// connection (whole chain) or from a trusted proxy's header (never the
// proxy's own); a header from anyone else is refused as invalid_request.
func TestFromRequestClientCertificate(t *testing.T) {
	ca := newCert(t, pkix.Name{CommonName: "Test CA"}, nil, true)
	leaf := newCert(t, pkix.Name{CommonName: "backend-1"}, ca, false)
	proxyOwn := newCert(t, pkix.Name{CommonName: "proxy"}, nil, false)
	tp, err := mtls.ParseTrustedProxies("X-Client-Cert", []string{"10.0.0.0/8"})
	if err != nil {
		t.Fatal(err)
	}
	req := func(remote string, header *x509.Certificate, chain ...*x509.Certificate) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/par", strings.NewReader("client_id=c"))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.RemoteAddr = remote + ":5000"
		if header != nil {
			r.Header.Set("X-Client-Cert", mtls.EscapeCert(header))
		}
		if len(chain) > 0 {
			r.TLS = &tls.ConnectionState{PeerCertificates: chain}
		}
		if err := r.ParseForm(); err != nil {
			t.Fatal(err)
		}
		return r
	}
	leafOf := func(c clientauth.Credentials) *x509.Certificate {
		if len(c.ClientCerts) == 0 {
			return nil
		}
		return c.ClientCerts[0]
	}

	c, err := clientauth.FromRequest(req("192.0.2.1", nil, leaf.cert, ca.cert), tp)
	if err != nil || len(c.ClientCerts) != 2 || !leafOf(c).Equal(leaf.cert) {
		t.Fatalf("direct TLS chain: %v %v", c.ClientCerts, err)
	}
	if c, err = clientauth.FromRequest(req("10.1.2.3", leaf.cert, proxyOwn.cert), tp); err != nil || len(c.ClientCerts) != 1 || !leafOf(c).Equal(leaf.cert) {
		t.Fatalf("trusted proxy header: %v %v", c.ClientCerts, err)
	}
	if c, err = clientauth.FromRequest(req("10.1.2.3", nil, proxyOwn.cert), tp); err != nil || c.ClientCerts != nil {
		t.Fatalf("the proxy's own certificate was taken for the client's: %v %v", c.ClientCerts, err)
	}
	if c, err = clientauth.FromRequest(req("192.0.2.1", nil), tp); err != nil || c.ClientCerts != nil {
		t.Fatalf("no certificate: %v %v", c.ClientCerts, err)
	}
	for name, r := range map[string]*http.Request{
		"spoofed header from an untrusted peer":  req("192.0.2.1", leaf.cert),
		"spoofed header beside a real TLS chain": req("192.0.2.1", leaf.cert, leaf.cert),
	} {
		_, err := clientauth.FromRequest(r, tp)
		if oe := oauth.As(err); oe == nil || oe.Code != oauth.InvalidRequest || !errors.Is(err, mtls.ErrUntrustedProxy) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Without a trusted proxy list no header is ever read.
	if c, err = clientauth.FromRequest(req("10.1.2.3", leaf.cert), mtls.TrustedProxies{}); err != nil || c.ClientCerts != nil {
		t.Fatalf("header read with no trusted proxy: %v %v", c.ClientCerts, err)
	}
	bad := req("10.1.2.3", nil)
	bad.Header.Set("X-Client-Cert", "not a certificate")
	if _, err := clientauth.FromRequest(bad, tp); !errors.Is(err, mtls.ErrMalformedHeader) {
		t.Errorf("malformed header: %v", err)
	}
}
