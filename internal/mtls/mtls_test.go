package mtls_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/mtls"
)

// testCert makes a client certificate signed by ca (self-signed when ca is nil).
func testCert(t *testing.T, cn string, ca *tls.Certificate, notBefore, notAfter time.Time) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		IsCA:                  ca == nil,
		BasicConstraintsValid: true,
	}
	parent, signer := tmpl, any(key)
	if ca != nil {
		parent = ca.Leaf
		signer = ca.PrivateKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func valid(t *testing.T, cn string) tls.Certificate {
	return testCert(t, cn, nil, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
}

func TestThumbprint(t *testing.T) {
	c := valid(t, "client")
	sum := sha256.Sum256(c.Leaf.Raw)
	want := base64.RawURLEncoding.EncodeToString(sum[:])
	if got := mtls.Thumbprint(c.Leaf); got != want || strings.ContainsAny(got, "=+/") {
		t.Fatalf("Thumbprint = %s, want %s", got, want)
	}
	other := valid(t, "other")
	if !mtls.Matches(c.Leaf, want) || mtls.Matches(other.Leaf, want) || mtls.Matches(nil, want) || mtls.Matches(c.Leaf, "") {
		t.Fatal("Matches wrong")
	}
}

func TestParseTrustedProxies(t *testing.T) {
	tp, err := mtls.ParseTrustedProxies("x-client-cert", []string{"10.0.0.0/8", "192.0.2.7", "2001:db8::/32"})
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]bool{
		"10.1.2.3:5555": true, "192.0.2.7:1": true, "192.0.2.8:1": false, "[2001:db8::1]:443": true,
		"[::ffff:10.0.0.1]:80": true, "127.0.0.1:80": false, "garbage": false, "": false, "10.0.0.1": true,
	} {
		if got := tp.Trusts(addr); got != want {
			t.Errorf("Trusts(%q) = %v, want %v", addr, got, want)
		}
	}
	if tp.Header != "X-Client-Cert" {
		t.Fatalf("Header = %q", tp.Header)
	}
	for _, bad := range []struct {
		h     string
		addrs []string
	}{
		{"X-Client-Cert", nil}, {"", []string{"10.0.0.1"}}, {"X-Client-Cert", []string{"0.0.0.0/0"}},
		{"X-Client-Cert", []string{"::/0"}}, {"X-Client-Cert", []string{"not-an-ip"}},
	} {
		if _, err := mtls.ParseTrustedProxies(bad.h, bad.addrs); !errors.Is(err, mtls.ErrConfig) {
			t.Errorf("ParseTrustedProxies(%q, %v) err = %v", bad.h, bad.addrs, err)
		}
	}
	if (mtls.TrustedProxies{}).Trusts("127.0.0.1:1") {
		t.Fatal("zero value trusts")
	}
}

func TestClientCertFromHeader(t *testing.T) {
	c := valid(t, "client")
	tp, _ := mtls.ParseTrustedProxies("X-Client-Cert", []string{"10.0.0.5"})
	req := func(remote string, hdr ...string) *http.Request {
		r := httptest.NewRequest("POST", "https://as.example.org/token", nil)
		r.RemoteAddr = remote
		for _, h := range hdr {
			r.Header.Add("X-Client-Cert", h)
		}
		return r
	}
	got, err := mtls.ClientCert(req("10.0.0.5:4000", mtls.EscapeCert(c.Leaf)), tp)
	if err != nil || mtls.Thumbprint(got) != mtls.Thumbprint(c.Leaf) {
		t.Fatalf("trusted proxy: %v", err)
	}
	// Query-component escaping (space as '+', '+' as %2B) also parses.
	raw, _ := url.PathUnescape(mtls.EscapeCert(c.Leaf))
	if got, err := mtls.ClientCert(req("10.0.0.5:4000", url.QueryEscape(raw)), tp); err != nil || !mtls.Matches(got, mtls.Thumbprint(c.Leaf)) {
		t.Fatalf("query-escaped: %v", err)
	}
	// Spoofed header from an untrusted address: refused.
	if _, err := mtls.ClientCert(req("203.0.113.9:4000", mtls.EscapeCert(c.Leaf)), tp); !errors.Is(err, mtls.ErrUntrustedProxy) {
		t.Fatalf("spoofed header: %v", err)
	}
	// Header configured but nobody trusted: still refused.
	if _, err := mtls.ClientCert(req("10.0.0.5:4000", mtls.EscapeCert(c.Leaf)), mtls.TrustedProxies{Header: "X-Client-Cert"}); !errors.Is(err, mtls.ErrUntrustedProxy) {
		t.Fatalf("no trusted proxies: %v", err)
	}
	for name, tc := range map[string]struct {
		hdr  []string
		want error
	}{
		"absent":   {nil, mtls.ErrNoCert},
		"empty":    {[]string{""}, mtls.ErrNoCert},
		"null":     {[]string{"(null)"}, mtls.ErrNoCert},
		"repeated": {[]string{mtls.EscapeCert(c.Leaf), mtls.EscapeCert(c.Leaf)}, mtls.ErrMalformedHeader},
		"not pem":  {[]string{"hello"}, mtls.ErrMalformedHeader},
		"bad esc":  {[]string{"%zz"}, mtls.ErrMalformedHeader},
		"bad der":  {[]string{url.QueryEscape("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")}, mtls.ErrMalformedHeader},
		"key pem":  {[]string{url.QueryEscape("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")}, mtls.ErrMalformedHeader},
	} {
		if _, err := mtls.ClientCert(req("10.0.0.5:1", tc.hdr...), tp); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", name, err, tc.want)
		}
	}
}

