package grant_test

import (
	"errors"
	"testing"

	"github.com/fhirgate/fhirgate/internal/audit/audittest"
	"github.com/fhirgate/fhirgate/internal/grant"
)

func TestNewValidates(t *testing.T) {
	f := newFixture(t)
	good := grant.Options{Clients: f.store, Codes: f.store, Tokens: f.store, Issuer: f.issuer,
		IssuerURL: issuerURL, FHIRBase: fhirBase, Auditor: &audittest.Recorder{}}
	if _, err := grant.New(good); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*grant.Options){
		"no clients":       func(o *grant.Options) { o.Clients = nil },
		"no issuer":        func(o *grant.Options) { o.Issuer = nil },
		"no auditor":       func(o *grant.Options) { o.Auditor = nil },
		"relative base":    func(o *grant.Options) { o.FHIRBase = "/fhir" },
		"bad issuer url":   func(o *grant.Options) { o.IssuerURL = "ftp://x" },
		"negative refresh": func(o *grant.Options) { o.RefreshIdle = -1 },
	} {
		o := good
		mod(&o)
		if _, err := grant.New(o); !errors.Is(err, grant.ErrOptions) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
