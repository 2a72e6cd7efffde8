package devcerts

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func caPool(t *testing.T, path string) *x509.CertPool {
	t.Helper()
	pemBytes, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		t.Fatal("ca.pem holds no certificate")
	}
	return pool
}

func serve(t *testing.T, f Files) *httptest.Server {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "ok")
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // expected handshake failures
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func TestClientTrustingOnlyCAConnects(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	f, err := Generate(dir, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	srv := serve(t, f)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	port := u.Port()
	for _, host := range []string{"127.0.0.1", "localhost"} {
		t.Run(host, func(t *testing.T) {
			client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: caPool(t, f.CA)}}}
			resp, err := client.Get("https://" + host + ":" + port + "/")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if string(body) != "ok" {
				t.Fatalf("body %q", body)
			}
		})
	}
	// httptest listens on IPv4 only; check ::1 by verification.
	if _, err := parseCert(t, f.Cert).Verify(x509.VerifyOptions{Roots: caPool(t, f.CA), DNSName: "::1"}); err != nil {
		t.Fatalf("::1: %v", err)
	}
	// A client with the system roots (which do not hold the dev CA) fails.
	plain := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: x509.NewCertPool()}}}
	if _, err := plain.Get(srv.URL); err == nil {
		t.Fatal("a client not trusting the dev CA connected")
	}
}

func TestFilesAndPermissions(t *testing.T) {
	dir := t.TempDir()
	f, err := Generate(dir, []string{"fhir.test", "10.0.0.7"}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{f.CAKey, f.Key} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", p, st.Mode().Perm())
		}
	}
	ca := parseCert(t, f.CA)
	srv := parseCert(t, f.Cert)
	if !ca.IsCA || ca.MaxPathLen != 0 || !ca.MaxPathLenZero {
		t.Error("CA must be a CA with path length 0")
	}
	if srv.IsCA {
		t.Error("server certificate must not be a CA")
	}
	if got := srv.DNSNames; len(got) != 1 || got[0] != "fhir.test" {
		t.Errorf("DNS names %v", got)
	}
	if len(srv.IPAddresses) != 1 || srv.IPAddresses[0].String() != "10.0.0.7" {
		t.Errorf("IPs %v", srv.IPAddresses)
	}
	if srv.NotAfter.Sub(testNow) > 398*24*time.Hour {
		t.Errorf("server certificate lives too long: %v", srv.NotAfter)
	}
	if !srv.NotBefore.Before(testNow) {
		t.Error("NotBefore should be backdated a little")
	}
	if srv.PublicKeyAlgorithm != x509.ECDSA || ca.PublicKeyAlgorithm != x509.ECDSA {
		t.Error("keys must be ECDSA")
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	if _, err := srv.Verify(x509.VerifyOptions{Roots: pool, DNSName: "fhir.test", CurrentTime: testNow}); err != nil {
		t.Fatalf("verify: %v", err)
	}
	if _, err := srv.Verify(x509.VerifyOptions{Roots: pool, DNSName: "other.test", CurrentTime: testNow}); err == nil {
		t.Fatal("certificate verified for a host it was not made for")
	}
}

// TestCAIsNameConstrained checks the dev CA cannot vouch for other hosts even
// if its key is used to sign another certificate.
func TestCAIsNameConstrained(t *testing.T) {
	dir := t.TempDir()
	f, err := Generate(dir, []string{"localhost", "127.0.0.1"}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	ca := parseCert(t, f.CA)
	if !ca.PermittedDNSDomainsCritical || len(ca.PermittedDNSDomains) != 1 || ca.PermittedDNSDomains[0] != "localhost" {
		t.Fatalf("DNS constraints %v critical=%v", ca.PermittedDNSDomains, ca.PermittedDNSDomainsCritical)
	}
	// Sign a rogue certificate for example.com with the CA key.
	caKey := loadKey(t, f.CAKey)
	rogue := signRogue(t, ca, caKey, "example.com")
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	if _, err := rogue.Verify(x509.VerifyOptions{Roots: pool, DNSName: "example.com", CurrentTime: testNow}); err == nil {
		t.Fatal("a certificate for example.com signed by the dev CA verified")
	}
}

func TestRefusesToOverwrite(t *testing.T) {
	dir := t.TempDir()
	f, err := Generate(dir, nil, testNow)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(f.CAKey)
	if _, err := Generate(dir, nil, testNow); !errors.Is(err, ErrExists) {
		t.Fatalf("second Generate: %v, want ErrExists", err)
	}
	after, _ := os.ReadFile(f.CAKey)
	if string(before) != string(after) {
		t.Fatal("CA key changed although overwrite was refused")
	}
	// One pre-existing file is enough to refuse, and nothing is written.
	dir2 := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir2, ServerKeyFile), []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Generate(dir2, nil, testNow); !errors.Is(err, ErrExists) {
		t.Fatalf("Generate over server-key.pem: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir2, CAFile)); err == nil {
		t.Fatal("ca.pem was written although Generate refused")
	}
	// With Overwrite the files are replaced and keys keep mode 0600.
	f2, err := GenerateWith(dir, Options{Overwrite: true, Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	after2, _ := os.ReadFile(f2.CAKey)
	if string(after2) == string(before) {
		t.Fatal("Overwrite did not replace the CA key")
	}
	st, _ := os.Stat(f2.CAKey)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("overwritten key mode %v", st.Mode().Perm())
	}
}

func TestBadHosts(t *testing.T) {
	for _, h := range []string{"", " ", "*.example.com", "exa mple.com", "-bad.com", "fe80::1%eth0", "a..b"} {
		if _, err := Generate(t.TempDir(), []string{h}, testNow); !errors.Is(err, ErrBadHost) {
			t.Errorf("host %q: %v, want ErrBadHost", h, err)
		}
	}
}
