package grant_test

import (
	"net/http"
	"testing"

	"github.com/fhirgate/fhirgate/internal/oauth"
)

// benchExchange measures the whole /token handler on SQLite: form parsing,
// client lookup, code consumption, family creation, ES256 access token (and
// an RS256 id_token when scope has openid), refresh token, audit.
func benchExchange(b *testing.B, scope string) {
	f := newFixture(b)
	c, _ := f.client(oauth.AuthNone)
	type pair struct{ code, verifier string }
	codes := make([]pair, b.N)
	for i := range codes {
		codes[i].code, codes[i].verifier = f.code(c, codeOpts{scope: scope, context: f.patientContext()})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		w := f.exchange(codes[i].code, codes[i].verifier, public(c))
		if w.Code != http.StatusOK {
			b.Fatalf("%d %s", w.Code, w.Body.String())
		}
	}
}

func BenchmarkCodeExchange(b *testing.B) {
	benchExchange(b, "launch/patient fhirUser offline_access patient/*.rs")
}

func BenchmarkCodeExchangeWithIDToken(b *testing.B) {
	benchExchange(b, "launch/patient openid fhirUser offline_access patient/*.rs")
}
