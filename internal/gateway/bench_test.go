package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/policy"
)

type nopAuditor struct{}

func (nopAuditor) Record(context.Context, audit.Event) error { return nil }

// handlerTransport serves upstream requests in process (no network), so the
// benchmarks measure the gateway, not the loopback.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	resp := rec.Result()
	resp.Request = r
	return resp, nil
}

// BenchmarkCheck is the per-request decision on the cached path: header
// parsing, verified-token cache, revocation (cached), binding, FHIR
// classification and the policy decision.
func BenchmarkCheck(b *testing.B) {
	f := newFixture(b, fixtureOpts{})
	tok, _ := f.token(patientAll, patientA)
	req := httptest.NewRequest("GET", "/fhir/Observation/obs-001-01", nil)
	req.Header.Set("Authorization", bearer(tok))
	b.ReportAllocs()
	for b.Loop() {
		scheme, raw, aerr := credentials(req)
		if aerr != nil {
			b.Fatal(aerr)
		}
		v, aerr := f.h.authenticate(req, scheme, raw)
		if aerr != nil {
			b.Fatal(aerr)
		}
		fr, err := fhir.Classify(req.Method, "/Observation/obs-001-01", nil)
		if err != nil {
			b.Fatal(err)
		}
		if d := policy.Decide(v.principal, fr); !d.Allow {
			b.Fatal(d.Reason)
		}
	}
}

// BenchmarkCheckUncached verifies the ES256 signature every time.
func BenchmarkCheckUncached(b *testing.B) {
	f := newFixture(b, fixtureOpts{})
	f.h.cache = newTokenCache(0)
	tok, _ := f.token(patientAll, patientA)
	req := httptest.NewRequest("GET", "/fhir/Observation/obs-001-01", nil)
	req.Header.Set("Authorization", bearer(tok))
	b.ReportAllocs()
	for b.Loop() {
		if _, aerr := f.h.authenticate(req, schemeBearer, tok); aerr != nil {
			b.Fatal(aerr)
		}
	}
}

// BenchmarkServeRead is a whole patient-compartment read through the
// gateway with the upstream served in process: check, audit (no-op sink),
// proxy, compartment check of the response.
func BenchmarkServeRead(b *testing.B) {
	var tr handlerTransport
	f := newFixture(b, fixtureOpts{transport: &tr})
	tr.h = f.spy.next
	f.h.opts.Auditor = nopAuditor{}
	tok, _ := f.token(patientAll, patientA)
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest("GET", "/fhir/Observation/obs-001-01", nil)
		req.Header.Set("Authorization", bearer(tok))
		rec := httptest.NewRecorder()
		f.h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatal(rec.Code, rec.Body.String())
		}
	}
}

// BenchmarkUpstreamOnly is the same read served by the upstream alone, as
// the baseline for BenchmarkServeRead.
func BenchmarkUpstreamOnly(b *testing.B) {
	f := newFixture(b, fixtureOpts{})
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest("GET", "/Observation/obs-001-01", nil)
		req.SetBasicAuth(ehrUser, ehrPass)
		rec := httptest.NewRecorder()
		f.ehr.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatal(rec.Code)
		}
	}
}
