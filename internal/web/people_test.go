package web

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
	"time"
)

var (
	inputRe = regexp.MustCompile(`<(input|select|textarea)\b[^>]*>`)
	idRe    = regexp.MustCompile(`\bid="([^"]+)"`)
	typeRe  = regexp.MustCompile(`\btype="([^"]+)"`)
)

// TestPeoplePagesAccessible renders every people's-side page and checks the
// rules the pages promise: lang, one h1, a label for every visible control,
// a CSRF field in every POST form, no inline script or style, no external
// resources besides an https logo.
func TestPeoplePagesAccessible(t *testing.T) {
	p, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	nav := Nav{UserName: "amy", CSRF: "tok", Admin: true}
	client := &ConsoleClient{ID: "c1", Name: "App", AuthMethod: "none", RedirectURIs: "https://a/cb", Scope: "openid"}
	pages := map[string]any{
		PageSignIn:       SignInPage{Title: "Sign in", CSRF: "tok", Next: "/account/apps", Error: "Invalid username or password."},
		PageMFA:          MFAPage{Title: "Code", CSRF: "tok", Next: "/x", Error: "wrong"},
		PageMFAEnrol:     MFAEnrolPage{Title: "Enrol", CSRF: "tok", Next: "/x", QRURL: "/mfa/qr.png", Key: "ABCD EFGH", Required: true},
		PageMFARecovery:  MFARecoveryPage{Title: "Codes", Codes: []string{"abcd-efgh-jkmn-pqrs"}, Next: "/x"},
		PageApps:         AppsPage{Title: "Apps", Nav: nav, Apps: []AppRow{{ClientID: "c1", Name: "App", LogoURL: "https://a/logo.png", Scopes: []string{"Read your labs"}, Since: now, LastUsed: now}}},
		PageAccessReport: AccessReportPage{Title: "Report", Nav: nav, Enabled: true, Rows: []AccessRow{{Time: now, Who: "You", App: "App", What: "Opened", Resource: "Patient/1", Allowed: true}}},
	}
	for _, section := range []string{"clients", "client", "users", "audit", "anomalies", "keys"} {
		pages[PageConsole+":"+section] = ConsolePage{Title: "Console", Nav: nav, Section: section, Client: client, AuditEnabled: true, AnomaliesEnabled: true,
			Clients: []ConsoleClient{*client}, Users: []ConsoleUser{{ID: "u1", Username: "amy", Role: "patient", MFA: true}},
			Audit: []ConsoleAuditRow{{Time: now, Action: "login"}}, Query: map[string]string{"outcome": "failure"},
			Anomalies: []ConsoleAnomaly{{ID: "a1", RaisedAt: now}}, Keys: []ConsoleKey{{KID: "k1", Alg: "ES256", Active: true, CreatedAt: now}}}
	}
	for name, data := range pages {
		page, _, _ := strings.Cut(name, ":")
		var buf bytes.Buffer
		if err := p.Render(&buf, page, data); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out := buf.String()
		if !strings.Contains(out, `<html lang="en">`) || strings.Count(out, "<h1>") != 1 {
			t.Errorf("%s: lang or h1", name)
		}
		if strings.Contains(out, "<script") || strings.Contains(out, "style=") || strings.Contains(out, "<style") || strings.Contains(out, " on") && regexp.MustCompile(`\son[a-z]+=`).MatchString(out) {
			t.Errorf("%s: inline script or style", name)
		}
		for _, in := range inputRe.FindAllString(out, -1) {
			if ty := typeRe.FindStringSubmatch(in); ty != nil && ty[1] == "hidden" {
				continue
			}
			id := idRe.FindStringSubmatch(in)
			if id == nil || !strings.Contains(out, `for="`+id[1]+`"`) {
				t.Errorf("%s: control without a label: %s", name, in)
			}
		}
		for _, f := range regexp.MustCompile(`(?s)<form[^>]*method="post".*?</form>`).FindAllString(out, -1) {
			if !strings.Contains(f, `name="csrf"`) {
				t.Errorf("%s: POST form without a CSRF field: %.120s", name, f)
			}
		}
		for _, src := range regexp.MustCompile(`(?:src|href)="(https?://[^"]+)"`).FindAllStringSubmatch(out, -1) {
			if !strings.HasPrefix(src[1], "https://a/logo.png") {
				t.Errorf("%s: external resource %s", name, src[1])
			}
		}
	}
}
