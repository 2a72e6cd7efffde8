package jwksfetch

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func publicSetJSON(t *testing.T) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.PublicKey, KeyID: "k1", Algorithm: "ES384", Use: "sig"}}}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b, k
}

// server returns a TLS test server answering body, and a counter of hits.
func server(t *testing.T, h http.HandlerFunc) (*httptest.Server, *x509.CertPool) {
	t.Helper()
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	return srv, pool
}

func TestLoopbackRefusedByDefault(t *testing.T) {
	body, _ := publicSetJSON(t)
	var hits atomic.Int32
	srv, pool := server(t, func(w http.ResponseWriter, r *http.Request) { hits.Add(1); w.Write(body) })
	f, err := New(Options{RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Get(context.Background(), srv.URL+"/jwks")
	if !errors.Is(err, ErrForbiddenAddress) {
		t.Fatalf("err = %v, want ErrForbiddenAddress", err)
	}
	if hits.Load() != 0 {
		t.Fatal("the server was reached")
	}
	// A host name resolving to loopback is refused as well: the check is on
	// the dialled address, not the name.
	u := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)
	f2, _ := New(Options{RootCAs: pool})
	if _, err := f2.Get(context.Background(), u+"/jwks"); !errors.Is(err, ErrForbiddenAddress) {
		t.Fatalf("localhost: err = %v, want ErrForbiddenAddress", err)
	}
}

func TestFetchCacheAndRefreshRateLimit(t *testing.T) {
	body, _ := publicSetJSON(t)
	var hits atomic.Int32
	srv, pool := server(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	f, err := New(Options{RootCAs: pool, InsecureAllowPrivateAddresses: true, Now: c.now, TTL: time.Hour, MinRefreshInterval: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	uri := srv.URL + "/jwks"
	set, err := f.Get(ctx, uri)
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 1 || set.Keys[0].KeyID != "k1" {
		t.Fatalf("set = %+v", set)
	}
	if _, err := f.Get(ctx, uri); err != nil || hits.Load() != 1 {
		t.Fatalf("cached get: err %v, hits %d", err, hits.Load())
	}
	// A refresh right after the fetch is rate-limited.
	if _, refreshed, err := f.Refresh(ctx, uri); err != nil || refreshed || hits.Load() != 1 {
		t.Fatalf("early refresh: refreshed %v err %v hits %d", refreshed, err, hits.Load())
	}
	c.t = c.t.Add(2 * time.Minute)
	if _, refreshed, err := f.Refresh(ctx, uri); err != nil || !refreshed || hits.Load() != 2 {
		t.Fatalf("refresh: refreshed %v err %v hits %d", refreshed, err, hits.Load())
	}
	c.t = c.t.Add(2 * time.Hour)
	if _, err := f.Get(ctx, uri); err != nil || hits.Load() != 3 {
		t.Fatalf("after TTL: err %v hits %d", err, hits.Load())
	}
}

func TestRefusals(t *testing.T) {
	body, priv := publicSetJSON(t)
	privSet, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: priv, KeyID: "p"}}})
	symSet := []byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0c2VjcmV0c2VjcmV0","kid":"h"}]}`)
	big := []byte(`{"keys":[` + strings.Repeat(" ", 70<<10) + `]}`)
	cases := map[string]struct {
		h    http.HandlerFunc
		want error
	}{
		"oversized": {func(w http.ResponseWriter, r *http.Request) { w.Write(big) }, ErrTooLarge},
		"oversized declared": {func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "999999")
			w.Write(body)
		}, ErrFetch},
		"private key":   {func(w http.ResponseWriter, r *http.Request) { w.Write(privSet) }, ErrPrivateKey},
		"symmetric key": {func(w http.ResponseWriter, r *http.Request) { w.Write(symSet) }, ErrPrivateKey},
		"not json":      {func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("<html>")) }, ErrFetch},
		"empty set":     {func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{"keys":[]}`)) }, ErrFetch},
		"404":           {func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }, ErrFetch},
		"redirect": {func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "https://example.com/jwks", http.StatusFound)
		}, ErrFetch},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			srv, pool := server(t, tc.h)
			f, _ := New(Options{RootCAs: pool, InsecureAllowPrivateAddresses: true})
			if _, err := f.Get(context.Background(), srv.URL); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestFailureNotRetriedImmediately(t *testing.T) {
	var hits atomic.Int32
	srv, pool := server(t, func(w http.ResponseWriter, r *http.Request) { hits.Add(1); http.Error(w, "no", 500) })
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	f, _ := New(Options{RootCAs: pool, InsecureAllowPrivateAddresses: true, Now: c.now})
	for range 5 {
		if _, err := f.Get(context.Background(), srv.URL); !errors.Is(err, ErrFetch) {
			t.Fatal(err)
		}
		if _, _, err := f.Refresh(context.Background(), srv.URL); !errors.Is(err, ErrFetch) {
			t.Fatal(err)
		}
	}
	if hits.Load() != 1 {
		t.Fatalf("hits = %d, want 1", hits.Load())
	}
}

func TestUntrustedCertificate(t *testing.T) {
	body, _ := publicSetJSON(t)
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) { w.Write(body) })
	f, _ := New(Options{InsecureAllowPrivateAddresses: true})
	if _, err := f.Get(context.Background(), srv.URL); !errors.Is(err, ErrFetch) {
		t.Fatalf("err = %v", err)
	}
}

func TestHTTPLoopbackOnlyWhenInsecure(t *testing.T) {
	body, _ := publicSetJSON(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))
	defer srv.Close()
	f, _ := New(Options{})
	if _, err := f.Get(context.Background(), srv.URL); !errors.Is(err, ErrInvalidURI) {
		t.Fatalf("err = %v, want ErrInvalidURI", err)
	}
	f, _ = New(Options{InsecureAllowHTTPLoopback: true})
	if _, err := f.Get(context.Background(), srv.URL); err != nil {
		t.Fatal(err)
	}
}

func TestValidateURI(t *testing.T) {
	for _, u := range []string{"http://example.com/jwks", "https://user:pw@example.com/jwks", "https:///jwks",
		"https://example.com/jwks#x", "ftp://example.com", "example.com/jwks", "http://localhost/jwks"} {
		if err := ValidateURI(u, false); !errors.Is(err, ErrInvalidURI) {
			t.Errorf("%s accepted", u)
		}
	}
	if err := ValidateURI("https://example.com/.well-known/jwks.json", false); err != nil {
		t.Error(err)
	}
	if err := ValidateURI("http://127.0.0.1:8080/jwks", true); err != nil {
		t.Error(err)
	}
	if err := ValidateURI("http://example.com/jwks", true); err == nil {
		t.Error("http on a non-loopback host accepted with the loopback switch")
	}
}

func TestPublicAddress(t *testing.T) {
	for _, s := range []string{"127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "0.0.0.0",
		"100.64.0.1", "::1", "fe80::1", "fc00::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254", "224.0.0.1",
		"255.255.255.255", "64:ff9b::a00:1", "::"} {
		if PublicAddress(netip.MustParseAddr(s)) {
			t.Errorf("%s considered public", s)
		}
	}
	for _, s := range []string{"8.8.8.8", "2606:4700::1111", "93.184.216.34"} {
		if !PublicAddress(netip.MustParseAddr(s)) {
			t.Errorf("%s considered non-public", s)
		}
	}
}

func TestCacheControlShortensCaching(t *testing.T) {
	body, _ := publicSetJSON(t)
	var hits atomic.Int32
	cc := "max-age=60"
	srv, pool := server(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Cache-Control", cc)
		w.Write(body)
	})
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	f, _ := New(Options{RootCAs: pool, InsecureAllowPrivateAddresses: true, Now: c.now, TTL: time.Hour})
	ctx := context.Background()
	f.Get(ctx, srv.URL)
	c.t = c.t.Add(30 * time.Second)
	f.Get(ctx, srv.URL)
	if hits.Load() != 1 {
		t.Fatalf("hits %d within max-age", hits.Load())
	}
	cc = "no-store"
	c.t = c.t.Add(31 * time.Second)
	f.Get(ctx, srv.URL)
	f.Get(ctx, srv.URL)
	if hits.Load() != 3 {
		t.Fatalf("hits %d: max-age or no-store not honoured", hits.Load())
	}
}

func TestCacheTTL(t *testing.T) {
	for cc, want := range map[string]time.Duration{
		"": time.Hour, "max-age=60": time.Minute, "public, max-age=7200": time.Hour, "no-cache": 0,
		"max-age=abc": 0, "max-age=-1": 0, "private, no-store": 0, `max-age="30"`: 30 * time.Second,
	} {
		if got := cacheTTL(cc, time.Hour); got != want {
			t.Errorf("%q: %s, want %s", cc, got, want)
		}
	}
}

// TestSlowServerTimesOut: a jwks_uri that does not answer within Timeout
// fails the fetch (ErrFetch) instead of holding the token request.
func TestSlowServerTimesOut(t *testing.T) {
	body, _ := publicSetJSON(t)
	release := make(chan struct{})
	srv, pool := server(t, func(w http.ResponseWriter, r *http.Request) {
		select { // answer only after the client gave up (or the test ended)
		case <-release:
		case <-time.After(3 * time.Second):
		}
		w.Write(body)
	})
	defer close(release)
	f, err := New(Options{RootCAs: pool, InsecureAllowPrivateAddresses: true, Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := f.Get(context.Background(), srv.URL); !errors.Is(err, ErrFetch) {
		t.Fatalf("err = %v, want ErrFetch", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("fetch took %s despite a 200ms timeout", d)
	}
}
