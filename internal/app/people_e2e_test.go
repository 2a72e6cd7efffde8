package app

import (
	"context"
	"encoding/base32"
	"html"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/fhirgate/fhirgate/internal/clientreg"
	"github.com/fhirgate/fhirgate/internal/mfa"
	"github.com/fhirgate/fhirgate/internal/storage"
)

var (
	totpKeyRe  = regexp.MustCompile(`id="totp-key">([A-Z2-7 ]+)<`)
	continueRe = regexp.MustCompile(`href="([^"]+)" id="continue"`)
)

// TestEndToEndSecondFactorAMRAndSSO: with login.require_mfa_for: clinician,
// a clinician's first launch enrols TOTP (QR page) before the picker; the
// id_token says amr [pwd otp] and the two-factor acr; a second launch in the
// same browser session needs no sign-in (SSO). A patient signs in with a
// password only (amr [pwd]).
func TestEndToEndSecondFactorAMRAndSSO(t *testing.T) {
	ctx := context.Background()
	srv := startServer(t, map[string]string{"login.require_mfa_for": "clinician admin"})
	st := srv.app.Store()
	now := time.Now()
	for _, u := range []NewUser{{Username: "drwho", Password: "doctor-password", Role: storage.RoleClinician, FHIRUser: "Practitioner/9"},
		{Username: "amy", Password: "amy-password", Role: storage.RolePatient, FHIRUser: "Patient/123"}} {
		if _, err := CreateUser(ctx, st, u, fastPW, now); err != nil {
			t.Fatal(err)
		}
	}
	if err := AddPatient(ctx, st, storage.Patient{ID: "123", Name: "Amy Shaw", BirthDate: "1987-02-20"}); err != nil {
		t.Fatal(err)
	}
	pub, _, err := CreateClient(ctx, st, clientreg.Metadata{ClientName: "Chart app", RedirectURIs: []string{redirectURI},
		Scope: "openid fhirUser profile launch/patient patient/*.rs", TokenEndpointAuthMethod: "none",
		GrantTypes: []string{"authorization_code"}}, now)
	if err != nil {
		t.Fatal(err)
	}
	provider, err := oidc.NewProvider(ctx, srv.app.Issuer())
	if err != nil {
		t.Fatal(err)
	}
	ep := provider.Endpoint()
	ep.AuthStyle = oauth2.AuthStyleInParams
	oc := &oauth2.Config{ClientID: pub.ID, Endpoint: ep, RedirectURL: redirectURI, Scopes: []string{"openid", "fhirUser", "launch/patient", "patient/*.rs"}}
	start := func() (string, string) {
		v := oauth2.GenerateVerifier()
		return oc.AuthCodeURL("state-12345", oauth2.S256ChallengeOption(v), oauth2.SetAuthURLParam("aud", srv.app.FHIRBase()), oidc.Nonce("nonce-12345")), v
	}
	exchange := func(code, verifier string) map[string]any {
		tok, err := oc.Exchange(ctx, code, oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatalf("exchange: %v", err)
		}
		raw, _ := tok.Extra("id_token").(string)
		idt, err := provider.Verifier(&oidc.Config{ClientID: pub.ID}).Verify(ctx, raw)
		if err != nil {
			t.Fatal(err)
		}
		claims := map[string]any{}
		_ = idt.Claims(&claims)
		return claims
	}
	amrOf := func(c map[string]any) []string {
		var out []string
		list, _ := c["amr"].([]any)
		for _, v := range list {
			s, _ := v.(string)
			out = append(out, s)
		}
		return out
	}
	pick := func(b *browser, p page) page {
		t.Helper()
		for i := 0; p.location == nil && i < 4; i++ {
			switch {
			case strings.Contains(p.body, `action="/authorize/patient"`):
				p = b.submit(onlyForm(t, p, "/authorize/patient"), url.Values{"patient": {"Patient/123"}})
			case strings.Contains(p.body, `action="/authorize/consent"`):
				p = b.submit(onlyForm(t, p, "/authorize/consent"), url.Values{"decision": {"approve"}})
			default:
				t.Fatalf("unexpected page %d:\n%s", p.status, p.body)
			}
		}
		if p.location == nil || p.location.Query().Get("code") == "" {
			t.Fatalf("no code: %v", p.location)
		}
		return p
	}

	b := newBrowser(t, srv.app.URL(), redirectURI)
	authURL, verifier := start()
	p := b.get(authURL)
	p = b.submit(onlyForm(t, p, "/authorize/login"), url.Values{"username": {"drwho"}, "password": {"doctor-password"}})
	m := totpKeyRe.FindStringSubmatch(p.body)
	if m == nil {
		t.Fatalf("clinician not sent to enrol (status %d):\n%s", p.status, p.body)
	}
	if !strings.Contains(p.body, `src="/mfa/qr.png"`) {
		t.Fatal("no QR image")
	}
	key, _ := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(strings.ReplaceAll(m[1], " ", ""))
	p = b.submit(onlyForm(t, p, mfa.PathEnrol), url.Values{"code": {mfa.Code(key, mfa.Step(time.Now()))}})
	c := continueRe.FindStringSubmatch(p.body)
	if c == nil || !strings.HasPrefix(html.UnescapeString(c[1]), "/authorize/continue?req=") {
		t.Fatalf("recovery page without continue link:\n%s", p.body)
	}
	p = pick(b, b.get(srv.app.URL()+html.UnescapeString(c[1])))
	claims := exchange(p.location.Query().Get("code"), verifier)
	if got := amrOf(claims); !slices.Equal(got, []string{"pwd", "otp"}) || claims["acr"] != mfa.ACRMultiFactor {
		t.Fatalf("amr %v acr %v", got, claims["acr"])
	}

	// SSO: the same browser launches again without signing in.
	authURL, verifier = start()
	p = b.get(authURL)
	if strings.Contains(p.body, `action="/authorize/login"`) || strings.Contains(p.body, `action="/mfa"`) {
		t.Fatal("signed in again inside the session")
	}
	p = pick(b, p)
	if got := amrOf(exchange(p.location.Query().Get("code"), verifier)); !slices.Equal(got, []string{"pwd", "otp"}) {
		t.Fatalf("SSO amr %v", got)
	}

	// A patient (role not listed, not enrolled) signs in with a password only.
	pb := newBrowser(t, srv.app.URL(), redirectURI)
	authURL, verifier = start()
	fl := runBrowserFlow(t, pb, authURL, "amy", "amy-password", "")
	claims = exchange(fl.code, verifier)
	if got := amrOf(claims); !slices.Equal(got, []string{"pwd"}) || claims["acr"] != mfa.ACRPassword {
		t.Fatalf("patient amr %v acr %v", got, claims["acr"])
	}
}
