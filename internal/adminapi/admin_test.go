package adminapi_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/adminapi"
	"github.com/fhirgate/fhirgate/internal/anomaly"
	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/metrics"
)

type recorder struct {
	mu     sync.Mutex
	events []audit.Event
}

func (r *recorder) Record(_ context.Context, e audit.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
	return nil
}

func (r *recorder) all() []audit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]audit.Event(nil), r.events...)
}

type fixture struct {
	h     *adminapi.Handler
	rec   *recorder
	det   *anomaly.Detector
	token string
	store *adminapi.FileTokens
}

func setup(t *testing.T, certs bool) *fixture {
	t.Helper()
	rec := &recorder{}
	store := adminapi.NewFileTokens(filepath.Join(t.TempDir(), "admin", "tokens.json"))
	text, tok, err := adminapi.NewToken("ops", 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := store.AddToken(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	det, err := anomaly.New(anomaly.Options{Auditor: rec, Config: anomaly.Config{Replay: anomaly.EventConfig{Action: anomaly.ActionSuspend}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { det.Close(context.Background()) })
	m := metrics.New()
	m.TokenIssued("client_credentials")
	h, err := adminapi.New(adminapi.Options{Tokens: store, AllowClientCerts: certs, CertSubjects: []string{"ops-admin"},
		Metrics: m, Anomalies: det, Auditor: rec})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{h: h, rec: rec, det: det, token: text, store: store}
}

func (f *fixture) do(t *testing.T, method, path, auth string) (*httptest.ResponseRecorder, map[string]any) {
	t.Helper()
	r := httptest.NewRequest(method, path, nil)
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	var body map[string]any
	_ = json.Unmarshal(w.Body.Bytes(), &body)
	return w, body
}

func TestTokenAuthentication(t *testing.T) {
	f := setup(t, false)
	w, _ := f.do(t, "GET", "/metrics", "Bearer "+f.token)
	if w.Code != 200 || !strings.Contains(w.Body.String(), `fhirgate_tokens_issued_total{grant_type="client_credentials"} 1`) {
		t.Fatalf("/metrics with a token: %d %.200s", w.Code, w.Body)
	}
	for name, auth := range map[string]string{
		"none":         "",
		"wrong":        "Bearer " + adminapi.TokenPrefix + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"no prefix":    "Bearer " + strings.TrimPrefix(f.token, adminapi.TokenPrefix),
		"basic scheme": "Basic " + f.token,
		"truncated":    "Bearer " + f.token[:len(f.token)-1],
	} {
		w, body := f.do(t, "GET", "/admin/anomalies", auth)
		if w.Code != 401 || body["error"] != "invalid_token" || !strings.Contains(w.Header().Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: %d %v", name, w.Code, body)
		}
	}
	// Refusals are audited; the token text is never in an event.
	var failures int
	for _, e := range f.rec.all() {
		if e.Action == adminapi.ActionAdminAccess && e.Outcome == audit.Failure {
			failures++
		}
		if strings.Contains(e.Reason, f.token) || strings.Contains(e.UserID, f.token) {
			t.Fatal("token text in an audit event")
		}
	}
	if failures != 5 {
		t.Fatalf("%d refusals audited, want 5", failures)
	}
}

func TestTokenExpiryAndRevocation(t *testing.T) {
	store := &adminapi.MemoryTokens{}
	now := time.Now()
	text, tok, _ := adminapi.NewToken("short", time.Minute, now)
	_ = store.AddToken(context.Background(), tok)
	if _, err := adminapi.Authenticate(context.Background(), store, text, now); err != nil {
		t.Fatalf("fresh token refused: %v", err)
	}
	if _, err := adminapi.Authenticate(context.Background(), store, text, now.Add(time.Minute)); !errors.Is(err, adminapi.ErrInvalidToken) {
		t.Fatalf("expired token: %v", err)
	}
	_ = store.RevokeToken(context.Background(), tok.ID)
	if _, err := adminapi.Authenticate(context.Background(), store, text, now); !errors.Is(err, adminapi.ErrInvalidToken) {
		t.Fatalf("revoked token: %v", err)
	}
	if err := store.RevokeToken(context.Background(), tok.ID); !errors.Is(err, adminapi.ErrTokenNotFound) {
		t.Fatalf("revoking twice: %v", err)
	}
	if _, _, err := adminapi.NewToken(" ", 0, now); err == nil {
		t.Fatal("NewToken accepted an empty name")
	}
}

func TestFileTokensHashedAndPickedUp(t *testing.T) {
	f := setup(t, false)
	raw, err := os.ReadFile(f.store.Path())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), strings.TrimPrefix(f.token, adminapi.TokenPrefix)) {
		t.Fatal("the token file holds the token itself")
	}
	if st, _ := os.Stat(f.store.Path()); st.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v, want 0600", st.Mode().Perm())
	}
	// Another process (the CLI) adds a token: the server sees it at once.
	cli := adminapi.NewFileTokens(f.store.Path())
	text, tok, _ := adminapi.NewToken("second", 0, time.Now())
	if err := cli.AddToken(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	if w, _ := f.do(t, "GET", "/admin/anomalies", "Bearer "+text); w.Code != 200 {
		t.Fatalf("a token added by another process: %d", w.Code)
	}
	if err := cli.RevokeToken(context.Background(), tok.ID); err != nil {
		t.Fatal(err)
	}
	if w, _ := f.do(t, "GET", "/admin/anomalies", "Bearer "+text); w.Code != 401 {
		t.Fatalf("a token revoked by another process: %d", w.Code)
	}
}

func TestAnomaliesListAndClear(t *testing.T) {
	f := setup(t, false)
	f.det.Observe(anomaly.Observation{Kind: anomaly.Replay, ClientID: "evil", Detail: "dpop"})
	if !f.det.Check("evil", "", "").Suspended() {
		t.Fatal("setup: not suspended")
	}
	auth := "Bearer " + f.token
	w, body := f.do(t, "GET", "/admin/anomalies", auth)
	list, _ := body["anomalies"].([]any)
	if w.Code != 200 || len(list) != 1 {
		t.Fatalf("list: %d %v", w.Code, body)
	}
	id := list[0].(map[string]any)["id"].(string)
	if w, _ := f.do(t, "POST", "/admin/anomalies/nope/clear", auth); w.Code != 404 {
		t.Fatalf("clearing an unknown id: %d", w.Code)
	}
	if w, _ := f.do(t, "GET", "/admin/anomalies?subject=bogus", auth); w.Code != 400 {
		t.Fatalf("bad subject: %d", w.Code)
	}
	if w, _ := f.do(t, "POST", "/admin/anomalies/"+id+"/clear", ""); w.Code != 401 {
		t.Fatalf("clear without a token: %d", w.Code)
	}
	w, body = f.do(t, "POST", "/admin/anomalies/"+id+"/clear", auth)
	if w.Code != 200 {
		t.Fatalf("clear: %d %v", w.Code, body)
	}
	cleared := body["cleared"].([]any)[0].(map[string]any)
	if !strings.HasPrefix(cleared["cleared_by"].(string), "token:ops/") {
		t.Fatalf("cleared_by = %v", cleared["cleared_by"])
	}
	if f.det.Check("evil", "", "").Suspended() {
		t.Fatal("still suspended after the admin cleared it")
	}
	_, body = f.do(t, "GET", "/admin/anomalies", auth)
	if l, _ := body["anomalies"].([]any); len(l) != 0 {
		t.Fatalf("cleared anomaly still listed: %v", body)
	}
	_, body = f.do(t, "GET", "/admin/anomalies?all=true&subject=client:evil", auth)
	if l, _ := body["anomalies"].([]any); len(l) != 1 {
		t.Fatalf("all=true lacks the cleared anomaly: %v", body)
	}
	// Clear by subject.
	f.det.Observe(anomaly.Observation{Kind: anomaly.Replay, ClientID: "evil2"})
	w, body = f.do(t, "POST", "/admin/anomalies/clear?subject=client:evil2", auth)
	if l, _ := body["cleared"].([]any); w.Code != 200 || len(l) != 1 || f.det.Check("evil2", "", "").Suspended() {
		t.Fatalf("clear by subject: %d %v", w.Code, body)
	}
}

func TestNewRefusesNoAuthentication(t *testing.T) {
	if _, err := adminapi.New(adminapi.Options{Auditor: &recorder{}}); !errors.Is(err, adminapi.ErrOptions) {
		t.Fatalf("New without tokens or certs = %v", err)
	}
}

// mTLS: a certificate from the admin CA with an admitted CN is let in; one
// with another CN, or none, is not.
func TestClientCertificates(t *testing.T) {
	f := setup(t, true)
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "admin CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	ca, _ := x509.ParseCertificate(caDER)
	client := func(cn string) tls.Certificate {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
		der, _ := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	srv := httptest.NewUnstartedServer(f.h)
	srv.TLS = &tls.Config{ClientCAs: pool, ClientAuth: tls.VerifyClientCertIfGiven}
	srv.StartTLS()
	defer srv.Close()
	get := func(cert *tls.Certificate) int {
		tr := srv.Client().Transport.(*http.Transport).Clone()
		if cert != nil {
			tr.TLSClientConfig.Certificates = []tls.Certificate{*cert}
		}
		resp, err := (&http.Client{Transport: tr}).Get(srv.URL + "/admin/anomalies")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	ok, other := client("ops-admin"), client("intruder")
	if c := get(&ok); c != 200 {
		t.Fatalf("admitted certificate: %d", c)
	}
	if c := get(&other); c != 401 {
		t.Fatalf("certificate with another CN: %d", c)
	}
	if c := get(nil); c != 401 {
		t.Fatalf("no certificate: %d", c)
	}
}
