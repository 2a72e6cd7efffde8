package audit

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestRedactRemovesCredentials(t *testing.T) {
	jwt := "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXRleHQ"
	cases := []string{
		"token " + jwt + " was refused",
		"Authorization: Bearer abcdefghijklmnop",
		"DPoP qwertyuiopasdfgh",
		"basic dXNlcjpwYXNzd29yZA==",
		"/fhir/Patient?access_token=abc.def&_id=1",
		"client_secret=s3cr3t-value password=hunter2hunter2 code=AUTHCODE123",
	}
	for _, c := range cases {
		got := Redact(Event{Reason: c, UserAgent: c, RequestID: c}).Reason
		for _, leak := range []string{jwt, "abcdefghijklmnop", "qwertyuiopasdfgh", "dXNlcjpwYXNzd29yZA", "abc.def", "s3cr3t", "hunter2", "AUTHCODE123"} {
			if strings.Contains(got, leak) {
				t.Errorf("Redact(%q) = %q still holds %q", c, got, leak)
			}
		}
	}
}

func TestRedactKeepsOrdinaryText(t *testing.T) {
	e := Event{Reason: "invalid_grant: the authorization code has expired", Scope: "patient/Observation.rs openid launch", UserAgent: "Mozilla/5.0 (X11)"}
	if got := Redact(e); got != e {
		t.Fatalf("Redact changed ordinary text: %+v", got)
	}
}

func TestRedactBoundsAndControls(t *testing.T) {
	got := Redact(Event{Reason: strings.Repeat("é", MaxFieldLen), UserAgent: "a\r\nInjected: header\x00"})
	if len(got.Reason) > MaxFieldLen || !strings.HasPrefix(got.Reason, "é") || strings.ContainsRune(got.Reason, '\uFFFD') {
		t.Fatalf("reason not cut at a rune boundary: %d bytes", len(got.Reason))
	}
	if strings.ContainsAny(got.UserAgent, "\r\n\x00") {
		t.Fatalf("control characters kept: %q", got.UserAgent)
	}
}

// Every cleaned field is valid UTF-8 without control characters (DEL
// included) and within MaxFieldLen, whatever the input.
func FuzzRedactField(f *testing.F) {
	for _, s := range []string{"plain text", "a\x7fb", "bad \xff utf8", "tab\there", "Bearer abcdefghijk", "é\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := Redact(Event{Reason: s}).Reason
		if !utf8.ValidString(got) || len(got) > MaxFieldLen {
			t.Fatalf("Redact(%q) = %q", s, got)
		}
		for _, r := range got {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("Redact(%q) = %q keeps a control character", s, got)
			}
		}
		if printableASCII(s) && !mayHoldCredential(s) && len(s) <= MaxFieldLen && got != s {
			t.Fatalf("Redact changed ordinary text %q into %q", s, got)
		}
	})
}
