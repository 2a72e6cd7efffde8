package gateway

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/mtls"
	"github.com/fhirgate/fhirgate/internal/token"
)

// testCert returns a fresh self-signed client certificate.
func testCert(t *testing.T, cn string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestCertificateBoundTokenBehindProxy: the certificate of a bound token may
// come from a trusted TLS-terminating proxy's header; the same header from
// anyone else is refused, and the proxy's own certificate never counts.
func TestCertificateBoundTokenBehindProxy(t *testing.T) {
	tp, err := mtls.ParseTrustedProxies("X-Client-Cert", []string{"10.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, fixtureOpts{proxies: tp})
	cert, other := testCert(t, "app"), testCert(t, "other")
	tok, _ := f.token(patientAll, patientA, func(c *token.AccessClaims) {
		c.Cnf = map[string]string{mtls.CnfKey: mtls.Thumbprint(cert)}
	})
	call := func(remote string, header, peer *x509.Certificate) int {
		req := httptest.NewRequest("GET", "/fhir/Patient/"+patientA, nil)
		req.RemoteAddr = remote + ":4431"
		req.Header.Set("Authorization", bearer(tok))
		if header != nil {
			req.Header.Set("X-Client-Cert", mtls.EscapeCert(header))
		}
		if peer != nil {
			req.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{peer}}
		}
		rec := httptest.NewRecorder()
		f.h.ServeHTTP(rec, req)
		return rec.Code
	}
	for _, c := range []struct {
		name         string
		remote       string
		header, peer *x509.Certificate
		want         int
	}{
		{"same certificate through the trusted proxy", "10.0.0.1", cert, nil, http.StatusOK},
		{"same certificate on the direct connection", "192.0.2.7", nil, cert, http.StatusOK},
		{"another certificate through the proxy", "10.0.0.1", other, nil, http.StatusUnauthorized},
		{"no certificate through the proxy", "10.0.0.1", nil, nil, http.StatusUnauthorized},
		{"proxy's own TLS certificate is not the client's", "10.0.0.1", nil, cert, http.StatusUnauthorized},
		{"spoofed header from an untrusted address", "192.0.2.7", cert, nil, http.StatusBadRequest},
		{"spoofed header beside the right TLS certificate", "192.0.2.7", cert, cert, http.StatusBadRequest},
	} {
		if got := call(c.remote, c.header, c.peer); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
}

// TestDPoPChallengeAlgs: the algs of the DPoP challenge are the verifier's.
func TestDPoPChallengeAlgs(t *testing.T) {
	f := newFixture(t, fixtureOpts{dpop: &fakeDPoP{seen: map[string]bool{}}})
	r := f.do("GET", "/Patient/"+patientA, "", "")
	var dpopCh string
	for _, v := range r.header.Values("WWW-Authenticate") {
		if strings.HasPrefix(v, "DPoP ") {
			dpopCh = v
		}
	}
	if !strings.Contains(dpopCh, `algs="ES256 EdDSA"`) {
		t.Fatalf("DPoP challenge %q does not list the verifier's algs", dpopCh)
	}
	// Without a verifier the DPoP scheme is not offered at all.
	g := newFixture(t, fixtureOpts{})
	for _, v := range g.do("GET", "/Patient/"+patientA, "", "").header.Values("WWW-Authenticate") {
		if strings.HasPrefix(v, "DPoP ") {
			t.Fatalf("DPoP offered without a verifier: %q", v)
		}
	}
}
