package upstream

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// echo answers with the Authorization and X-Api-Key headers it received.
func echo(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{
			"authorization": r.Header.Get("Authorization"), "apikey": r.Header.Get("X-Api-Key"), "path": r.URL.Path,
		})
	}))
	t.Cleanup(srv.Close)
	return srv
}

func call(t *testing.T, u *Upstream, clientAuth string) map[string]string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u.URL.String()+"/Patient/1", nil)
	if clientAuth != "" {
		req.Header.Set("Authorization", clientAuth)
	}
	resp, err := u.Transport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	if req.Header.Get("Authorization") != clientAuth {
		t.Fatal("caller's request was modified")
	}
	return m
}

func TestStaticAdapters(t *testing.T) {
	srv := echo(t)
	for _, tc := range []struct {
		flag, wantAuth, wantKey string
	}{
		{"none", "", ""},
		{"basic:gw:pa:ss", "Basic Z3c6cGE6c3M=", ""},
		{"header:X-Api-Key:k:1", "", "k:1"},
	} {
		a, err := ParseAuthFlag(tc.flag)
		if err != nil {
			t.Fatal(tc.flag, err)
		}
		u, err := Build(Config{URL: srv.URL, Auth: a}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		// The client's own token never passes.
		got := call(t, u, "Bearer client-token")
		if got["authorization"] != tc.wantAuth || got["apikey"] != tc.wantKey {
			t.Errorf("%s: got %v", tc.flag, got)
		}
	}
}

func TestConfigRefusals(t *testing.T) {
	for _, f := range []string{"basic:onlyuser", "header:X", "bearer:abc", "basic::p"} {
		if _, err := ParseAuthFlag(f); !errors.Is(err, ErrConfig) {
			t.Errorf("%q: %v", f, err)
		}
	}
	for _, c := range []Config{
		{URL: "ftp://x"},
		{URL: "http://user:pw@x"},
		{URL: "http://x?q=1"},
		{URL: "http://x", Prefix: "Binary"},
		{URL: "http://x", Auth: AuthConfig{Type: AuthHeader, HeaderName: "Host", HeaderValue: "evil"}},
		{URL: "http://x", Auth: AuthConfig{Type: AuthHeader, HeaderName: "X-K", HeaderValue: "a\r\nb"}},
		{URL: "http://x", Auth: AuthConfig{Type: AuthMTLS, CertFile: "c", KeyFile: "k"}},
		{URL: "https://x", Auth: AuthConfig{Type: AuthClientCredentials, TokenURL: "https://t", ClientID: "c"}},
		{URL: "https://x", Auth: AuthConfig{Type: "kerberos"}},
	} {
		if err := c.Validate(); !errors.Is(err, ErrConfig) {
			t.Errorf("%+v accepted", c)
		}
	}
}

func TestRouter(t *testing.T) {
	mk := func(p string) *Upstream { return &Upstream{Prefix: p} }
	rt, err := NewRouter(mk("/"), mk("/Binary"), mk("/Observation/"))
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		"/Binary/1": "/Binary", "/Binary": "/Binary", "/BinaryX": "/", "/Patient/1": "/",
		"/Observation?code=x": "/Observation/", "/Observation/1": "/Observation/", "/metadata": "/",
	} {
		if got := rt.Route(path); got == nil || got.Prefix != want {
			t.Errorf("%s -> %v, want %s", path, got, want)
		}
	}
	if _, err := NewRouter(mk("/a"), mk("/a/")); !errors.Is(err, ErrConfig) {
		t.Fatal("duplicate prefix accepted")
	}
}

// tokenServer is a backend OAuth token endpoint counting its calls.
func tokenServer(t *testing.T, ttl int, fail *atomic.Bool) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, sec, ok := r.BasicAuth()
		sec, _ = url.QueryUnescape(sec) // RFC 6749 §2.3.1 form-encoding
		if !ok || id != "gw" || sec != "s+cret" || r.FormValue("grant_type") != "client_credentials" || r.FormValue("scope") != "system/*.rs" {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"error":"invalid_client"}`)
			return
		}
		if fail != nil && fail.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		c := n.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":"bt-%d","token_type":"Bearer","expires_in":%d}`, c, ttl)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func TestClientCredentialsCachingAndRefresh(t *testing.T) {
	var fail atomic.Bool
	ts, calls := tokenServer(t, 300, &fail)
	backend := echo(t)
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	u, err := Build(Config{URL: backend.URL, Auth: AuthConfig{Type: AuthClientCredentials, TokenURL: ts.URL,
		ClientID: "gw", ClientSecret: "s+cret", Scope: "system/*.rs"}}, Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodGet, backend.URL, nil)
			resp, err := u.Transport.RoundTrip(req)
			if err == nil {
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	if got := call(t, u, "")["authorization"]; got != "Bearer bt-1" || calls.Load() != 1 {
		t.Fatalf("first token %q after %d calls", got, calls.Load())
	}
	clk.Add(3 * time.Minute) // still well before the refresh point (300s - 60s)
	if got := call(t, u, "")["authorization"]; got != "Bearer bt-1" {
		t.Fatalf("cached token not reused: %q", got)
	}
	clk.Add(61 * time.Second) // inside the last minute: refreshed before expiry
	if got := call(t, u, "")["authorization"]; got != "Bearer bt-2" {
		t.Fatalf("not refreshed before expiry: %q", got)
	}
	// A failing token endpoint: the still-valid token keeps working...
	fail.Store(true)
	clk.Add(250 * time.Second)
	if got := call(t, u, "")["authorization"]; got != "Bearer bt-2" {
		t.Fatalf("valid token dropped on refresh failure: %q", got)
	}
	// ...but never past its expiry.
	clk.Add(time.Minute)
	req, _ := http.NewRequest(http.MethodGet, backend.URL, nil)
	if _, err := u.Transport.RoundTrip(req); !errors.Is(err, ErrToken) {
		t.Fatalf("expired token used: %v", err)
	}
}

func TestClientCredentialsInvalidatedOn401(t *testing.T) {
	ts, calls := tokenServer(t, 3600, nil)
	var reject atomic.Bool
	reject.Store(true)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if reject.Swap(false) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_, _ = io.WriteString(w, r.Header.Get("Authorization"))
	}))
	defer backend.Close()
	u, err := Build(Config{URL: backend.URL, Auth: AuthConfig{Type: AuthClientCredentials, TokenURL: ts.URL,
		ClientID: "gw", ClientSecret: "s+cret", Scope: "system/*.rs"}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		req, _ := http.NewRequest(http.MethodGet, backend.URL, nil)
		resp, err := u.Transport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if i == 1 && string(b) != "Bearer bt-2" {
			t.Fatalf("after 401: %q (%d token calls)", b, calls.Load())
		}
	}
}

