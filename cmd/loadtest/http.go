package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/demoehr"
	"github.com/fhirgate/fhirgate/internal/gateway"
	"github.com/fhirgate/fhirgate/internal/keys"
	"github.com/fhirgate/fhirgate/internal/secret"
	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/storage/sqlite"
	"github.com/fhirgate/fhirgate/internal/token"
	"github.com/fhirgate/fhirgate/internal/upstream"
)

const (
	ehrUser = "gateway"
	ehrPass = "loadtest-secret"
	readID  = "Observation/obs-001-01"
)

// target is one thing to load.
type target struct {
	name string
	url  string
	auth string // Authorization header value
}

type env struct {
	dir                     string
	store                   *sqlite.Store
	servers                 []*http.Server
	upstreamURL, proxyURL   string
	gatewayURL, accessToken string
	client                  *http.Client
}

func listen() (net.Listener, string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	return l, "http://" + l.Addr().String(), nil
}

func (e *env) serve(h http.Handler) (string, error) {
	l, u, err := listen()
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	e.servers = append(e.servers, srv)
	go func() { _ = srv.Serve(l) }()
	return u, nil
}

func startEnv(ctx context.Context, conc int, auditLog bool) (*env, error) {
	dir, err := os.MkdirTemp("", "fhirgate-loadtest-")
	if err != nil {
		return nil, err
	}
	e := &env{dir: dir}
	ok := false
	defer func() {
		if !ok {
			e.close()
		}
	}()
	// 1. The upstream: the demo EHR (HTTP Basic only).
	ehr, err := demoehr.New(demoehr.Options{Username: ehrUser, Password: ehrPass})
	if err != nil {
		return nil, err
	}
	if e.upstreamURL, err = e.serve(ehr); err != nil {
		return nil, err
	}
	upCfg := upstream.Config{URL: e.upstreamURL, MaxIdleConnsPerHost: conc * 2,
		Auth: upstream.AuthConfig{Type: upstream.AuthBasic, Username: ehrUser, Password: ehrPass}}

	// 2. A plain reverse proxy with the same pooled transport and the same
	// credential injection.
	target, _ := url.Parse(e.upstreamURL)
	plain := httputil.NewSingleHostReverseProxy(target)
	plain.Transport = upstream.NewTransport(upCfg, nil)
	director := plain.Director
	plain.Director = func(r *http.Request) {
		director(r)
		r.SetBasicAuth(ehrUser, ehrPass)
	}
	if e.proxyURL, err = e.serve(plain); err != nil {
		return nil, err
	}

	// 3. The gateway with a real key manager and token issuer on SQLite.
	l, gwURL, err := listen()
	if err != nil {
		return nil, err
	}
	fhirBase := gwURL + "/fhir"
	if e.store, err = sqlite.Open(ctx, filepath.Join(dir, "fhirgate.db")); err != nil {
		return nil, err
	}
	km, err := keys.New(ctx, keys.Options{Store: e.store, KEK: keys.DevKEK()})
	if err != nil {
		return nil, err
	}
	iss, err := token.NewIssuer(token.Options{Signer: km, Verifier: km, Issuer: gwURL})
	if err != nil {
		return nil, err
	}
	fam := secret.ID()
	if err := e.store.CreateFamily(ctx, &storage.TokenFamily{ID: fam, ClientID: "loadtest", UserID: "u1",
		Scope: "patient/*.rs", CreatedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		return nil, err
	}
	tok, _, err := iss.AccessToken(token.AccessClaims{Subject: "u1", Audience: fhirBase, ClientID: "loadtest",
		Scope: "patient/*.rs", Patient: demoehr.PatientID(1), FamilyID: fam})
	if err != nil {
		return nil, err
	}
	e.accessToken = tok
	up, err := upstream.Build(upCfg, upstream.Options{})
	if err != nil {
		return nil, err
	}
	revs, err := gateway.NewFamilyRevocations(e.store, 0, 0, nil)
	if err != nil {
		return nil, err
	}
	var auditor audit.Auditor = nopAuditor{}
	if auditLog {
		auditor = audit.LogAuditor{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)), Now: time.Now}
	}
	gw, err := gateway.New(gateway.Options{
		BaseURL: fhirBase, Upstreams: []*upstream.Upstream{up}, Tokens: iss, Revocations: revs, Leaked: revs,
		SMARTConfiguration: func() ([]byte, error) { return []byte(`{}`), nil },
		Auditor:            auditor,
	})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	gw.Register(mux)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	e.servers = append(e.servers, srv)
	go func() { _ = srv.Serve(l) }()
	e.gatewayURL = fhirBase

	e.client = &http.Client{Transport: &http.Transport{
		MaxIdleConns: conc * 2, MaxIdleConnsPerHost: conc * 2, IdleConnTimeout: time.Minute, DisableCompression: true,
	}, Timeout: 10 * time.Second}
	ok = true
	return e, nil
}

type nopAuditor struct{}

func (nopAuditor) Record(context.Context, audit.Event) error { return nil }

func (e *env) targets() []target {
	basic := "Basic " + basicValue(ehrUser, ehrPass)
	return []target{
		{name: "upstream", url: e.upstreamURL + "/" + readID, auth: basic},
		{name: "proxy", url: e.proxyURL + "/" + readID},
		{name: "gateway", url: e.gatewayURL + "/" + readID, auth: "Bearer " + e.accessToken},
	}
}

func basicValue(u, p string) string {
	r, _ := http.NewRequest(http.MethodGet, "http://x", nil)
	r.SetBasicAuth(u, p)
	return r.Header.Get("Authorization")[len("Basic "):]
}

func (e *env) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range e.servers {
		_ = s.Shutdown(ctx)
	}
	if e.store != nil {
		_ = e.store.Close()
	}
	_ = os.RemoveAll(e.dir)
}

var errStatus = errors.New("unexpected status")

// load runs conc clients against t for d and collects latencies.
func load(t target, conc int, d time.Duration) (latencies, error) {
	client := &http.Client{Transport: &http.Transport{
		MaxIdleConns: conc * 2, MaxIdleConnsPerHost: conc * 2, IdleConnTimeout: time.Minute, DisableCompression: true,
	}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	// One request first: fail fast on a broken set-up.
	if err := once(client, t); err != nil {
		return latencies{}, err
	}
	deadline := time.Now().Add(d)
	var mu sync.Mutex
	var all latencies
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine latencies
			mine.ok = make([]time.Duration, 0, 4096)
			for time.Now().Before(deadline) {
				start := time.Now()
				if err := once(client, t); err != nil {
					mine.errors++
					continue
				}
				mine.ok = append(mine.ok, time.Since(start))
			}
			mu.Lock()
			all.ok = append(all.ok, mine.ok...)
			all.errors += mine.errors
			mu.Unlock()
		}()
	}
	wg.Wait()
	return all, nil
}

func once(client *http.Client, t target) error {
	req, err := http.NewRequest(http.MethodGet, t.url, nil)
	if err != nil {
		return err
	}
	if t.auth != "" {
		req.Header.Set("Authorization", t.auth)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w %d from %s", errStatus, resp.StatusCode, t.name)
	}
	return nil
}
