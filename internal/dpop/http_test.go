package dpop_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fhirgate/fhirgate/internal/dpop"
)

func TestFromHeader(t *testing.T) {
	h := http.Header{}
	if p, err := dpop.FromHeader(h); p != "" || err != nil {
		t.Fatalf("none: %q %v", p, err)
	}
	h.Set("DPoP", " a.b.c ")
	if p, err := dpop.FromHeader(h); p != "a.b.c" || err != nil {
		t.Fatalf("one: %q %v", p, err)
	}
	h.Add("DPoP", "d.e.f")
	if _, err := dpop.FromHeader(h); !errors.Is(err, dpop.ErrMultiple) {
		t.Fatalf("two headers: %v", err)
	}
	h = http.Header{"Dpop": {"a.b.c, d.e.f"}}
	if _, err := dpop.FromHeader(h); !errors.Is(err, dpop.ErrMultiple) {
		t.Fatalf("two values: %v", err)
	}
}

func TestGatewayVerifier(t *testing.T) {
	keys(t)
	const at = "the-access-token"
	const resource = "https://fhir.example.org/r4/Observation?patient=1"
	jkt, _ := dpop.JKT(ecKey.Public())
	otherJKT, _ := dpop.JKT(ec2Key.Public())
	req := func(t *testing.T, clk *clock, method, htu, ath string) *http.Request {
		c := claimsFor(method, htu, clk.Now())
		if ath != "" {
			c["ath"] = ath
		}
		r := httptest.NewRequestWithContext(context.Background(), "GET", resource, nil)
		r.Header.Set("DPoP", proof(t, jose.ES256, ecKey, c))
		return r
	}
	clk := newClock()
	g := dpop.GatewayVerifier{Verifier: newVerifier(clk)}
	if err := g.Verify(req(t, clk, "GET", resource, dpop.ATH(at)), at, jkt); err != nil {
		t.Fatalf("valid: %v", err)
	}
	// A token bound to another key.
	if err := g.Verify(req(t, clk, "GET", resource, dpop.ATH(at)), at, otherJKT); !errors.Is(err, dpop.ErrKeyMismatch) {
		t.Fatalf("other key: %v", err)
	}
	// A proof for another token.
	if err := g.Verify(req(t, clk, "GET", resource, dpop.ATH("stolen")), at, jkt); !errors.Is(err, dpop.ErrATH) {
		t.Fatalf("other token: %v", err)
	}
	// Replayed proof.
	r := req(t, clk, "GET", resource, dpop.ATH(at))
	if err := g.Verify(r, at, jkt); err != nil {
		t.Fatal(err)
	}
	if err := g.Verify(r, at, jkt); !errors.Is(err, dpop.ErrReplayed) {
		t.Fatalf("replay: %v", err)
	}
	// Proof for another resource.
	if err := g.Verify(req(t, clk, "GET", "https://fhir.example.org/r4/Patient", dpop.ATH(at)), at, jkt); !errors.Is(err, dpop.ErrURL) {
		t.Fatalf("other htu: %v", err)
	}
	// No proof, two proofs.
	r = httptest.NewRequest("GET", resource, nil)
	if err := g.Verify(r, at, jkt); !errors.Is(err, dpop.ErrMissing) {
		t.Fatalf("no proof: %v", err)
	}
	r = req(t, clk, "GET", resource, dpop.ATH(at))
	r.Header.Add("DPoP", r.Header.Get("DPoP"))
	if err := g.Verify(r, at, jkt); !errors.Is(err, dpop.ErrMultiple) {
		t.Fatalf("two proofs: %v", err)
	}
	if err := g.Verify(req(t, clk, "GET", resource, dpop.ATH(at)), at, ""); !errors.Is(err, dpop.ErrInvalid) {
		t.Fatalf("empty jkt: %v", err)
	}
	if err := (dpop.GatewayVerifier{}).Verify(req(t, clk, "GET", resource, dpop.ATH(at)), at, jkt); !errors.Is(err, dpop.ErrUnavailable) {
		t.Fatalf("no verifier: %v", err)
	}
}

func TestChallenge(t *testing.T) {
	v := &dpop.Verifier{Algs: []string{"ES256", "PS256"}}
	if got, want := v.Challenge("fhirgate", "invalid_token", `bad "token"`), `DPoP realm="fhirgate", error="invalid_token", error_description="bad token", algs="ES256 PS256"`; got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if got, want := v.Challenge("", "", ""), `DPoP algs="ES256 PS256"`; got != want {
		t.Fatalf("got %s", got)
	}
}