// TestListener runs a real mTLS listener: the client certificate reaches the
// handler, a missing certificate is ErrNoCert, an expired one fails the
// handshake, a trusted proxy's own certificate is never taken for the
// client's, and a spoofed header over direct TLS is refused.
func TestListener(t *testing.T) {
	client := valid(t, "client")
	proxyCert := valid(t, "proxy")
	expired := testCert(t, "old", nil, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
	var tp mtls.TrustedProxies
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cert, err := mtls.ClientCert(r, tp)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		io.WriteString(w, mtls.Thumbprint(cert))
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the expired-cert handshake failure
	srv.TLS = mtls.ListenerConfig(&tls.Config{MinVersion: tls.VersionTLS12}, nil)
	srv.StartTLS()
	defer srv.Close()

	call := func(cert *tls.Certificate, hdr string) (int, string, error) {
		tr := srv.Client().Transport.(*http.Transport).Clone()
		if cert != nil {
			tr.TLSClientConfig.Certificates = []tls.Certificate{*cert}
		}
		req, _ := http.NewRequest("GET", srv.URL, nil)
		if hdr != "" {
			req.Header.Set("X-Client-Cert", hdr)
		}
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}

	code, body, err := call(&client, "")
	if err != nil || code != 200 || body != mtls.Thumbprint(client.Leaf) {
		t.Fatalf("with cert: %d %q %v", code, body, err)
	}
	if code, body, _ := call(nil, ""); code != 401 || !strings.Contains(body, "no client certificate") {
		t.Fatalf("without cert: %d %q", code, body)
	}
	if _, _, err := call(&expired, ""); err == nil {
		t.Fatal("expired certificate accepted")
	}

	// A spoofed header on a direct connection from an untrusted peer.
	tp, _ = mtls.ParseTrustedProxies("X-Client-Cert", []string{"192.0.2.1"})
	if code, body, _ := call(&proxyCert, mtls.EscapeCert(client.Leaf)); code != 401 || !strings.Contains(body, "untrusted") {
		t.Fatalf("spoofed header: %d %q", code, body)
	}
	// From a trusted proxy, its own certificate is not the client's.
	tp, _ = mtls.ParseTrustedProxies("X-Client-Cert", []string{"127.0.0.1", "::1"})
	if code, body, _ := call(&proxyCert, ""); code != 401 || !strings.Contains(body, "no client certificate") {
		t.Fatalf("proxy's own cert: %d %q", code, body)
	}
	if code, body, _ := call(&proxyCert, mtls.EscapeCert(client.Leaf)); code != 200 || body != mtls.Thumbprint(client.Leaf) {
		t.Fatalf("trusted proxy header: %d %q", code, body)
	}
}
