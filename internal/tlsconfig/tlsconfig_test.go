package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"io/fs"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/devcerts"
)

// newServer starts a real TLS server with the policy of Server and returns it
// with a pool trusting its certificate.
func newServer(t *testing.T) (*httptest.Server, *x509.CertPool) {
	t.Helper()
	dir := t.TempDir()
	f, err := devcerts.Generate(dir, []string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Server(f.Cert, f.Key)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(HSTS(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	})))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshake failures are expected
	srv.TLS = cfg
	srv.StartTLS()
	t.Cleanup(srv.Close)
	pem, err := os.ReadFile(f.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return srv, pool
}

func get(t *testing.T, srv *httptest.Server, cfg *tls.Config) (*http.Response, error) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}}
	t.Cleanup(client.CloseIdleConnections)
	resp, err := client.Get(srv.URL)
	if err == nil {
		_, _ = io.ReadAll(resp.Body)
		_ = resp.Body.Close()
	}
	return resp, err
}

func TestHandshakes(t *testing.T) {
	srv, pool := newServer(t)
	cases := []struct {
		name    string
		cfg     *tls.Config
		ok      bool
		version uint16
	}{
		{"TLS 1.3", &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}, true, tls.VersionTLS13},
		{"TLS 1.2 default suites", &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS12}, true, tls.VersionTLS12},
		{"TLS 1.2 ChaCha20", &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}}, true, tls.VersionTLS12},
		{"TLS 1.2 P-256 only", &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS12,
			CurvePreferences: []tls.CurveID{tls.CurveP256}}, true, tls.VersionTLS12},
		{"TLS 1.1 refused", &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}, false, 0},
		{"TLS 1.0 refused", &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS10}, false, 0},
		{"TLS 1.2 CBC only refused", &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{
				tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
				tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
				tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256,
				tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
			}}, false, 0},
		{"TLS 1.2 RSA key exchange refused", &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_RSA_WITH_AES_256_GCM_SHA384}}, false, 0},
		{"TLS 1.2 P-384 only refused", &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS12,
			CurvePreferences: []tls.CurveID{tls.CurveP384}}, false, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := get(t, srv, tc.cfg)
			if !tc.ok {
				if err == nil {
					t.Fatalf("handshake succeeded with %x", resp.TLS.Version)
				}
				// The server, not the client, must be the one refusing.
				if !strings.Contains(err.Error(), "remote error: tls:") {
					t.Fatalf("err = %v, want a TLS alert from the server", err)
				}
				t.Logf("refused: %v", err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if resp.TLS.Version != tc.version {
				t.Fatalf("version %x, want %x", resp.TLS.Version, tc.version)
			}
		})
	}
}

func TestHSTS(t *testing.T) {
	srv, pool := newServer(t)
	resp, err := get(t, srv, &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Header.Get("Strict-Transport-Security"); got != "max-age=31536000" {
		t.Fatalf("HSTS over TLS = %q", got)
	}

	plain := httptest.NewServer(HSTS(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})))
	defer plain.Close()
	presp, err := http.Get(plain.URL)
	if err != nil {
		t.Fatal(err)
	}
	_ = presp.Body.Close()
	if got := presp.Header.Get("Strict-Transport-Security"); got != "" {
		t.Fatalf("HSTS over plain http = %q, want none", got)
	}
}

func TestServerMissingFiles(t *testing.T) {
	dir := t.TempDir()
	_, err := Server(filepath.Join(dir, "nope.pem"), filepath.Join(dir, "nope-key.pem"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want fs.ErrNotExist", err)
	}
}

func TestBasePolicy(t *testing.T) {
	cfg := Base()
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Fatal("MinVersion must be TLS 1.2")
	}
	for _, id := range cfg.CipherSuites {
		for _, s := range tls.InsecureCipherSuites() {
			if s.ID == id {
				t.Errorf("insecure suite %s allowed", s.Name)
			}
		}
	}
	// Each call returns a fresh config: callers may modify it.
	cfg.CipherSuites[0] = 0
	if Base().CipherSuites[0] == 0 {
		t.Fatal("Base shares state between calls")
	}
}