func TestClientCredentialsBadResponses(t *testing.T) {
	for name, h := range map[string]http.HandlerFunc{
		"html": func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "<html>") },
		"no token": func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"token_type":"Bearer"}`)
		},
		"not bearer": func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"access_token":"x","token_type":"mac"}`)
		},
		"500": func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(500) },
	} {
		srv := httptest.NewServer(h)
		cc, _ := NewClientCredentials(ClientCredentialsOptions{TokenURL: srv.URL, ClientID: "a", ClientSecret: "b"})
		if _, err := cc.Token(t.Context()); !errors.Is(err, ErrToken) {
			t.Errorf("%s: %v", name, err)
		}
		srv.Close()
	}
}

// pki writes a CA, a server certificate for 127.0.0.1 and a client
// certificate into dir.
func pki(t *testing.T, dir string) (serverCert tls.Certificate, caPool *x509.CertPool, caFile, certFile, keyFile string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "leaf"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, k
	}
	sDER, sKey := issue(2, x509.ExtKeyUsageServerAuth)
	serverCert = tls.Certificate{Certificate: [][]byte{sDER}, PrivateKey: sKey}
	cDER, cKey := issue(3, x509.ExtKeyUsageClientAuth)
	kDER, _ := x509.MarshalECPrivateKey(cKey)
	caFile, certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "client.pem"), filepath.Join(dir, "client.key")
	for f, b := range map[string][]byte{
		caFile:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		certFile: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cDER}),
		keyFile:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kDER}),
	} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	caPool = x509.NewCertPool()
	caPool.AddCert(ca)
	return serverCert, caPool, caFile, certFile, keyFile
}

func TestMTLS(t *testing.T) {
	sc, pool, caFile, certFile, keyFile := pki(t, t.TempDir())
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"authorization": r.TLS.PeerCertificates[0].Subject.CommonName})
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{sc}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	srv.StartTLS()
	defer srv.Close()
	u, err := Build(Config{URL: srv.URL, Auth: AuthConfig{Type: AuthMTLS, CertFile: certFile, KeyFile: keyFile, CAFile: caFile}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := call(t, u, "Bearer client")["authorization"]; got != "leaf" {
		t.Fatalf("peer %q", got)
	}
	// Without the client certificate the backend refuses the handshake.
	u2, err := Build(Config{URL: srv.URL, Auth: AuthConfig{Type: AuthNone, CAFile: caFile}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	if resp, err := u2.Transport.RoundTrip(req); err == nil {
		resp.Body.Close()
		t.Fatal("backend accepted a connection without client certificate")
	}
	// Without the private CA the backend's certificate is not trusted.
	u3, _ := Build(Config{URL: srv.URL, Auth: AuthConfig{Type: AuthMTLS, CertFile: certFile, KeyFile: keyFile}}, Options{})
	if resp, err := u3.Transport.RoundTrip(req); err == nil {
		resp.Body.Close()
		t.Fatal("untrusted backend certificate accepted")
	}
}

type fakeSigner struct{ n atomic.Int64 }

func (f *fakeSigner) Sign(alg, typ string, claims any) (string, error) {
	f.n.Add(1)
	b, _ := json.Marshal(claims)
	return alg + "." + typ + "." + string(b), nil
}

func TestIdentityCachedPerToken(t *testing.T) {
	s := &fakeSigner{}
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	id, err := NewIdentity(IdentityOptions{Signer: s, Issuer: "https://gw/fhir", Audience: "https://ehr", Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	w := Who{Subject: "u1", ClientID: "app", Patient: "pt-001", Scope: "patient/*.rs", TokenID: "jti-1"}
	a, _ := id.Assert(w)
	b, _ := id.Assert(w)
	if a != b || s.n.Load() != 1 {
		t.Fatal("assertion not reused")
	}
	clk.Add(31 * time.Second)
	c, _ := id.Assert(w)
	if c == a || s.n.Load() != 2 {
		t.Fatal("stale assertion reused")
	}
	var claims IdentityClaims
	_ = json.Unmarshal([]byte(c[len("ES256."+IdentityTyp+"."):]), &claims)
	if claims.Patient != "pt-001" || claims.Audience != "https://ehr" || claims.ExpiresAt-claims.IssuedAt != 60 {
		t.Fatalf("claims %+v", claims)
	}
	if _, err := NewIdentity(IdentityOptions{Signer: s, Issuer: "i", Audience: "a", TTL: time.Hour}); !errors.Is(err, ErrConfig) {
		t.Fatal("long TTL accepted")
	}
}
