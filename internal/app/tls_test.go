package app

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/devcerts"
)

// TestTLSListenerHSTS serves over TLS with a development certificate: HSTS
// on every response, TLS 1.1 refused, and the derived issuer is https.
func TestTLSListenerHSTS(t *testing.T) {
	dir := t.TempDir()
	files, err := devcerts.Generate(dir, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, map[string]string{"tls.cert_file": files.Cert, "tls.key_file": files.Key})
	if !strings.HasPrefix(srv.app.Issuer(), "https://127.0.0.1:") || !strings.HasPrefix(srv.app.URL(), "https://") {
		t.Fatalf("issuer %s url %s", srv.app.Issuer(), srv.app.URL())
	}
	caPEM, err := os.ReadFile(filepath.Clean(files.CA))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Get(srv.app.URL() + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Strict-Transport-Security") == "" {
		t.Fatalf("status %d HSTS %q", resp.StatusCode, resp.Header.Get("Strict-Transport-Security"))
	}
	old := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS11}}}
	if resp, err := old.Get(srv.app.URL() + "/jwks"); err == nil {
		resp.Body.Close()
		t.Fatal("TLS 1.1 handshake accepted")
	}
}

// TestPlainHTTPHasNoHSTS: HSTS is never sent over plain http (RFC 6797 §7.2).
func TestPlainHTTPHasNoHSTS(t *testing.T) {
	srv := startServer(t, nil)
	resp, err := http.Get(srv.app.URL() + "/jwks")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("Strict-Transport-Security") != "" {
		t.Fatal("HSTS over plain http")
	}
}
