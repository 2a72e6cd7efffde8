package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/storage"
	"github.com/fhirgate/fhirgate/internal/storage/sqlite"
)

func TestConsentsRevoke(t *testing.T) {
	dir := t.TempDir()
	u := decode[userJSON](t, mustCLI(t, "users", "create", "--data-dir", dir, "--username", "amy", "--password", "correct horse",
		"--role", "patient", "--fhir-user", "Patient/123", "--json"))
	c := decode[clientJSON](t, mustCLI(t, "clients", "create", "--data-dir", dir, "--name", "App",
		"--redirect-uri", "https://app.example.org/cb", "--scope", "openid patient/*.rs offline_access", "--public", "--json"))

	// A consent and a live token family, as the authorize and token endpoints leave them.
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(dir, "fhirgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := s.PutConsent(ctx, &storage.Consent{UserID: u.ID, ClientID: c.ClientID, Scope: "openid", CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateFamily(ctx, &storage.TokenFamily{ID: "fam-1", ClientID: c.ClientID, UserID: u.ID, Scope: "openid",
		CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()

	r := cli(t, nil, "", "consents", "revoke", "--data-dir", dir, "--user", "amy", "--client", c.ClientID)
	if r.code != 0 || !strings.Contains(r.stdout, "revoked the consent of amy") {
		t.Fatalf("revoke: %+v", r)
	}
	if !strings.Contains(r.stderr, "consent.revoked") {
		t.Errorf("not audited: %s", r.stderr)
	}
	s, err = sqlite.Open(ctx, filepath.Join(dir, "fhirgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.GetConsent(ctx, u.ID, c.ClientID); err == nil {
		t.Fatal("consent kept")
	}
	if f, err := s.GetFamily(ctx, "fam-1"); err != nil || f.RevokedAt.IsZero() {
		t.Fatalf("family %+v %v", f, err)
	}

	// Refusals: nothing left, unknown user, unknown client, missing flags.
	for _, tc := range []struct {
		args   []string
		expect string
	}{
		{[]string{"--user", u.ID, "--client", c.ClientID}, "no consent and no live tokens"},
		{[]string{"--user", "nobody", "--client", c.ClientID}, "no user"},
		{[]string{"--user", "amy", "--client", "nope"}, "no client"},
		{[]string{"--user", "amy"}, "client"},
	} {
		r := cli(t, nil, "", append([]string{"consents", "revoke", "--data-dir", dir}, tc.args...)...)
		if r.code != 1 || !strings.Contains(r.stderr, tc.expect) {
			t.Errorf("%v: exit %d stderr %q, want %q", tc.args, r.code, r.stderr, tc.expect)
		}
	}
}
