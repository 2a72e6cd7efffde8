package dpop_test

import (
	"context"
	"crypto"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fhirgate/fhirgate/internal/audit/audittest"
	"github.com/fhirgate/fhirgate/internal/demoehr"
	"github.com/fhirgate/fhirgate/internal/dpop"
	"github.com/fhirgate/fhirgate/internal/gateway"
	fgkeys "github.com/fhirgate/fhirgate/internal/keys"
	"github.com/fhirgate/fhirgate/internal/replay"
	"github.com/fhirgate/fhirgate/internal/secret"
	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/storage/sqlite"
	"github.com/fhirgate/fhirgate/internal/token"
	"github.com/fhirgate/fhirgate/internal/upstream"
)

// The adapter satisfies the gateway's interface.
var _ gateway.ProofVerifier = dpop.GatewayVerifier{}

// TestRealGateway runs GatewayVerifier inside the real FHIR gateway in front
// of the demo EHR: a DPoP-bound token works only with a fresh proof by its
// key for that request, and a nonce challenge reaches the client.
func TestRealGateway(t *testing.T) {
	keys(t)
	const (
		issuer  = "https://auth.example.org"
		base    = "https://fhir.example.org/fhir"
		patient = "pt-001"
	)
	ctx := context.Background()
	clk := &clock{t: time.Now().Truncate(time.Second)}
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	km, err := fgkeys.New(ctx, fgkeys.Options{Store: st, KEK: fgkeys.DevKEK(), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	iss, err := token.NewIssuer(token.Options{Signer: km, Verifier: km, Issuer: issuer, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	ehr, err := demoehr.New(demoehr.Options{Username: "gw", Password: "pw", Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	ehrSrv := httptest.NewServer(ehr)
	t.Cleanup(ehrSrv.Close)
	up, err := upstream.Build(upstream.Config{URL: ehrSrv.URL, Auth: upstream.AuthConfig{Type: upstream.AuthBasic, Username: "gw", Password: "pw"}},
		upstream.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	revs, err := gateway.NewFamilyRevocations(st, 0, 0, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	v := &dpop.Verifier{Replay: replay.NewMemory(clk.Now, 0), Now: clk.Now}
	gw, err := gateway.New(gateway.Options{
		BaseURL: base, Upstreams: []*upstream.Upstream{up}, Tokens: iss, Revocations: revs,
		DPoP:               dpop.GatewayVerifier{Verifier: v},
		SMARTConfiguration: func() ([]byte, error) { return []byte(`{}`), nil },
		Auditor:            &audittest.Recorder{}, Logger: slog.New(slog.DiscardHandler), Now: clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	gw.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	fam := secret.ID()
	if err := st.CreateFamily(ctx, &storage.TokenFamily{ID: fam, ClientID: "app", UserID: "u1", Scope: "patient/*.rs",
		CreatedAt: clk.Now(), ExpiresAt: clk.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	jkt, _ := dpop.JKT(ecKey.Public())
	at, _, err := iss.AccessToken(token.AccessClaims{Subject: "u1", Audience: base, ClientID: "app", Scope: "patient/*.rs",
		Patient: patient, FamilyID: fam, Cnf: map[string]string{"jkt": jkt}})
	if err != nil {
		t.Fatal(err)
	}
	resource := base + "/Patient/" + patient
	proofFor := func(alg jose.SignatureAlgorithm, key crypto.Signer, htm, htu, ath string) string {
		c := claimsFor(htm, htu, clk.Now())
		if ath != "" {
			c["ath"] = ath
		}
		return proof(t, alg, key, c)
	}
	call := func(scheme, p string) *http.Response {
		req, _ := http.NewRequest("GET", srv.URL+"/fhir/Patient/"+patient, nil)
		req.Header.Set("Authorization", scheme+" "+at)
		if p != "" {
			req.Header.Set("DPoP", p)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}

	good := proofFor(jose.ES256, ecKey, "GET", resource+"?_format=json", dpop.ATH(at))
	if r := call("DPoP", good); r.StatusCode != http.StatusOK {
		t.Fatalf("valid proof: %d %v", r.StatusCode, r.Header)
	}
	refusals := map[string]string{
		"replayed":      good,
		"other key":     proofFor(jose.ES256, ec2Key, "GET", resource, dpop.ATH(at)),
		"other token":   proofFor(jose.ES256, ecKey, "GET", resource, dpop.ATH("another")),
		"wrong htu":     proofFor(jose.ES256, ecKey, "GET", base+"/Patient/pt-002", dpop.ATH(at)),
		"wrong htm":     proofFor(jose.ES256, ecKey, "POST", resource, dpop.ATH(at)),
		"no ath":        proofFor(jose.ES256, ecKey, "GET", resource, ""),
		"missing proof": "",
	}
	for name, p := range refusals {
		r := call("DPoP", p)
		if r.StatusCode != http.StatusUnauthorized || !strings.Contains(r.Header.Get("WWW-Authenticate"), `error="invalid_dpop_proof"`) {
			t.Errorf("%s: %d %v", name, r.StatusCode, r.Header.Values("WWW-Authenticate"))
		}
	}
	if r := call("Bearer", proofFor(jose.ES256, ecKey, "GET", resource, dpop.ATH(at))); r.StatusCode != http.StatusUnauthorized ||
		!strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "DPoP ") {
		t.Fatalf("bound token as Bearer: %d %v", r.StatusCode, r.Header)
	}
	clk.Add(2 * time.Minute) // stale proof
	stale := claimsFor("GET", resource, clk.Now().Add(-2*time.Minute))
	stale["ath"] = dpop.ATH(at)
	if r := call("DPoP", proof(t, jose.ES256, ecKey, stale)); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("stale proof: %d", r.StatusCode)
	}

	// Server nonces: the challenge carries DPoP-Nonce, the retry succeeds.
	v.Nonces, err = dpop.NewNonces(nil, time.Minute, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	r := call("DPoP", proofFor(jose.ES256, ecKey, "GET", resource, dpop.ATH(at)))
	n := r.Header.Get("DPoP-Nonce")
	if r.StatusCode != http.StatusUnauthorized || n == "" || !strings.Contains(r.Header.Get("WWW-Authenticate"), "use_dpop_nonce") {
		t.Fatalf("nonce challenge: %d %v", r.StatusCode, r.Header)
	}
	c := claimsFor("GET", resource, clk.Now())
	c["ath"], c["nonce"] = dpop.ATH(at), n
	if r := call("DPoP", proof(t, jose.ES256, ecKey, c)); r.StatusCode != http.StatusOK {
		t.Fatalf("retry with nonce: %d %v", r.StatusCode, r.Header)
	}
}
