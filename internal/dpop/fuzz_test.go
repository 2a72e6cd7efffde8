package dpop_test

import (
	"context"
	"errors"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fhirgate/fhirgate/internal/dpop"
)

// FuzzVerify: arbitrary proofs never panic and are refused with a typed error.
func FuzzVerify(f *testing.F) {
	keys(f)
	clk := newClock()
	f.Add(proof(f, jose.ES256, ecKey, claimsFor("POST", tokenURL, clk.Now())))
	f.Add("eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6Im5vbmUifQ.e30.")
	f.Add("a.b.c")
	f.Add("")
	u := mustURL(f, tokenURL)
	f.Fuzz(func(t *testing.T, p string) {
		v := newVerifier(newClock())
		_, err := v.Verify(context.Background(), p, "POST", u, "")
		if err != nil && !errors.Is(err, dpop.ErrInvalid) {
			t.Fatalf("untyped error: %v", err)
		}
	})
}
